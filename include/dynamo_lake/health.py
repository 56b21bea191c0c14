"""A lake table's health at a glance: its last backfill, its last reconciliation, how fresh
its stream is, and the recent history of its counts.

Everything is read through the documented contracts (the backfill record, the
reconciliation reports, the Parquet files' own statistics), cheaply: one listing and one
read for the last backfill, one read for the last report; report names carry their T, so
the chart's history reads only the reports of its window; freshness reads the Parquet
footers of the few stream files written last in the newest day that has any.

A report's ``status`` is read for what it says about the lake: ``ok`` and ``repaired`` (drift
was found and repaired, and the re-check was clean) say the lake matches the table;
``inconclusive`` (no drift found, but some keys could not be ruled on) says it may; only
``drift`` and ``error`` are drift. The newest report is the one ``latest.json`` copies; when
that pointer is unreadable (or gone), the newest report by name is shown, and the pointer is
named in the table's problems.

A healthy verdict can still be out of date: green is never shown over red. The verdict is
*stale* (amber) when its T is older than the reconciliation schedule allows, or when a run of
the reconciliation DAG for the table failed after the run that wrote it (a run that failed
before it could write a report leaves the old report in place). The runs come from the
caller (the page reads them from Airflow's API as the person looking), as
:class:`RunSummary`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dynamo_lake.backfill import latest_backfill_record
from dynamo_lake.cdc import datetime_to_micros, micros_to_datetime
from dynamo_lake.config import TableConfig
from dynamo_lake.contract import written_by_stream
from dynamo_lake.errors import DynamoLakeError, UnreadableRecordError
from dynamo_lake.reconciliation.report import (
    HEALTHY,
    ReconciliationReport,
    latest_report,
    list_reports,
)
from dynamo_lake.storage import Location, S3Options, resolve

__all__ = [
    "DRIFTED",
    "SETTLED",
    "HistoryPoint",
    "RunSummary",
    "TableHealth",
    "at_a_glance",
    "schedule_interval",
    "table_health",
]

log = logging.getLogger(__name__)
HISTORY_DAYS = 30
_DAYS_LOOKED_BACK = 7
_FILES_LOOKED_AT = 8

#: Statuses that say the lake matches the table (``repaired``: after the repair it wrote).
SETTLED = frozenset(HEALTHY)
#: Statuses that are drift: the lake differs, or the check could not be made.
DRIFTED = frozenset({"drift", "error"})


def at_a_glance(status: str | None) -> str:
    """A status at a glance: ``ok`` (ok, repaired), ``inconclusive``, ``drift`` (drift,
    error), ``none`` (never reconciled), or ``unknown`` (a status this reader does not know:
    neither healthy nor drift until someone looks)."""
    if status is None:
        return "none"
    if status in SETTLED:
        return "ok"
    if status in DRIFTED:
        return "drift"
    return "inconclusive" if status == "inconclusive" else "unknown"


@dataclass(frozen=True)
class HistoryPoint:
    """One reconciliation in the chart: its T, the two counts, and whether it drifted."""

    as_of: str
    table_count: int | None
    lake_count: int | None
    status: str
    method: str
    run_id: str
    #: The current-state snapshot this check verified (its tag), if it earned one.
    verified: dict[str, Any] | None = None
    #: What the check read (the report's ``cost``: its basis and bytes), and how long it took.
    cost: dict[str, Any] | None = None
    seconds: float | None = None

    @property
    def drift(self) -> bool:
        return self.status in DRIFTED


@dataclass(frozen=True)
class RunSummary:
    """One run of the reconciliation DAG: its id, state, when it was meant to run, and the
    table its form chose (None: every table)."""

    run_id: str
    state: str
    run_after: datetime
    table: str | None = None

    def covers(self, table: str) -> bool:
        return self.table in (None, "", "all tables", table)


#: The presets a reconciliation schedule may use, as the time between two runs.
_PRESETS = {
    "@hourly": timedelta(hours=1),
    "@daily": timedelta(days=1),
    "@weekly": timedelta(weeks=1),
    "@monthly": timedelta(days=31),
    "@yearly": timedelta(days=366),
    "@annually": timedelta(days=366),
}
#: How long a scheduled run may take to write its verdict, beyond its interval.
_RUN_GRACE = timedelta(hours=1)


def schedule_interval(schedule: str | None, now: datetime) -> timedelta | None:
    """The time between two scheduled runs now (None: runs only by hand)."""
    if not schedule:
        return None
    if schedule in _PRESETS:
        return _PRESETS[schedule]
    from croniter import croniter  # type: ignore[import-untyped]  # only for a cron schedule

    ticks = croniter(schedule, now)
    last = ticks.get_prev(datetime)
    return last - ticks.get_prev(datetime)  # type: ignore[no-any-return]


@dataclass
class TableHealth:
    """What the Lake health page shows for one configured table."""

    table: str
    dynamodb_table: str
    lake_uri: str
    backfill: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    freshness: dict[str, Any] | None = None
    history: list[HistoryPoint] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: How old the verdict's T is, in seconds (None: never reconciled).
    verdict_age_seconds: float | None = None
    #: Why the verdict cannot be taken as current (an old T, a later run that failed).
    stale: list[str] = field(default_factory=list)
    #: The newest run that failed after the verdict's run (``run_id``, ``run_after``).
    failed_run: dict[str, str] | None = None
    #: The newest current-state snapshot a check proved equal to the table (see
    #: :func:`_newest_verified`).
    verified_state: dict[str, Any] | None = None

    @property
    def glance(self) -> str:
        """The newest report's status at a glance (see :func:`at_a_glance`); ``stale``
        (amber) when a healthy verdict, or none, is overtaken by a failed run or its age."""
        glance = at_a_glance(self.report.get("status") if self.report else None)
        if self.stale and glance in ("ok", "none", "unknown"):
            return "stale"
        return glance

    def judge_freshness(
        self,
        runs: list[RunSummary],
        schedule: str | None,
        settle_margin: timedelta,
        now: datetime,
    ) -> None:
        """Fill :attr:`verdict_age_seconds`, :attr:`stale` and :attr:`failed_run` from the
        reconciliation DAG's runs (any order) and its schedule."""
        mine = sorted(
            (run for run in runs if run.covers(self.table)), key=lambda run: run.run_after
        )
        since: datetime | None = None
        if self.report:
            as_of = datetime.fromisoformat(str(self.report.get("as_of")).replace("Z", "+00:00"))
            self.verdict_age_seconds = max(0.0, (now - as_of).total_seconds())
            interval = schedule_interval(schedule, now)
            if interval is not None:
                allowed = interval + settle_margin + _RUN_GRACE
                if now - as_of > allowed:
                    self.stale.append(
                        f"the verdict is {_span(now - as_of)} old; the schedule "
                        f"({schedule}) should have given a newer one within {_span(allowed)}"
                    )
            own = [run for run in mine if run.run_id == self.report.get("run_id")]
            since = own[0].run_after if own else as_of
        failed = [
            run
            for run in mine
            if run.state == "failed" and (since is None or run.run_after > since)
        ]
        if failed:
            newest = failed[-1]
            self.failed_run = {"run_id": newest.run_id, "run_after": newest.run_after.isoformat()}
            self.stale.append(
                f"{'a later run' if self.report else 'a run'} of the reconciliation failed "
                f"({newest.run_id}) without a verdict: see its log"
            )

    @property
    def drift(self) -> bool:
        return self.glance == "drift"

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["drift"] = self.drift
        raw["glance"] = self.glance
        return raw


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _newest_report(
    lake_uri: str, s3: S3Options | None, problems: list[str]
) -> ReconciliationReport | None:
    """The report ``latest.json`` copies; if that pointer cannot be read (named in
    ``problems``) or is gone, the newest report by name (names start with their T). Raises
    :class:`UnreadableRecordError` naming the newest report when it cannot be read either."""
    try:
        pointed = latest_report(lake_uri, s3)
    except UnreadableRecordError as exc:
        problems.append(f"reconciliation reports: {exc}")
        pointed = None
    if pointed is not None:
        return pointed
    newest = list_reports(lake_uri, s3, limit=1)
    return newest[0] if newest else None


def _history(
    lake_uri: str, s3: S3Options | None, newest: ReconciliationReport | None
) -> list[HistoryPoint]:
    """The reports of the chart's window (ending at the newest report's T), oldest first."""
    if newest is None:
        return []
    since = datetime.fromisoformat(newest.as_of.replace("Z", "+00:00")) - timedelta(
        days=HISTORY_DAYS
    )
    return [
        HistoryPoint(
            report.as_of,
            report.table_count,
            report.lake_count,
            report.status,
            report.method,
            report.run_id,
            report.current_state if (report.current_state or {}).get("tag") else None,
            report.cost,
            report.seconds,
        )
        for report in list_reports(lake_uri, s3, since=since)
    ]


def _newest_verified(history: list[HistoryPoint], now: datetime) -> dict[str, Any] | None:
    """The newest verified current-state snapshot of the chart's window: its tag, id, T and
    how old T is (None: no check in the window earned a tag)."""
    for point in reversed(history):
        if point.verified:
            moment = datetime.fromisoformat(point.as_of.replace("Z", "+00:00"))
            return {
                **point.verified,
                "as_of": point.as_of,
                "age_seconds": max(0.0, (now - moment).total_seconds()),
            }
    return None


def _days_newest_first(lake: Location) -> Iterator[Location]:
    """The lake's ``year=/month=/day=`` folders, newest first, listed only as far as read."""
    for year in reversed(lake.list_folders()):
        if year.name.startswith("year="):
            for month in reversed(year.list_folders()):
                yield from reversed(month.list_folders())


def _freshness(lake: Location, now: datetime) -> dict[str, Any] | None:
    """The newest stream row's time_stamp, from the Parquet statistics of the newest days."""
    days = itertools.islice(_days_newest_first(lake), _DAYS_LOOKED_BACK)
    for day in days:
        newest: int | None = None
        # The newest rows are in the files written last: a bounded number of footers,
        # however many small files the stream wrote that day.
        for location in day.newest_files(_FILES_LOOKED_AT, written_by_stream):
            metadata = pq.read_metadata(location.path, filesystem=location.filesystem)
            column = metadata.schema.to_arrow_schema().get_field_index("time_stamp")
            if column < 0:
                continue  # not a file of the lake contract: nothing to say about freshness
            for group in range(metadata.num_row_groups):
                statistics = metadata.row_group(group).column(column).statistics
                if statistics is not None and statistics.has_min_max:
                    value = statistics.max
                    micros = datetime_to_micros(
                        value if value.tzinfo else value.replace(tzinfo=UTC)
                    )
                    newest = micros if newest is None else max(newest, micros)
        if newest is not None:
            moment = micros_to_datetime(newest)
            return {
                "newest": f"{moment:%Y-%m-%dT%H:%M:%S.%f}Z",
                "age_seconds": round((now - moment).total_seconds(), 1),
            }
    return None


def _backfill_summary(record: Any) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "committed_at": record.committed_at or None,
        "mode": record.mode,
        "rows": record.rows,
        "files": record.files,
        "bad_lines": record.bad_lines,
        "exports": [
            {
                "export_time": item.export_time,
                "export_from": item.export_from,
                "export_to": item.export_to,
                "rows": item.rows,
            }
            for item in record.exports
        ],
    }


def table_health(
    config: TableConfig, s3: S3Options | None = None, now: datetime | None = None
) -> TableHealth:
    """Read one table's health; a part that cannot be read is named in ``problems``."""
    now = now or datetime.now(UTC)
    health = TableHealth(config.name, config.dynamodb_table, config.lake_uri)
    lake = resolve(config.lake_uri, s3)
    try:
        record = latest_backfill_record(config.lake_uri, s3)
        health.backfill = _backfill_summary(record) if record else None
    except DynamoLakeError as exc:
        health.problems.append(f"backfill record: {exc}")
    try:
        report = _newest_report(config.lake_uri, s3, health.problems)
        health.report = report.to_json() if report else None
        health.history = _history(config.lake_uri, s3, report)
        health.verified_state = _newest_verified(health.history, now)
    except DynamoLakeError as exc:
        health.problems.append(f"reconciliation reports: {exc}")
    try:
        health.freshness = _freshness(lake, now)
    except (DynamoLakeError, OSError, pa.ArrowException) as exc:
        health.problems.append(f"freshness: {exc}")
    return health
