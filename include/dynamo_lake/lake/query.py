"""Reading the lake back: the one definition of latest state, and small views for people.

The lake table is read as a pyarrow dataset (local folders and S3 alike, with the
``year``/``month``/``day`` partition values kept as strings) and queried with DuckDB. In AWS
the same SQL runs in Athena (the reconciliation DAG transpiles it); locally DuckDB runs it.

Latest state as of T: for each primary key, the row with the greatest ``time_stamp`` <= T;
ties (two events in the same microsecond) go to ``D`` over ``U`` over ``I``, then to the
greater ``uuid``, so every engine picks the same row. The item exists iff that row is not
``D``. Expressed once, as SQL (:func:`latest_of_sql`): one aggregation per key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from dynamo_lake import contract
from dynamo_lake.cdc import micros_to_datetime
from dynamo_lake.lake.writer import CDC_SCHEMA
from dynamo_lake.storage import S3Options, resolve

__all__ = [
    "OP_RANK",
    "key_expression",
    "keyed_rows_sql",
    "lake_dataset",
    "latest_of_sql",
    "latest_rows_sql",
    "latest_state",
    "latest_state_sql",
    "live_count_sql",
    "query_lake",
    "time_literal",
]

#: The contract's op ranks (the tie rule) as SQL.
OP_RANK = (
    "CASE op "
    + " ".join(f"WHEN '{op}' THEN {rank}" for op, rank in sorted(contract.OP_RANK.items()))
    + " END"
)
_PARTITIONING = ds.partitioning(
    pa.schema([(key, pa.string()) for key in contract.PARTITION_KEYS]), flavor="hive"
)


def lake_dataset(lake_uri: str, s3: S3Options | None = None) -> ds.Dataset:
    """The lake table's rows (``_``-prefixed folders, i.e. staging and errors, excluded)."""
    location = resolve(lake_uri, s3)
    if not location.exists():
        return ds.dataset(pa.table([], schema=CDC_SCHEMA))
    return ds.dataset(
        location.path,
        filesystem=location.filesystem,
        format="parquet",
        partitioning=_PARTITIONING,
        schema=pa.schema(
            [*CDC_SCHEMA, *(pa.field(key, pa.string()) for key in contract.PARTITION_KEYS)]
        ),
        ignore_prefixes=["_", "."],
    )


def key_expression(key_names: Sequence[str]) -> str:
    """SQL for a row's primary key as text: the key attributes' values joined by U+001F.

    Key attributes are S, N or B (DynamoDB allows nothing else), so each is a JSON scalar
    in ``data`` and ``->>`` gives its text; a table's key attributes have fixed types, so
    equal text means the same key.
    """
    parts = []
    for name in key_names:
        escaped = name.replace('"', '\\"').replace("'", "''")
        parts.append(f"(data ->> '$.\"{escaped}\"')")
    return " || chr(31) || ".join(parts)


def time_literal(micros: int) -> str:
    """SQL for a moment (µs since the epoch, UTC) that compares exactly with ``time_stamp``."""
    moment = micros_to_datetime(micros)
    return f"CAST('{moment:%Y-%m-%d %H:%M:%S.%f}+00:00' AS TIMESTAMPTZ)"


def keyed_rows_sql(source: str, key_names: Sequence[str], cut: str | None = None) -> str:
    """SQL: ``source``'s rows with their key ``k`` and op rank ``rnk`` (each computed once)."""
    where = f"WHERE {cut}" if cut else ""
    return (
        f"SELECT {key_expression(key_names)} AS k, op, data, time_stamp, uuid, "
        f"{OP_RANK} AS rnk FROM {source} {where}"
    )


def latest_of_sql(keyed: str, cut: str = "TRUE") -> str:
    """SQL: per key of the keyed rows ``keyed`` (see :func:`keyed_rows_sql`) with
    ``time_stamp`` meeting ``cut``, its latest row as ``k, op, data, time_stamp``.

    The latest row is the greatest ``(time_stamp, op rank, uuid)``: the contract's tie rule.
    One aggregation (``arg_max`` of ``op || data`` by that tuple), no window over the lake.
    """
    return f"""
        SELECT k, substr(latest, 1, 1) AS op, substr(latest, 2) AS data, time_stamp FROM (
            SELECT k, arg_max(op || data, (time_stamp, rnk, uuid)) AS latest,
                max(time_stamp) AS time_stamp
            FROM {keyed} WHERE {cut} GROUP BY k
        ) latest_rows
    """


def latest_rows_sql(source: str, key_names: Sequence[str], cut: str | None = None) -> str:
    """SQL: per key, the row that is its latest state (columns ``k, op, data, time_stamp``).

    ``cut`` is an SQL condition on ``time_stamp`` (``time_stamp <= <literal>``) or ``None``.
    Written once for DuckDB; the Athena engine transpiles it.
    """
    return latest_of_sql(f"({keyed_rows_sql(source, key_names, cut)}) keyed")


def latest_state_sql(source: str, key_names: Sequence[str], as_of: int | None = None) -> str:
    """SQL: op and data of every item live in ``source`` at ``as_of`` µs (or at the end)."""
    cut = None if as_of is None else f"time_stamp <= {time_literal(as_of)}"
    return (
        f"SELECT op, data FROM ({latest_rows_sql(source, key_names, cut)}) latest WHERE op <> 'D'"
    )


def live_count_sql(source: str, key_names: Sequence[str], as_of: int | None = None) -> str:
    """SQL: how many items live in ``source`` at ``as_of`` µs (or at the end): the latest
    row per key by the tie rule, without carrying ``data``."""
    cut = None if as_of is None else f"time_stamp <= {time_literal(as_of)}"
    return f"""
        SELECT count(*) FROM (
            SELECT arg_max(op, (time_stamp, rnk, uuid)) AS op
            FROM ({keyed_rows_sql(source, key_names, cut)}) keyed GROUP BY k
        ) latest WHERE op <> 'D'
    """


def query_lake(
    lake_uri: str, sql: str, s3: S3Options | None = None, params: list[Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run DuckDB ``sql`` in which the table ``rows`` is the lake table."""
    rows = lake_dataset(lake_uri, s3)
    connection = duckdb.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("rows", rows)
        return connection.execute(sql, params or []).fetchall()
    finally:
        connection.close()


def latest_state(
    lake_uri: str, key_names: list[str], *, as_of: int | None = None, s3: S3Options | None = None
) -> set[str]:
    """The canonical ``data`` of every item the lake says exists (at ``as_of`` µs, or now)."""
    return {
        data for _, data in query_lake(lake_uri, latest_state_sql("rows", key_names, as_of), s3)
    }
