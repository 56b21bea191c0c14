"""The reconciliation's SQL, written once (DuckDB's dialect) over two relations:

* ``lake``: the lake table's rows (``uuid, op, time_stamp, data``);
* ``snapshot``: the table side, converted by the same conversion as any export: a full
  export at T (every item an ``I`` row) or an incremental export of ``[T - 24h, T)`` (one
  row per changed key: its final state, stamped with its write time).

The lake's state is taken at three cuts: ``lo = T - ε``, ``T`` and ``hi = T + ε``. Stream
times are approximate, so a key is drift only if the lake differs from the table both at
``lo`` and at ``hi`` (:func:`state_sql`). One aggregation over the lake (rows up to
``hi``) decides the latest row per key (:func:`~dynamo_lake.lake.query.latest_of_sql`);
the other cuts are computed only for the few keys with an event after ``lo``.

Every query returns *findings*: rows ``(kind, k, n, table_data, lake_data, table_time,
lake_time)`` ordered by kind and key, where ``kind`` is ``missing``, ``extra``,
``different`` or ``phantom`` (one row per key), or ``lake_count``/``table_count``/
``events`` (one row, ``n`` set). The engine streams them; nothing holds every item in
Python. :func:`to_trino` makes Athena's dialect of the same text with sqlglot.
"""

from __future__ import annotations

from collections.abc import Sequence

from dynamo_lake.lake.query import key_expression, keyed_rows_sql, latest_of_sql, time_literal

__all__ = [
    "FINDING_COLUMNS",
    "changes_diff_sql",
    "count_sql",
    "snapshot_diff_sql",
    "state_sql",
    "to_trino",
]

FINDING_COLUMNS = ("kind", "k", "n", "table_data", "lake_data", "table_time", "lake_time")
_ORDER = (
    "ORDER BY CASE kind WHEN 'table_count' THEN 0 WHEN 'lake_count' THEN 1 "
    "WHEN 'events' THEN 2 ELSE 3 END, kind, k"
)
_NO_TIME = "CAST(NULL AS TIMESTAMPTZ)"


def _live(alias: str) -> str:
    return f"CASE WHEN {alias}.op = 'D' THEN NULL ELSE {alias}.data END"


def state_sql(keys: Sequence[str], lo: int, t: int, hi: int) -> str:
    """CTEs ending in ``state(k, data_lo, data_t, data_hi, time_t)``: each key's live data
    (NULL if absent or deleted) at the three cuts, and the time of its latest row at T."""
    return f"""
        lake_rows AS ({keyed_rows_sql("lake", keys, f"time_stamp <= {time_literal(hi)}")}),
        at_hi AS ({latest_of_sql("lake_rows")}),
        moved AS (SELECT DISTINCT k FROM lake_rows WHERE time_stamp > {time_literal(lo)}),
        near AS (SELECT r.* FROM lake_rows r JOIN moved m ON r.k = m.k),
        at_t AS ({latest_of_sql("near", f"time_stamp <= {time_literal(t)}")}),
        at_lo AS ({latest_of_sql("near", f"time_stamp <= {time_literal(lo)}")}),
        state AS (
            SELECT h.k,
                CASE WHEN m.k IS NULL THEN {_live("h")} ELSE {_live("l")} END AS data_lo,
                CASE WHEN m.k IS NULL THEN {_live("h")} ELSE {_live("c")} END AS data_t,
                {_live("h")} AS data_hi,
                CASE WHEN m.k IS NULL THEN h.time_stamp ELSE c.time_stamp END AS time_t
            FROM at_hi h
            LEFT JOIN moved m ON h.k = m.k
            LEFT JOIN at_t c ON h.k = c.k
            LEFT JOIN at_lo l ON h.k = l.k
        )
    """


def _counts(table_count: str | None) -> str:
    counted = (
        f"""
        UNION ALL SELECT 'table_count', NULL, count(*), NULL, NULL, {_NO_TIME}, {_NO_TIME}
        FROM {table_count}"""
        if table_count
        else ""
    )
    return f"""
        UNION ALL SELECT 'lake_count', NULL, count(*), NULL, NULL, {_NO_TIME}, {_NO_TIME}
        FROM state WHERE data_t IS NOT NULL{counted}
    """


def snapshot_diff_sql(keys: Sequence[str], t: int, epsilon: int) -> str:
    """Findings of a full export at T against the lake: missing, extra, different keys."""
    return f"""
        WITH {state_sql(keys, t - epsilon, t, t + epsilon)},
        table_state AS (
            SELECT {key_expression(keys)} AS k, data FROM snapshot WHERE op <> 'D'
        ),
        drift AS (
            SELECT
                CASE WHEN s.k IS NULL THEN 'extra'
                     WHEN st.data_lo IS NULL AND st.data_hi IS NULL THEN 'missing'
                     ELSE 'different' END AS kind,
                coalesce(s.k, st.k) AS k,
                s.data AS table_data,
                coalesce(st.data_t, st.data_hi, st.data_lo) AS lake_data,
                {_NO_TIME} AS table_time,
                st.time_t AS lake_time
            FROM table_state s FULL OUTER JOIN state st ON s.k = st.k
            WHERE s.data IS DISTINCT FROM st.data_lo AND s.data IS DISTINCT FROM st.data_hi
        )
        SELECT * FROM (
            SELECT kind, k, CAST(NULL AS BIGINT) AS n, table_data, lake_data, table_time,
                lake_time FROM drift
            {_counts("table_state")}
        ) findings
        {_ORDER}
    """


def changes_diff_sql(keys: Sequence[str], t: int, epsilon: int, window_start: int) -> str:
    """Findings of an incremental export of ``[window_start, T)`` against the lake.

    Every key the export lists must have the lake's state at T equal to its final state
    (its new image, or gone). Lake events inside the window, ``ε`` away from its edges, for
    keys the export does not list are phantoms: changes the table never had. Except when
    the lake has the key absent both before the window and at T: AWS leaves a key inserted
    and deleted inside the window out of an incremental export.
    """
    return f"""
        WITH {state_sql(keys, t - epsilon, t, t + epsilon)},
        table_state AS (
            SELECT {key_expression(keys)} AS k,
                CASE WHEN op = 'D' THEN NULL ELSE data END AS data,
                data AS image, time_stamp AS write_time
            FROM snapshot
        ),
        drift AS (
            SELECT
                CASE WHEN s.data IS NULL THEN 'extra'
                     WHEN st.data_lo IS NULL AND st.data_hi IS NULL THEN 'missing'
                     ELSE 'different' END AS kind,
                s.k AS k,
                s.data AS table_data,
                coalesce(st.data_t, st.data_hi, st.data_lo) AS lake_data,
                s.write_time AS table_time,
                st.time_t AS lake_time
            FROM table_state s LEFT JOIN state st ON s.k = st.k
            WHERE s.data IS DISTINCT FROM st.data_lo AND s.data IS DISTINCT FROM st.data_hi
        ),
        unlisted AS (
            SELECT r.k, max(r.time_stamp) AS last_time, max(r.data) AS any_data
            FROM lake_rows r LEFT JOIN table_state s ON r.k = s.k
            WHERE s.k IS NULL
                AND r.time_stamp >= {time_literal(window_start + epsilon)}
                AND r.time_stamp < {time_literal(t - epsilon)}
            GROUP BY r.k
        ),
        unlisted_rows AS (
            SELECT r.* FROM lake_rows r JOIN unlisted u ON r.k = u.k
        ),
        before_window AS (
            {latest_of_sql("unlisted_rows", f"time_stamp < {time_literal(window_start)}")}
        ),
        phantom AS (
            SELECT 'phantom' AS kind, u.k AS k, CAST(NULL AS VARCHAR) AS table_data,
                u.any_data AS lake_data, {_NO_TIME} AS table_time, u.last_time AS lake_time
            FROM unlisted u
            LEFT JOIN before_window b ON u.k = b.k
            LEFT JOIN state st ON u.k = st.k
            -- AWS leaves out a key inserted and deleted inside the window: absent before it
            -- and at T in the lake too is that, not a phantom.
            WHERE NOT ({_live("b")} IS NULL AND st.data_lo IS NULL AND st.data_hi IS NULL)
        )
        SELECT * FROM (
            SELECT kind, k, CAST(NULL AS BIGINT) AS n, table_data, lake_data, table_time,
                lake_time FROM drift
            UNION ALL
            SELECT kind, k, CAST(NULL AS BIGINT), table_data, lake_data, table_time, lake_time
            FROM phantom
            UNION ALL SELECT 'table_count', NULL, count(*), NULL, NULL, {_NO_TIME}, {_NO_TIME}
            FROM table_state
            {_counts(None)}
        ) findings
        {_ORDER}
    """


def count_sql(keys: Sequence[str], t: int, events_from: int, events_to: int) -> str:
    """The lake's live items at T, and its events in ``(events_from, events_to]``."""
    return f"""
        WITH {state_sql(keys, t, t, t)}
        SELECT * FROM (
            SELECT 'events' AS kind, CAST(NULL AS VARCHAR) AS k, count(*) AS n,
                CAST(NULL AS VARCHAR) AS table_data, CAST(NULL AS VARCHAR) AS lake_data,
                {_NO_TIME} AS table_time, {_NO_TIME} AS lake_time
            FROM lake
            WHERE time_stamp > {time_literal(events_from)}
                AND time_stamp <= {time_literal(events_to)}
            {_counts(None)}
        ) findings
        {_ORDER}
    """


def to_trino(sql: str) -> str:
    """The same query in Athena's dialect (Trino), made by sqlglot from DuckDB's."""
    import sqlglot

    return str(sqlglot.transpile(sql, read="duckdb", write="trino", pretty=True)[0])
