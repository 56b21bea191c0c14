"""The four ways to compare a table with its lake, as of a cut time T.

* ``count``: DescribeTable's ItemCount (free, refreshed by AWS about every 6 hours) against
  the lake's live items at T; passes when the difference is within the lake's events in the
  staleness window (each change moves the count by at most one).
* ``scan``: an exact parallel ``Select=COUNT`` scan (read capacity, not a snapshot) against
  the lake's live items at the scan's end, within the lake's events during the scan.
* ``export``: a full export at T against the lake's latest state at T, key by key.
* ``changes``: an incremental export of ``[T - 24h, T)``: every key changed that day must
  be in its final state in the lake at T; lake events in the window for keys the export
  does not list are phantoms.

Key by key, a key is drift only if the lake differs from the table both at ``T - ε`` and at
``T + ε`` (stream times are approximate). The comparisons stream the engine's findings:
counts, up to 20 sample keys of each kind, and each drifting key handed to ``on_drift``
(the repair) without keeping them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from dynamo_lake.reconciliation import sql
from dynamo_lake.reconciliation.engines import Engine, Finding

__all__ = [
    "DRIFT_KINDS",
    "Comparison",
    "KeyAttribute",
    "ScanResult",
    "compare_changes",
    "compare_count",
    "compare_export",
    "key_json",
    "scan_count",
]

DRIFT_KINDS = ("missing", "extra", "different", "phantom")
SAMPLES = 20
HOUR_MICROS = 3_600_000_000


@dataclass(frozen=True)
class KeyAttribute:
    """A primary key attribute: its name and DynamoDB type (S, N or B)."""

    name: str
    type: str


def key_json(key_text: str | None, keys: Sequence[KeyAttribute]) -> str:
    """A key as the engine returns it (values joined by U+001F) -> canonical JSON."""
    values = (key_text or "").split("\x1f")
    parts = []
    for attribute, value in sorted(zip(keys, values, strict=False), key=lambda pair: pair[0].name):
        rendered = value if attribute.type == "N" else orjson.dumps(value).decode()
        parts.append(f"{orjson.dumps(attribute.name).decode()}:{rendered}")
    return "{" + ",".join(parts) + "}"


@dataclass
class Comparison:
    """What a comparison found."""

    method: str
    table_count: int | None = None
    lake_count: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)
    events: int | None = None
    bound: int | None = None
    reasoning: str = ""
    consumed_read_capacity: float | None = None

    @property
    def drifted(self) -> bool:
        if self.method in ("count", "scan"):
            difference = abs((self.table_count or 0) - (self.lake_count or 0))
            return difference > (self.bound or 0)
        return any(self.counts.get(kind, 0) for kind in DRIFT_KINDS)


def _collect(
    engine: Engine,
    query: str,
    keys: Sequence[KeyAttribute],
    method: str,
    on_drift: Callable[[Finding], None] | None,
) -> Comparison:
    result = Comparison(method=method)
    for finding in engine.findings(query):
        if finding.kind == "table_count":
            result.table_count = int(finding.n or 0)
        elif finding.kind == "lake_count":
            result.lake_count = int(finding.n or 0)
        elif finding.kind == "events":
            result.events = int(finding.n or 0)
        else:
            result.counts[finding.kind] = result.counts.get(finding.kind, 0) + 1
            sample = result.samples.setdefault(finding.kind, [])
            if len(sample) < SAMPLES:
                sample.append(key_json(finding.k, keys))
            if on_drift is not None:
                on_drift(finding)
    if result.lake_count is None:
        from dynamo_lake.reconciliation.engines import ReconciliationEngineError

        raise ReconciliationEngineError(
            f"the {engine.name} engine returned no counts for the {method} comparison"
        )
    return result


def compare_export(
    engine: Engine,
    keys: Sequence[KeyAttribute],
    as_of: int,
    epsilon: int,
    on_drift: Callable[[Finding], None] | None = None,
) -> Comparison:
    """A full export at ``as_of`` (the engine's ``snapshot``) against the lake."""
    query = sql.snapshot_diff_sql([key.name for key in keys], as_of, epsilon)
    return _collect(engine, query, keys, "export", on_drift)


def compare_changes(
    engine: Engine,
    keys: Sequence[KeyAttribute],
    as_of: int,
    epsilon: int,
    window_start: int,
    on_drift: Callable[[Finding], None] | None = None,
) -> Comparison:
    """An incremental export of ``[window_start, as_of)`` (the ``snapshot``) against the lake."""
    query = sql.changes_diff_sql([key.name for key in keys], as_of, epsilon, window_start)
    return _collect(engine, query, keys, "changes", on_drift)


def compare_count(
    engine: Engine,
    keys: Sequence[KeyAttribute],
    *,
    method: str,
    table_count: int,
    lake_moment: int,
    events_from: int,
    events_to: int,
    slack: int,
    reasoning: str,
) -> Comparison:
    """A table count against the lake's live items at ``lake_moment``, allowing the lake's
    events in ``(events_from, events_to]`` (each moves a count by at most one) plus
    ``slack``."""
    query = sql.count_sql([key.name for key in keys], lake_moment, events_from, events_to)
    result = _collect(engine, query, keys, method, None)
    result.table_count = table_count
    result.bound = (result.events or 0) + slack
    result.reasoning = (
        f"{reasoning}: {result.events} lake events in that time"
        + (f" + slack {slack}" if slack else "")
        + f" = a bound of {result.bound}; the difference is "
        f"{abs(table_count - (result.lake_count or 0))}"
    )
    return result


# --- an exact count of the table ----------------------------------------------------------


@dataclass(frozen=True)
class ScanResult:
    """An exact item count from a parallel scan, and when it ran (µs)."""

    count: int
    started: int
    ended: int
    consumed_read_capacity: float
    pages: int


class _PageRate:
    """At most ``per_second`` pages a second across all segments (0: no limit)."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.interval
        time.sleep(max(0.0, start - now))


def scan_count(
    dynamodb: Any, table: str, *, segments: int = 4, pages_per_second: float = 0.0
) -> ScanResult:
    """Count the table's items exactly with a parallel ``Select=COUNT`` scan."""
    from datetime import UTC, datetime

    from dynamo_lake.cdc import datetime_to_micros

    rate = _PageRate(pages_per_second)

    def segment(number: int) -> tuple[int, float, int]:
        count, capacity, pages = 0, 0.0, 0
        arguments: dict[str, Any] = {
            "TableName": table,
            "Select": "COUNT",
            "Segment": number,
            "TotalSegments": segments,
            "ReturnConsumedCapacity": "TOTAL",
        }
        while True:
            rate.wait()
            page = dynamodb.scan(**arguments)
            count += int(page.get("Count", 0))
            capacity += float(page.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0))
            pages += 1
            if "LastEvaluatedKey" not in page:
                return count, capacity, pages
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    started = datetime_to_micros(datetime.now(UTC))
    with ThreadPoolExecutor(max_workers=min(segments, 16)) as pool:
        parts = list(pool.map(segment, range(segments)))
    ended = datetime_to_micros(datetime.now(UTC))
    return ScanResult(
        count=sum(part[0] for part in parts),
        started=started,
        ended=ended,
        consumed_read_capacity=round(sum(part[1] for part in parts), 3),
        pages=sum(part[2] for part in parts),
    )
