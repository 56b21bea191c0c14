"""Reading the lake back: the one definition of latest state, and small views for people.

The lake table is read as a pyarrow dataset (local folders and S3 alike, with the
``year``/``month``/``day`` partition values kept as strings) and queried with DuckDB. In AWS
the same SQL runs in Athena (the reconciliation DAG transpiles it); locally DuckDB runs it.

Latest state as of T: for each primary key, the row with the greatest ``time_stamp`` <= T;
ties (two events in the same microsecond) go to ``D`` over ``U`` over ``I``, then to the
greater ``uuid``, so every engine picks the same row. The item exists iff that row is not
``D``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from dynamo_lake import contract
from dynamo_lake.lake.writer import CDC_SCHEMA
from dynamo_lake.storage import S3Options, resolve

__all__ = ["OP_RANK", "lake_dataset", "latest_state", "latest_state_sql", "query_lake"]

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


def _key_expression(name: str) -> str:
    escaped = name.replace('"', '\\"').replace("'", "''")
    return f"data ->> '$.\"{escaped}\"'"


def latest_state_sql(source: str, key_names: Iterable[str], as_of: int | None = None) -> str:
    """DuckDB SQL: the latest row per key from ``source`` (op and data of live items)."""
    keys = ", ".join(_key_expression(name) for name in key_names)
    cut = "" if as_of is None else f"WHERE epoch_us(time_stamp) <= {int(as_of)}"
    return f"""
        SELECT op, data FROM (
            SELECT op, data, row_number() OVER (
                PARTITION BY {keys} ORDER BY time_stamp DESC, {OP_RANK} DESC, uuid DESC
            ) AS rank
            FROM {source} {cut}
        ) WHERE rank = 1 AND op <> 'D'
    """


def query_lake(
    lake_uri: str, sql: str, s3: S3Options | None = None, params: list[Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run DuckDB ``sql`` in which the table ``rows`` is the lake table."""
    rows = lake_dataset(lake_uri, s3)
    connection = duckdb.connect()
    try:
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
