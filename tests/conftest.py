"""Shared fixtures: sample exports in AWS's layout, and the local AWS stack (dev/local_aws)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from codec_paths import NOT_BUILT, compiled_codec_module

from dynamo_lake import codec
from sample_export import write_sample_export

pytest_plugins = ["local_aws.pytest_plugin"]

REPO = Path(__file__).resolve().parent.parent

# Airflow reads its configuration when first imported: point it at a throw-away home before
# any test imports it. The metadata database is created by the `airflow_db` fixture.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="dynamo-lake-airflow-"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__PARALLELISM"] = "2"
os.environ.setdefault("DYNAMO_LAKE_EXPORT_POLL_SECONDS", "1")

ExportFactory = Callable[..., Path]


@pytest.fixture
def bucket_root(tmp_path: Path) -> Path:
    root = tmp_path / "bucket"
    root.mkdir()
    return root


@pytest.fixture
def make_export(bucket_root: Path) -> ExportFactory:
    """Write an export into ``bucket_root``; returns the manifest-summary.json path."""

    def factory(**options: Any) -> Path:
        options.setdefault("items", 300)
        options.setdefault("files", 3)
        return write_sample_export(bucket_root, **options)

    return factory


@pytest.fixture(scope="module", params=["pure", "compiled"])
def codec_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a module's tests once on each codec path (``pytestmark = usefixtures(...)``).

    Module-scoped, so hypothesis tests may use it; "compiled" skips when it is not built.
    """
    saved = codec._COMPILED
    if request.param == "compiled":
        module = compiled_codec_module()
        if module is None:
            pytest.skip(NOT_BUILT)
        codec._COMPILED = module
    else:
        codec._COMPILED = None
    try:
        yield request.param
    finally:
        codec._COMPILED = saved
