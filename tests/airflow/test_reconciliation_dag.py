"""The reconciliation DAG end to end: real Airflow (dag.test), the local AWS stack over HTTP,
lakes made by the backfill DAG, DuckDB comparing them with exports of the table.

The table (see airflow_scenario) is loaded at T0+5 min and changed (updates, deletes,
inserts) between T0+1 h and T0+1 h 30. A lake backfilled before the changes and checked
after them must show exactly the keys the changes touched; the oracle for those keys is two
exports of the table read back independently of the comparison.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from airflow.utils.state import DagRunState, TaskInstanceState
from airflow_scenario import ALERT_TOPIC, DDB_TABLE, EXPORT_BUCKET, LAKE_BUCKET, Scenario

from dynamo_lake.codec import item_to_data
from dynamo_lake.config import load_tables
from dynamo_lake.exports.api import ExportRequest, describe_export, start_export
from dynamo_lake.exports.manifest import read_manifest
from dynamo_lake.reconciliation.compare import KeyAttribute, key_json
from dynamo_lake.reconciliation.report import latest_report, list_reports
from dynamo_lake.reconciliation.run import WORK_TTL, sweep_work
from dynamo_lake.records import ReconciliationPlan
from dynamo_lake.storage import S3Options, split_s3_uri

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


def tries(dag_run: Any, task_id: str) -> list[tuple[str, int]]:
    """Each task instance of ``task_id``: its state and how many tries it took."""
    return [
        (str(ti.state), ti.try_number)
        for ti in dag_run.get_task_instances()
        if ti.task_id == task_id
    ]


@pytest.fixture
def check_retries(reconciliation_dag: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Give ``check`` retries that start at once, so an error the task retries shows as a
    second try (the session's DAG has none, which would hide a burnt retry)."""
    check = reconciliation_dag.get_task("check")
    monkeypatch.setattr(check, "retries", 2)
    monkeypatch.setattr(check, "retry_delay", timedelta(0))


def _objects(scenario: Scenario, bucket: str, prefix: str) -> list[str]:
    """Every object key under ``prefix`` (folder markers too: they are objects)."""
    pages = scenario.client("s3").get_paginator("list_objects_v2")
    return sorted(
        item["Key"]
        for page in pages.paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    )


def _inbox(scenario: Scenario, name: str) -> str:
    """A new SQS queue subscribed to the alert topic; returns its URL."""
    sns, sqs = scenario.client("sns"), scenario.client("sqs")
    topic = sns.create_topic(Name=ALERT_TOPIC.rsplit(":", 1)[1])["TopicArn"]
    assert topic == ALERT_TOPIC
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    return str(queue)


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


def report_micros(as_of: str) -> int:
    moment = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


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
    # The current state's snapshot at T equals the export: it is tagged verified.
    from dynamo_lake.state.verify import tag_name

    verified = report.current_state or {}
    assert verified.get("tag") == tag_name(report_micros(report.as_of)), verified
    assert verified["table_items"] == verified["state_items"] == report.table_count
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


def test_a_check_after_a_verified_one_reads_the_current_state_not_the_whole_log(
    backfill_dag: Any, reconciliation_dag: Any, scenario: Scenario
) -> None:
    """The first check merges the current state to its T1 and tags it; the next check, at
    T2, reads that snapshot (through the Glue catalog) and the log since T1, split into the
    state's four buckets and compared by mapped tasks, and finds exactly what the log-based
    check finds (the test above)."""
    before_changes = scenario.changes_from - timedelta(minutes=1)
    after_changes = scenario.changes_to + timedelta(minutes=1)
    backfill(backfill_dag, "rec_state", before_changes)
    first = reconcile(reconciliation_dag, table="rec_state", as_of=_iso(before_changes))
    assert first.state == DagRunState.SUCCESS, states(first)
    report = latest_report(_lake("rec_state"), _options(scenario))
    assert report is not None and report.cost is not None
    assert report.cost["basis"] == "log"  # no state yet: the whole log
    assert (report.current_state or {}).get("tag"), report.current_state
    expected = expected_drift(table_at(scenario, before_changes), table_at(scenario, after_changes))

    assert TaskInstanceState.SUCCESS not in states(first).get("compare", [])  # no state yet

    second = reconcile(reconciliation_dag, table="rec_state", as_of=_iso(after_changes))

    assert states(second)["compare"] == [TaskInstanceState.SUCCESS] * 4
    assert TaskInstanceState.SUCCESS in states(second)["split"]
    report = latest_report(_lake("rec_state"), _options(scenario))
    assert report is not None and report.status == "drift" and report.cost is not None
    assert report.cost["basis"] == "current state"
    assert (report.cost["buckets"], report.cost["bucket_tasks"]) == (4, 4)
    assert report.cost["watermark"] == f"{before_changes:%Y-%m-%dT%H:%M:%S.%f}Z"
    assert report.cost["lake_bytes"] > 0 and report.cost["export_bytes"] > 0
    for kind in ("missing", "extra", "different"):
        assert getattr(report, kind) == len(expected[kind])
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


def test_an_unreadable_latest_pointer_is_rewritten_and_the_drift_still_judged(
    backfill_dag: Any,
    reconciliation_dag: Any,
    scenario: Scenario,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """latest.json is derived data: a pointer that cannot be read must not cost the run its
    verdict. The check writes its report and replaces the pointer with it; the judge fails
    on the drift itself (not upstream_failed) and the table's topic hears of it."""
    queue = _inbox(scenario, "it-lake-pointer-inbox")
    before_changes = scenario.changes_from - timedelta(minutes=1)
    after_changes = scenario.changes_to + timedelta(minutes=1)
    backfill(backfill_dag, "rec_pointer", before_changes)
    bucket, prefix = split_s3_uri(_lake("rec_pointer"))
    pointer = f"{prefix}/_reconciliation/latest.json"
    s3 = scenario.client("s3")
    s3.put_object(Bucket=bucket, Key=pointer, Body=b"\x00\xff{garbage, not a report")

    run = reconcile(reconciliation_dag, table="rec_pointer", as_of=_iso(after_changes))

    assert run.state == DagRunState.FAILED
    found = states(run)
    assert found["check"] == [TaskInstanceState.SUCCESS], found
    assert found["judge"] == [TaskInstanceState.FAILED], found
    output = capfd.readouterr()
    assert "DynamoDB table rec_pointer: the lake does not match as of" in output.out + output.err
    (message,) = scenario.client("sqs").receive_message(QueueUrl=queue, WaitTimeSeconds=1)[
        "Messages"
    ]
    assert orjson.loads(message["Body"])["Subject"].startswith("Lake drift: rec_pointer as of ")
    (own,) = [
        report
        for report in list_reports(_lake("rec_pointer"), _options(scenario))
        if report.run_id == run.run_id
    ]
    assert own.status == "drift" and own.missing and own.different
    own_file = s3.get_object(Bucket=bucket, Key=f"{prefix}/_reconciliation/{own.file_name()}")
    own_bytes = own_file["Body"].read()
    latest = s3.get_object(Bucket=bucket, Key=pointer)["Body"].read()
    assert orjson.loads(latest) == orjson.loads(own_bytes)
    assert latest == own_bytes


def test_a_table_never_backfilled_is_an_empty_lake_counted_on_the_first_try(
    reconciliation_dag: Any, scenario: Scenario, check_retries: None
) -> None:
    bucket, prefix = split_s3_uri(_lake("rec_empty"))
    assert _objects(scenario, bucket, f"{prefix}/") == []  # no lake folder at all
    after_changes = scenario.changes_to + timedelta(minutes=1)

    run = reconcile(reconciliation_dag, table="rec_empty", as_of=_iso(after_changes))

    # The check ran once and worked (an empty lake is no error to retry); the judge says
    # drift, because the table is not empty.
    assert tries(run, "check") == [(TaskInstanceState.SUCCESS, 1)], states(run)
    assert states(run)["judge"] == [TaskInstanceState.FAILED]
    item_count = scenario.client("dynamodb").describe_table(TableName=DDB_TABLE)["Table"][
        "ItemCount"
    ]
    assert item_count > 0
    report = latest_report(_lake("rec_empty"), _options(scenario))
    assert report is not None and report.run_id == run.run_id
    assert (report.method, report.status) == ("count", "drift")
    assert (report.lake_count, report.table_count) == (0, item_count)
    assert report.tolerance["count_bound"] == 0


def test_a_foreign_file_in_the_lake_fails_the_check_at_once_and_the_work_is_removed(
    backfill_dag: Any,
    reconciliation_dag: Any,
    scenario: Scenario,
    capfd: pytest.CaptureFixture[str],
    check_retries: None,
) -> None:
    moment = scenario.changes_to + timedelta(minutes=5)
    backfill(backfill_dag, "rec_foreign", moment)
    bucket, prefix = split_s3_uri(_lake("rec_foreign"))
    partitions = {key.rsplit("/", 1)[0] for key in _objects(scenario, bucket, f"{prefix}/year=")}
    assert partitions, "the backfill wrote no partition"
    foreign = f"{sorted(partitions)[0]}/README.txt"
    assert "/year=" in foreign and "/month=" in foreign and "/day=" in foreign
    s3 = scenario.client("s3")
    s3.put_object(Bucket=bucket, Key=foreign, Body=b"This folder holds the orders lake.\n")

    run = reconcile(reconciliation_dag, table="rec_foreign", as_of=_iso(moment))

    assert run.state == DagRunState.FAILED
    # A permanent error: one try, although the check had retries to burn.
    assert tries(run, "check") == [(TaskInstanceState.FAILED, 1)], states(run)
    found = states(run)
    assert found["publish_work"] == [TaskInstanceState.SUCCESS]  # the work location was filled
    assert found["clean_work"] == [TaskInstanceState.SUCCESS], found
    output = capfd.readouterr()
    text = output.out + output.err
    assert f"{bucket}/{foreign}: not a Parquet file of the lake's columns" in text
    assert "move it out of the lake table's folder" in text
    report = latest_report(_lake("rec_foreign"), _options(scenario))
    assert report is not None and report.run_id == run.run_id
    assert report.status == "error" and foreign in report.message
    # The teardown removed the converted export and left no empty folder marker.
    assert _objects(scenario, bucket, f"{prefix}/_reconciliation/work") == []


def test_a_fresh_work_folder_of_another_run_outlives_the_sweep_and_the_cleanup(
    backfill_dag: Any, reconciliation_dag: Any, scenario: Scenario
) -> None:
    """Through the DAG, the fresh half of the sweep: moto stamps LastModified with its own
    clock, so an S3 object more than a day old cannot be made here (the old half is
    test_the_sweep_removes_work_folders_idle_for_a_day, on a local lake)."""
    moment = scenario.changes_to + timedelta(minutes=5)
    backfill(backfill_dag, "rec_sweep", moment)
    bucket, prefix = split_s3_uri(_lake("rec_sweep"))
    fresh = f"{prefix}/_reconciliation/work/other-run/x.parquet"
    scenario.client("s3").put_object(Bucket=bucket, Key=fresh, Body=b"another run's export")

    run = reconcile(reconciliation_dag, table="rec_sweep", as_of=_iso(moment))

    assert run.state == DagRunState.SUCCESS, states(run)
    assert states(run)["publish_work"] == [TaskInstanceState.SUCCESS]  # its work was filled
    (planned,) = run.get_task_instance("plan").xcom_pull(task_ids="plan")
    _, own_work = split_s3_uri(planned["work_uri"])
    assert own_work.startswith(f"{prefix}/_reconciliation/work/")
    work = f"{prefix}/_reconciliation/work"
    left = _objects(scenario, bucket, work)
    # The other run's folder stays; this run's is gone.
    assert fresh in left
    assert not [key for key in left if key.startswith(f"{own_work}/")], left
    # Nothing else, but for the zero-byte `work/` marker pyarrow's delete_dir leaves for a
    # parent that still holds another run's folder (removed with the last of them).
    assert set(left) - {fresh} <= {f"{work}/"}, left


def test_the_sweep_removes_work_folders_idle_for_a_day(tmp_path: Path) -> None:
    """Work folders whose newest file is more than WORK_TTL (a day) old are what killed runs
    left; the run's own folder and folders written to within the day stay. A local lake,
    since only there can a file's modification time be set (os.utime)."""
    lake = tmp_path / "lake"
    work = lake / "_reconciliation" / "work"
    now = datetime.now(UTC)

    def put(relative: str, age: timedelta) -> None:
        path = work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"converted export")
        stamp = (now - age).timestamp()
        os.utime(path, (stamp, stamp))

    put("old-run/x.parquet", timedelta(days=1, minutes=5))
    put("old-run/year=2024/y.parquet", timedelta(days=3))
    put("fresh-run/x.parquet", timedelta(minutes=5))
    put("busy-run/old.parquet", timedelta(days=2))
    put("busy-run/new.parquet", timedelta(hours=23))
    put("this-run/x.parquet", timedelta(days=2))

    removed = sweep_work(str(lake), None, now, keep="this-run")

    assert removed == [str((work / "old-run").resolve())]
    assert sorted(path.name for path in work.iterdir()) == ["busy-run", "fresh-run", "this-run"]
    assert sweep_work(str(lake), None, now, keep="this-run") == []


def test_the_sweep_reads_the_age_of_s3_work_folders_from_last_modified(
    scenario: Scenario,
) -> None:
    """On S3 the age is the objects' LastModified (set by moto's clock, which cannot be set
    back): ``now`` is the sweep's own argument, so it is moved forward instead."""
    lake = f"s3://{LAKE_BUCKET}/sweep-{uuid.uuid4().hex}"
    _, prefix = split_s3_uri(lake)
    work = f"{prefix}/_reconciliation/work"
    s3 = scenario.client("s3")
    for key in ("old-run/x.parquet", "old-run/year=2024/y.parquet", "this-run/x.parquet"):
        s3.put_object(Bucket=LAKE_BUCKET, Key=f"{work}/{key}", Body=b"converted export")
    written = datetime.now(UTC)

    assert sweep_work(lake, _options(scenario), written, keep="this-run") == []
    later = written + WORK_TTL + timedelta(minutes=5)
    assert sweep_work(lake, _options(scenario), later, keep="this-run") == [
        f"{lake}/_reconciliation/work/old-run"
    ]

    left = _objects(scenario, LAKE_BUCKET, work)
    assert f"{work}/this-run/x.parquet" in left
    assert not [key for key in left if key.startswith(f"{work}/old-run")], left


def test_the_sweep_of_the_last_s3_work_folder_leaves_no_empty_marker(
    scenario: Scenario,
) -> None:
    lake = f"s3://{LAKE_BUCKET}/sweep-{uuid.uuid4().hex}"
    _, prefix = split_s3_uri(lake)
    work = f"{prefix}/_reconciliation/work"
    s3 = scenario.client("s3")
    s3.put_object(Bucket=LAKE_BUCKET, Key=f"{prefix}/_reconciliation/r.json", Body=b"{}")
    s3.put_object(Bucket=LAKE_BUCKET, Key=f"{work}/old-run/x.parquet", Body=b"converted")
    later = datetime.now(UTC) + WORK_TTL + timedelta(minutes=5)

    assert sweep_work(lake, _options(scenario), later) == [f"{lake}/_reconciliation/work/old-run"]

    assert _objects(scenario, LAKE_BUCKET, work) == []


def test_an_as_of_inside_the_settle_margin_fails_in_plan(
    reconciliation_dag: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    assert load_tables().table("rec_ok").reconcile.settle_margin_minutes == 30  # the default
    as_of = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)

    run = reconcile(reconciliation_dag, table="rec_ok", as_of=_iso(as_of))

    assert run.state == DagRunState.FAILED
    assert states(run)["plan"] == [TaskInstanceState.FAILED]
    output = capfd.readouterr()
    assert "within the table's settle margin of 30 minutes" in output.out + output.err


def test_the_changes_method_adds_a_lead_in_export_before_its_day(
    backfill_dag: Any, reconciliation_dag: Any, scenario: Scenario
) -> None:
    """T late enough that T - 24 h - 15 min lies inside the PITR window (which starts at
    T0): the plan exports the day [T-24h, T) and the lead-in [T-24h-15min, T-24h). T is
    chosen so that the day starts 12 minutes into the changes: the first three rounds of
    changes fall in the lead-in, the last three in the day, and only both exports together
    find every key the changes touched."""
    before_changes = scenario.changes_from - timedelta(minutes=1)
    as_of = scenario.changes_from + timedelta(hours=24, minutes=12)
    day = as_of - timedelta(hours=24)
    lead_in = day - timedelta(minutes=15)
    assert lead_in >= scenario.t0  # inside the PITR window
    backfill(backfill_dag, "rec_leadin", before_changes)
    expected = expected_drift(table_at(scenario, before_changes), table_at(scenario, as_of))
    assert all(expected.values()), expected

    run = reconcile(reconciliation_dag, table="rec_leadin", as_of=_iso(as_of))

    assert states(run)["check"] == [TaskInstanceState.SUCCESS], states(run)
    (planned,) = run.get_task_instance("plan").xcom_pull(task_ids="plan")
    requests = ReconciliationPlan.from_json(planned).export_requests
    assert [
        (
            request.mode,
            datetime.fromisoformat(str(request.export_from)),
            datetime.fromisoformat(str(request.export_to)),
        )
        for request in sorted(requests, key=lambda request: request.sequence)
    ] == [("incremental", day, as_of), ("incremental", lead_in, day)]
    report = latest_report(_lake("rec_leadin"), _options(scenario))
    assert report is not None and report.run_id == run.run_id
    assert (report.method, report.status) == ("changes", "drift")
    assert report.window == [
        f"{lead_in:%Y-%m-%dT%H:%M:%S.%f}Z",
        f"{as_of:%Y-%m-%dT%H:%M:%S.%f}Z",
    ]
    # The window starts after the load: deletes are listed too (as extra keys).
    assert (report.missing, report.extra, report.different, report.phantoms) == (
        len(expected["missing"]),
        len(expected["extra"]),
        len(expected["different"]),
        0,
    )
    for kind in ("missing", "extra", "different"):
        assert report.samples[kind] == expected[kind][:20]
    assert states(run)["judge"] == [TaskInstanceState.FAILED]
