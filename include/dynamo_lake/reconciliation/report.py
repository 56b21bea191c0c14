"""The reconciliation report: the contract the UI and any other consumer read.

One JSON file per table and run under the lake table's ``_reconciliation/`` folder, named
``<as_of>--<run>.json`` (so names sort by the moment checked), and a copy of the newest at
``_reconciliation/latest.json``. Fields (all always present; ``null`` where a method cannot
tell):

``table, as_of`` (ISO-8601 UTC with microseconds), ``method`` (count, scan, export,
changes), ``status`` (see below), ``table_count, lake_count, tolerance`` (epsilon, count
bound, reasoning), ``missing, extra, different, phantoms`` (integers: what the comparison
found, before any repair), ``ambiguous`` (keys the engine could not rule on: events within
its time precision; null for exact engines and the count methods), ``samples`` (up to 20
keys of each kind, each key as canonical JSON), ``findings`` (null, or ``uri`` and ``rows``
of the Parquet file beside the report holding every finding), ``repair`` (null, or the rows
written and the re-check), ``export_arn, consumed_read_capacity, run_id, seconds``,
``window`` (the changes method's ``[from, to)``), ``engine``, ``message``, ``cost`` (what the
comparison read: its basis, the current state's snapshot or the log, and bytes).

``status``: ``ok`` (the lake matches: every key ruled on), ``drift`` (it does not, and no
repair made it match), ``repaired`` (drift was found, corrective rows were written and the
re-check was clean), ``inconclusive`` (no drift found, but ``ambiguous`` keys were not ruled
on), ``error`` (the check could not run; ``message`` says why).

The pointer ``latest.json`` is derived data: each run writes its own report first, then
makes the pointer its copy unless the pointer names a later moment (a conditional write, so
an older run never replaces a newer one). A pointer that cannot be read is rewritten from
the run's report; readers fall back to the newest report by name.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from dynamo_lake.contract import RECONCILIATION
from dynamo_lake.errors import DynamoLakeError
from dynamo_lake.exports.planning import safe_name
from dynamo_lake.storage import Location, S3Options, resolve

__all__ = [
    "HEALTHY",
    "LATEST",
    "ReconciliationReport",
    "latest_report",
    "list_reports",
    "read_report",
    "write_report",
]

log = logging.getLogger(__name__)

Status = Literal["ok", "drift", "repaired", "inconclusive", "error"]
#: Statuses after which the lake matches the table as of T.
HEALTHY: tuple[Status, ...] = ("ok", "repaired")
LATEST = "latest.json"
SAMPLE_KINDS = ("missing", "extra", "different", "phantoms", "ambiguous")


@dataclass(frozen=True)
class ReconciliationReport:
    table: str
    as_of: str
    method: str
    status: Status
    table_count: int | None = None
    lake_count: int | None = None
    tolerance: dict[str, Any] = field(default_factory=dict)
    missing: int | None = None
    extra: int | None = None
    different: int | None = None
    phantoms: int | None = None
    ambiguous: int | None = None
    samples: dict[str, list[str]] = field(default_factory=dict)
    findings: dict[str, Any] | None = None
    repair: dict[str, Any] | None = None
    export_arn: str | None = None
    consumed_read_capacity: float | None = None
    run_id: str = ""
    seconds: float = 0.0
    window: list[str] | None = None
    engine: str = "duckdb"
    message: str = ""
    #: The current-state snapshot at T compared with the export, and its verified tag
    #: (``export`` and ``changes`` checks with a healthy verdict; ``{"error": ...}`` when
    #: none could be made, e.g. a changes check with no verified snapshot to chain to).
    current_state: dict[str, Any] | None = None
    #: What the comparison read (``export`` and ``changes``): ``basis`` ("current state"
    #: with its snapshot and watermark, or "log"), ``lake_bytes`` (lake files and state
    #: files read), ``export_bytes`` (the converted export), ``athena_bytes_scanned``.
    cost: dict[str, Any] | None = None

    @property
    def drift(self) -> int:
        return sum(
            value or 0 for value in (self.missing, self.extra, self.different, self.phantoms)
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ReconciliationReport:
        names = {item.name for item in fields(cls)}
        return cls(**{name: value for name, value in raw.items() if name in names})

    @property
    def healthy(self) -> bool:
        """The lake matches the table as of T (``ok``, or ``repaired`` and re-checked)."""
        return self.status in HEALTHY

    def file_name(self, suffix: str = ".json") -> str:
        stamp = self.as_of.replace("-", "").replace(":", "").replace(".", "")
        return f"{stamp}--{safe_name(self.run_id)}{suffix}"

    @staticmethod
    def as_of_in(file_name: str) -> datetime | None:
        """The T a report's file name starts with (see :meth:`file_name`); None for a name
        that is not a report's."""
        stamp, separator, _ = file_name.partition("--")
        if not separator or not file_name.endswith(".json"):
            return None
        try:
            return datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        except ValueError:
            return None

    def table_text(self) -> str:
        """A readable table for the task log."""
        lines = [
            f"reconciliation of {self.table} as of {self.as_of} ({self.method}, {self.engine})",
            f"  status          {self.status.upper()}",
            f"  table count     {_text(self.table_count)}",
            f"  lake count      {_text(self.lake_count)}",
        ]
        for kind in SAMPLE_KINDS:
            value = getattr(self, kind)
            if value is not None:
                sample = ", ".join(self.samples.get(kind, [])[:3])
                lines.append(f"  {kind:<15} {value}" + (f"   e.g. {sample}" if sample else ""))
        if self.tolerance.get("reasoning"):
            lines.append(f"  tolerance       {self.tolerance['reasoning']}")
        if self.findings:
            lines.append(
                f"  findings        {self.findings.get('rows')} in {self.findings.get('uri')}"
            )
        if self.consumed_read_capacity is not None:
            lines.append(f"  read capacity   {self.consumed_read_capacity}")
        if self.cost:
            lines.append(f"  read            {_cost_text(self.cost)}")
        if self.repair is not None:
            lines.append(f"  repair          {self.repair}")
        if self.message:
            lines.append(f"  note            {self.message}")
        return "\n".join(lines)


def _cost_text(cost: dict[str, Any]) -> str:
    basis = cost.get("basis", "log")
    if basis == "current state":
        basis = f"current state at {cost.get('watermark')} + {cost.get('rows_read')} log rows"
    parts = [basis]
    for name, label in (
        ("lake_bytes", "lake"),
        ("export_bytes", "export"),
        ("athena_bytes_scanned", "Athena scanned"),
    ):
        if cost.get(name) is not None:
            parts.append(f"{label} {cost[name] / 1e6:,.1f} MB")
    return ", ".join(parts)


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _folder(lake_uri: str, s3: S3Options | None) -> Location:
    return resolve(lake_uri, s3).child(RECONCILIATION)


def write_report(lake_uri: str, report: ReconciliationReport, s3: S3Options | None = None) -> str:
    """Write the run's report, then make it ``latest.json`` unless that names a later
    moment. The report is written whatever becomes of the pointer: a pointer that cannot be
    read is replaced by this report, and one that cannot be written is left (a warning)."""
    folder = _folder(lake_uri, s3)
    payload = orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    location = folder.child(report.file_name())
    location.write_bytes(payload)
    pointer = folder.child(LATEST)

    def newer(current: bytes | None) -> bytes | None:
        if current is None:
            return payload
        try:
            shown = ReconciliationReport.from_json(orjson.loads(current))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning(
                "%s cannot be read (%s); rewriting it from %s", pointer.uri, exc, location.uri
            )
            return payload
        return payload if (shown.as_of, shown.run_id) <= (report.as_of, report.run_id) else None

    try:
        pointer.update(newer)
    except DynamoLakeError as exc:
        log.warning(
            "could not update %s (%s); readers fall back to the newest report", pointer.uri, exc
        )
    return location.uri


def read_report(location: Location) -> ReconciliationReport:
    return location.read_document(ReconciliationReport.from_json, "reconciliation report")


def latest_report(lake_uri: str, s3: S3Options | None = None) -> ReconciliationReport | None:
    """The newest report (by the moment it checked), or None before the first."""
    location = _folder(lake_uri, s3).child(LATEST)
    return read_report(location) if location.exists() else None


def list_reports(
    lake_uri: str,
    s3: S3Options | None = None,
    *,
    limit: int | None = None,
    since: datetime | None = None,
) -> list[ReconciliationReport]:
    """Reports, oldest first by the moment checked. Names carry that moment, so one listing
    chooses what to read: with ``since`` only reports of T >= since, with ``limit`` only
    the newest ones."""
    chosen = []
    for item in _folder(lake_uri, s3).list_files():
        as_of = ReconciliationReport.as_of_in(item.name)
        if as_of is not None and (since is None or as_of >= since):
            chosen.append(item)
    if limit is not None:
        chosen = chosen[-limit:] if limit > 0 else []
    return [read_report(item) for item in chosen]
