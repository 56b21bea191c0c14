"""The four ways to compare a table with its lake, as of a cut time T.

* ``count``: DescribeTable's ItemCount (free, refreshed by AWS about every 6 hours) against
  the lake's live items at T; passes when the difference is within the distinct events the
  stream wrote in the staleness window (each change moves the count by at most one; rows of
  backfills and repairs restate the table and do not count).
* ``scan``: an exact parallel ``Select=COUNT`` scan (read capacity, not a snapshot) against
  the lake's live items at the scan's end, within the stream's events during the scan.
* ``export``: a full export at T against the lake's latest state at T, key by key.
* ``changes``: an incremental export of the day before T: every key changed that day must
  be in its final state in the lake at T; stream events in the window that change the state
  of keys the export does not list are phantoms.

Key by key, a key is drift only if the lake differs from the table both at ``T - ε`` and at
``T + ε`` (stream times are approximate). Keys are compared by their exact key
(:mod:`dynamo_lake.lake.keys`). The comparisons stream the engine's findings: counts, up to
20 sample keys of each kind, and every finding into :class:`FindingsFile` (Parquet), from
which the repair takes its work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dynamo_lake.errors import LakeReadError
from dynamo_lake.lake.keys import KeyAttribute, render_key
from dynamo_lake.reconciliation import sql
from dynamo_lake.reconciliation.engines import Engine, Finding, ReconciliationEngineError

__all__ = [
    "DRIFT_KINDS",
    "Comparison",
    "FindingsFile",
    "KeyAttribute",
    "ScanResult",
    "compare_changes",
    "compare_count",
    "compare_export",
    "key_json",
    "refuse_keyless",
    "scan_count",
]

DRIFT_KINDS = ("missing", "extra", "different", "phantom")
#: Keys an engine could not rule on (events within its time precision): never ok, never drift.
UNSURE_KINDS = ("ambiguous",)
SAMPLES = 20
HOUR_MICROS = 3_600_000_000


def key_json(key: str | None, keys: Sequence[KeyAttribute]) -> str:
    """A key as the engine returns it (see :mod:`dynamo_lake.lake.keys`) -> canonical JSON."""
    return render_key(key, keys)


class FindingsFile:
    """Every finding of a comparison, written to a local Parquet file as they stream by.

    One row per key: ``kind``, ``key`` (canonical key JSON), ``table_data`` and
    ``lake_data`` (the images), ``table_time`` (the table's write time, for ``changes``),
    ``lake_time`` and ``lake_uuid`` (the deciding lake event). Memory holds one batch.
    """

    SCHEMA = pa.schema(
        [
            pa.field("kind", pa.string(), nullable=False),
            pa.field("key", pa.string(), nullable=False),
            pa.field("k", pa.string()),
            pa.field("table_data", pa.string()),
            pa.field("lake_data", pa.string()),
            pa.field("table_time", pa.timestamp("us", tz="UTC")),
            pa.field("lake_time", pa.timestamp("us", tz="UTC")),
            pa.field("lake_uuid", pa.string()),
        ]
    )
    BATCH = 10_000

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._pending: list[tuple[Finding, str]] = []
        self._writer: pq.ParquetWriter | None = None

    def add(self, finding: Finding, key: str) -> None:
        self._pending.append((finding, key))
        if len(self._pending) >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        findings = [finding for finding, _ in self._pending]
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array([finding.kind for finding in findings], pa.string()),
                pa.array([key for _, key in self._pending], pa.string()),
                pa.array([finding.k for finding in findings], pa.string()),
                pa.array([finding.table_data for finding in findings], pa.string()),
                pa.array([finding.lake_data for finding in findings], pa.string()),
                pa.array([finding.table_time for finding in findings], pa.int64()).cast(
                    self.SCHEMA.field("table_time").type
                ),
                pa.array([finding.lake_time for finding in findings], pa.int64()).cast(
                    self.SCHEMA.field("lake_time").type
                ),
                pa.array([finding.lake_uuid for finding in findings], pa.string()),
            ],
            schema=self.SCHEMA,
        )
        if self._writer is None:
            self._writer = pq.ParquetWriter(str(self.path), self.SCHEMA, compression="zstd")
        self._writer.write_batch(batch)
        self.rows += len(findings)
        self._pending = []

    def append(self, other: pq.ParquetFile) -> None:
        """Add every finding of another findings file (one of a bucket task's)."""
        self._flush()
        for batch in other.iter_batches(batch_size=self.BATCH):
            batch = pa.RecordBatch.from_arrays(
                [
                    batch.column(name).cast(field.type)
                    for name, field in zip(self.SCHEMA.names, self.SCHEMA, strict=True)
                ],
                schema=self.SCHEMA,
            )
            if self._writer is None:
                self._writer = pq.ParquetWriter(str(self.path), self.SCHEMA, compression="zstd")
            self._writer.write_batch(batch)
            self.rows += batch.num_rows

    def close(self) -> int:
        """Finish the file; the number of findings in it (no file when there are none)."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.rows

    def __iter__(self) -> Iterator[Finding]:
        """The findings back, in the order written (the file must be closed)."""
        if not self.rows:
            return
        for batch in pq.ParquetFile(str(self.path)).iter_batches(batch_size=self.BATCH):
            values = batch.to_pydict()
            for index in range(batch.num_rows):
                yield Finding(
                    values["kind"][index],
                    values["k"][index],
                    None,
                    values["table_data"][index],
                    values["lake_data"][index],
                    _micros(values["table_time"][index]),
                    _micros(values["lake_time"][index]),
                    values["lake_uuid"][index],
                )


def _micros(moment: Any) -> int | None:
    if moment is None:
        return None
    from dynamo_lake.cdc import datetime_to_micros

    return datetime_to_micros(moment)


@dataclass
class Comparison:
    """What a comparison found."""

    method: str
    table_count: int | None = None
    lake_count: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)
    #: The samples' keys as the engine orders them (``k``), to merge samples of buckets.
    sample_keys: dict[str, list[str]] = field(default_factory=dict)
    events: int | None = None
    bound: int | None = None
    ambiguous_at_t: int = 0
    reasoning: str = ""
    consumed_read_capacity: float | None = None

    @property
    def drifted(self) -> bool:
        if self.method in ("count", "scan"):
            difference = abs((self.table_count or 0) - (self.lake_count or 0))
            return difference > (self.bound or 0)
        return any(self.counts.get(kind, 0) for kind in DRIFT_KINDS)

    @property
    def unsure(self) -> int:
        """Keys the engine could not rule on."""
        return sum(self.counts.get(kind, 0) for kind in UNSURE_KINDS)


def _collect(
    engine: Engine,
    query: str,
    keys: Sequence[KeyAttribute],
    method: str,
    findings: FindingsFile | None,
) -> Comparison:
    result = Comparison(method=method)
    keyless: dict[str, tuple[int, str | None]] = {}
    for finding in engine.findings(query):
        if finding.kind == "table_count":
            result.table_count = int(finding.n or 0)
        elif finding.kind == "lake_count":
            result.lake_count = int(finding.n or 0)
        elif finding.kind == "events":
            result.events = int(finding.n or 0)
        elif finding.kind == "ambiguous_count":
            result.ambiguous_at_t = int(finding.n or 0)
        elif finding.kind in ("keyless_lake", "keyless_table"):
            keyless[finding.kind] = (int(finding.n or 0), finding.lake_uuid)
        else:
            key = key_json(finding.k, keys)
            result.counts[finding.kind] = result.counts.get(finding.kind, 0) + 1
            sample = result.samples.setdefault(finding.kind, [])
            if len(sample) < SAMPLES:
                sample.append(key)
                result.sample_keys.setdefault(finding.kind, []).append(finding.k or "")
            if findings is not None:
                findings.add(finding, key)
    if result.lake_count is None:
        raise ReconciliationEngineError(
            f"the {engine.name} engine returned no counts for the {method} comparison"
        )
    _refuse_keyless(keyless, keys)
    return result


def _refuse_keyless(
    keyless: dict[str, tuple[int, str | None]], keys: Sequence[KeyAttribute]
) -> None:
    """Rows without the key attributes cannot be compared: say which side holds them."""
    refuse_keyless("lake", *keyless.get("keyless_lake", (0, None)), [key.name for key in keys])
    refuse_keyless(
        "table's export", *keyless.get("keyless_table", (0, None)), [key.name for key in keys]
    )


def refuse_keyless(where: str, count: int, uuid: str | None, names: Sequence[str]) -> None:
    """Raise :class:`LakeReadError` when ``count`` rows of ``where`` have no key."""
    if not count:
        return
    rows = "1 row" if count == 1 else f"{count} rows"
    example = f" (e.g. the row with uuid {uuid})" if uuid else ""
    raise LakeReadError(
        f"the {where} holds {rows} without a key{example}: such a row's data is not a JSON "
        f"object, or lacks a key attribute ({', '.join(repr(name) for name in names)}), or "
        "holds one that is not a string or number; either the key attributes named are not "
        "the table's, or those rows were written by something else: find them by uuid and "
        "move their files out of the lake table's folder"
    )


def compare_export(
    engine: Engine,
    keys: Sequence[KeyAttribute],
    as_of: int,
    epsilon: int,
    findings: FindingsFile | None = None,
) -> Comparison:
    """A full export at ``as_of`` (the engine's ``snapshot``) against the lake."""
    query = sql.snapshot_diff_sql(as_of, epsilon, engine.precision_us, base=engine.has_base)
    return _collect(engine, query, keys, "export", findings)


def compare_changes(
    engine: Engine,
    keys: Sequence[KeyAttribute],
    as_of: int,
    epsilon: int,
    window_start: int,
    findings: FindingsFile | None = None,
) -> Comparison:
    """An incremental export of ``[window_start, as_of)`` (the ``snapshot``) against the lake."""
    query = sql.changes_diff_sql(
        as_of, epsilon, window_start, engine.precision_us, base=engine.has_base
    )
    return _collect(engine, query, keys, "changes", findings)


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
    """A table count against the lake's live items at ``lake_moment``, allowing the distinct
    stream events in ``(events_from, events_to]`` (each moves a count by at most one), keys
    the engine cannot place at ``lake_moment`` (coarse times only), plus ``slack``."""
    query = sql.count_sql(lake_moment, events_from, events_to, engine.precision_us)
    result = _collect(engine, query, keys, method, None)
    result.table_count = table_count
    result.bound = (result.events or 0) + result.ambiguous_at_t + slack
    result.reasoning = (
        f"{reasoning}: {result.events} distinct stream events in that time (backfill and "
        "repair rows restate the table and do not count)"
        + (
            f" + {result.ambiguous_at_t} keys the engine cannot place at T"
            if result.ambiguous_at_t
            else ""
        )
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
