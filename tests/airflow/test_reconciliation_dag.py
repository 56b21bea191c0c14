"""The reconciliation DAG end to end: real Airflow (dag.test), the local AWS stack over HTTP,
lakes made by the backfill DAG, DuckDB comparing them with exports of the table.

The table (see airflow_scenario) is loaded at T0+5 min and changed (updates, deletes,
inserts) between T0+1 h and T0+1 h 30. A lake backfilled before the changes and checked
after them must show exactly the keys the changes touched; the oracle for those keys is two
exports of the table read back independently of the comparison.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from airflow.utils.state import DagRunState, TaskInstanceState
from airflow_scenario import ALERT_TOPIC, DDB_TABLE, EXPORT_BUCKET, Scenario

from dynamo_lake.codec import item_to_data
from dynamo_lake.config import load_tables
from dynamo_lake.exports.api import ExportRequest, describe_export, start_export
from dynamo_lake.exports.manifest import read_manifest
from dynamo_lake.reconciliation.compare import KeyAttribute, key_json
from dynamo_lake.reconciliation.report import latest_report, list_reports
from dynamo_lake.storage import S3Options

pytestmark = pytest.mark.usefixtures("scenario")
KEYS = [KeyAttribute("pk", "S"), KeyAttribute("sk", "S")]
UNSET = {"table": "all tables", "method": "table default", "as_of": None, "repair": "table default"}


def _options(scenario: Scenario) -> S3Options:
    return S3Options(
        endpoint_url=scenario.aws.endpoint_url,
        region="us-east-1",
        access_key="testing",
        secret_key="testing",
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def states(dag_run: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for ti in dag_run.get_task_instances():
        found.setdefault(ti.task_id, []).append(str(ti.state))
    return found


def backfill(dag: Any, table: str, moment: datetime) -> None:
    conf = {
        "table": table,
        "mode": "full",
        "export_time": _iso(moment),
        "export_from": None,
        "export_to": None,
        "compression": "table default",
        "dry_run": False,
        "force": False,
    }
    run = dag.test(run_conf=conf)
    assert run.state == DagRunState.SUCCESS, states(run)


def reconcile(dag: Any, **conf: Any) -> Any:
    return dag.test(run_conf={**UNSET, **conf})


def table_at(scenario: Scenario, moment: datetime) -> dict[str, str]:
    """The table at ``moment`` (key JSON -> canonical data), from an export read back with
    boto3-free plain JSON and the codec, not through the comparison under test."""
    dynamodb = scenario.client("dynamodb")
    arn = dynamodb.describe_table(TableName=DDB_TABLE)["Table"]["TableArn"]
    request = ExportRequest(
        table="oracle",
        table_arn=arn,
        aws_conn_id="aws_default",
        region="us-east-1",
        bucket=EXPORT_BUCKET,
        prefix="oracle",
        mode="full",
        client_token=uuid.uuid4().hex,
        export_time=moment.isoformat(),
    )
    state = describe_export(dynamodb, start_export(dynamodb, request))
    assert state.status == "COMPLETED" and state.manifest_uri
    manifest = read_manifest(state.manifest_uri, _options(scenario))
    s3 = scenario.client("s3")
    found = {}
    for data_file in manifest.data_files:
        body = s3.get_object(Bucket=EXPORT_BUCKET, Key=data_file.key)["Body"].read()
        import gzip

        for line in gzip.decompress(body).splitlines():
            if line.strip():
                item = json.loads(line)["Item"]
                key = json.dumps([item[attribute.name]["S"] for attribute in KEYS])
                found[key_json(key, KEYS)] = item_to_data(item)
    return found


def expected_drift(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    return {
        "missing": sorted(set(after) - set(before)),
        "extra": sorted(set(before) - set(after)),
        "different": sorted(key for key in set(before) & set(after) if before[key] != after[key]),
    }


def _lake(entry: str) -> str:
    return load_tables().table(entry).lake_uri


def test_a_lake_that_matches_its_table_is_reported_ok(
    backfill_dag: Any, reconciliation_dag: Any, scenario: Scenario
) -> None:
    moment = scenario.changes_to + timedelta(minutes=5)
    backfill(backfill_dag, "rec_ok", moment)

    run = reconcile(reconciliation_dag, table="rec_ok", as_of=_iso(moment))

    assert run.state == DagRunState.SUCCESS, states(run)
    report = latest_report(_lake("rec_ok"), _options(scenario))
    assert report is not None
    assert (report.status, report.method, report.run_id) == ("ok", "export", run.run_id)
    assert report.as_of == f"{moment:%Y-%m-%dT%H:%M:%S.%f}Z"
    assert report.table_count == report.lake_count == len(table_at(scenario, moment))
    assert (report.missing, report.extra, report.different) == (0, 0, 0)
    assert report.export_arn and report.export_arn.startswith("arn:aws:dynamodb:")
    # The work location (the converted export) is gone once the report is written.
    from dynamo_lake.storage import resolve

    work = resolve(f"{_lake('rec_ok')}/_reconciliation/work", _options(scenario))
    assert not [item for item in work.list_files()]


def test_the_export_method_finds_exactly_the_keys_the_table_changed(
    backfill_dag: Any, reconciliation_dag: Any, scenario: Scenario
) -> None:
    before_changes = scenario.changes_from - timedelta(minutes=1)
    after_changes = scenario.changes_to + timedelta(minutes=1)
    backfill(backfill_dag, "rec_drift", before_changes)
    expected = expected_drift(table_at(scenario, before_changes), table_at(scenario, after_changes))
    assert all(expected.values()), expected  # the churn updated, deleted and inserted

    run = reconcile(reconciliation_dag, table="rec_drift", as_of=_iso(after_changes))

    assert run.state == DagRunState.FAILED
    found = states(run)
    assert found["check"] == [TaskInstanceState.SUCCESS]
    assert found["judge"] == [TaskInstanceState.FAILED]  # red on drift
    report = latest_report(_lake("rec_drift"), _options(scenario))
    assert report is not None and report.status == "drift"
    assert (report.missing, report.extra, report.different) == tuple(
        len(expected[kind]) for kind in ("missing", "extra", "different")
    )
    for kind in ("missing", "extra", "different"):
        assert report.samples[kind] == expected[kind][:20]


def test_the_changes_method_checks_the_days_changes(
    backfill_dag: Any, reconciliation_dag: Any, scenario: Scenario
) -> None:
    """The window [T-24h, T) holds the table's load and its changes. Keys the changes
    inserted are missing, keys they updated are different; keys loaded and deleted inside
    the window are not in the incremental export at all (AWS compacts them away)."""
    before_changes = scenario.changes_from - timedelta(minutes=1)
    after_changes = scenario.changes_to + timedelta(minutes=1)
    backfill(backfill_dag, "rec_changes", before_changes)
    expected = expected_drift(table_at(scenario, before_changes), table_at(scenario, after_changes))

    run = reconcile(reconciliation_dag, table="rec_changes", as_of=_iso(after_changes))

    assert states(run)["check"] == [TaskInstanceState.SUCCESS], states(run)
    report = latest_report(_lake("rec_changes"), _options(scenario))
    assert report is not None and (report.method, report.status) == ("changes", "drift")
    # The table's history starts at T0 (its PITR window), less than 24 h before T.
    assert report.window == [
        f"{scenario.t0:%Y-%m-%dT%H:%M:%S.%f}Z",
        f"{after_changes:%Y-%m-%dT%H:%M:%S.%f}Z",
    ]
    assert report.samples["missing"] == expected["missing"][:20]
    assert report.samples["different"] == expected["different"][:20]
    # The keys the changes deleted were loaded inside the window too, so AWS leaves them
    # out of the incremental export, and the lake holds them from the backfill only: rows
    # that restate the table as it was at the backfill, never phantoms. That the lake
    # missed their deletes only the export method can see (the test above).
    assert (report.missing, report.different, report.phantoms, report.extra) == (
        len(expected["missing"]),
        len(expected["different"]),
        0,
        0,
    )


def test_repair_makes_the_next_check_clean_and_a_second_repair_writes_nothing(
    backfill_dag: Any, reconciliation_dag: Any, scenario: Scenario
) -> None:
    before_changes = scenario.changes_from - timedelta(minutes=1)
    after_changes = scenario.changes_to + timedelta(minutes=1)
    backfill(backfill_dag, "rec_repair", before_changes)
    drift = expected_drift(table_at(scenario, before_changes), table_at(scenario, after_changes))

    first = reconcile(reconciliation_dag, table="rec_repair", as_of=_iso(after_changes))

    # Drift was found and repaired, and the re-check was clean: the report's top level says
    # so (the counts are those found before the repair), and the judge passes.
    assert first.state == DagRunState.SUCCESS, states(first)
    assert states(first)["judge"] == [TaskInstanceState.SUCCESS]
    report = latest_report(_lake("rec_repair"), _options(scenario))
    assert report is not None and report.status == "repaired" and report.repair is not None
    assert (report.missing, report.extra, report.different) == tuple(
        len(drift[kind]) for kind in ("missing", "extra", "different")
    )
    assert report.findings is not None
    assert report.findings["rows"] == sum(len(keys) for keys in drift.values())
    assert report.repair["rows"] == sum(len(keys) for keys in drift.values())
    assert report.repair["by_kind"] == {kind: len(keys) for kind, keys in drift.items()}
    assert report.repair["recheck"]["status"] == "ok"

    second = reconcile(reconciliation_dag, table="rec_repair", as_of=_iso(after_changes))

    assert second.state == DagRunState.SUCCESS, states(second)
    again = latest_report(_lake("rec_repair"), _options(scenario))
    assert again is not None and again.status == "ok"
    assert again.repair is not None and again.repair["rows"] == 0
    history = list_reports(_lake("rec_repair"), _options(scenario))
    assert [item.run_id for item in history][-2:] == [first.run_id, second.run_id]


def test_the_count_method_reports_both_counts_and_its_bound(
    backfill_dag: Any, reconciliation_dag: Any, scenario: Scenario
) -> None:
    before_changes = scenario.changes_from - timedelta(minutes=1)
    after_changes = scenario.changes_to + timedelta(minutes=1)
    backfill(backfill_dag, "rec_count", before_changes)

    run = reconcile(reconciliation_dag, table="rec_count", as_of=_iso(after_changes))

    report = latest_report(_lake("rec_count"), _options(scenario))
    assert report is not None and report.method == "count"
    table_now = scenario.client("dynamodb").describe_table(TableName=DDB_TABLE)["Table"]
    assert report.table_count == table_now["ItemCount"]
    assert report.lake_count == len(table_at(scenario, before_changes))
    # No lake event falls between T and now (the lake holds the backfill only): bound 0.
    assert report.tolerance["count_bound"] == 0
    assert "refreshed about every 6 h" in report.tolerance["reasoning"]
    assert (report.missing, report.extra, report.different) == (None, None, None)
    drifted = report.table_count != report.lake_count
    assert report.status == ("drift" if drifted else "ok")
    assert run.state == (DagRunState.FAILED if drifted else DagRunState.SUCCESS)


def test_the_scan_method_counts_exactly_and_reports_read_capacity(
    backfill_dag: Any, reconciliation_dag: Any, scenario: Scenario
) -> None:
    moment = scenario.changes_to + timedelta(minutes=5)  # after every change: nothing drifts
    backfill(backfill_dag, "rec_scan", moment)

    run = reconcile(reconciliation_dag, table="rec_scan", as_of=_iso(moment))

    assert run.state == DagRunState.SUCCESS, states(run)
    report = latest_report(_lake("rec_scan"), _options(scenario))
    assert report is not None and (report.method, report.status) == ("scan", "ok")
    assert report.table_count == report.lake_count == len(table_at(scenario, moment))
    assert report.consumed_read_capacity is not None and report.consumed_read_capacity >= 0
    assert "is not a snapshot" in report.tolerance["reasoning"]


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"table": "rec_ok", "as_of": "2999-01-01T00:00:00Z"}, "outside 2012-2099"),
        ({"table": "rec_ok", "as_of": "2099-01-01T00:00:00Z"}, "is in the future"),
        ({"table": "rec_ok", "as_of": "2013-01-01T00:00:00Z"}, "outside the table's point-in-time"),
        ({"table": "rec_count", "repair": "on"}, "repair needs the export or changes method"),
    ],
)
def test_bad_params_fail_in_plan_with_plain_words(
    reconciliation_dag: Any, capfd: pytest.CaptureFixture[str], conf: dict[str, Any], message: str
) -> None:
    run = reconcile(reconciliation_dag, **conf)
    assert run.state == DagRunState.FAILED
    assert states(run)["plan"] == [TaskInstanceState.FAILED]
    output = capfd.readouterr()
    assert message in output.out + output.err


def test_an_unknown_table_is_refused_by_the_form(reconciliation_dag: Any) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="no-such-table"):
        reconcile(reconciliation_dag, table="no-such-table")


def test_drift_is_announced_on_the_tables_sns_topic(
    backfill_dag: Any, reconciliation_dag: Any, scenario: Scenario
) -> None:
    sns, sqs = scenario.client("sns"), scenario.client("sqs")
    topic = sns.create_topic(Name=ALERT_TOPIC.rsplit(":", 1)[1])["TopicArn"]
    assert topic == ALERT_TOPIC
    queue = sqs.create_queue(QueueName="it-lake-drift-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    before_changes = scenario.changes_from - timedelta(minutes=1)
    after_changes = scenario.changes_to + timedelta(minutes=1)
    backfill(backfill_dag, "rec_alert", before_changes)

    run = reconcile(reconciliation_dag, table="rec_alert", as_of=_iso(after_changes))

    assert states(run)["judge"] == [TaskInstanceState.FAILED]
    (message,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    body = orjson.loads(message["Body"])
    assert body["Subject"].startswith("Lake drift: rec_alert as of ")
    text = body["Message"]
    assert "DynamoDB table rec_alert" in text and _iso(after_changes)[:19] in text
    assert "missing" in text and "different" in text
