"""A table's health, read through the contracts on the local AWS stack's S3 (and in a local
lake folder): the newest backfill record, the newest report (or, when the pointer is
unreadable, the newest by name), the chart's 30 days of reports, the stream's freshness; and
the Lake health page drawn from it for every report status."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
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


@dataclass(frozen=True)
class FolderTable(TableConfig):
    """A configured table whose lake is a local folder (the core reads folders and S3 alike;
    a configured table's lake is always on S3)."""

    folder: str = ""

    @property
    def lake_uri(self) -> str:
        return self.folder


@pytest.fixture
def folder_table(tmp_path: Path) -> FolderTable:
    return FolderTable(
        "orders", "orders", "exports", "lake", "shop", "orders", folder=str(tmp_path)
    )


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


# --- an unreadable pointer: the newest report by name is shown -----------------------------


def page_of(*healths: Any) -> str:
    """The Lake health page (plugins/lake_health.py) for these tables' healths."""
    from plugins.lake_health import render  # imports Airflow: only in the tests that draw

    return render(list(healths))


class _Text(HTMLParser):
    """The text a person reads in an HTML fragment: a line per cell and per ``<br>``."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "td"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def row_of(page: str, table: str) -> str:
    """A table's row of the page as text, one line per cell and per line break."""
    start = page.index(f'<tr data-table="{table}">')
    text = _Text()
    text.feed(page[start : page.index("</tr>", start)])
    return "\n".join(" ".join(line.split()) for line in "".join(text.parts).splitlines())


@pytest.mark.parametrize(
    "pointer",
    [b"{not json", orjson.dumps({"table": "orders", "as_of": "2026-06-29T12:00:00.000000Z"})],
    ids=["not-json", "missing-fields"],
)
def test_an_unreadable_pointer_shows_the_newest_report_by_name_and_names_the_pointer(
    folder_table: FolderTable, pointer: bytes
) -> None:
    config = folder_table
    older, newer = NOW - timedelta(days=2), NOW - timedelta(days=1)
    write_report(config.lake_uri, report(config, older), None)
    write_report(config.lake_uri, report(config, newer, "drift"), None)
    folder = resolve(config.lake_uri).child("_reconciliation")
    folder.child("latest.json").write_bytes(pointer)

    health = table_health(config, None, NOW)

    assert health.report is not None
    assert (health.report["status"], health.report["as_of"]) == ("drift", iso(newer))
    assert [point.as_of for point in health.history] == [iso(older), iso(newer)]
    assert health.drift is True
    (problem,) = health.problems
    assert problem.startswith("reconciliation reports: ")
    assert f"{folder.uri}/latest.json is not a valid reconciliation report" in problem
    assert "restore it from a copy, or delete it" in problem
    row = row_of(page_of(health), "orders")
    assert "DRIFT" in row and f"as of {newer:%Y-%m-%d %H:%M:%S} UTC" in row
    assert "latest.json is not a valid" in row
    assert "never reconciled" not in row

    # The newest report by name is unreadable too: both files are named, nothing is shown
    # as if the table were never reconciled.
    newest = folder.child(report(config, newer).file_name())
    newest.write_bytes(b"[]")
    health = table_health(config, None, NOW)
    assert (health.report, health.history) == (None, [])
    first, second = health.problems
    assert "latest.json is not a valid reconciliation report" in first
    assert f"{newest.uri} is not a valid reconciliation report" in second
    row = row_of(page_of(health), "orders")
    assert "never reconciled" not in row and "no readable reconciliation report" in row


def test_a_deleted_pointer_shows_the_newest_report_by_name(folder_table: FolderTable) -> None:
    config = folder_table
    for days, status in ((2, "drift"), (1, "ok")):
        write_report(config.lake_uri, report(config, NOW - timedelta(days=days), status), None)
    resolve(config.lake_uri).child("_reconciliation", "latest.json").delete()
    health = table_health(config, None, NOW)
    assert health.report is not None and health.report["as_of"] == iso(NOW - timedelta(days=1))
    assert health.problems == [] and health.drift is False


# --- every report status, as the page shows it ----------------------------------------------

FINDINGS_URI = "s3://lake/dynamo-cdc/shop/orders/_reconciliation/20260629T120000000000Z--r.parquet"


def report_json(status: str, as_of: datetime, **fields: Any) -> dict[str, Any]:
    """A report as its JSON contract documents it (written by hand: the fields, not the
    dataclass of the moment)."""
    document: dict[str, Any] = {
        "table": "orders",
        "as_of": iso(as_of),
        "method": "export",
        "status": status,
        "table_count": 100,
        "lake_count": 100,
        "tolerance": {},
        "missing": 0,
        "extra": 0,
        "different": 0,
        "phantoms": None,
        "ambiguous": None,
        "samples": {},
        "findings": None,
        "repair": None,
        "export_arn": None,
        "consumed_read_capacity": None,
        "run_id": f"scheduled__{as_of:%Y-%m-%dT%H%M%S}",
        "seconds": 1.5,
        "window": None,
        "engine": "athena",
        "message": "",
    }
    document.update(fields)
    return document


def write_report_json(lake_uri: str, document: dict[str, Any], latest: bool = True) -> None:
    """The report's file under its name (T first), and the pointer's copy."""
    stamp = document["as_of"].replace("-", "").replace(":", "").replace(".", "")
    folder = resolve(lake_uri).child("_reconciliation")
    payload = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    folder.child(f"{stamp}--{document['run_id']}.json").write_bytes(payload)
    if latest:
        folder.child("latest.json").write_bytes(payload)


STATUSES: dict[str, tuple[dict[str, Any], str, bool, list[str]]] = {
    # status: (fields, glance, drift, what the row says)
    "ok": ({}, "ok", False, ["OK", "missing 0 extra 0 different 0"]),
    "repaired": (
        {
            "lake_count": 98,
            "missing": 3,
            "extra": 1,
            "different": 2,
            "repair": {"rows": 1234, "recheck": {"status": "ok"}},
            "findings": {"uri": FINDINGS_URI, "rows": 6},
        },
        "ok",
        False,
        [
            "REPAIRED",
            "found before the repair: missing 3 extra 1 different 2",
            "repaired: 1,234 rows written, re-check clean",
            f"findings: 6 rows in {FINDINGS_URI}",
        ],
    ),
    "inconclusive": (
        {"ambiguous": 4, "samples": {"ambiguous": ['{"pk":"a"}']}},
        "inconclusive",
        False,
        [
            "INCONCLUSIVE",
            "4 keys ambiguous at Athena's millisecond precision: not ruled on",
        ],
    ),
    "drift": (
        {"lake_count": 97, "missing": 3, "findings": {"uri": FINDINGS_URI, "rows": 3}},
        "drift",
        True,
        ["DRIFT", "missing 3 extra 0 different 0", f"findings: 3 rows in {FINDINGS_URI}"],
    ),
    "error": (
        {
            "lake_count": None,
            "missing": None,
            "extra": None,
            "different": None,
            "message": "Athena query failed: FAILED",
        },
        "drift",
        True,
        ["ERROR", "Athena query failed: FAILED"],
    ),
}


@pytest.mark.parametrize("status", list(STATUSES))
def test_each_report_status_on_the_page(folder_table: FolderTable, status: str) -> None:
    fields, glance, drift, says = STATUSES[status]
    config = folder_table
    write_report_json(config.lake_uri, report_json("drift", NOW - timedelta(days=3)))
    write_report_json(config.lake_uri, report_json(status, NOW - timedelta(days=1), **fields))

    health = table_health(config, None, NOW)

    assert health.problems == []
    assert health.report is not None and health.report["status"] == status
    assert (health.glance, health.drift) == (glance, drift)
    assert health.to_json()["drift"] is drift and health.to_json()["glance"] == glance
    assert [point.drift for point in health.history] == [True, drift]
    page = page_of(health)
    row = row_of(page, "orders")
    for text in says:
        assert text in row, f"{text!r} not in the {status} row: {row!r}"
    assert f'<span class="status {status}">{status.upper()}</span>' in page
    assert f'<span class="glance {glance}" title="{status}">' in page
    if fields.get("findings"):
        assert FINDINGS_URI in page and f'href="{FINDINGS_URI}"' not in page  # text, no link
    # The chart: the drift day three days ago, and this report's day.
    chart = page[page.index("<svg") :]
    expected = {"repaired": "repaired", "inconclusive": "inconclusive"}.get(status, glance)
    assert chart.count('<circle class="drift"') == (2 if expected == "drift" else 1)
    assert f'<circle class="{expected}"' in chart


def test_the_page_colours_each_status_in_both_themes() -> None:
    from plugins.lake_health import _STYLE

    light, dark = (
        _STYLE[_STYLE.index(theme) : _STYLE.index("}", _STYLE.index(theme))]
        for theme in (":root {", ":root.dark {")
    )
    for variable in ("--ok:", "--amber:", "--drift:"):
        assert variable in light and variable in dark
    for status, colour in (
        ("ok", "--ok"),
        ("repaired", "--ok"),
        ("inconclusive", "--amber"),
        ("drift", "--drift"),
        ("error", "--drift"),
    ):
        rule = next(
            line for line in _STYLE.splitlines() if f".status.{status}" in line.split("{")[0]
        )
        assert f"var({colour})" in _STYLE[_STYLE.index(rule) :].split("}")[0], status
    for glance, colour in (("ok", "--ok"), ("inconclusive", "--amber"), ("drift", "--drift")):
        assert f".glance.{glance} {{ background: var({colour}); }}" in _STYLE


def test_a_report_written_before_the_new_fields_still_shows(folder_table: FolderTable) -> None:
    config = folder_table
    old = report_json("ok", NOW - timedelta(days=1))
    for name in ("ambiguous", "findings"):
        del old[name]
    write_report_json(config.lake_uri, old)
    health = table_health(config, None, NOW)
    assert health.problems == [] and health.report is not None
    row = row_of(page_of(health), "orders")
    assert "OK" in row and "ambiguous" not in row and "findings" not in row


# --- green is never shown over red: an old verdict, a later run that failed ----------------

JUDGED_AT = datetime(2024, 6, 10, 12, tzinfo=UTC)


def _judged(
    status: str | None, as_of: datetime, runs: list[Any], schedule: str | None = "@daily"
) -> Any:
    from dynamo_lake.health import TableHealth

    health = TableHealth("orders", "orders", "s3://lake/dynamo-cdc/shop/orders")
    if status is not None:
        health.report = {"status": status, "as_of": as_of.isoformat(), "run_id": "verdict-run"}
    health.judge_freshness(runs, schedule, timedelta(minutes=30), JUDGED_AT)
    return health


def _run(run_id: str, state: str, run_after: datetime, table: str | None = None) -> Any:
    from dynamo_lake.health import RunSummary

    return RunSummary(run_id, state, run_after, table)


def test_a_verdict_older_than_the_schedule_allows_is_amber() -> None:
    fresh = _judged("ok", JUDGED_AT - timedelta(hours=20), [])
    assert (fresh.glance, fresh.stale) == ("ok", [])
    assert fresh.verdict_age_seconds == 20 * 3600
    old = _judged("ok", JUDGED_AT - timedelta(days=2), [])
    assert old.glance == "stale"
    assert old.stale == [
        "the verdict is 2.0 days old; the schedule (@daily) should have given a newer one "
        "within 25.5 h"
    ]
    assert _judged("ok", JUDGED_AT - timedelta(days=20), [], schedule=None).glance == "ok"
    hourly = _judged("ok", JUDGED_AT - timedelta(hours=3), [], schedule="0 * * * *")
    assert hourly.glance == "stale"


def test_a_later_failed_run_turns_a_green_verdict_amber_and_is_linked() -> None:
    runs = [
        _run("verdict-run", "success", JUDGED_AT - timedelta(hours=5)),
        _run("earlier", "failed", JUDGED_AT - timedelta(hours=8)),
        _run("other-table", "failed", JUDGED_AT - timedelta(hours=1), table="users"),
        _run("later", "failed", JUDGED_AT - timedelta(hours=2), table="orders"),
        _run("still-running", "running", JUDGED_AT - timedelta(minutes=5)),
    ]
    health = _judged("ok", JUDGED_AT - timedelta(hours=5, minutes=30), runs)
    assert health.glance == "stale"
    assert health.failed_run == {"run_id": "later", "run_after": runs[3].run_after.isoformat()}
    assert health.to_json()["glance"] == "stale"
    # Red stays red: a drift verdict is not softened to amber by a failure after it.
    assert _judged("drift", JUDGED_AT - timedelta(hours=5), runs).glance == "drift"
    # Never reconciled, and the runs fail: amber, linked, not grey.
    assert _judged(
        None, JUDGED_AT, [_run("first", "failed", JUDGED_AT - timedelta(hours=1))]
    ).glance == ("stale")
    # A run that failed before the verdict's run does not count.
    assert _judged("ok", JUDGED_AT - timedelta(hours=5, minutes=30), runs[:3]).glance == "ok"


def test_the_page_shows_the_verdicts_age_and_the_failed_run() -> None:
    from plugins import lake_health

    health = _judged(
        "ok",
        JUDGED_AT - timedelta(hours=1),
        [
            _run("verdict-run", "success", JUDGED_AT - timedelta(hours=1)),
            _run("x", "failed", JUDGED_AT),
        ],
    )
    page = lake_health.render([health])
    assert 'class="glance stale"' in page
    assert "verdict 60 min old" in page
    assert 'href="/dags/dynamodb_reconciliation/runs/x"' in page


def test_the_newest_verified_snapshot_shows_with_its_tag_t_and_age(
    folder_table: FolderTable,
) -> None:
    """The page names the newest current-state snapshot a check proved equal to the table,
    even when a newer check (a count, or one whose snapshot differed) earned no tag."""
    from dataclasses import replace

    verified_at = NOW - timedelta(days=3)
    tagged = replace(
        report(folder_table, verified_at),
        current_state={
            "snapshot_id": "780088090183310044",
            "tag": "verified-20260626T120000.000000Z",
            "missing": 0,
            "extra": 0,
            "different": 0,
        },
    )
    untagged = replace(
        report(folder_table, NOW - timedelta(days=1)),
        current_state={"snapshot_id": "1", "tag": None, "missing": 1, "extra": 0, "different": 0},
    )
    write_report(folder_table.lake_uri, tagged, None)
    write_report(folder_table.lake_uri, untagged, None)

    health = table_health(folder_table, None, NOW)

    assert health.verified_state is not None
    assert health.verified_state["tag"] == "verified-20260626T120000.000000Z"
    assert health.verified_state["age_seconds"] == 3 * 86400
    text = row_of(page_of(health), "orders")
    assert (
        "current state: snapshot 780088090183310044 (verified-20260626T120000.000000Z) equals "
        f"the table as of {verified_at:%Y-%m-%d %H:%M:%S} UTC, 3.0 days ago"
    ) in text


def test_what_each_check_read_shows_for_the_last_30_days(folder_table: FolderTable) -> None:
    """Each key-by-key check's basis and bytes, newest first; a check older than the
    chart's 30 days, and a count (no cost), are not listed."""
    from dataclasses import replace

    def checked(days: int, cost: dict[str, Any] | None, seconds: float) -> None:
        made = replace(report(folder_table, NOW - timedelta(days=days)), seconds=seconds)
        write_report(folder_table.lake_uri, replace(made, cost=cost), None)

    checked(40, {"basis": "log", "lake_bytes": 9_000_000_000, "export_bytes": 1}, 1.0)
    checked(2, {"basis": "log", "lake_bytes": 3_250_000_000, "export_bytes": 650_000_000}, 410.0)
    checked(
        1,
        {
            "basis": "current state",
            "watermark": f"{NOW - timedelta(days=2):%Y-%m-%dT%H:%M:%S.%f}Z",
            "lake_bytes": 820_000_000,
            "export_bytes": 651_000_000,
        },
        95.0,
    )
    checked(0, None, 2.0)

    health = table_health(folder_table, None, NOW)
    page = page_of(health)
    costs = page[page.index('<table class="cost">') :]
    rows = costs[: costs.index("</table>")].split("<tr>")[2:]
    assert len(rows) == 2
    assert f"current state at {NOW - timedelta(days=2):%Y-%m-%d %H:%M:%S} UTC" in rows[0]
    assert "820.0 MB" in rows[0] and "651.0 MB" in rows[0] and "95 s" in rows[0]
    assert ">log<" in rows[1] and "3,250.0 MB" in rows[1] and "410 s" in rows[1]
    assert "9,000.0 MB" not in page
