# Production image: the official Airflow image plus the locked dependencies and this project.
# The local AWS emulator (dev/) and test tooling (requirements-dev.txt) are not included.
FROM apache/airflow:3.3.2-python3.11

# The lock pins apache-airflow==3.3.2 too, so pip keeps the image's Airflow as it is.
COPY --chown=airflow:root requirements.txt /opt/dynamo-lake/requirements.txt
RUN pip install --no-cache-dir -r /opt/dynamo-lake/requirements.txt

COPY --chown=airflow:root pyproject.toml README.md /opt/dynamo-lake/
COPY --chown=airflow:root include/dynamo_lake/ /opt/dynamo-lake/include/dynamo_lake/
RUN pip install --no-cache-dir --no-deps /opt/dynamo-lake

COPY --chown=airflow:root include/config/ /opt/airflow/include/config/
COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
ENV DYNAMO_LAKE_TABLES_FILE=/opt/airflow/include/config/tables.yaml
