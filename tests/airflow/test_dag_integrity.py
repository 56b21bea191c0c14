"""DAG validation: the DAGs folder parses with Airflow's own DagBag, each DAG declares what the
conventions ask of it, parsing is cheap (no AWS calls, no heavy imports), and a bad tables
file surfaces as an import error that names the problem."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from dynamo_lake.config import load_tables

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_FILE = DAGS / "dynamodb_backfill.py"
DAG_IDS = ("dynamodb_backfill", "dynamodb_reconciliation", "dynamodb_current_state")
#: Tasks that must not retry: judging a report again gives the same verdict (and alert).
NO_RETRIES = {("dynamodb_reconciliation", "judge")}
SHIPPED_TABLES = REPO / "include" / "config" / "tables.yaml"
HEAVY = ("pyarrow", "duckdb", "pandas")
AWS_SDK = ("boto3", "botocore")


def _entry(name: str) -> dict[str, Any]:
    return {
        "dynamodb_table": name,
        "export_bucket": "acme-ddb-exports",
        "lake_bucket": "acme-lake",
        "glue_database": "shop",
        "glue_table": name,
    }


def _tables_file(directory: Path, document: dict[str, Any]) -> Path:
    path = directory / "tables.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _dag_bag(monkeypatch: pytest.MonkeyPatch, tables_file: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("DYNAMO_LAKE_TABLES_FILE", str(tables_file))
    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def two_tables_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tables_file(
        tmp_path_factory.mktemp("tables"),
        {
            "defaults": {"region": "us-east-1"},
            "tables": {"users": _entry("users"), "orders": _entry("orders")},
        },
    )


@pytest.fixture(scope="module")
def bag(two_tables_file: Path) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _dag_bag(monkeypatch, two_tables_file)


@pytest.fixture(scope="module")
def dag(bag: Any) -> Any:
    # bag.dags, not bag.get_dag(): get_dag reads the metadata DB, parsing does not need it.
    return bag.dags["dynamodb_backfill"]


@pytest.fixture(scope="module", params=DAG_IDS)
def any_dag(bag: Any, request: pytest.FixtureRequest) -> Any:
    return bag.dags[request.param]


def test_dags_folder_imports_without_errors(bag: Any) -> None:
    assert bag.import_errors == {}
    assert set(DAG_IDS) <= set(bag.dag_ids)
    for dag_id in DAG_IDS:
        assert bag.dags[dag_id].fileloc == str(DAGS / f"{dag_id}.py")


def test_the_shipped_tables_file_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    bag = _dag_bag(monkeypatch, SHIPPED_TABLES)

    assert bag.import_errors == {}
    table = bag.dags["dynamodb_backfill"].params.get_param("table")
    assert table.schema["enum"] == sorted(load_tables(SHIPPED_TABLES).tables)


def test_declares_owner_retries_tags_and_catchup(any_dag: Any) -> None:
    dag = any_dag
    assert dag.tags, "the DAG has no tags"
    assert dag.owner and dag.owner != "airflow"
    assert dag.default_args["owner"] != "airflow"
    assert dag.default_args["retries"] >= 1
    retries = {t.task_id: t.retries for t in dag.tasks if (dag.dag_id, t.task_id) not in NO_RETRIES}
    assert all(count >= 1 for count in retries.values()), retries
    assert dag.catchup is False


def test_the_backfill_is_manual_and_the_reconciliation_scheduled_from_the_file(bag: Any) -> None:
    assert bag.dags["dynamodb_backfill"].schedule is None
    # The test tables file has no reconciliation section: the default, daily; its first run
    # waits for the next tick, whatever the time of day the DAG is first seen.
    from datetime import timedelta

    from airflow.timetables.trigger import CronTriggerTimetable

    timetable = bag.dags["dynamodb_reconciliation"].timetable
    assert isinstance(timetable, CronTriggerTimetable)
    assert timetable.summary == "0 0 * * *"
    assert timetable._run_immediately == timedelta(0)
    first = timetable._calc_first_run()
    assert first > datetime.now(UTC), f"the first scheduled run is in the past: {first}"


def test_doc_md_explains_the_dag(dag: Any) -> None:
    assert dag.doc_md
    assert "point-in-time" in dag.doc_md.lower()
    assert "**full**" in dag.doc_md
    assert "**incremental**" in dag.doc_md


def test_the_reconciliations_doc_says_what_each_method_costs_and_what_to_do(bag: Any) -> None:
    doc = bag.dags["dynamodb_reconciliation"].doc_md
    for words in ("`count`", "`scan`", "`export`", "`changes`", "read capacity", "**On drift**"):
        assert words in doc


def test_every_param_has_a_title_and_description(any_dag: Any) -> None:
    dag = any_dag
    assert list(dag.params)
    for name in dag.params:
        param = dag.params.get_param(name)
        assert param.schema.get("title"), f"param {name!r} has no title"
        assert param.description, f"param {name!r} has no description"
        assert param.schema.get("type"), f"param {name!r} has no JSON-schema type"


def test_table_enum_is_the_configured_tables(dag: Any, two_tables_file: Path) -> None:
    table = dag.params.get_param("table")

    assert table.schema["enum"] == ["orders", "users"]
    assert table.schema["enum"] == sorted(load_tables(two_tables_file).tables)
    assert table.value in table.schema["enum"]


def test_the_reconciliation_may_check_every_table(bag: Any) -> None:
    # A visible choice: the form treats an empty required field as missing and will not
    # trigger, so "" could never be chosen there.
    table = bag.dags["dynamodb_reconciliation"].params.get_param("table")
    assert table.schema["enum"] == ["all tables", "orders", "users"]
    assert table.value == "all tables"


TIME_PARAMS = {
    "dynamodb_backfill": ("export_time", "export_from", "export_to"),
    "dynamodb_reconciliation": ("as_of",),
}


@pytest.mark.parametrize(
    "typed",
    [
        "2024-06-01T12:00:00Z",
        "2024-06-01T12:00Z",
        "2024-06-01 12:00:00.123456+02:00",
        "2024-06-01T12:00:00",
        "",
        None,
    ],
)
def test_time_fields_take_utc_text_as_typed(bag: Any, typed: str | None) -> None:
    # Not the form's date-time picker: it converts what is typed from the browser's zone.
    for dag_id, names in TIME_PARAMS.items():
        for name in names:
            param = bag.dags[dag_id].params.get_param(name)
            assert "format" not in param.schema, f"{dag_id}.{name} would show the picker"
            assert param.resolve(value=typed) == typed


@pytest.mark.parametrize("typed", ["01/06/2024 12:00", "2024-06-01", "yesterday", "1717243200"])
def test_time_fields_refuse_what_is_not_a_moment(bag: Any, typed: str) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    for dag_id, names in TIME_PARAMS.items():
        for name in names:
            with pytest.raises(ParamValidationError):
                bag.dags[dag_id].params.get_param(name).resolve(value=typed)


def test_each_doc_says_what_the_params_mean_and_what_to_do_on_failure(any_dag: Any) -> None:
    doc = any_dag.doc_md
    assert "**Params**" in doc and "When" in doc and "fails" in doc
    for name in any_dag.params:
        assert f"`{name}`" in doc, f"the doc of {any_dag.dag_id} does not explain {name!r}"


_PARSE_SCRIPT = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("dag_parse_probe", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
names = sys.argv[2].split(",")
tables = sorted(module.TABLES.tables)
print(json.dumps({"tables": tables, "modules": {n: n in sys.modules for n in names}}))
"""


@pytest.mark.parametrize("dag_file", [DAGS / f"{dag_id}.py" for dag_id in DAG_IDS], ids=DAG_IDS)
def test_parsing_makes_no_aws_calls_and_imports_nothing_heavy(
    tmp_path: Path, two_tables_file: Path, dag_file: Path
) -> None:
    # An endpoint that accepts connections and never answers: any AWS call at parse time
    # would hang the import (and fail the timeout) and leave a connection in the backlog.
    endpoint = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    endpoint.bind(("127.0.0.1", 0))
    endpoint.listen(16)
    endpoint.setblocking(False)
    url = f"http://127.0.0.1:{endpoint.getsockname()[1]}"
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "AIRFLOW_CONN_", "AIRFLOW__"))
    }
    environment.update(
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        DYNAMO_LAKE_TABLES_FILE=str(two_tables_file),
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AIRFLOW_CONN_AWS_DEFAULT=f"aws://testing:testing@/?region_name=us-east-1&endpoint_url={url}",
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PARSE_SCRIPT, str(dag_file), ",".join(HEAVY + AWS_SDK)],
            capture_output=True,
            text=True,
            timeout=90,
            env=environment,
            cwd=tmp_path,
            check=False,
        )
        with pytest.raises(BlockingIOError):
            endpoint.accept()  # nothing connected
    finally:
        endpoint.close()

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["tables"] == ["orders", "users"]  # the file really was parsed
    imported = {name for name, present in report["modules"].items() if present}
    assert not imported & set(HEAVY), f"DAG parsing imported {sorted(imported)}"
    # Observed with Airflow 3.3: neither Airflow's SDK nor the DAG file imports the AWS SDK.
    assert not imported & set(AWS_SDK), f"DAG parsing imported {sorted(imported)}"


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        pytest.param(
            {k: v for k, v in _entry("orders").items() if k != "lake_bucket"},
            "lake_bucket",
            "is required",
            id="missing-lake_bucket",
        ),
        pytest.param(
            {**_entry("orders"), "lake_bukcet": "acme-lake"},
            "lake_bukcet",
            "unknown field",
            id="unknown-field",
        ),
    ],
)
def test_config_error_is_an_import_error_naming_file_table_and_field(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    entry: dict[str, Any],
    field: str,
    words: str,
) -> None:
    tables_file = _tables_file(tmp_path, {"tables": {"users": _entry("users"), "orders": entry}})

    bag = _dag_bag(monkeypatch, tables_file)

    assert not set(DAG_IDS) & set(bag.dags)
    assert sorted(Path(name).name for name in bag.import_errors) == sorted(
        f"{dag_id}.py" for dag_id in DAG_IDS
    )
    for error in bag.import_errors.values():
        assert str(tables_file) in error
        assert "table 'orders'" in error
        assert repr(field) in error
        assert words in error
        assert "ConfigError" in error
