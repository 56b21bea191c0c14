"""The current state's rows and how lake events merge into them (pure: DuckDB and Arrow).

A state row is a key's latest event: its exact ``key`` (:mod:`dynamo_lake.lake.keys`), the
``bucket`` that key hashes to, ``op``, ``time_stamp`` (µs, also as ``time_stamp_us``),
``uuid`` and ``data``. A key whose latest event is a delete keeps its row with ``op = 'D'``
(a tombstone): a file published late with an older insert of that key must lose to the
delete, and only a row that remembers the delete can make it lose. A tombstone keeps no
``data`` (NULL): the order decides by time, op and uuid before data, and a delete's old
image is history, which the log keeps; so the tombstones a busy table gathers cost each
rewrite little more than their keys. Live items are the rows
with ``op <> 'D'``.

Merging is the contract's latest-state rule, the greatest ``(time_stamp, op rank, uuid)``
per key (:data:`dynamo_lake.lake.query.LATEST_ORDER`, then ``data``: :data:`MERGE_ORDER`),
applied to the union of the state
and the new events. A maximum is associative, commutative and idempotent, so merging files
in any order, or a row twice, cannot change the result (``tests/core/test_state_merge.py``
checks it on generated histories).

The bucket of a key is ``md5(key)``'s first four bytes as an unsigned big-endian integer,
masked by ``buckets - 1``; the bucket count is a power of two, so every engine that has
md5 (DuckDB, Trino, Spark, Python) computes the same bucket without unsigned arithmetic.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from dynamo_lake.errors import ConfigError, StateError
from dynamo_lake.lake.query import LATEST_ORDER, OP_RANK

__all__ = [
    "MAX_BUCKETS",
    "STATE_SCHEMA",
    "bucket_filter",
    "bucket_of",
    "bucket_sql",
    "check_buckets",
    "deal_buckets",
    "default_buckets",
    "live",
    "merge_rows",
]

MAX_BUCKETS = 4096
#: Items per bucket the default bucket count aims at: one bucket's rows, merged in DuckDB
#: with its spill, stay well inside a worker's memory.
ITEMS_PER_BUCKET = 1_000_000

STATE_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("bucket", pa.int32(), nullable=False),
        pa.field("op", pa.string(), nullable=False),
        pa.field("time_stamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("time_stamp_us", pa.int64(), nullable=False),
        pa.field("uuid", pa.string(), nullable=False),
        pa.field("data", pa.string()),
    ]
)


#: The contract's order, then ``data``: the same choice wherever the contract decides, and
#: a choice where it cannot (two rows of one key with the same time, op and uuid but other
#: data: a forged or broken writer, since a uuid is a function of op, time and data), so
#: that even then the merge's result does not depend on the order files arrive in.
MERGE_ORDER = LATEST_ORDER[:-1] + ", data)"


def check_buckets(buckets: int) -> int:
    """``buckets`` if it is a power of two from 1 to :data:`MAX_BUCKETS`; else a ConfigError."""
    if (
        isinstance(buckets, bool)
        or not isinstance(buckets, int)
        or not 1 <= buckets <= MAX_BUCKETS
        or buckets & (buckets - 1)
    ):
        raise ConfigError(
            f"current state: buckets {buckets!r} is not a power of two from 1 to {MAX_BUCKETS} "
            "(every engine computes a key's bucket as md5 bits masked by buckets - 1): "
            "choose 1, 2, 4, ... 4096"
        )
    return buckets


def default_buckets(item_count: int) -> int:
    """The smallest power of two that keeps a bucket near :data:`ITEMS_PER_BUCKET` items."""
    buckets = 1
    while buckets * ITEMS_PER_BUCKET < item_count and buckets < MAX_BUCKETS:
        buckets *= 2
    return buckets


def bucket_of(key: str, buckets: int) -> int:
    """The bucket of ``key`` among ``buckets`` (a power of two): the reference definition."""
    digest = hashlib.md5(key.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") & (buckets - 1)


def deal_buckets(buckets: Iterable[int], tasks: int) -> list[list[int]]:
    """``buckets`` dealt into at most ``tasks`` lists, round robin (each task then takes its
    buckets one at a time, so its memory stays one bucket's)."""
    chosen = list(buckets)
    count = min(len(chosen), max(1, tasks))
    return [chosen[index::count] for index in range(count)]


def bucket_sql(key: str, buckets: int) -> str:
    """DuckDB SQL for :func:`bucket_of` of the string expression ``key``."""
    return f"(CAST('0x' || substr(md5({key}), 1, 8) AS UBIGINT) & {int(buckets) - 1})::INTEGER"


def bucket_filter(bucket: int, buckets: int) -> str:
    """SQL over the keyed columns: the row's key is in ``bucket`` of ``buckets``; rows
    without a key count in bucket 0 (so that some bucket refuses them)."""
    check_buckets(buckets)
    if not 0 <= bucket < buckets:
        raise StateError(f"bucket {bucket} is not one of the state's {buckets} buckets")
    return f"(({bucket_sql('k', buckets)}) = {bucket} OR (k IS NULL AND {bucket} = 0))"


def merge_rows(
    state: pa.Table | pa.RecordBatchReader,
    events: pa.Table | pa.RecordBatchReader,
    buckets: int,
    *,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """The state after ``events``: per key, the greatest of its state row and its events.

    ``state`` has :data:`STATE_SCHEMA`'s columns; ``events`` has the lake's keyed columns
    ``k, op, data, time_stamp, uuid`` (:data:`dynamo_lake.lake.query.KEYED_SCHEMA`), already
    cut at the watermark. Events without a key or a time are not state (the reconciliation
    counts them apart). The result has :data:`STATE_SCHEMA`, sorted by key.
    """
    own = connection is None
    db = duckdb.connect() if connection is None else connection
    try:
        db.execute("SET TimeZone = 'UTC'")
        db.register("state_rows", state)
        db.register("event_rows", events)
        result = db.sql(
            f"""
            WITH candidates AS (
                SELECT key AS k, op, data, time_stamp, uuid FROM state_rows
                UNION ALL
                SELECT k, op, data, time_stamp, uuid FROM event_rows
                WHERE k IS NOT NULL AND time_stamp IS NOT NULL AND uuid IS NOT NULL
            ),
            latest AS (
                SELECT k, arg_max({{'op': op, 'uuid': uuid, 'data': data}}, {MERGE_ORDER})
                        AS row, max(time_stamp) AS time_stamp
                FROM (SELECT *, {OP_RANK} AS rnk FROM candidates) ranked
                GROUP BY k
            )
            SELECT k AS key, {bucket_sql("k", check_buckets(buckets))} AS bucket,
                row.op AS op, time_stamp, epoch_us(time_stamp) AS time_stamp_us,
                row.uuid AS uuid, CASE WHEN row.op = 'D' THEN NULL ELSE row.data END AS data
            FROM latest ORDER BY key
            """
        ).to_arrow_table()
        return result.cast(STATE_SCHEMA)
    finally:
        for name in ("state_rows", "event_rows"):
            with contextlib.suppress(duckdb.Error):
                db.unregister(name)
        if own:
            db.close()


def live(state: pa.Table) -> pa.Table:
    """The state's live items (its tombstones left out)."""
    return state.filter(pc.not_equal(state.column("op"), "D"))
