"""The current state's merge: the contract's latest-state rule, in any order, any grouping.

The merge of a state with events must equal the latest state of all events at once, for
every split of a history into files and every order the files arrive in (a late file, a
repair stamped in the past, a backfill of an old window). Histories are generated with few
keys and few distinct times, so ties (same microsecond, same op, same key) are common.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_lake.contract import OP_RANK
from dynamo_lake.errors import ConfigError
from dynamo_lake.lake.query import KEYED_SCHEMA
from dynamo_lake.state.merge import (
    STATE_SCHEMA,
    bucket_of,
    bucket_sql,
    check_buckets,
    default_buckets,
    live,
    merge_rows,
)

BASE = 1_700_000_000_000_000  # µs
Event = tuple[str, str, int, str, str]  # key, op, time µs, uuid, data


def events_table(events: list[Event]) -> pa.Table:
    columns: dict[str, list[object]] = {name: [] for name in KEYED_SCHEMA.names}
    for key, op, micros, uuid, data in events:
        columns["k"].append(key)
        columns["op"].append(op)
        columns["time_stamp"].append(
            datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)
        )
        columns["uuid"].append(uuid)
        columns["data"].append(data)
        columns["stream"].append(True)
    return pa.table(
        {
            name: pa.array(columns[name], KEYED_SCHEMA.field(name).type)
            for name in KEYED_SCHEMA.names
        }
    )


def reference(events: list[Event]) -> dict[str, tuple[str, int, str, str | None]]:
    """The contract's rule written out: per key the greatest (time, op rank, uuid), then
    data (which decides only between rows a forged writer made: uuids are functions of op,
    time and data)."""
    best: dict[str, tuple[int, int, str, str, str]] = {}
    for key, op, micros, uuid, data in events:
        candidate = (micros, OP_RANK[op], uuid, data, op)
        if key not in best or candidate[:4] > best[key][:4]:
            best[key] = candidate
    # A tombstone keeps no data.
    return {
        key: (value[4], value[0], value[2], None if value[4] == "D" else value[3])
        for key, value in best.items()
    }


def as_dict(state: pa.Table) -> dict[str, tuple[str, int, str, str | None]]:
    rows = state.to_pylist()
    assert len({row["key"] for row in rows}) == len(rows), "a key appears twice in the state"
    return {row["key"]: (row["op"], row["time_stamp_us"], row["uuid"], row["data"]) for row in rows}


event = st.tuples(
    st.sampled_from(['["a"]', '["b"]', '["a\\u001fb"]', '["1e2"]', '["100"]']),
    st.sampled_from(["I", "U", "D"]),
    st.integers(0, 3).map(lambda step: BASE + step),
    st.sampled_from(["u1", "u2", "u3"]),
    st.sampled_from(['{"v":1}', '{"v":2}', '{"v":"x\\u001fy"}']),
)


@settings(max_examples=300, deadline=None)
@given(
    history=st.lists(event, max_size=30),
    cuts=st.lists(st.integers(0, 30), max_size=4),
    order=st.randoms(use_true_random=False),
)
def test_any_split_in_any_order_merges_to_the_latest_state(
    history: list[Event], cuts: list[int], order: object
) -> None:
    bounds = sorted({0, len(history), *(min(cut, len(history)) for cut in cuts)})
    files = [history[start:end] for start, end in itertools.pairwise(bounds)]
    order.shuffle(files)  # type: ignore[attr-defined]
    connection = duckdb.connect()
    state = STATE_SCHEMA.empty_table()
    for file in files:
        state = merge_rows(state, events_table(file), 8, connection=connection)
    # A file merged twice (a retried run) changes nothing: the rule is idempotent.
    if files:
        again = merge_rows(state, events_table(files[0]), 8, connection=connection)
        assert again.equals(state)
    assert as_dict(state) == reference(history)
    all_at_once = merge_rows(STATE_SCHEMA.empty_table(), events_table(history), 8)
    assert all_at_once.equals(state)
    assert {row["key"] for row in live(state).to_pylist()} == {
        key for key, value in reference(history).items() if value[0] != "D"
    }


def test_a_late_older_insert_never_resurrects_a_deleted_key() -> None:
    """The delete stays as a tombstone, so an insert published later but stamped before it
    loses, as it does in the log."""
    state = merge_rows(
        STATE_SCHEMA.empty_table(),
        events_table([("k", "I", BASE, "u1", "{}"), ("k", "D", BASE + 10, "u2", "{}")]),
        4,
    )
    assert live(state).num_rows == 0 and state.num_rows == 1
    late = merge_rows(state, events_table([("k", "U", BASE + 5, "u9", '{"late":1}')]), 4)
    assert late.equals(state)


def test_events_without_a_key_or_a_time_are_not_state() -> None:
    table = events_table([("k", "I", BASE, "u1", "{}")])
    keyless = table.set_column(
        table.schema.get_field_index("k"), "k", pa.array([None], pa.string())
    )
    assert merge_rows(STATE_SCHEMA.empty_table(), keyless, 4).num_rows == 0


@settings(max_examples=200, deadline=None)
@given(key=st.text(max_size=40), power=st.integers(0, 12))
def test_duckdb_and_python_agree_on_every_bucket(key: str, power: int) -> None:
    buckets = 2**power
    ((sql,),) = duckdb.execute(f"SELECT {bucket_sql('?', buckets)}", [key]).fetchall()
    assert sql == bucket_of(key, buckets)
    digest = hashlib.md5(key.encode(), usedforsecurity=False).digest()
    assert bucket_of(key, buckets) == int.from_bytes(digest[:4], "big") % buckets


@pytest.mark.parametrize("buckets", [0, 3, 6, 8192, -2, True, 2.0, "8"])
def test_bucket_counts_that_engines_cannot_agree_on_are_refused(buckets: object) -> None:
    with pytest.raises(ConfigError, match="power of two from 1 to 4096"):
        check_buckets(buckets)  # type: ignore[arg-type]


def test_the_default_bucket_count_follows_the_table_size() -> None:
    assert [default_buckets(n) for n in (0, 1_000_000, 1_000_001, 10_000_000, 10**12)] == [
        1,
        1,
        2,
        16,
        4096,
    ]
