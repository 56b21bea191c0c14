"""Reconciliation from the current state: a snapshot at W and the log since it give the
verdict and the findings the whole log gives (the log-based comparison is the oracle), late
files and tombstones included; a table without a state, or without a snapshot early
enough, or with a state that cannot be read, is compared with the log; the report says
which basis it read and how many bytes.

The model-based scenarios (tests/model/test_scenarios.py) run the same differential on 200
generated histories, from every snapshot early enough and bucket by bucket.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from test_reconciliation import HOUR, KEYS, SECOND, T, item, plan_for, row, write

from dynamo_lake.errors import StateError
from dynamo_lake.lake.query import lake_dataset
from dynamo_lake.reconciliation.compare import compare_changes
from dynamo_lake.reconciliation.engines import DuckDBEngine, ReconciliationEngineError
from dynamo_lake.reconciliation.run import reconcile_table
from dynamo_lake.reconciliation.state_basis import choose_basis, snapshot_bound
from dynamo_lake.state.current import (
    StateTarget,
    current_snapshot,
    merge_state,
    open_catalog,
    open_state_table,
)
from dynamo_lake.storage import resolve

MINUTE = 60 * SECOND


def target(lake: Path) -> StateTarget:
    return StateTarget(str(lake), "shop", "orders", ("pk", "sk"), 4)


def history(lake: Path) -> None:
    """Four keys before W = T - 1 h, one of them deleted (a tombstone in the state)."""
    write(lake, [row("I", T - 3 * HOUR, item(pk, n)) for n, pk in enumerate("abcd", 1)])
    write(lake, [row("D", T - 2 * HOUR, item("d", 4))])


def both(plan: Any) -> tuple[Any, Any]:
    """The report from the state and the report from the whole log."""
    from_state = reconcile_table(plan, s3=None, write=False)
    from_log = reconcile_table(plan, s3=None, write=False, from_state=False)
    return from_state, from_log


def verdict(report: Any) -> tuple[Any, ...]:
    return (
        report.status,
        report.table_count,
        report.lake_count,
        report.missing,
        report.extra,
        report.different,
        report.phantoms,
        report.samples,
    )


def test_a_check_reads_the_snapshot_and_the_log_since_its_watermark(tmp_path: Path) -> None:
    lake, export = tmp_path / "lake", tmp_path / "export"
    history(lake)
    merge_state(target(lake), T - HOUR)
    # After the merge: a change after W, a late file with a change before W (not merged:
    # it must be read whole), and a delete of a key the state holds live.
    write(lake, [row("U", T - 30 * MINUTE, item("a", 1, "v2"))])
    write(lake, [row("U", T - 90 * MINUTE, item("b", 2, "late"))])
    write(lake, [row("D", T - 10 * MINUTE, item("c", 3))])
    # The table: a v2, b late, c deleted, e inserted (its record lost on the stream).
    write(
        export,
        [row("I", T, data) for data in (item("a", 1, "v2"), item("b", 2, "late"), item("e", 5))],
    )

    from_state, from_log = both(plan_for(lake, export, "r1"))

    assert verdict(from_state) == verdict(from_log)
    assert (from_state.status, from_state.missing, from_state.lake_count) == ("drift", 1, 2)
    assert from_state.cost["basis"] == "current state"
    assert from_state.cost["watermark"] == "2024-06-01T11:00:00.000000Z"
    assert from_state.cost["rows_read"] == 3  # the three files written after the merge
    assert from_state.cost["unmerged_files"] == 3
    # In one process, bucket by bucket (never one DuckDB over the whole table).
    assert from_state.cost["buckets"] >= 1 and from_state.cost["bucket_tasks"] == 1
    assert from_log.cost["basis"] == "log" and "buckets" not in from_log.cost
    for report in (from_state, from_log):
        assert report.cost["lake_bytes"] > 0 and report.cost["export_bytes"] > 0


def test_the_repair_and_its_recheck_read_the_state_too(tmp_path: Path) -> None:
    lake, export = tmp_path / "lake", tmp_path / "export"
    history(lake)
    merge_state(target(lake), T - HOUR)
    write(export, [row("I", T, item(pk, n)) for n, pk in enumerate("abce", 1)])

    report = reconcile_table(plan_for(lake, export, "r2", repair=True), s3=None, write=False)

    assert report.status == "repaired" and report.missing == 1
    assert report.repair["recheck"]["status"] == "ok"
    assert report.cost["basis"] == "current state"
    # The re-check went by bucket too: it split the repair's file (not merged: read whole).
    split = tmp_path / "export-buckets" / "lake"
    assert any("-whole-" in file.name for file in split.rglob("*.parquet"))


def test_without_a_snapshot_early_enough_the_log_is_read(tmp_path: Path) -> None:
    lake, export = tmp_path / "lake", tmp_path / "export"
    history(lake)
    write(export, [row("I", T, item(pk, n)) for n, pk in enumerate("abc", 1)])
    plan = plan_for(lake, export, "r3")

    never_merged = reconcile_table(plan, s3=None, write=False)
    assert never_merged.cost["basis"] == "log" and never_merged.status == "ok"
    assert not (lake / "_current").exists()  # looking for a state made none

    merge_state(target(lake), T - SECOND + 1)  # after T - ε: it cannot stand in for T - ε
    too_late = reconcile_table(plan, s3=None, write=False)
    assert too_late.cost["basis"] == "log" and too_late.status == "ok"

    # The bound is inclusive: a snapshot exactly at it stands in (its rows are those at or
    # before every cut).
    catalog = open_catalog(str(lake))
    assert choose_basis(str(lake), "shop", "orders", bound=T - SECOND + 1, s3=None, catalog=catalog)
    assert not choose_basis(str(lake), "shop", "orders", bound=T - SECOND, s3=None, catalog=catalog)


def test_a_state_that_cannot_be_read_falls_back_to_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lake, export = tmp_path / "lake", tmp_path / "export"
    history(lake)
    merge_state(target(lake), T - HOUR)
    table = open_state_table(open_catalog(str(lake)), target(lake), create=False)
    snapshot = current_snapshot(table)
    assert snapshot is not None
    os.remove(resolve(snapshot.merged_files).path)  # its list of merged files is gone
    write(export, [row("I", T, item(pk, n)) for n, pk in enumerate("abc", 1)])

    with caplog.at_level(logging.WARNING):
        report = reconcile_table(plan_for(lake, export, "r4"), s3=None, write=False)

    assert report.cost["basis"] == "log" and report.status == "ok"
    assert "the current state cannot be read" in caplog.text
    assert "merged" in caplog.text  # the reason, named


def test_changes_from_the_state_find_phantoms_and_count_the_whole_lake(tmp_path: Path) -> None:
    lake, day = tmp_path / "lake", tmp_path / "day"
    history(lake)
    start = T - 20 * MINUTE
    merge_state(target(lake), start - 2 * SECOND)  # before start - ε
    write(lake, [row("U", T - 15 * MINUTE, item("a", 1, "v2"))])  # listed by the export
    write(lake, [row("U", T - 5 * MINUTE, item("b", 2, "invented"))])  # a phantom
    write(day, [row("U", T - 15 * MINUTE, item("a", 1, "v2"))])

    def changes(basis: Any) -> Any:
        engine = DuckDBEngine(
            lake_dataset(str(lake)),
            lake_dataset(str(day)),
            key_names=["pk", "sk"],
            basis=basis,
            changed_keys_only=True,
        )
        try:
            return compare_changes(engine, KEYS, T, SECOND, start)
        finally:
            engine.close()

    bound = snapshot_bound("changes", T, SECOND, start)
    basis = choose_basis(str(lake), "shop", "orders", bound=bound, s3=None)
    assert basis is not None
    from_state, from_log = changes(basis), changes(None)

    assert from_state.counts == from_log.counts == {"phantom": 1}
    assert from_state.samples == from_log.samples
    # Only the keys the export lists or the log since W holds were taken from the state,
    # and the live count is still the whole lake's.
    assert basis.lake_count_offset == 1  # c: live, unchanged, not read
    assert from_state.lake_count == from_log.lake_count == 3


def test_a_bucket_of_another_count_is_refused(tmp_path: Path) -> None:
    lake, export = tmp_path / "lake", tmp_path / "export"
    history(lake)
    merge_state(target(lake), T - HOUR)
    basis = choose_basis(str(lake), "shop", "orders", bound=T - SECOND, s3=None)
    with pytest.raises(ReconciliationEngineError, match="the current state has 4 buckets"):
        DuckDBEngine(
            lake_dataset(str(lake)),
            lake_dataset(str(export)),
            key_names=["pk", "sk"],
            basis=basis,
            bucket=(0, 8),
        )


def test_a_merge_refuses_rows_without_a_key(tmp_path: Path) -> None:
    """The reconciliation refuses a lake with a row it cannot key; the merge does too, so
    that a comparison from the state can never pass over one the log would refuse."""
    from dynamo_lake.codec import item_to_data

    lake = tmp_path / "lake"
    history(lake)
    keyless = item_to_data({"pk": {"S": "x"}, "value": {"S": "no sk"}})
    write(lake, [row("I", T - 2 * HOUR, keyless)])
    with pytest.raises(StateError, match="1 lake rows without a key .*uuid"):
        merge_state(target(lake), T - HOUR)


def test_a_state_keyed_by_other_attributes_is_not_compared_nor_merged_into(
    tmp_path: Path,
) -> None:
    """A state's keys are made of the key attributes its merges were given, recorded in
    each snapshot; a check with other key attributes (the table's key schema changed) reads
    the log, and a merge with them is refused rather than mix two kinds of keys."""
    from dataclasses import replace

    lake, export = tmp_path / "lake", tmp_path / "export"
    history(lake)
    merge_state(target(lake), T - HOUR)
    write(export, [row("I", T, item(pk, n)) for n, pk in enumerate("abc", 1)])
    plan = replace(plan_for(lake, export, "r5"), keys=(("sk", "N"), ("pk", "S")))

    report = reconcile_table(plan, s3=None, write=False)

    assert report.cost["basis"] == "log"
    same = choose_basis(str(lake), "shop", "orders", bound=T, s3=None, key_names=["pk", "sk"])
    assert same is not None and same.snapshot.key_names == ("pk", "sk")
    swapped = StateTarget(str(lake), "shop", "orders", ("sk", "pk"), 4)
    with pytest.raises(StateError, match=r"its keys are made of \['pk', 'sk'\]"):
        merge_state(swapped, T)


@pytest.mark.parametrize("method", ["export", "changes"])
def test_bucket_tasks_gather_the_findings_of_one_whole_check(tmp_path: Path, method: str) -> None:
    """Split into the state's buckets (in parts of one file, compared by three tasks), the
    check gathers the counts, the samples in key order and every finding that one check
    of the whole table finds, from the state and from the log."""
    from dataclasses import replace

    import pyarrow.parquet as pq

    from dynamo_lake.reconciliation import buckets
    from dynamo_lake.reconciliation.compare import FindingsFile

    lake, export = tmp_path / "lake", tmp_path / "export"
    keys = [(f"k{n:02d}", n) for n in range(40)]
    write(lake, [row("I", T - 3 * HOUR, item(pk, n)) for pk, n in keys])
    write(lake, [row("D", T - 2 * HOUR, item(pk, n)) for pk, n in keys[:5]])
    start = T - 20 * MINUTE
    merge_state(target(lake), start - 2 * SECOND)
    write(lake, [row("U", T - 10 * MINUTE, item(pk, n, "v2")) for pk, n in keys[5:15]])
    write(lake, [row("U", T - 3 * HOUR, item(pk, n, "late")) for pk, n in keys[15:18]])
    write(lake, [row("D", T - 5 * MINUTE, item(pk, n)) for pk, n in keys[18:20]])
    # The table: half the updates (others: different), a key the lake never saw (missing),
    # the deleted keys 18, 19 still there (missing), key 39 gone (extra).
    changed = [item(pk, n, "v2") for pk, n in keys[5:10]]
    changed += [item(pk, n, "other") for pk, n in keys[10:15]]
    changed += [item(pk, n, "late") for pk, n in keys[15:18]]
    changed += [item(pk, n) for pk, n in keys[18:20]] + [item("new", 99)]
    if method == "export":
        table_rows = [
            row("I", T, data) for data in changed + [item(pk, n) for pk, n in keys[20:39]]
        ]
    else:
        table_rows = [row("U", T - 10 * MINUTE, data) for data in changed]
    write(export, table_rows[:10])  # two files: two parts when split by the file
    write(export, table_rows[10:])
    plan = replace(plan_for(lake, export, f"b-{method}"), method=method)
    if method == "changes":
        plan = replace(plan, window_start=start)

    basis = choose_basis(
        str(lake),
        "shop",
        "orders",
        bound=snapshot_bound(method, T, SECOND, plan.window_start),
        s3=None,
    )
    assert basis is not None and basis.buckets == 4
    split = buckets.plan_split(plan, basis, None, part_bytes=1, max_tasks=3)
    assert len(split["parts"]) > 3 and split["tasks"] == [[0, 3], [1], [2]]
    for part in split["parts"]:
        buckets.split_part(plan, split, part, None)
    light = buckets.without_parts(split)
    compared = [buckets.compare_buckets(plan, light, task, s3=None) for task in (2, 0, 1)]

    gathered = reconcile_table(
        plan, s3=None, write=False, by_bucket={"split": light, "compared": compared}
    )
    files = [item["findings"] for item in compared if item["findings"]]
    keys_found = sorted(
        key
        for path in files
        for key in pq.read_table(path, columns=["key"]).column("key").to_pylist()
    )
    assert FindingsFile.SCHEMA.names == pq.read_schema(files[0]).names
    # In one process (the split folder is the run's: these tasks' files are replaced).
    from_state, from_log = both(plan)

    assert verdict(gathered) == verdict(from_state) == verdict(from_log)
    assert gathered.status == "drift" and gathered.different == 5
    assert gathered.findings["rows"] == from_log.findings["rows"]
    assert gathered.cost["buckets"] == 4 and gathered.cost["bucket_tasks"] == 3
    assert gathered.cost["basis"] == "current state"
    # Every finding, once: the tasks' files hold the whole table's findings.
    assert len(keys_found) == len(set(keys_found)) == from_log.findings["rows"]

    # Planned again (a retried plan: other parts), the first plan's split rows are not read.
    again = buckets.plan_split(plan, basis, None)
    assert len(again["parts"]) == 1
    buckets.split_part(plan, again, again["parts"][0], None)
    light = buckets.without_parts(again)
    compared = [buckets.compare_buckets(plan, light, task, s3=None) for task in range(4)]
    regathered = reconcile_table(
        plan, s3=None, write=False, by_bucket={"split": light, "compared": compared}
    )
    assert verdict(regathered) == verdict(from_log)


def test_a_bucket_check_missing_a_task_is_refused(tmp_path: Path) -> None:
    from dynamo_lake.reconciliation import buckets

    lake, export = tmp_path / "lake", tmp_path / "export"
    history(lake)
    merge_state(target(lake), T - HOUR)
    write(export, [row("I", T, item(pk, n)) for n, pk in enumerate("abc", 1)])
    plan = plan_for(lake, export, "b-missing")
    basis = choose_basis(str(lake), "shop", "orders", bound=T - SECOND, s3=None)
    assert basis is not None
    split = buckets.plan_split(plan, basis, None, max_tasks=2)
    for part in split["parts"]:
        buckets.split_part(plan, split, part, None)
    light = buckets.without_parts(split)
    only_one = [buckets.compare_buckets(plan, light, 1, s3=None)]
    with pytest.raises(StateError, match=r"bucket comparisons \[1\] are not the whole table"):
        reconcile_table(
            plan, s3=None, write=False, by_bucket={"split": light, "compared": only_one}
        )


def test_bucket_tasks_refuse_a_lake_row_without_a_key(tmp_path: Path) -> None:
    """A row without a key has no bucket: the split sends it to bucket 0, whose compare task
    refuses it as a whole check does (naming its uuid), rather than leave it out."""
    from dynamo_lake.codec import item_to_data
    from dynamo_lake.errors import LakeReadError
    from dynamo_lake.reconciliation import buckets

    lake, export = tmp_path / "lake", tmp_path / "export"
    history(lake)
    merge_state(target(lake), T - HOUR)
    write(lake, [row("U", T - 30 * MINUTE, item_to_data({"pk": {"S": "x"}}))])  # no sk
    write(export, [row("I", T, item(pk, n)) for n, pk in enumerate("abc", 1)])
    plan = plan_for(lake, export, "b-keyless")
    basis = choose_basis(str(lake), "shop", "orders", bound=T - SECOND, s3=None)
    assert basis is not None
    split = buckets.plan_split(plan, basis, None)
    buckets.split_part(plan, split, split["parts"][0], None)
    light = buckets.without_parts(split)
    with pytest.raises(LakeReadError, match="the lake holds 1 row without a key .*uuid"):
        for task in range(len(split["tasks"])):
            buckets.compare_buckets(plan, light, task, s3=None)
    with pytest.raises(LakeReadError, match="the lake holds 1 row without a key"):
        reconcile_table(plan, s3=None, write=False, from_state=False)
