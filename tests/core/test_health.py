"""A table's health, read through the contracts on the local AWS stack's S3: the newest
backfill record, the newest report, the chart's 30 days of reports, the stream's freshness."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dynamo_lake.backfill import latest_backfill_record, write_backfill_record
from dynamo_lake.config import TableConfig
from dynamo_lake.contract import partition_of, written_by_stream
from dynamo_lake.errors import UnreadableRecordError
from dynamo_lake.health import table_health
from dynamo_lake.lake.writer import CDC_SCHEMA
from dynamo_lake.reconciliation.report import (
    ReconciliationReport,
    latest_report,
    list_reports,
    write_report,
)
from dynamo_lake.records import BackfillRecord, PublishedExport
from dynamo_lake.storage import Location, S3Options, resolve
from local_aws.server import LocalAwsControl

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def world(local_aws: LocalAwsControl) -> tuple[TableConfig, S3Options]:
    bucket = f"health-{uuid.uuid4().hex[:12]}"
    local_aws.client("s3").create_bucket(Bucket=bucket)
    config = TableConfig("orders", "orders", "exports", bucket, "shop", "orders")
    options = S3Options(local_aws.endpoint_url, "us-east-1", "testing", "testing")
    return config, options


def iso(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S.%f}Z"


def report(config: TableConfig, as_of: datetime, status: str = "ok", run: str = "") -> Any:
    return ReconciliationReport(
        table=config.name,
        as_of=iso(as_of),
        method="export",
        status=status,  # type: ignore[arg-type]
        table_count=100,
        lake_count=100 if status == "ok" else 99,
        missing=0 if status == "ok" else 1,
        extra=0,
        different=0,
        run_id=run or f"scheduled__{as_of:%Y-%m-%dT%H%M%S}",
    )


def record(config: TableConfig, run_id: str, rows: int) -> BackfillRecord:
    export = PublishedExport(
        sequence=0,
        export_arn="arn:aws:dynamodb:us-east-1:1:table/orders/export/01780000000000-0a1b2c3d",
        export_id="01780000000000-0a1b2c3d",
        export_type="FULL_EXPORT",
        manifest_uri="s3://exports/manifest-summary.json",
        item_count=rows,
        rows=rows,
        bad_lines=0,
        files=1,
        partitions=("year=2026/month=06/day=29",),
        export_time="2026-06-29T10:00:00Z",
    )
    return BackfillRecord(
        run_id,
        "orders",
        "orders",
        "full",
        config.lake_uri,
        "shop.orders",
        (export,),
        "created",
        committed_at="2026-06-29T10:05:00Z",
    )


def write_rows(lake: Location, name: str, *moments: datetime) -> None:
    """A Parquet data file of the lake contract, in the partition of its first row."""
    micros = [int(moment.timestamp() * 1_000_000) for moment in moments]
    table = pa.table(
        {
            "uuid": [uuid.uuid4().hex for _ in moments],
            "op": ["I"] * len(moments),
            "time_stamp": pa.array(micros, pa.timestamp("us", tz="UTC")),
            "data": ['{"pk":{"S":"a"}}'] * len(moments),
        },
        schema=CDC_SCHEMA,
    )
    location = lake.child(*partition_of(micros[0]).split("/"), name)
    pq.write_table(table, location.path, filesystem=location.filesystem)


def test_a_table_never_backfilled_nor_reconciled_has_empty_states(
    world: tuple[TableConfig, S3Options],
) -> None:
    config, options = world
    health = table_health(config, options, NOW)
    assert (health.backfill, health.report, health.freshness, health.history) == (
        None,
        None,
        None,
        [],
    )
    assert health.problems == [] and health.drift is False


def test_the_newest_record_and_report_and_thirty_days_of_history(
    world: tuple[TableConfig, S3Options],
) -> None:
    config, options = world
    write_backfill_record(record(config, "manual__b_first", 90), options)
    time.sleep(1.1)  # S3 keeps LastModified to the second; the newer sorts first by name
    write_backfill_record(record(config, "manual__a_second", 100), options)
    for days, status in ((45, "ok"), (32, "ok"), (29, "drift"), (10, "ok"), (1, "ok")):
        write_report(config.lake_uri, report(config, NOW - timedelta(days=days), status), options)

    health = table_health(config, options, NOW)

    assert health.backfill is not None and health.backfill["run_id"] == "manual__a_second"
    assert health.backfill["rows"] == 100
    assert health.report is not None and health.report["as_of"] == iso(NOW - timedelta(days=1))
    assert [point.as_of for point in health.history] == [
        iso(NOW - timedelta(days=days)) for days in (29, 10, 1)
    ]
    assert [point.status for point in health.history] == ["drift", "ok", "ok"]
    assert health.drift is False


def test_drift_in_the_newest_report_is_drift_at_a_glance(
    world: tuple[TableConfig, S3Options],
) -> None:
    config, options = world
    write_report(config.lake_uri, report(config, NOW - timedelta(days=2)), options)
    write_report(config.lake_uri, report(config, NOW - timedelta(days=1), "drift"), options)
    health = table_health(config, options, NOW)
    assert health.drift is True and health.to_json()["drift"] is True


def test_hundreds_of_reports_cost_one_listing_and_only_the_chart_window_is_read(
    world: tuple[TableConfig, S3Options], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, options = world
    for days in range(300):
        write_report(config.lake_uri, report(config, NOW - timedelta(days=days)), options)
    reads: list[str] = []
    original = Location.read_bytes

    def counted(self: Location) -> bytes:
        reads.append(self.name)
        return original(self)

    monkeypatch.setattr(Location, "read_bytes", counted)
    health = table_health(config, options, NOW)
    assert len(health.history) == 31  # T of the newest report, and the 30 days before it
    assert len(reads) == 1 + 31  # latest.json, then the window's reports
    assert reads[0] == "latest.json"


def test_freshness_is_the_newest_stream_row_not_a_backfill_or_repair_row(
    world: tuple[TableConfig, S3Options],
) -> None:
    config, options = world
    lake = resolve(config.lake_uri, options)
    stream_newest = NOW - timedelta(minutes=7)
    write_rows(lake, "orders-firehose-1-2026-06-30-11-50-00-abc.parquet", stream_newest)
    write_rows(lake, "orders-firehose-1-2026-06-30-11-40-00-abc.parquet", NOW - timedelta(hours=1))
    # A backfill's and a repair's rows are newer, but they are not the stream.
    write_rows(lake, "01780000000000-0a1b2c3d-data-00000.parquet", NOW - timedelta(minutes=1))
    write_rows(lake, "repair-0123456789abcdef-2-repair-00000.parquet", NOW - timedelta(minutes=2))
    health = table_health(config, options, NOW)
    assert health.freshness == {"newest": iso(stream_newest), "age_seconds": 420.0}


def test_freshness_looks_back_past_a_day_with_only_backfill_files(
    world: tuple[TableConfig, S3Options],
) -> None:
    config, options = world
    lake = resolve(config.lake_uri, options)
    yesterday = NOW - timedelta(days=1)
    write_rows(lake, "stream-file.parquet", yesterday)
    write_rows(lake, "01780000000000-0a1b2c3d-data-00000.parquet", NOW)
    health = table_health(config, options, NOW)
    assert health.freshness is not None and health.freshness["newest"] == iso(yesterday)


def test_an_edited_report_or_record_is_named_with_its_fix_and_the_rest_still_shows(
    world: tuple[TableConfig, S3Options],
) -> None:
    config, options = world
    write_backfill_record(record(config, "manual__only", 100), options)
    lake = resolve(config.lake_uri, options)
    lake.child("_reconciliation", "latest.json").write_bytes(b"{not json")
    health = table_health(config, options, NOW)
    assert health.backfill is not None and health.backfill["rows"] == 100
    (problem,) = health.problems
    assert "_reconciliation/latest.json is not a valid reconciliation report" in problem
    assert "restore it from a copy, or delete it" in problem

    lake.child("_backfills", "manual__only.json").write_bytes(b'{"run_id": "x"}')
    with pytest.raises(UnreadableRecordError, match="not a valid backfill record.*KeyError"):
        latest_backfill_record(config.lake_uri, options)


def test_report_names_choose_what_is_read(world: tuple[TableConfig, S3Options]) -> None:
    config, options = world
    for days in (3, 2, 1):
        write_report(config.lake_uri, report(config, NOW - timedelta(days=days)), options)
    lake = resolve(config.lake_uri, options)
    lake.child("_reconciliation", "notes.txt").write_bytes(b"not a report")
    since = NOW - timedelta(days=2)
    assert [item.as_of for item in list_reports(config.lake_uri, options, since=since)] == [
        iso(NOW - timedelta(days=2)),
        iso(NOW - timedelta(days=1)),
    ]
    assert len(list_reports(config.lake_uri, options, limit=0)) == 0
    newest = latest_report(config.lake_uri, options)
    assert newest is not None
    assert ReconciliationReport.as_of_in(newest.file_name()) == NOW - timedelta(days=1)
    assert ReconciliationReport.as_of_in("latest.json") is None


@pytest.mark.parametrize(
    ("name", "stream"),
    [
        ("orders-firehose-1-2026-06-30-11-50-00-0a1b.parquet", True),
        ("01780000000000-0a1b2c3d-data-00000.parquet", False),
        ("repair-0123456789abcdef-repair-00000.parquet", False),
        ("repair-0123456789abcdef-3-repair-00000.parquet", False),
        ("repair-notahexdigest-00000.parquet", True),
        ("01780000000000-0a1b2c3d-data-00000.parquet.tmp", False),
    ],
)
def test_which_files_the_stream_wrote(name: str, stream: bool) -> None:
    assert written_by_stream(name) is stream


def test_a_corrupt_stream_file_is_named_and_the_rest_still_shows(
    world: tuple[TableConfig, S3Options],
) -> None:
    config, options = world
    write_report(config.lake_uri, report(config, NOW - timedelta(days=1)), options)
    lake = resolve(config.lake_uri, options)
    lake.child(*partition_of(int(NOW.timestamp() * 1_000_000)).split("/"), "x.parquet").write_bytes(
        b"not parquet"
    )
    health = table_health(config, options, NOW)
    assert health.report is not None and health.freshness is None
    (problem,) = health.problems
    assert problem.startswith("freshness: ")
