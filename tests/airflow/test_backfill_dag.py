"""The backfill DAG end to end: real Airflow (dag.test), the local AWS stack over HTTP,
real Parquet in its S3, DuckDB to read it back."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import duckdb
import orjson
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from airflow.utils.state import DagRunState, TaskInstanceState
from airflow_scenario import DDB_TABLE, EXPORT_BUCKET, Scenario

from dynamo_lake.config import load_tables
from dynamo_lake.storage import S3Options, resolve
from stream_relay import table_state

pytestmark = pytest.mark.usefixtures("scenario")


def _options(scenario: Scenario) -> S3Options:
    return S3Options(
        endpoint_url=scenario.aws.endpoint_url,
        region="us-east-1",
        access_key="testing",
        secret_key="testing",
    )


def _lake(scenario: Scenario, entry: str) -> Any:
    return resolve(load_tables().table(entry).lake_uri, _options(scenario))


def lake_rows(scenario: Scenario, entry: str) -> list[tuple[str, str, datetime, str]]:
    lake = _lake(scenario, entry)
    if not lake.exists():
        return []
    dataset = ds.dataset(
        lake.path,
        filesystem=lake.filesystem,
        format="parquet",
        partitioning="hive",
        exclude_invalid_files=True,
        ignore_prefixes=["_"],
    )
    arrow_rows = dataset.to_table(columns=["uuid", "op", "time_stamp", "data"])
    return sorted(duckdb.from_arrow(arrow_rows).fetchall())


def table_items(scenario: Scenario) -> set[str]:
    return table_state(scenario.aws.endpoint_url, DDB_TABLE)


UNSET = {
    "export_time": None,
    "export_from": None,
    "export_to": None,
    "compression": "table default",
    "dry_run": False,
    "force": False,
}


def run(dag: Any, conf: dict[str, Any], **kwargs: Any) -> Any:
    # Every parameter is given: dag.test() keeps the previous run's conf as defaults.
    return dag.test(run_conf={**UNSET, **conf}, **kwargs)


def states(dag_run: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for ti in dag_run.get_task_instances():
        found.setdefault(ti.task_id, []).append(str(ti.state))
    return found


def exports_of(scenario: Scenario) -> list[dict[str, Any]]:
    dynamodb = scenario.client("dynamodb")
    arn = dynamodb.describe_table(TableName=DDB_TABLE)["Table"]["TableArn"]
    return dynamodb.list_exports(TableArn=arn, MaxResults=25).get("ExportSummaries", [])


def test_full_backfill_lands_the_table_in_the_lake(backfill_dag: Any, scenario: Scenario) -> None:
    dag_run = run(backfill_dag, {"table": "full", "mode": "full"})
    assert dag_run.state == DagRunState.SUCCESS, states(dag_run)
    rows = lake_rows(scenario, "full")
    assert {op for _, op, _, _ in rows} == {"I"}
    assert len({stamp for _, _, stamp, _ in rows}) == 1
    assert {data for _, _, _, data in rows} == table_items(scenario)

    # The Glue table follows the contract, with partition projection.
    glue = scenario.client("glue").get_table(DatabaseName="it_shop", Name="orders_full")["Table"]
    assert [c["Name"] for c in glue["StorageDescriptor"]["Columns"]] == [
        "uuid",
        "op",
        "time_stamp",
        "data",
    ]
    assert glue["Parameters"]["projection.enabled"] == "true"
    assert [k["Name"] for k in glue["PartitionKeys"]] == ["year", "month", "day"]

    # The backfill record sits beside the lake table and agrees with the lake.
    from dynamo_lake.backfill import read_backfill_record

    lake_uri = load_tables().table("full").lake_uri
    (listed,) = _lake(scenario, "full").child("_backfills").list_files()
    record = read_backfill_record(lake_uri, dag_run.run_id, _options(scenario))
    assert record is not None and listed.name.endswith(".json")
    assert orjson.loads(listed.read_bytes()) == record.to_json()
    assert record.rows == len(rows) and record.glue == "created"
    (export,) = record.exports
    assert export.export_arn.startswith("arn:aws:dynamodb:us-east-1:")
    assert export.item_count == export.rows == len(rows)
    assert record.run_id == dag_run.run_id
    # The record states the export's own time (the manifest's, in AWS's milliseconds), the
    # time every row carries, beside the time the run asked for (microseconds).
    (stamp,) = {stamp for _, _, stamp, _ in rows}
    assert export.export_time == stamp.isoformat().replace("+00:00", "Z")
    assert stamp.microsecond % 1000 == 0
    assert export.requested_export_time

    # The asset event for the lake table carries the figures.
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == dag_run.run_id).all()
        (event,) = events
        assert event.extra["rows"] == len(rows)
        assert event.extra["exports"][0]["export_time"] == export.export_time
        assert event.asset.uri == load_tables().table("full").lake_uri


def test_incremental_backfill_writes_each_change(
    backfill_dag: Any, scenario: Scenario, capfd: pytest.CaptureFixture[str]
) -> None:
    # The export stays IN_PROGRESS for 2 s, so the operator defers and the trigger polls.
    scenario.aws.update_settings(export_delay_seconds=2.0)
    window = {
        "export_from": (scenario.changes_from - timedelta(minutes=10)).isoformat(),
        "export_to": (scenario.changes_to + timedelta(minutes=10)).isoformat(),
    }
    try:
        dag_run = run(backfill_dag, {"table": "incremental", "mode": "incremental", **window})
    finally:
        scenario.aws.update_settings(export_delay_seconds=0.0)
    assert dag_run.state == DagRunState.SUCCESS, states(dag_run)
    output = capfd.readouterr()
    assert "waiting in the triggerer" in output.out + output.err
    assert "is IN_PROGRESS" in output.out + output.err
    rows = lake_rows(scenario, "incremental")
    assert rows, "the churn in the window must produce rows"
    ops = {op for _, op, _, _ in rows}
    assert ops <= {"I", "U", "D"} and "U" in ops and "D" in ops
    for _, _, stamp, _ in rows:
        assert scenario.changes_from <= stamp <= scenario.changes_to


def test_a_window_over_24_hours_is_split_into_consecutive_exports(
    backfill_dag: Any, scenario: Scenario, capfd: pytest.CaptureFixture[str]
) -> None:
    before = len(exports_of(scenario))
    conf = {
        "table": "split",
        "mode": "incremental",
        "export_from": scenario.t0.isoformat(),
        "export_to": (scenario.t0 + timedelta(hours=30)).isoformat(),
        "compression": "gzip",
    }
    dag_run = run(backfill_dag, conf)
    assert dag_run.state == DagRunState.SUCCESS, states(dag_run)
    assert len(exports_of(scenario)) == before + 2
    assert states(dag_run)["export"] == [TaskInstanceState.SUCCESS] * 2
    # Reading the mapped exports' results reads no XCom past the end (an error line each).
    output = capfd.readouterr()
    assert "XCom not found" not in output.out + output.err
    rows = lake_rows(scenario, "split")
    # Every item was inserted in the first part; the churn falls in it too.
    assert len({data for _, op, _, data in rows if op != "D"}) >= 100
    # The compression chosen in the form is the one written.
    lake = _lake(scenario, "split")
    from pyarrow.fs import FileSelector

    files = [
        info.path
        for info in lake.filesystem.get_file_info(FileSelector(lake.path, recursive=True))
        if info.path.endswith(".parquet") and "/_" not in info.path[len(lake.path) :]
    ]
    assert files
    with lake.filesystem.open_input_file(files[0]) as handle:
        metadata = pq.ParquetFile(handle).metadata
        assert metadata.row_group(0).column(3).compression == "GZIP"


def test_rerunning_the_same_run_reuses_the_export_and_rewrites_the_same_files(
    backfill_dag: Any, scenario: Scenario
) -> None:
    before = len(exports_of(scenario))
    moment = datetime.now().astimezone() - timedelta(minutes=1)
    conf = {"table": "rerun", "mode": "full", "export_time": scenario.changes_to.isoformat()}
    first = run(backfill_dag, conf, logical_date=moment, run_after=moment)
    assert first.state == DagRunState.SUCCESS, states(first)
    rows_first = lake_rows(scenario, "rerun")
    second = run(backfill_dag, conf, logical_date=moment, run_after=moment)
    assert second.run_id == first.run_id
    assert second.state == DagRunState.SUCCESS, states(second)
    assert len(exports_of(scenario)) == before + 1, "a retried start must not start a 2nd export"
    assert lake_rows(scenario, "rerun") == rows_first
    lake = _lake(scenario, "rerun")
    from pyarrow.fs import FileSelector

    visible = [
        info.path
        for info in lake.filesystem.get_file_info(FileSelector(lake.path, recursive=True))
        if info.path.endswith(".parquet") and "/_" not in info.path[len(lake.path) :]
    ]
    assert len(visible) == len(set(visible)) and visible
    staging = lake.child("_staging")
    leftovers = [
        info
        for info in lake.filesystem.get_file_info(
            FileSelector(staging.path, recursive=True, allow_not_found=True)
        )
        if info.type.name == "File"
    ]
    assert leftovers == []


def _visible_files(scenario: Scenario, entry: str) -> list[str]:
    from pyarrow.fs import FileSelector

    lake = _lake(scenario, entry)
    return sorted(
        info.path
        for info in lake.filesystem.get_file_info(
            FileSelector(lake.path, recursive=True, allow_not_found=True)
        )
        if info.path.endswith(".parquet") and "/_" not in info.path[len(lake.path) :]
    )


def test_clearing_a_run_without_an_export_time_reuses_its_moment(
    backfill_dag: Any, scenario: Scenario
) -> None:
    """The run resolves "the latest restorable time" once: clearing it (plan included) a
    little later must not export a newer moment and orphan the first export's files."""
    before = len(exports_of(scenario))
    moment = datetime.now().astimezone() - timedelta(minutes=2)
    conf = {"table": "cleared", "mode": "full"}
    first = run(backfill_dag, conf, logical_date=moment, run_after=moment)
    assert first.state == DagRunState.SUCCESS, states(first)
    files_first, rows_first = _visible_files(scenario, "cleared"), lake_rows(scenario, "cleared")
    time.sleep(2.5)  # the table's latest restorable time moves on (the stack's lag is 1 s)
    second = run(backfill_dag, conf, logical_date=moment, run_after=moment)
    assert second.run_id == first.run_id
    assert second.state == DagRunState.SUCCESS, states(second)
    assert len(exports_of(scenario)) == before + 1
    assert _visible_files(scenario, "cleared") == files_first
    assert lake_rows(scenario, "cleared") == rows_first


def test_a_run_cleared_after_its_client_token_expired_replaces_its_first_export(
    backfill_dag: Any, scenario: Scenario
) -> None:
    """AWS forgets a ClientToken after 8 hours: a run cleared later starts a second export
    of the same moment. Its commit publishes the new export and retires the first."""
    before = len(exports_of(scenario))
    moment = datetime.now().astimezone() - timedelta(minutes=3)
    conf = {"table": "expired", "mode": "full"}
    first = run(backfill_dag, conf, logical_date=moment, run_after=moment)
    assert first.state == DagRunState.SUCCESS, states(first)
    files_first, rows_first = _visible_files(scenario, "expired"), lake_rows(scenario, "expired")
    scenario.aws.update_settings(client_token_ttl_seconds=0.001)
    try:
        second = run(backfill_dag, conf, logical_date=moment, run_after=moment)
    finally:
        scenario.aws.restore_settings()
        scenario.aws.update_settings(export_delay_seconds=0.0)
    assert second.state == DagRunState.SUCCESS, states(second)
    assert len(exports_of(scenario)) == before + 2  # a second export of the same moment
    files_second = _visible_files(scenario, "expired")
    assert files_second and not set(files_second) & set(files_first)  # the first is retired
    assert lake_rows(scenario, "expired") == rows_first  # the same events, once


def test_a_second_backfill_of_the_same_moment_is_refused_unless_forced(
    backfill_dag: Any, scenario: Scenario, capfd: pytest.CaptureFixture[str]
) -> None:
    conf = {"table": "twice", "mode": "full", "export_time": scenario.changes_to.isoformat()}
    first = run(backfill_dag, conf)
    assert first.state == DagRunState.SUCCESS, states(first)
    rows = lake_rows(scenario, "twice")
    before = len(exports_of(scenario))
    capfd.readouterr()

    second = run(backfill_dag, conf)
    assert second.run_id != first.run_id
    assert second.state == DagRunState.FAILED
    assert states(second)["plan"] == [TaskInstanceState.FAILED]
    output = capfd.readouterr()
    assert "already holds the events of a full export" in output.out + output.err
    assert len(exports_of(scenario)) == before  # refused before exporting
    assert lake_rows(scenario, "twice") == rows

    forced = run(backfill_dag, {**conf, "force": True})
    assert forced.state == DagRunState.SUCCESS, states(forced)
    again = lake_rows(scenario, "twice")
    assert len(again) == 2 * len(rows)
    assert {row[0] for row in again} == {row[0] for row in rows}  # the same events, twice


def test_dry_run_plans_and_writes_nothing(backfill_dag: Any, scenario: Scenario) -> None:
    before = len(exports_of(scenario))
    dag_run = run(backfill_dag, {"table": "dry", "mode": "full", "dry_run": True})
    assert dag_run.state == DagRunState.SUCCESS, states(dag_run)
    found = states(dag_run)
    assert found["plan"] == [TaskInstanceState.SUCCESS]
    assert found["summary"] == [TaskInstanceState.SUCCESS]
    assert found["commit"] == [TaskInstanceState.SKIPPED]
    assert len(exports_of(scenario)) == before
    assert lake_rows(scenario, "dry") == []


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (
            {"table": "badtime", "mode": "full", "export_time": "2013-01-01T00:00:00Z"},
            "outside the table's point-in-time window",
        ),
        ({"table": "badtime", "mode": "incremental"}, "needs export_from"),
        (
            {"table": "badtime", "mode": "full", "export_from": "2024-01-01T00:00:00Z"},
            "export_from/export_to are for mode 'incremental'",
        ),
        ({"table": "nopitr", "mode": "full"}, "update-continuous-backups"),
        ({"table": "nobucket", "mode": "full"}, "'it-missing-bucket' (export_bucket"),
    ],
)
def test_bad_requests_fail_in_plan_with_plain_words(
    backfill_dag: Any,
    scenario: Scenario,
    capfd: pytest.CaptureFixture[str],
    conf: dict[str, Any],
    message: str,
) -> None:
    before = len(exports_of(scenario))
    dag_run = run(backfill_dag, conf)
    assert dag_run.state == DagRunState.FAILED
    assert states(dag_run)["plan"] == [TaskInstanceState.FAILED]
    output = capfd.readouterr()
    assert message in output.out + output.err
    assert len(exports_of(scenario)) == before


def test_failed_export_fails_the_task_with_aws_reason(scenario: Scenario) -> None:
    from dynamo_lake.airflow.operators import DynamoDBExportOperator, ExportFailed
    from dynamo_lake.exports.api import ExportRequest

    dynamodb = scenario.client("dynamodb")
    arn = dynamodb.describe_table(TableName=DDB_TABLE)["Table"]["TableArn"]
    request = ExportRequest(
        table="full",
        table_arn=arn,
        aws_conn_id="aws_default",
        region="us-east-1",
        bucket="no-such-bucket-anywhere",
        prefix="x",
        mode="full",
        client_token="failed-export-test",
        export_time=scenario.changes_to.isoformat(),
    )
    operator = DynamoDBExportOperator(task_id="export", export_request=request.to_json())
    with pytest.raises(ExportFailed, match="S3NoSuchBucket.*export bucket does not exist"):
        operator.execute({})
    assert EXPORT_BUCKET  # the real bucket is untouched
