"""The reconciliation's SQL, written once (DuckDB's dialect) over two relations in the lake's
keyed form (:data:`~dynamo_lake.lake.query.KEYED_SCHEMA`: ``uuid, op, time_stamp, data``,
each row's exact key ``k`` and ``stream``, whether the stream wrote it):

* ``lake``: the lake table's rows;
* ``snapshot``: the table side, converted by the same conversion as any export: a full
  export at T (every item an ``I`` row) or an incremental export of ``[W, T)`` (one row per
  changed key: its final state, stamped with its write time).

The lake's state is taken at three cuts: ``lo = T - ε``, ``T`` and ``hi = T + ε``. Stream
times are approximate, so a key is drift only if the lake differs from the table both at
``lo`` and at ``hi`` (:func:`state_sql`). One aggregation over the lake (rows up to
``hi``) decides the latest row per key (:func:`~dynamo_lake.lake.query.latest_of_sql`);
the other cuts are computed only for the few keys with an event after ``lo``.

**Precision.** An engine that reads ``time_stamp`` at whole milliseconds (Athena on the
Hive-format log table) cannot order two events of a key within one millisecond, nor tell on
which side of a cut an event stamped on the cut's millisecond lies. With ``precision`` 1000
the state also says, per cut, whether it is *ambiguous*: the candidates for the key's state
there (each event of the last millisecond before the cut, each event on the cut's
millisecond, and absence when nothing came before) differ. Such a key is reported as
``ambiguous``, never ruled on. At ``precision`` 1 (DuckDB, microseconds) the tie rule
decides every order and nothing is ambiguous; that SQL carries none of it.

Every query returns *findings*: rows ``(kind, k, n, table_data, lake_data, table_time,
lake_time, lake_uuid)`` ordered by kind and key, where ``kind`` is ``missing``, ``extra``,
``different``, ``phantom`` or ``ambiguous`` (one row per key), or one of the counts
``table_count``, ``lake_count``, ``events``, ``keyless_lake``, ``keyless_table`` (one row,
``n`` set). The engine streams them; nothing holds every item in Python.
:func:`to_trino` makes Athena's dialect of the same text with sqlglot.
"""

from __future__ import annotations

from dynamo_lake.lake.query import keyed_rows_sql, latest_of_sql, time_literal

__all__ = [
    "COUNT_KINDS",
    "FINDING_COLUMNS",
    "changes_diff_sql",
    "count_sql",
    "snapshot_diff_sql",
    "state_sql",
    "to_trino",
]

FINDING_COLUMNS = (
    "kind",
    "k",
    "n",
    "table_data",
    "lake_data",
    "table_time",
    "lake_time",
    "lake_uuid",
)
COUNT_KINDS = ("table_count", "lake_count", "events", "keyless_lake", "keyless_table")
_ORDER = (
    "ORDER BY CASE kind WHEN 'table_count' THEN 0 WHEN 'lake_count' THEN 1 "
    "WHEN 'events' THEN 2 WHEN 'keyless_lake' THEN 3 WHEN 'keyless_table' THEN 4 ELSE 5 END, "
    "kind, k"
)
_NO_TIME = "CAST(NULL AS TIMESTAMPTZ)"
_NO_TEXT = "CAST(NULL AS VARCHAR)"
_NO_COUNT = "CAST(NULL AS BIGINT)"
#: What a row leaves a key as: ``D`` (absent) or ``L`` and its data (live). Two rows leave
#: the same state iff their markers are equal.
_MARKER = "CASE WHEN op = 'D' THEN 'D' ELSE 'L' || data END"


def _live(alias: str) -> str:
    return f"CASE WHEN {alias}.op = 'D' THEN NULL ELSE {alias}.data END"


def _count_row(
    kind: str, relation: str, where: str = "TRUE", what: str = "count(*)", sample: str = _NO_TEXT
) -> str:
    return (
        f"SELECT '{kind}' AS kind, {_NO_TEXT} AS k, {what} AS n, {_NO_TEXT} AS table_data, "
        f"{_NO_TEXT} AS lake_data, {_NO_TIME} AS table_time, {_NO_TIME} AS lake_time, "
        f"{sample} AS lake_uuid FROM {relation} WHERE {where}"
    )


def state_sql(lo: int, t: int, hi: int, precision: int = 1, *, base: bool = False) -> str:
    """CTEs ending in ``state(k, data_lo, data_t, data_hi, time_t, uuid_t, amb_lo, amb_t,
    amb_hi)``: each key's live data (NULL if absent or deleted) at the three cuts, the time
    and uuid of its latest row at T, and whether each cut is ambiguous at ``precision`` µs
    (always false at 1). Also defines ``lake_rows``: the keyed lake rows up to ``hi``.

    ``base``: the lake side is a current-state snapshot (the relation ``base``: one row per
    key, every one at or before ``lo``) and ``lake`` holds only the rows beside it. Then
    ``lake_rows`` is both, and the latest row at ``hi`` is aggregated only for the keys
    ``lake`` touches; every other key's is its ``base`` row as it stands (the same rows the
    aggregation would pick, without aggregating the whole state)."""
    cut = f"time_stamp <= {time_literal(hi)}"
    if not base:
        rows = f"lake_rows AS ({keyed_rows_sql('lake', cut)})"
        at_hi = f"at_hi AS ({latest_of_sql('lake_rows')})"
    else:
        if precision > 1:
            raise ValueError("a current-state base is read at microseconds (precision 1)")
        rows = f"""base_rows AS ({keyed_rows_sql("base", cut)}),
        event_rows AS ({keyed_rows_sql("lake", cut)}),
        lake_rows AS (SELECT * FROM base_rows UNION ALL SELECT * FROM event_rows),
        touched AS (SELECT DISTINCT k FROM event_rows),
        touched_rows AS (
            SELECT b.* FROM base_rows b JOIN touched t ON b.k = t.k
            UNION ALL SELECT * FROM event_rows
        )"""
        at_hi = f"""at_hi AS (
            {latest_of_sql("touched_rows")}
            UNION ALL
            SELECT b.k, b.op, b.data, b.time_stamp, {_NO_TEXT} AS uuid
            FROM base_rows b LEFT JOIN touched t ON b.k = t.k WHERE t.k IS NULL
        )"""
    if precision <= 1:
        return f"""
        {rows},
        {at_hi},
        moved AS (SELECT DISTINCT k FROM lake_rows WHERE time_stamp > {time_literal(lo)}),
        near AS (SELECT r.* FROM lake_rows r JOIN moved m ON r.k = m.k),
        at_t AS ({latest_of_sql("near", f"time_stamp <= {time_literal(t)}", with_uuid=True)}),
        at_lo AS ({latest_of_sql("near", f"time_stamp <= {time_literal(lo)}")}),
        state AS (
            SELECT h.k,
                CASE WHEN m.k IS NULL THEN {_live("h")} ELSE {_live("l")} END AS data_lo,
                CASE WHEN m.k IS NULL THEN {_live("h")} ELSE {_live("c")} END AS data_t,
                {_live("h")} AS data_hi,
                CASE WHEN m.k IS NULL THEN h.time_stamp ELSE c.time_stamp END AS time_t,
                c.uuid AS uuid_t,  -- unmoved keys: looked up for the findings only
                FALSE AS amb_lo, FALSE AS amb_t, FALSE AS amb_hi
            FROM at_hi h
            LEFT JOIN moved m ON h.k = m.k
            LEFT JOIN at_t c ON h.k = c.k
            LEFT JOIN at_lo l ON h.k = l.k
        )
        """
    # Coarse times: events of one key in one millisecond form a group whose order is unknown.
    cuts = {"lo": lo, "t": t, "hi": hi}
    per_cut = []
    for name, moment in cuts.items():
        at = time_literal(moment)
        per_cut.append(
            f"""
                arg_max(latest, time_stamp) FILTER (WHERE time_stamp <= {at}) AS latest_{name},
                max(time_stamp) FILTER (WHERE time_stamp <= {at}) AS time_{name},
                arg_max(low, time_stamp) FILTER (WHERE time_stamp < {at}) AS before_low_{name},
                arg_max(high, time_stamp) FILTER (WHERE time_stamp < {at}) AS before_high_{name},
                max(low) FILTER (WHERE time_stamp = {at}) AS on_low_{name},
                max(high) FILTER (WHERE time_stamp = {at}) AS on_high_{name}"""
        )
    states = []
    for name in cuts:
        states.append(
            f"CASE WHEN substr(latest_{name}, 1, 1) = 'D' THEN NULL "
            f"ELSE substr(latest_{name}, 38) END AS data_{name}"
        )
        # Ambiguous: the last group before the cut holds different states, or a group on
        # the cut's millisecond adds a state other than the one before it (absence if none).
        states.append(
            f"(coalesce(before_low_{name} <> before_high_{name}, FALSE) OR "
            f"(on_low_{name} IS NOT NULL AND least(coalesce(before_low_{name}, 'D'), "
            f"on_low_{name}) <> greatest(coalesce(before_high_{name}, 'D'), on_high_{name})))"
            f" AS amb_{name}"
        )
    return f"""
        {rows},
        groups AS (
            SELECT k, time_stamp,
                arg_max(op || rpad(uuid, 36, ' ') || data, (rnk, uuid)) AS latest,
                min({_MARKER}) AS low, max({_MARKER}) AS high
            FROM lake_rows GROUP BY k, time_stamp
        ),
        per_cut AS (
            SELECT k, {",".join(per_cut)}
            FROM groups GROUP BY k
        ),
        state AS (
            SELECT k, {", ".join(states)}, time_t,
                rtrim(substr(latest_t, 2, 36)) AS uuid_t
            FROM per_cut
        )
        """


def _judged(table_join: str) -> str:
    """The table's state against the lake's per key: ``matches`` when an unambiguous cut
    agrees, ``unsure`` when a cut that might decide is ambiguous."""
    return f"""
        judged AS (
            SELECT coalesce(s.k, st.k) AS k, s.data AS table_data, s.write_time AS table_time,
                st.data_lo, st.data_hi, coalesce(st.data_t, st.data_hi, st.data_lo) AS lake_data,
                st.time_t AS lake_time, st.uuid_t AS lake_uuid,
                (NOT coalesce(st.amb_lo, FALSE) AND s.data IS NOT DISTINCT FROM st.data_lo)
                    OR (NOT coalesce(st.amb_hi, FALSE)
                        AND s.data IS NOT DISTINCT FROM st.data_hi) AS matches,
                coalesce(st.amb_lo, FALSE) OR coalesce(st.amb_hi, FALSE) AS unsure,
                s.listed
            FROM {table_join}
        ),
        found AS MATERIALIZED (
            SELECT
                CASE WHEN unsure THEN 'ambiguous'
                     WHEN table_data IS NULL THEN 'extra'
                     WHEN data_lo IS NULL AND data_hi IS NULL THEN 'missing'
                     ELSE 'different' END AS kind,
                k, {_NO_COUNT} AS n, table_data, lake_data, table_time, lake_time, lake_uuid
            FROM judged WHERE NOT matches
        ),
        deciding AS (
            -- The uuid of each finding's deciding lake event (its latest row at T), looked
            -- up for the few keys found rather than carried for every key of the lake.
            SELECT r.k, arg_max(r.uuid, (r.time_stamp, r.rnk, r.uuid)) AS uuid
            FROM lake_rows r JOIN found f ON r.k = f.k
            WHERE f.lake_uuid IS NULL AND r.time_stamp <= f.lake_time
            GROUP BY r.k
        ),
        drift AS (
            SELECT f.kind, f.k, f.n, f.table_data, f.lake_data, f.table_time, f.lake_time,
                coalesce(f.lake_uuid, d.uuid) AS lake_uuid
            FROM found f LEFT JOIN deciding d ON f.k = d.k
        )"""


def _keyless() -> str:
    """Rows without a key, counted, with one uuid to show."""
    return f"""
            UNION ALL {_count_row("keyless_lake", "lake", "k IS NULL", sample="max(uuid)")}
            UNION ALL {_count_row("keyless_table", "snapshot", "k IS NULL", sample="max(uuid)")}"""


def snapshot_diff_sql(t: int, epsilon: int, precision: int = 1, *, base: bool = False) -> str:
    """Findings of a full export at T against the lake: missing, extra, different keys
    (and ambiguous ones at a coarse ``precision``). ``base``: see :func:`state_sql`."""
    return f"""
        WITH {state_sql(t - epsilon, t, t + epsilon, precision, base=base)},
        table_state AS (
            SELECT k, data, {_NO_TIME} AS write_time, TRUE AS listed
            FROM snapshot WHERE op <> 'D' AND k IS NOT NULL
        ),
        {_judged("table_state s FULL OUTER JOIN state st ON s.k = st.k")}
        SELECT * FROM (
            SELECT * FROM drift
            UNION ALL {_count_row("table_count", "table_state")}
            UNION ALL {_count_row("lake_count", "state", "data_t IS NOT NULL")}
            {_keyless()}
        ) findings
        {_ORDER}
    """


def changes_diff_sql(
    t: int, epsilon: int, window_start: int, precision: int = 1, *, base: bool = False
) -> str:
    """Findings of an incremental export of ``[W, T)`` (``W`` = ``window_start``) against
    the lake.

    Every key the export lists must have the lake's state at T equal to its final state
    (its new image, or gone). Keys it does not list did not change in DynamoDB during the
    window, so a lake event the *stream* wrote in ``[W + ε, T - ε)`` that changes such a
    key's state (its state differs from the one before it, by the tie rule) is a
    **phantom**: a change the table never had. Rows of backfills and repairs restate what
    the table had and are never phantoms, nor is an event that leaves the state as it was
    (a duplicate delivery). A key the lake has absent both around ``W`` and around T is not
    one either: AWS leaves a key inserted and deleted inside the window out of an
    incremental export.

    Consecutive runs tile time: the planner starts each window ``2ε`` before the previous
    run's T, so each phantom range begins where the previous one ended (``T_prev - ε``),
    and every change in a range lies in the export window even when its stream time is
    ``ε`` off.
    """
    start, end = window_start + epsilon, t - epsilon
    around = (window_start - epsilon, window_start + epsilon)
    in_range = (
        f"r.time_stamp >= {time_literal(start)} AND r.time_stamp < {time_literal(end)}"
        if precision <= 1
        else f"r.time_stamp >= {time_literal(start)} AND r.time_stamp <= {time_literal(end)}"
    )
    unsure = "FALSE"
    if precision > 1:
        # The cuts this rule reads, and stream events of one key in one millisecond with
        # different states, make a candidate ambiguous at coarse precision.
        edges = ", ".join(
            time_literal(moment)
            for moment in (start, end, around[0], around[1], t - epsilon, t + epsilon)
        )
        unsure = f"""(
            EXISTS (SELECT 1 FROM history x WHERE x.k = c.k AND x.time_stamp IN ({edges}))
            OR EXISTS (
                SELECT 1 FROM history x WHERE x.k = c.k
                GROUP BY x.time_stamp HAVING min(x.marker) <> max(x.marker)
            )
        )"""
    return f"""
        WITH {state_sql(t - epsilon, t, t + epsilon, precision, base=base)},
        table_state AS (
            -- A key two exports list (the lead-in's and the day's): its latest change.
            SELECT k, CASE WHEN op = 'D' THEN NULL ELSE data END AS data,
                time_stamp AS write_time, TRUE AS listed
            FROM ({latest_of_sql(f"({keyed_rows_sql('snapshot')}) listed")}) final_state
        ),
        {_judged("table_state s LEFT JOIN state st ON s.k = st.k")},
        candidates AS (
            SELECT DISTINCT r.k FROM lake_rows r LEFT JOIN table_state s ON r.k = s.k
            WHERE s.k IS NULL AND r.stream AND {in_range}
        ),
        history AS (
            SELECT r.k, r.op, r.data, r.time_stamp, r.uuid, r.stream, r.rnk,
                {_live("r")} AS live, {_MARKER.replace("op", "r.op").replace("data", "r.data")}
                    AS marker,
                -- The same event in a backfill's file and the stream's (one uuid): the
                -- backfill's first, so the stream's copy restates it and is no phantom,
                -- whichever file the engine happens to scan first.
                lag({_live("r")}) OVER (
                    PARTITION BY r.k ORDER BY r.time_stamp, r.rnk, r.uuid, r.stream
                ) AS live_before
            FROM lake_rows r JOIN candidates c ON r.k = c.k
        ),
        changed AS (
            SELECT r.k, count(*) AS changes, max(r.time_stamp) AS last_time,
                arg_max(r.uuid, (r.time_stamp, r.rnk, r.uuid)) AS last_uuid,
                arg_max(r.data, (r.time_stamp, r.rnk, r.uuid)) AS last_data
            FROM history r
            WHERE r.stream AND {in_range} AND r.live IS DISTINCT FROM r.live_before
            GROUP BY r.k
        ),
        around_start AS (
            -- arg_max skips NULL values, so the latest op says absence ('D' or no row).
            SELECT k,
                arg_max(op, (time_stamp, rnk, uuid))
                    FILTER (WHERE time_stamp < {time_literal(around[0])}) AS op_lo,
                arg_max(op, (time_stamp, rnk, uuid))
                    FILTER (WHERE time_stamp <= {time_literal(around[1])}) AS op_hi
            FROM history GROUP BY k
        ),
        phantom AS (
            SELECT CASE WHEN {unsure} THEN 'ambiguous' ELSE 'phantom' END AS kind,
                c.k AS k, {_NO_COUNT} AS n, {_NO_TEXT} AS table_data,
                coalesce(g.last_data, st.data_t) AS lake_data, {_NO_TIME} AS table_time,
                coalesce(g.last_time, st.time_t) AS lake_time,
                coalesce(g.last_uuid, st.uuid_t) AS lake_uuid
            FROM candidates c
            LEFT JOIN changed g ON c.k = g.k
            LEFT JOIN around_start a ON c.k = a.k
            LEFT JOIN state st ON c.k = st.k
            WHERE {unsure} OR (
                g.k IS NOT NULL
                -- absent around W and around T: inserted and deleted inside the window
                AND NOT (
                    (coalesce(a.op_lo, 'D') = 'D' OR coalesce(a.op_hi, 'D') = 'D')
                    AND (st.data_lo IS NULL OR st.data_hi IS NULL)
                )
            )
        )
        SELECT * FROM (
            SELECT * FROM drift
            UNION ALL SELECT * FROM phantom
            UNION ALL {_count_row("table_count", "table_state")}
            UNION ALL {_count_row("lake_count", "state", "data_t IS NOT NULL")}
            {_keyless()}
        ) findings
        {_ORDER}
    """


def count_sql(t: int, events_from: int, events_to: int, precision: int = 1) -> str:
    """The lake's live items at T (and, at a coarse ``precision``, the keys ambiguous
    there), and the distinct events the stream wrote in ``(events_from, events_to]``.

    Only stream events bound how far a count may move: backfill and repair rows restate
    the table, and a re-delivered record is one event (one uuid)."""
    if precision <= 1:
        window = (
            f"time_stamp > {time_literal(events_from)} AND time_stamp <= {time_literal(events_to)}"
        )
    else:  # an event on either edge's millisecond may lie inside
        window = (
            f"time_stamp >= {time_literal(events_from)} AND time_stamp <= {time_literal(events_to)}"
        )
    ambiguous = (
        "" if precision <= 1 else f"UNION ALL {_count_row('ambiguous_count', 'state', 'amb_t')}"
    )
    return f"""
        WITH {state_sql(t, t, t, precision)}
        SELECT * FROM (
            {_count_row("events", "lake", f"stream AND {window}", "count(DISTINCT uuid)")}
            UNION ALL {_count_row("lake_count", "state", "data_t IS NOT NULL")}
            UNION ALL {_count_row("keyless_lake", "lake", "k IS NULL", sample="max(uuid)")}
            {ambiguous}
        ) findings
        {_ORDER}
    """


def to_trino(sql: str) -> str:
    """The same query in Athena's dialect (Trino), made by sqlglot from DuckDB's. Trino has
    no ``MATERIALIZED`` hint for a common table expression: it is dropped."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read="duckdb")
    for cte in tree.find_all(exp.CTE):
        cte.set("materialized", None)
    return tree.sql(dialect="trino", pretty=True)
