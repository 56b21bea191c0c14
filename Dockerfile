# Production image: the official Airflow image plus the locked dependencies and this project.
# The local AWS emulator (dev/) and test tooling (requirements-dev.txt) are not included.

# Builder: the official Airflow image has no C compiler, so the project's wheel (with the
# compiled codec, dynamo_lake._fastcodec) is built here. python:3.11-bookworm is Debian 12
# with gcc and Python's headers, like the Airflow image's base (Debian 12, CPython 3.11).
# DYNAMO_LAKE_REQUIRE_EXT=1 makes a failed compile fail the build instead of leaving the
# image on the pure codec unnoticed. pip fetches the pinned build requirements
# (setuptools, Cython) from pyproject.toml.
FROM python:3.11-bookworm AS builder
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY include/dynamo_lake/ include/dynamo_lake/
RUN DYNAMO_LAKE_REQUIRE_EXT=1 pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM apache/airflow:3.3.2-python3.11

# The lock pins apache-airflow==3.3.2 too, so pip keeps the image's Airflow as it is.
COPY --chown=airflow:root requirements.txt /opt/dynamo-lake/requirements.txt
RUN pip install --no-cache-dir -r /opt/dynamo-lake/requirements.txt

COPY --from=builder /wheels/ /opt/dynamo-lake/wheels/
RUN pip install --no-cache-dir --no-deps /opt/dynamo-lake/wheels/dynamo_lake-*.whl \
    && python -c "from dynamo_lake import _fastcodec, codec; assert codec.active_codec() == 'compiled'"

COPY --chown=airflow:root include/config/ /opt/airflow/include/config/
COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
ENV DYNAMO_LAKE_TABLES_FILE=/opt/airflow/include/config/tables.yaml
