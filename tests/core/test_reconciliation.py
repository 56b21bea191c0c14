"""Reconciliation's comparison on real Parquet lakes with DuckDB: every kind of drift found
with exactly the right keys, the ±ε tolerance at T and at the edges of a changes window,
repair and its re-check, the count bound, and the Trino dialect giving the same answers.

Lakes are written through the one lake writer from CDC rows built by the one row builder;
the table side ("snapshot") is what the conversion makes of an export: ``I`` rows at T for a
full export, one final-state row per changed key for an incremental one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from dynamo_lake.cdc import CdcRow, row_from_canonical
from dynamo_lake.codec import item_to_data
from dynamo_lake.lake.query import lake_dataset
from dynamo_lake.lake.writer import LakeTable, Stage, StagedWriter, publish
from dynamo_lake.reconciliation import sql
from dynamo_lake.reconciliation.compare import (
    KeyAttribute,
    compare_changes,
    compare_count,
    compare_export,
    key_json,
)
from dynamo_lake.reconciliation.engines import DuckDBEngine
from dynamo_lake.reconciliation.run import reconcile_table
from dynamo_lake.records import ReconciliationPlan
from dynamo_lake.storage import resolve

MS = 1_000
SECOND = 1_000_000
HOUR = 3_600 * SECOND
T = 1_717_243_200_000_000  # 2024-06-01T12:00:00Z
KEYS = [KeyAttribute("pk", "S"), KeyAttribute("sk", "N")]
_groups = itertools.count()


def item(pk: str, sk: int, value: str = "v1") -> str:
    return item_to_data({"pk": {"S": pk}, "sk": {"N": str(sk)}, "value": {"S": value}})


def row(op: str, time_stamp: int, data: str) -> CdcRow:
    return row_from_canonical(op, time_stamp, data)  # type: ignore[arg-type]


def write(location: Path, rows: Iterable[CdcRow]) -> None:
    """Publish ``rows`` into a lake table folder as one more group."""
    table = LakeTable(resolve(str(location)))
    stage = Stage(f"test-{next(_groups)}", "test")
    with StagedWriter(table, stage, "rows") as writer:
        writer.write(sorted(rows, key=lambda r: r.time_stamp))
    publish(table, stage, writer.staged)


def engine(lake: Path, snapshot: Path | None = None) -> DuckDBEngine:
    return DuckDBEngine(lake_dataset(str(lake)), lake_dataset(str(snapshot)) if snapshot else None)


def export_check(lake: Path, snapshot: Path, epsilon: int = SECOND) -> Any:
    running = engine(lake, snapshot)
    try:
        return compare_export(running, KEYS, T, epsilon)
    finally:
        running.close()


def keys_of(samples: list[str]) -> list[str]:
    return samples


BASE = [item("a", 1), item("b", 2), item("c", 3), item("d", 4)]


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    lake, snapshot = tmp_path / "lake", tmp_path / "snapshot"
    write(lake, [row("I", T - 2 * HOUR, data) for data in BASE])
    return lake, snapshot


def test_a_consistent_lake_has_no_drift(world: tuple[Path, Path]) -> None:
    lake, snapshot = world
    write(snapshot, [row("I", T, data) for data in BASE])
    found = export_check(lake, snapshot)
    assert (found.table_count, found.lake_count) == (4, 4)
    assert not found.drifted and found.counts == {}


def test_every_kind_of_drift_with_exactly_its_keys(world: tuple[Path, Path]) -> None:
    lake, snapshot = world
    # The table: b updated, c deleted (and its delete dropped), e inserted (dropped), f
    # TTL-deleted (delivered), g updated twice with records reordered and duplicated.
    write(lake, [row("I", T - HOUR, item("f", 6)), row("D", T - 30 * 60 * SECOND, item("f", 6))])
    g1, g2 = item("g", 7, "first"), item("g", 7, "second")
    write(lake, [row("U", T - 10 * SECOND, g2), row("I", T - 20 * SECOND, g1)])
    write(lake, [row("U", T - 10 * SECOND, g2)])  # a duplicated stream record
    # h expired by TTL (DynamoDB's own delete), and that REMOVE was lost on the stream.
    write(lake, [row("I", T - HOUR, item("h", 8))])
    table = [item("a", 1), item("b", 2, "v2"), item("d", 4), item("e", 5), g2]
    write(snapshot, [row("I", T, data) for data in table])

    found = export_check(lake, snapshot)

    assert found.samples == {
        "missing": ['{"pk":"e","sk":5}'],
        "extra": ['{"pk":"c","sk":3}', '{"pk":"h","sk":8}'],
        "different": ['{"pk":"b","sk":2}'],
    }
    assert found.counts == {"missing": 1, "extra": 2, "different": 1}
    assert (found.table_count, found.lake_count) == (5, 6)


def test_writes_near_t_are_not_drift_but_beyond_epsilon_they_are(
    world: tuple[Path, Path],
) -> None:
    lake, snapshot = world
    # A write 2 ms before T whose stream time is 3 ms after T: the export has it, the lake
    # at T does not, the lake at T + ε does.
    late = item("a", 1, "written just before T")
    write(lake, [row("U", T + 3 * MS, late)])
    # A write 1 ms after T whose stream time is 2 ms before T: the lake at T has it, the
    # export does not, the lake at T - ε does not.
    early = item("e", 5)
    write(lake, [row("I", T - 2 * MS, early)])
    table = [late, item("b", 2), item("c", 3), item("d", 4)]
    write(snapshot, [row("I", T, data) for data in table])

    assert not export_check(lake, snapshot, epsilon=SECOND).drifted
    strict = export_check(lake, snapshot, epsilon=0)  # no tolerance: both would cry wolf
    assert strict.samples == {"extra": ['{"pk":"e","sk":5}'], "different": ['{"pk":"a","sk":1}']}


def test_changes_after_t_never_raise_an_alarm(world: tuple[Path, Path]) -> None:
    lake, snapshot = world
    write(lake, [row("D", T + 10 * SECOND, item("a", 1)), row("I", T + HOUR, item("z", 9))])
    write(lake, [row("U", T + 2 * SECOND, item("b", 2, "after"))])
    write(snapshot, [row("I", T, data) for data in BASE])
    found = export_check(lake, snapshot)
    assert not found.drifted, found.samples


# --- the changes method ----------------------------------------------------------------------

DAY = 24 * HOUR
START = T - DAY


def changes_check(lake: Path, snapshot: Path, epsilon: int = SECOND) -> Any:
    running = engine(lake, snapshot)
    try:
        return compare_changes(running, KEYS, T, epsilon, START)
    finally:
        running.close()


def test_changes_finds_each_kind_and_phantoms(tmp_path: Path) -> None:
    lake, snapshot = tmp_path / "lake", tmp_path / "snapshot"
    before = START - HOUR
    write(lake, [row("I", before, data) for data in BASE])
    # The day's changes, as the table had them (the incremental export: final state only).
    b2, e1 = item("b", 2, "v2"), item("e", 5)
    write(
        snapshot,
        [
            row("U", START + HOUR, b2),  # update, dropped by the stream
            row("D", START + 2 * HOUR, item("c", 3)),  # delete, dropped
            row("I", START + 3 * HOUR, e1),  # insert, dropped
            row("U", START + 4 * HOUR, item("d", 4, "v2")),  # delivered
        ],
    )
    write(lake, [row("U", START + 4 * HOUR, item("d", 4, "v2"))])
    # A change the table never had, in the window: a phantom. One at the window's edge
    # (within ε of its start) is not.
    write(lake, [row("U", START + 5 * HOUR, item("a", 1, "phantom"))])
    write(lake, [row("I", START + 300 * MS, item("y", 8))])

    found = changes_check(lake, snapshot)

    assert found.samples == {
        "missing": ['{"pk":"e","sk":5}'],
        "extra": ['{"pk":"c","sk":3}'],
        "different": ['{"pk":"b","sk":2}'],
        "phantom": ['{"pk":"a","sk":1}'],
    }
    assert found.table_count == 4  # keys the export lists


def test_repair_makes_the_next_check_clean_and_a_second_repair_writes_nothing(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    lake, snapshot = world
    table = [item("a", 1), item("b", 2, "v2"), item("d", 4), item("e", 5)]
    write(snapshot, [row("I", T, data) for data in table])
    plan = ReconciliationPlan(
        table="orders",
        dynamodb_table="orders",
        table_arn="arn:aws:dynamodb:us-east-1:123456789012:table/orders",
        lake_uri=str(lake),
        work_uri=str(snapshot),
        method="export",
        as_of=T,
        epsilon_ms=1000,
        repair=True,
        engine="duckdb",
        keys=(("pk", "S"), ("sk", "N")),
        run_id="manual__2024-06-01",
        aws_conn_id="aws_default",
        region="us-east-1",
        glue_database="shop",
        glue_table="orders",
    )
    first = reconcile_table(plan, s3=None)
    assert first.status == "drift"
    assert (first.missing, first.extra, first.different) == (1, 1, 1)
    assert first.repair is not None and first.repair["rows"] == 3
    assert first.repair["recheck"]["status"] == "ok"
    assert first.repair["by_kind"] == {"missing": 1, "extra": 1, "different": 1}
    files = sorted(path.name for path in lake.rglob("*.parquet") if "_" not in path.parts[-4])

    second = reconcile_table(plan, s3=None)
    assert second.status == "ok" and second.repair == {
        "group": None,
        "rows": 0,
        "by_kind": {},
        "files": 0,
        "recheck": None,
    }
    assert (
        sorted(path.name for path in lake.rglob("*.parquet") if "_" not in path.parts[-4]) == files
    )
    # Reports: one per run under _reconciliation/, the newest also as latest.json.
    reports = sorted(path.name for path in (lake / "_reconciliation").iterdir())
    assert reports == ["20240601T120000000000Z--manual__2024-06-01.json", "latest.json"]


# --- counts ------------------------------------------------------------------------------------


def test_a_count_passes_within_the_events_in_its_window(world: tuple[Path, Path]) -> None:
    lake, _ = world
    write(lake, [row("I", T - 10 * SECOND, item("e", 5)), row("D", T - 5 * SECOND, item("a", 1))])
    running = engine(lake)
    try:
        close = compare_count(
            running,
            KEYS,
            method="count",
            table_count=6,
            lake_moment=T,
            events_from=T - HOUR,
            events_to=T,
            slack=0,
            reasoning="test",
        )
        far = compare_count(
            running,
            KEYS,
            method="count",
            table_count=9,
            lake_moment=T,
            events_from=T - HOUR,
            events_to=T,
            slack=0,
            reasoning="test",
        )
    finally:
        running.close()
    assert (close.lake_count, close.events, close.bound) == (4, 2, 2)
    assert not close.drifted  # |6 - 4| = 2 <= 2 events
    assert far.drifted and "a bound of 2; the difference is 5" in far.reasoning


# --- one SQL, two dialects --------------------------------------------------------------------


def test_the_trino_dialect_gives_the_same_answers(tmp_path: Path) -> None:
    import sqlglot

    lake, snapshot = tmp_path / "lake", tmp_path / "snapshot"
    write(lake, [row("I", START - HOUR, data) for data in BASE])
    write(lake, [row("U", START + HOUR, item("a", 1, "x")), row("D", T + 2 * MS, item("b", 2))])
    write(snapshot, [row("I", T, data) for data in [item("a", 1, "x"), item("c", 3)]])
    queries = [
        sql.snapshot_diff_sql(["pk", "sk"], T, SECOND),
        sql.changes_diff_sql(["pk", "sk"], T, SECOND, START),
        sql.count_sql(["pk", "sk"], T, T - DAY, T),
    ]
    running = engine(lake, snapshot)
    try:
        for query in queries:
            trino = sql.to_trino(query)
            sqlglot.parse_one(trino, read="trino")  # valid Trino, as sqlglot reads it
            back = sqlglot.transpile(trino, read="trino", write="duckdb")[0]
            assert list(running.findings(back)) == list(running.findings(query))
    finally:
        running.close()


def test_keys_are_reported_as_canonical_json() -> None:
    keys = [KeyAttribute("sk", "N"), KeyAttribute("pk", "S"), KeyAttribute("blob", "B")]
    assert key_json('12.5\x1fcustomer "1"\x1fAAE=', keys) == (
        '{"blob":"AAE=","pk":"customer \\"1\\"","sk":12.5}'
    )


def test_a_key_inserted_and_deleted_inside_the_window_is_not_a_phantom(tmp_path: Path) -> None:
    """AWS's incremental export leaves such a key out; the lake holds its insert and its
    delete. A key the lake invents inside the window and still has at T is a phantom."""
    lake, snapshot = tmp_path / "lake", tmp_path / "snapshot"
    write(lake, [row("I", START - HOUR, data) for data in BASE])
    brief = item("t", 20)
    write(lake, [row("I", START + HOUR, brief), row("D", START + 2 * HOUR, brief)])
    write(lake, [row("I", START + 3 * HOUR, item("x", 21))])  # the table never had it
    write(snapshot, [row("U", START + HOUR, item("a", 1, "v2"))])
    write(lake, [row("U", START + HOUR, item("a", 1, "v2"))])
    found = changes_check(lake, snapshot)
    assert found.samples == {"phantom": ['{"pk":"x","sk":21}']}
