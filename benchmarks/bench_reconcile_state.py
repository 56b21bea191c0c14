"""Reconciliation benchmark: comparisons read from the current state against the log-based ones.

A reconciliation compares a DynamoDB export at a cut time T with the lake. The log-based
comparison (the oracle) copies the whole lake log into DuckDB; the state-based one reads a
current-state snapshot at a watermark W (``choose_basis``) and only the log rows since W
(``DuckDBEngine(..., basis=...)``). This benchmark measures both on the CDC log of
``bench_state.py`` (imported, not copied: the same generator, cached under
``bench-data/state-v1-<items>i-<changes>c-<days>d/log/``), each comparison in a fresh
process whose peak RSS (``VmHWM``) is its own, DuckDB spilling to a folder of its own whose
peak size is watched (every 0.2 s).

1. ``export`` method, for each day d of ``--days-list`` (default 1, 10, 30): the lake holds
   days 0..d, the state is merged to W = the end of day d-1 (midnight), T = the end of day
   d minus 1 s, ε = 1 s; the table side is a converted full export at T (the log's latest
   state at T, live items only, in the lake's CDC schema: op ``I``, time_stamp T), made
   from the log with DuckDB and cached under ``exports/``. State-based and log-based must
   find the same counts (table_count, lake_count, findings by kind): the run says so, and
   exits with status 1 if they differ.
2. ``changes`` method against 1M changes, on a ``--items`` table and a ``--big-items``
   table (a second log of 2 days): the state merged to the end of day 0, the lake holding
   days 0..2, T = the end of day 2, window_start = T - 24 h 15 min (so W < window_start - ε);
   the incremental export lists every key changed in [window_start, T) with its final
   state (the latest row: op I/U with data, or D), stamped with its last change's time.
   The log-based comparison runs too, as the oracle of the counts (``--no-changes-log``:
   skip it).
3. At the last day, the bucket tasks as the DAG maps them (:mod:`dynamo_lake.reconciliation.
   buckets`): each ``split`` part and each one-bucket ``compare`` task in its own process,
   their counts gathered and checked against the whole check's, printed beside the whole
   state-based check and the log-based one (``--bucket-tasks-only``: just these, on the
   lake, state and export a full run left); and one bucket's comparison filtered while
   copied (``DuckDBEngine(..., bucket=(0, n))``). ``--changes-only``: section 2 alone.

The state is merged by ``bench_state``'s own ``merge`` step (``merge_state`` in a fresh
process): to the end of day 0, then straight to each W the days need (a merge rewrites
every bucket it touches, so the state's rows and files are those of daily merges;
``--merge-every-day`` merges day by day as the DAG does, slower). The run's lake is a
folder of hard links to the log, each day's files added as the days pass; it and the state
stay in ``bench-data/reconcile-state-v1-<...>/run/`` until the next run.

Times cover the work only (imports excluded): choosing the basis (opening the catalog,
listing the lake), copying into DuckDB, the comparison, closing. CPU seconds are the
process's, all threads. Nothing is asserted but the equal counts (timings on a shared
machine are noisy); the goals are printed next to what was measured. Results are also
written as JSON to ``bench-data/bench_reconcile_state-<...>.json`` after each measurement.

Usage::

    python benchmarks/bench_reconcile_state.py     # = make bench-reconcile: 10M items, 30M
    python benchmarks/bench_reconcile_state.py --items 200000 --changes 20000 \\
        --big-items 600000 --days-list 1,3,5                                      # quick
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _extra in (Path(__file__).resolve().parent, ROOT / "dev", ROOT / "include"):
    if str(_extra) not in sys.path:
        sys.path.insert(0, str(_extra))

import bench_state  # noqa: E402  (the log's generator and the merge step, reused)
from bench_state import BENCH_DATA, DATABASE, DAY, START, TABLE  # noqa: E402

SECOND = 1_000_000
EPSILON = SECOND
CHANGES_DAY = 2  # the changes method's day: the state at the end of day 0, two days of log
LEAD = DAY + 15 * 60 * SECOND  # window_start = T - 24 h 15 min
EXPORT_FILE_ROWS = 1_000_000
KEYS = ("pk",)
RUN = "v1"  # bump when what the run builds changes


# --- the table side: converted exports made from the log ------------------------------------


def _uuid_sql(text: str) -> str:
    digest = f"md5({text})"
    return (
        f"substr({digest}, 1, 8) || '-' || substr({digest}, 9, 4) || '-' || "
        f"substr({digest}, 13, 4) || '-' || substr({digest}, 17, 4) || '-' || "
        f"substr({digest}, 21, 12)"
    )


def _write_export(connection: Any, sql: str, folder: Path, partition: str) -> int:
    """The rows of ``sql`` (uuid, op, time_stamp, data) in CDC_SCHEMA, as files of
    EXPORT_FILE_ROWS rows in one partition folder; returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dynamo_lake.lake.writer import CDC_SCHEMA

    target = folder / partition
    target.mkdir(parents=True, exist_ok=True)
    reader = connection.sql(sql).to_arrow_reader(65_536)
    writer, written, total, files = None, 0, 0, 0
    for batch in reader:
        if writer is None or written >= EXPORT_FILE_ROWS:
            if writer is not None:
                writer.close()
            writer = pq.ParquetWriter(
                target / f"export-{files:05d}.parquet", CDC_SCHEMA, compression="zstd"
            )
            files, written = files + 1, 0
        writer.write_table(pa.Table.from_batches([batch]).cast(CDC_SCHEMA))
        written += batch.num_rows
        total += batch.num_rows
    if writer is not None:
        writer.close()
    return total


def _make_export(params: dict[str, Any]) -> dict[str, Any]:
    """A full export at T: the log's latest state at T, live items only (op I, time T)."""
    from dynamo_lake.contract import partition_of
    from dynamo_lake.lake.query import LakeDatabase, lake_dataset, latest_state_sql, time_literal

    as_of = params["as_of"]
    database = LakeDatabase(memory_limit_mb=params["memory_limit_mb"])
    log_rows = database.add("lake_log", lake_dataset(params["lake"]), list(KEYS))
    sql = (
        f"SELECT {_uuid_sql('k')} AS uuid, 'I' AS op, {time_literal(as_of)} AS time_stamp, data "
        f"FROM ({latest_state_sql('lake_log', as_of)}) live"
    )
    rows = _write_export(database.connection, sql, Path(params["out"]), partition_of(as_of))
    database.close()
    return {"log_rows": log_rows, "rows": rows}


def _make_changes(params: dict[str, Any]) -> dict[str, Any]:
    """An incremental export of [window_start, T): each key changed in it, its latest row
    (a key's final state at T is its latest row, which lies in the window)."""
    from dynamo_lake.contract import partition_of
    from dynamo_lake.lake.query import (
        LakeDatabase,
        keyed_rows_sql,
        lake_dataset,
        latest_of_sql,
        time_literal,
    )

    start, as_of = params["window_start"], params["as_of"]
    database = LakeDatabase(memory_limit_mb=params["memory_limit_mb"])
    window = f"time_stamp >= {time_literal(start)} AND time_stamp < {time_literal(as_of)}"
    log_rows = database.add("lake_log", lake_dataset(params["lake"]), list(KEYS), where=window)
    keyed = f"({keyed_rows_sql('lake_log')}) keyed"
    sql = f"SELECT uuid, op, time_stamp, data FROM ({latest_of_sql(keyed, with_uuid=True)}) final"
    rows = _write_export(database.connection, sql, Path(params["out"]), partition_of(as_of - 1))
    ((deletes,),) = database.connection.execute(
        f"SELECT count(*) FROM ({latest_of_sql(keyed)}) final WHERE op = 'D'"
    ).fetchall()
    database.close()
    return {"log_rows": log_rows, "rows": rows, "deletes": int(deletes)}


# --- one comparison, in a fresh process -----------------------------------------------------


def _compare(params: dict[str, Any], spill: Path, peak_spill: list[int]) -> dict[str, Any]:
    if params["basis"] == "buckets":
        return _compare_by_bucket(params, peak_spill)
    import duckdb  # noqa: F401
    import pyarrow.dataset  # noqa: F401
    import pyiceberg.catalog.sql
    import pyiceberg.expressions
    import pyiceberg.io.pyarrow
    import pyiceberg.table  # noqa: F401

    from dynamo_lake.lake.keys import KeyAttribute
    from dynamo_lake.lake.query import lake_dataset
    from dynamo_lake.reconciliation.compare import compare_changes, compare_export
    from dynamo_lake.reconciliation.engines import DuckDBEngine
    from dynamo_lake.reconciliation.state_basis import choose_basis, snapshot_bound
    from dynamo_lake.state.current import open_catalog

    lake, method = params["lake"], params["method"]
    as_of, window_start = params["as_of"], params.get("window_start")
    keys = [KeyAttribute(name, "S") for name in KEYS]
    base = bench_state._status("VmRSS")
    peak_spill[0] = 0
    started, cpu = time.perf_counter(), time.process_time()
    basis = None
    if params["basis"] == "state":
        bound = snapshot_bound(method, as_of, EPSILON, window_start)
        catalog = open_catalog(lake)
        basis = choose_basis(lake, DATABASE, TABLE, bound=bound, s3=None, catalog=catalog)
        if basis is None:
            raise SystemExit(f"no current-state snapshot at or before {bound} in {lake}")
    extra: dict[str, Any] = {}
    if params.get("bucket") is not None:
        assert basis is not None
        extra["bucket"] = (params["bucket"], basis.buckets)
    engine = DuckDBEngine(
        lake_dataset(lake),
        lake_dataset(params["export"]),
        key_names=list(KEYS),
        memory_limit_mb=params["memory_limit_mb"],
        spill_folder=str(spill),
        basis=basis,
        changed_keys_only=method == "changes",
        **extra,
    )
    loaded = time.perf_counter() - started
    try:
        # The lake side's rows in DuckDB: ``lake``, and the snapshot's rows in ``base``
        # when the engine keeps them apart (else they are in ``lake``).
        tables = {name for (name,) in engine.connection.execute("SHOW TABLES").fetchall()}
        lake_rows = sum(
            engine.connection.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
            for name in ("lake", "base")
            if name in tables
        )
        ((table_rows,),) = engine.connection.execute("SELECT count(*) FROM snapshot").fetchall()
        if method == "export":
            found = compare_export(engine, keys, as_of, EPSILON)
        else:
            found = compare_changes(engine, keys, as_of, EPSILON, window_start)
    finally:
        engine.close()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = bench_state._status("VmHWM")
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load_seconds": loaded,
        "peak_mb": peak,
        "base_mb": base,
        "spill_mb": peak_spill[0] / (1 << 20),
        "duckdb_lake_rows": int(lake_rows),
        "duckdb_table_rows": int(table_rows),
        "table_count": found.table_count,
        "lake_count": found.lake_count,
        "counts": dict(sorted(found.counts.items())),
        "samples": {kind: sample[:3] for kind, sample in found.samples.items()},
        "basis": basis.describe() if basis is not None else None,
        "buckets": basis.buckets if basis is not None else None,
    }


def _compare_by_bucket(params: dict[str, Any], peak_spill: list[int]) -> dict[str, Any]:
    """The check as ``reconcile_table`` runs it in one process (CLI, a repair's re-check):
    every part split, then every bucket compared, one at a time."""
    import duckdb  # noqa: F401
    import pyiceberg.catalog.sql  # noqa: F401

    from dynamo_lake.reconciliation import buckets
    from dynamo_lake.reconciliation.run import check_by_bucket

    export = params["export"]
    plan = _bucket_plan(
        params["lake"],
        export,
        params["as_of"],
        params["memory_limit_mb"],
        method=params["method"],
        window_start=params.get("window_start"),
    )
    base = bench_state._status("VmRSS")
    peak_spill[0] = 0
    started, cpu = time.perf_counter(), time.process_time()
    by_bucket = check_by_bucket(plan, None, None)
    if by_bucket is None:
        raise SystemExit(f"no current-state snapshot for {plan.as_of} in {params['lake']}")
    found = buckets.gather(plan, by_bucket["compared"], None, None)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    shutil.rmtree(buckets.split_uri(export), ignore_errors=True)
    read = sum(int(item["rows_read"]) for item in by_bucket["compared"])
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load_seconds": 0.0,
        "peak_mb": bench_state._status("VmHWM"),
        "base_mb": base,
        "spill_mb": peak_spill[0] / (1 << 20),
        "duckdb_lake_rows": read,
        "duckdb_table_rows": None,
        "table_count": found.table_count,
        "lake_count": found.lake_count,
        "counts": dict(sorted(found.counts.items())),
        "samples": {kind: sample[:3] for kind, sample in found.samples.items()},
        "basis": {"rows_read": read},
        "buckets": by_bucket["split"]["buckets"],
    }


def _child(mode: str, params: dict[str, Any]) -> dict[str, Any]:
    spill = Path(os.environ["TMPDIR"])
    peak_spill = [0]

    def watch() -> None:
        while True:
            try:
                size = sum(f.stat().st_size for f in spill.rglob("*") if f.is_file())
            except OSError:  # a file removed while listed
                continue
            peak_spill[0] = max(peak_spill[0], size)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    if mode == "export":
        return _make_export(params)
    if mode == "changes":
        return _make_changes(params)
    if mode == "compare":
        return _compare(params, spill, peak_spill)
    if mode in ("split", "compare_task"):
        return _bucket_task(mode, params, peak_spill)
    raise SystemExit(f"unknown mode {mode}")


def _bucket_plan(
    lake: str,
    work_uri: str,
    as_of: int,
    memory_limit_mb: int,
    *,
    method: str = "export",
    window_start: int | None = None,
) -> Any:
    from dynamo_lake.records import ReconciliationPlan

    return ReconciliationPlan(
        table=TABLE,
        dynamodb_table=TABLE,
        table_arn="",
        lake_uri=lake,
        work_uri=work_uri,
        method=method,
        window_start=window_start,
        as_of=as_of,
        epsilon_ms=EPSILON // 1000,
        repair=False,
        engine="duckdb",
        keys=tuple((name, "S") for name in KEYS),
        run_id="bench",
        aws_conn_id="",
        region=None,
        glue_database=DATABASE,
        glue_table=TABLE,
        duckdb_memory_limit_mb=memory_limit_mb,
    )


def _bucket_task(mode: str, params: dict[str, Any], peak_spill: list[int]) -> dict[str, Any]:
    """The DAG's split task (some parts) or compare task, as its worker runs it."""
    import duckdb  # noqa: F401
    import pyiceberg.catalog.sql  # noqa: F401

    from dynamo_lake.reconciliation import buckets

    plan = _bucket_plan(
        params["lake"], params["work_uri"], params["as_of"], params["memory_limit_mb"]
    )
    split = json.loads(Path(params["split"]).read_text())
    base = bench_state._status("VmRSS")
    peak_spill[0] = 0
    started, cpu = time.perf_counter(), time.process_time()
    found: dict[str, Any] = {}
    if mode == "split":
        rows = {"table": 0, "lake": 0}
        for index in params["parts"]:
            written = buckets.split_part(plan, split, split["parts"][index], None)
            rows = {side: rows[side] + written[side] for side in rows}
        found["rows"] = rows
    else:
        light = buckets.without_parts(split)
        compared = buckets.compare_buckets(plan, light, params["task"], s3=None)
        out = Path(params["out"])
        out.write_text(json.dumps(compared))
        found["comparison"] = compared["comparison"]
        found["buckets"] = compared["buckets"]
    return {
        **found,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "peak_mb": bench_state._status("VmHWM"),
        "base_mb": base,
        "spill_mb": peak_spill[0] / (1 << 20),
    }


def _bucket_tasks(run: Run, export: Path, as_of: int, whole: dict[str, Any]) -> dict[str, Any]:
    """The check as the DAG maps it: the split tasks (each part in its own process) and
    the compare tasks (one per bucket: each its own process), their results gathered as the
    check gathers them; counts must equal the whole-table check's."""
    from dynamo_lake.reconciliation import buckets
    from dynamo_lake.reconciliation.compare import Comparison
    from dynamo_lake.reconciliation.state_basis import choose_basis, snapshot_bound

    work_uri = run.work / "checked"
    shutil.rmtree(work_uri, ignore_errors=True)
    shutil.rmtree(f"{work_uri}-buckets", ignore_errors=True)
    shutil.copytree(export, work_uri, copy_function=os.link)  # the converted export, linked
    plan = _bucket_plan(str(run.lake), str(work_uri), as_of, run.memory)
    basis = choose_basis(
        str(run.lake),
        DATABASE,
        TABLE,
        bound=snapshot_bound("export", as_of, EPSILON, None),
        s3=None,
    )
    assert basis is not None
    split = buckets.plan_split(plan, basis, None, max_tasks=basis.buckets)
    split_file = run.work / "split.json"
    split_file.write_text(json.dumps(split))
    common = {
        "lake": str(run.lake),
        "work_uri": str(work_uri),
        "as_of": as_of,
        "memory_limit_mb": run.memory,
        "split": str(split_file),
    }
    splits = [
        _measure("split", run.work, **common, parts=[index]) for index in range(len(split["parts"]))
    ]
    compares = [
        _measure("compare_task", run.work, **common, task=task, out=str(run.work / f"t{task}.json"))
        for task in range(len(split["tasks"]))
    ]
    results = [
        json.loads((run.work / f"t{task}.json").read_text()) for task in range(len(compares))
    ]
    merged: Comparison = buckets.merge_comparisons(
        "export", [Comparison(**item["comparison"]) for item in results]
    )
    shutil.rmtree(work_uri, ignore_errors=True)
    shutil.rmtree(f"{work_uri}-buckets", ignore_errors=True)
    found = {
        "buckets": split["buckets"],
        "parts": len(split["parts"]),
        "split": splits,
        "compare": compares,
        "table_count": merged.table_count,
        "lake_count": merged.lake_count,
        "counts": dict(sorted(merged.counts.items())),
        "same_as_whole": _same(
            {
                "table_count": merged.table_count,
                "lake_count": merged.lake_count,
                "counts": dict(sorted(merged.counts.items())),
            },
            whole,
        ),
    }
    top = max(compares, key=lambda item: item["peak_mb"])
    print(
        f"  bucket tasks: {len(splits)} split tasks, {sum(i['seconds'] for i in splits):.0f} s "
        f"(cpu {sum(i['cpu_seconds'] for i in splits):.0f} s), peak RSS "
        f"{max(i['peak_mb'] for i in splits)} MB; {len(compares)} compare tasks of one bucket, "
        f"{sum(i['seconds'] for i in compares):.0f} s (cpu "
        f"{sum(i['cpu_seconds'] for i in compares):.0f} s), peak RSS {top['peak_mb']} MB, "
        f"spill {max(i['spill_mb'] for i in compares):.0f} MB; counts equal the whole check's: "
        f"{'yes' if found['same_as_whole'] else 'NO'}",
        flush=True,
    )
    return found


def _measure(mode: str, work: Path, **params: Any) -> dict[str, Any]:
    """Run ``mode`` of this script in a fresh process, its TMPDIR (DuckDB's spill) its own."""
    return bench_state._measure(mode, work, script=Path(__file__), **params)


# --- the run ------------------------------------------------------------------------------


class Run:
    """One generated log, its run's lake (hard links) and current state, and its exports."""

    def __init__(self, args: argparse.Namespace, items: int, days: int) -> None:
        self.items, self.changes, self.days = items, args.changes, days
        log_args = argparse.Namespace(
            items=items, changes=args.changes, days=days, files_per_day=8, seed=1
        )
        self.log = bench_state._log(log_args)
        self.folder = BENCH_DATA / f"reconcile-state-{RUN}-{bench_state._params(log_args)}"
        self.lake, self.work = self.folder / "run", self.folder / "work"
        self.exports = self.folder / "exports"
        for path in (self.lake, self.work):
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
        self.exports.mkdir(exist_ok=True)
        from dynamo_lake.state.merge import default_buckets

        self.buckets = default_buckets(items)
        self.memory = args.memory_mb
        self.added = -1
        self.watermark = 0

    def add_through(self, day: int) -> None:
        while self.added < day:
            self.added += 1
            bench_state._add_day(self.log, self.lake, self.added)

    def merge(self, watermark: int) -> dict[str, Any]:
        merged = bench_state._measure(
            "merge",
            self.work,
            lake=str(self.lake),
            buckets=self.buckets,
            memory_limit_mb=self.memory,
            watermark_us=watermark,
        )
        self.watermark = watermark
        print(
            f"  merged to {_moment(watermark)}: {merged['events_read']:,} events read, "
            f"{merged['seconds']:.0f} s; state {merged['live']:,} live + "
            f"{merged['tombstones']:,} tombstones",
            flush=True,
        )
        return merged

    def export(self, mode: str, name: str, **params: Any) -> Path:
        """A cached converted export (``mode`` export or changes) of the lake as it is."""
        folder = self.exports / name
        if not folder.exists():
            temporary = folder.with_name(name + ".tmp")
            shutil.rmtree(temporary, ignore_errors=True)
            started = time.perf_counter()
            made = _measure(
                mode,
                self.work,
                lake=str(self.lake),
                out=str(temporary),
                memory_limit_mb=self.memory,
                **params,
            )
            temporary.rename(folder)
            print(
                f"  made {name}: {made['rows']:,} rows from {made['log_rows']:,} log rows "
                f"in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
        return folder

    def compare(self, basis: str, method: str, export: Path, **params: Any) -> dict[str, Any]:
        found = _measure(
            "compare",
            self.work,
            lake=str(self.lake),
            export=str(export),
            basis=basis,
            method=method,
            memory_limit_mb=self.memory,
            **params,
        )
        read = found["basis"]["rows_read"] if found["basis"] else None
        bucket = "" if params.get("bucket") is None else f" bucket {params['bucket']}"
        print(
            f"  {method} {basis}-based{bucket}: {found['seconds']:.1f} s (cpu "
            f"{found['cpu_seconds']:.1f} s, load {found['load_seconds']:.1f} s), peak RSS "
            f"{found['peak_mb']} MB, spill {found['spill_mb']:.0f} MB; DuckDB lake rows "
            f"{found['duckdb_lake_rows']:,}" + (f" ({read:,} from the log)" if read else "") + "; "
            f"table {found['table_count']:,}, lake {found['lake_count']:,}, "
            f"findings {found['counts'] or 'none'}",
            flush=True,
        )
        return found


def _moment(micros: int) -> str:
    from dynamo_lake.cdc import micros_text

    return micros_text(micros)


def _same(state: dict[str, Any], log: dict[str, Any]) -> bool:
    return all(state[name] == log[name] for name in ("table_count", "lake_count", "counts"))


def _row(label: str, found: dict[str, Any] | None) -> str:
    if found is None:
        return f"{label:<30} {'(not measured)':>10}"
    read = found["basis"]["rows_read"] if found.get("basis") else found["duckdb_lake_rows"]
    drift = ", ".join(f"{kind} {n}" for kind, n in found["counts"].items()) or "none"
    return (
        f"{label:<30} {found['duckdb_lake_rows']:>12,} {read:>12,} {found['seconds']:>8.1f} "
        f"{found['cpu_seconds']:>7.1f} {found['peak_mb']:>7} {found['spill_mb']:>8.0f} "
        f"{found['table_count']:>11,} {found['lake_count']:>11,}  {drift}"
    )


HEADER = (
    f"{'':<30} {'DuckDB lake':>12} {'log rows':>12} {'seconds':>8} {'cpu s':>7} "
    f"{'RSS MB':>7} {'spill MB':>8} {'table_count':>11} {'lake_count':>11}  findings"
)


def _ratio(top: dict[str, Any], bottom: dict[str, Any], goal: float, at_most: bool) -> str:
    """``top`` / ``bottom`` in work seconds and CPU seconds, against the goal."""
    wall = top["seconds"] / bottom["seconds"]
    cpu = top["cpu_seconds"] / bottom["cpu_seconds"]
    return bench_state._goal("", wall, cpu, goal, at_most=at_most).removeprefix(": ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000_000, help="items of the backfill")
    parser.add_argument("--changes", type=int, default=1_000_000, help="events a day")
    parser.add_argument("--days-list", default="1,10,30", help="days of the export comparisons")
    parser.add_argument("--big-items", type=int, default=30_000_000, help="the changes' big table")
    parser.add_argument("--memory-mb", type=int, default=1024, help="DuckDB's memory limit")
    parser.add_argument("--merge-every-day", action="store_true", help="as the DAG merges")
    parser.add_argument("--no-changes-log", action="store_true", help="no log-based changes")
    parser.add_argument(
        "--bucket-tasks-only",
        action="store_true",
        help="only the whole state-based check and its bucket tasks, on the last run's lake",
    )
    parser.add_argument("--changes-only", action="store_true", help="only the changes method")
    parser.add_argument("--json", type=Path, help="default: bench-data/bench_reconcile_state-...")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(_child(args.child, json.loads(args.params))), flush=True)
        return 0

    days_list = sorted({int(day) for day in args.days_list.split(",") if day.strip()})
    if not days_list or days_list[0] < 1:
        parser.error("--days-list: days >= 1")
    last = days_list[-1]
    log_days = max(last, CHANGES_DAY)
    _, _, deletes = bench_state._shares(args.changes)
    if deletes * log_days >= min(args.items, args.big_items):
        parser.error("deletes (10 % of changes) * days must stay below the items")
    BENCH_DATA.mkdir(exist_ok=True)
    out = args.json or BENCH_DATA / (
        f"bench_reconcile_state-{args.items}i-{args.changes}c-{'_'.join(map(str, days_list))}d"
        f"-{args.big_items}b.json"
    )
    report: dict[str, Any] = {
        "params": {k: v for k, v in vars(args).items() if k not in ("child", "params", "json")},
        "export": {},
        "changes": {},
        "bucket": None,
        "mismatches": [],
    }
    report["params"]["cores"] = os.cpu_count()

    def save() -> None:
        out.write_text(json.dumps(report, indent=1, default=str))

    def check(what: str, state: dict[str, Any], log: dict[str, Any]) -> None:
        if not _same(state, log):
            keys = ("table_count", "lake_count", "counts", "samples", "basis")
            text = (
                f"MISMATCH: {what}: state-based {json.dumps({k: state[k] for k in keys})} "
                f"!= log-based {json.dumps({k: log[k] for k in keys})}"
            )
            report["mismatches"].append(text)
            print("!" * 80 + "\n" + text + "\n" + "!" * 80, flush=True)

    def check_tasks(found: dict[str, Any]) -> None:
        if not found["same_as_whole"]:
            text = f"MISMATCH: bucket tasks {found['counts']} != the whole check's"
            report["mismatches"].append(text)
            print("!" * 80 + "\n" + text + "\n" + "!" * 80, flush=True)

    began = time.perf_counter()
    from dynamo_lake.reconciliation.engines import DuckDBEngine

    if args.bucket_tasks_only:
        return _bucket_tasks_only(args, days_list[-1], check_tasks)
    if args.changes_only:
        return _changes_only(args, check)

    has_bucket = "bucket" in inspect.signature(DuckDBEngine).parameters
    print(
        f"reconciliation from the current state: {args.items:,} items, {args.changes:,} "
        f"changes a day, export days {days_list}; changes on {args.items:,} and "
        f"{args.big_items:,} items; DuckDB memory limit {args.memory_mb} MB, "
        f"{os.cpu_count()} cores",
        flush=True,
    )

    run = Run(args, args.items, log_days)
    print(f"{run.items:,}-item lake in {run.lake} ({run.buckets} buckets)", flush=True)
    changes_done = False
    for day in range(log_days + 1):
        # Before day d's files arrive: the state to the end of day d-1 if day d is measured
        # (or every day with --merge-every-day); the initial build before day 1.
        wanted = START + day * DAY
        due = day == 1 or day in days_list or args.merge_every_day
        if day >= 1 and run.watermark < wanted and due:
            run.add_through(day - 1)
            run.merge(wanted)
        if day not in days_list and day != CHANGES_DAY:
            continue
        run.add_through(day)
        if day in days_list:
            as_of = START + (day + 1) * DAY - SECOND
            print(
                f"day {day}: export at {_moment(as_of)}, state at {_moment(run.watermark)}",
                flush=True,
            )
            export = run.export("export", f"full-day{day}", as_of=as_of)
            by_bucket = run.compare("buckets", "export", export, as_of=as_of)
            state = run.compare("state", "export", export, as_of=as_of)
            log = run.compare("log", "export", export, as_of=as_of)
            entry = {"as_of": as_of, "buckets": by_bucket, "state": state, "log": log}
            entry["lake_rows_generated"] = run.items + day * run.changes
            report["export"][str(day)] = entry
            check(f"export day {day} (as_of {as_of}, lake {run.lake})", state, log)
            check(f"export day {day} by bucket (as_of {as_of}, lake {run.lake})", by_bucket, log)
            # The DAG's path every day: its spill and memory must not grow with history.
            entry["bucket_tasks"] = _bucket_tasks(run, export, as_of, state)
            check_tasks(entry["bucket_tasks"])
            if day == last:
                if has_bucket:
                    entry["bucket"] = run.compare("state", "export", export, as_of=as_of, bucket=0)
                    report["bucket"] = {"day": day, **entry["bucket"]}
                else:
                    print("  per-bucket comparison: DuckDBEngine takes no bucket=; not measured")
            save()
        if day == CHANGES_DAY and not changes_done:
            changes_done = True
            report["changes"][str(run.items)] = _changes(run, args, check)
            save()

    big = Run(args, args.big_items, CHANGES_DAY)
    print(f"{big.items:,}-item lake in {big.lake} ({big.buckets} buckets)", flush=True)
    big.add_through(0)
    big.merge(START + DAY)
    big.add_through(CHANGES_DAY)
    report["changes"][str(big.items)] = _changes(big, args, check)
    save()
    total = time.perf_counter() - began
    report["total_seconds"] = total
    save()
    _summary(report, args, days_list, run, big)
    print(f"\ntotal {total / 60:.1f} min; results: {out}")
    if report["mismatches"]:
        print(f"\n{len(report['mismatches'])} MISMATCH(ES) between state- and log-based counts:")
        for text in report["mismatches"]:
            print("  " + text)
        return 1
    return 0


def _bucket_tasks_only(args: argparse.Namespace, day: int, check_tasks: Any) -> int:
    """Section 3 alone, on the lake, state and export a full run left (its last day)."""
    run = Run.__new__(Run)
    log_args = argparse.Namespace(
        items=args.items, changes=args.changes, days=max(day, CHANGES_DAY), files_per_day=8, seed=1
    )
    run.items, run.memory = args.items, args.memory_mb
    run.folder = BENCH_DATA / f"reconcile-state-{RUN}-{bench_state._params(log_args)}"
    run.lake, run.work = run.folder / "run", run.folder / "work"
    run.exports = run.folder / "exports"
    export = run.exports / f"full-day{day}"
    if not (run.lake / "_current").exists() or not export.exists():
        raise SystemExit(f"no full run's lake and export day {day} in {run.folder}: run it first")
    as_of = START + (day + 1) * DAY - SECOND
    print(f"bucket tasks on {run.lake}, export day {day} at {_moment(as_of)}", flush=True)
    log = run.compare("log", "export", export, as_of=as_of)
    whole = run.compare("state", "export", export, as_of=as_of)
    by_bucket = run.compare("buckets", "export", export, as_of=as_of)
    found = _bucket_tasks(run, export, as_of, whole)
    check_tasks(found)
    _print_bucket_tasks(found, whole, log)
    print(
        f"  by bucket in one process (as reconcile_table runs it): {by_bucket['seconds']:.1f} s "
        f"(cpu {by_bucket['cpu_seconds']:.1f} s), peak RSS {by_bucket['peak_mb']} MB, spill "
        f"{by_bucket['spill_mb']:.0f} MB; log-based / by bucket: "
        + _ratio(log, by_bucket, 2, at_most=False)
    )
    same = found["same_as_whole"] and _same(whole, log) and _same(by_bucket, log)
    return 0 if same else 1


def _changes_only(args: argparse.Namespace, check: Any) -> int:
    """Section 2 alone: the changes method on the two tables (each run rebuilt)."""
    found = {}
    for items in (args.items, args.big_items):
        run = Run(args, items, CHANGES_DAY)
        print(f"{run.items:,}-item lake in {run.lake} ({run.buckets} buckets)", flush=True)
        run.add_through(0)
        run.merge(START + DAY)
        run.add_through(CHANGES_DAY)
        found[items] = _changes(run, args, check)
    small, large = found[args.items]["state"], found[args.big_items]["state"]
    print(
        f"state-based changes, {args.big_items:,} / {args.items:,} items: "
        + _ratio(large, small, 1.3, at_most=True)
    )
    return 0


def _print_bucket_tasks(
    found: dict[str, Any], whole: dict[str, Any], log: dict[str, Any] | None = None
) -> None:
    splits, compares = found["split"], found["compare"]
    cpu = sum(i["cpu_seconds"] for i in splits) + sum(i["cpu_seconds"] for i in compares)
    seconds = sum(i["seconds"] for i in splits) + sum(i["seconds"] for i in compares)
    one = max(compares, key=lambda item: item["peak_mb"])
    print(
        f"  whole state-based check in one process: {whole['seconds']:.1f} s (cpu "
        f"{whole['cpu_seconds']:.1f} s), peak RSS {whole['peak_mb']} MB, spill "
        f"{whole['spill_mb']:.0f} MB\n"
        f"  split: {len(splits)} tasks, each at most {max(i['seconds'] for i in splits):.1f} s, "
        f"peak RSS {max(i['peak_mb'] for i in splits)} MB, spill "
        f"{max(i['spill_mb'] for i in splits):.0f} MB\n"
        f"  compare: {len(compares)} tasks of one bucket of {found['buckets']}, each at most "
        f"{max(i['seconds'] for i in compares):.1f} s (cpu "
        f"{max(i['cpu_seconds'] for i in compares):.1f} s), peak RSS {one['peak_mb']} MB "
        f"(imports {one['base_mb']} MB), spill {max(i['spill_mb'] for i in compares):.0f} MB\n"
        f"  all tasks / whole check: wall {seconds / whole['seconds']:.2f}x, cpu "
        f"{cpu / whole['cpu_seconds']:.2f}x; peak RSS per compare task / whole: "
        f"{one['peak_mb'] / whole['peak_mb']:.2f}x; counts equal: "
        f"{'yes' if found['same_as_whole'] else 'NO'}"
    )
    if log is not None:
        tasks = {"seconds": seconds, "cpu_seconds": cpu}
        print(
            f"  log-based check: {log['seconds']:.1f} s (cpu {log['cpu_seconds']:.1f} s); "
            "log-based / all bucket tasks: " + _ratio(log, tasks, 2, at_most=False)
        )


TASKS_HEADER = (
    f"{'':<8}{'split cpu s':>12}{'RSS MB':>8}{'spill MB':>9}{'compare cpu s':>15}{'RSS MB':>8}"
    f"{'spill MB':>9}{'all cpu s':>10}{'all wall s':>11}  counts equal"
)


def _most(tasks: list[dict[str, Any]], key: str) -> float:
    return max(float(task[key]) for task in tasks)


def _tasks_total(found: dict[str, Any]) -> dict[str, float]:
    every = found["split"] + found["compare"]
    return {
        "seconds": sum(task["seconds"] for task in every),
        "cpu_seconds": sum(task["cpu_seconds"] for task in every),
    }


def _tasks_row(day: int, found: dict[str, Any]) -> str:
    """One day's bucket tasks: the costliest split and compare task, and all of them."""
    split, compare, total = found["split"], found["compare"], _tasks_total(found)
    return (
        f"day {day:>2}  {_most(split, 'cpu_seconds'):>12.1f}{_most(split, 'peak_mb'):>8.0f}"
        f"{_most(split, 'spill_mb'):>9.0f}{_most(compare, 'cpu_seconds'):>15.1f}"
        f"{_most(compare, 'peak_mb'):>8.0f}{_most(compare, 'spill_mb'):>9.0f}"
        f"{total['cpu_seconds']:>10.1f}{total['seconds']:>11.1f}  "
        f"{'yes' if found['same_as_whole'] else 'NO'}"
    )


def _changes(run: Run, args: argparse.Namespace, check: Any) -> dict[str, Any]:
    as_of = START + (CHANGES_DAY + 1) * DAY
    window_start = as_of - LEAD
    print(
        f"changes on {run.items:,} items: window [{_moment(window_start)}, {_moment(as_of)}), "
        f"lake days 0..{CHANGES_DAY}",
        flush=True,
    )
    export = run.export(
        "changes", f"changes-day{CHANGES_DAY}", as_of=as_of, window_start=window_start
    )
    found: dict[str, Any] = {"as_of": as_of, "window_start": window_start}
    for basis in ("buckets", "state") + (() if args.no_changes_log else ("log",)):
        found[basis] = run.compare(basis, "changes", export, as_of=as_of, window_start=window_start)
    if not args.no_changes_log:
        for basis in ("buckets", "state"):
            check(
                f"changes on {run.items} items, {basis} (as_of {as_of}, lake {run.lake})",
                found[basis],
                found["log"],
            )
    return found


def _summary(
    report: dict[str, Any], args: argparse.Namespace, days_list: list[int], run: Run, big: Run
) -> None:
    exports = report["export"]
    first, last = str(days_list[0]), str(days_list[-1])
    print(
        f"\n1. export method: {args.items:,} items, {args.changes:,} changes a day; the lake "
        "holds days 0..d, the state W = end of day d-1, T = end of day d - 1 s, ε = 1 s; "
        "fresh process each, work seconds (imports excluded), CPU seconds of all threads, "
        "peak RSS (VmHWM), peak spill folder"
    )
    print(HEADER)
    labels = {"buckets": "by bucket", "state": "state, whole", "log": "log-based"}
    for day in days_list:
        entry = exports[str(day)]
        for basis, label in labels.items():
            if basis in entry:
                print(_row(f"day {day:>2} {label}", entry[basis]))
    if last in exports and first in exports:
        for basis in ("buckets", "state"):
            if basis not in exports[first] or basis not in exports[last]:
                continue
            top, bottom = exports[last][basis], exports[first][basis]
            print(
                f"{labels[basis]}: day {last} / day {first}: "
                + _ratio(top, bottom, 1.3, at_most=True)
                + f"; log-based / {labels[basis]} at day {last}: "
                + _ratio(exports[last]["log"], top, 2, at_most=False)
            )
        for basis in labels:
            spills = ", ".join(
                f"day {day} {exports[str(day)][basis]['spill_mb']:.0f} MB"
                for day in days_list
                if basis in exports[str(day)]
            )
            print(f"spill, {labels[basis]}: {spills}")
        same = all(
            _same(entry[basis], entry["log"])
            for entry in (exports[str(day)] for day in days_list)
            for basis in ("buckets", "state")
            if basis in entry
        )
        print(
            f"state-based counts equal the log-based ones on every day: {'yes' if same else 'NO'}"
        )

    print(
        f"\n2. changes method: {args.changes:,} changes a day; the lake holds days 0..2, the "
        "state W = end of day 0, T = end of day 2, window_start = T - 24 h 15 min"
    )
    print(HEADER)
    changes = report["changes"]
    for items in (run.items, big.items):
        entry = changes.get(str(items))
        if entry is None:
            continue
        for basis, label in labels.items():
            if basis in entry:
                print(_row(f"{items:>11,} items {label}", entry[basis]))
    small, large = changes.get(str(run.items)), changes.get(str(big.items))
    if small and large:
        for basis in ("buckets", "state"):
            if basis not in small or basis not in large:
                continue
            print(
                f"{labels[basis]}, {big.items:,} / {run.items:,} items: "
                + _ratio(large[basis], small[basis], 1.3, at_most=True)
                + f"; peak RSS {large[basis]['peak_mb']} / {small[basis]['peak_mb']} MB, spill "
                f"{large[basis]['spill_mb']:.0f} / {small[basis]['spill_mb']:.0f} MB"
            )
        if "log" in small and "log" in large:
            same = all(
                _same(entry[basis], entry["log"])
                for entry in (small, large)
                for basis in ("buckets", "state")
                if basis in entry
            )
            print(f"state-based counts equal the log-based ones: {'yes' if same else 'NO'}")

    tasked = [day for day in days_list if exports.get(str(day), {}).get("bucket_tasks")]
    if tasked:
        print("\n3. bucket tasks, as the DAG maps them (each task its own process), every day")
        print(TASKS_HEADER)
        for day in tasked:
            print(_tasks_row(day, exports[str(day)]["bucket_tasks"]))
        top, bottom = (
            exports[str(tasked[-1])]["bucket_tasks"],
            exports[str(tasked[0])]["bucket_tasks"],
        )
        print(
            f"all bucket tasks, day {tasked[-1]} / day {tasked[0]}: "
            + _ratio(_tasks_total(top), _tasks_total(bottom), 1.3, at_most=True)
            + f"; compare-task spill {_most(top['compare'], 'spill_mb'):.0f} / "
            f"{_most(bottom['compare'], 'spill_mb'):.0f} MB, split-task spill "
            f"{_most(top['split'], 'spill_mb'):.0f} / {_most(bottom['split'], 'spill_mb'):.0f} MB"
        )
        print(f"day {tasked[-1]}:")
        _print_bucket_tasks(top, exports[str(tasked[-1])]["state"], exports[str(tasked[-1])]["log"])
    bucket = report["bucket"]
    print("\n   one bucket filtered while copied (DuckDBEngine(bucket=...))")
    if bucket is None:
        print("  not measured: DuckDBEngine takes no bucket= (or the last day was not reached)")
    else:
        whole = exports[str(bucket["day"])]["state"]
        print(
            f"  export, day {bucket['day']}, bucket 0 of {bucket['buckets']}, state-based: "
            f"peak RSS {bucket['peak_mb']} MB (whole table {whole['peak_mb']} MB, imports "
            f"{bucket['base_mb']} MB), {bucket['seconds']:.1f} s (cpu "
            f"{bucket['cpu_seconds']:.1f} s), spill {bucket['spill_mb']:.0f} MB; table "
            f"{bucket['table_count']:,}, lake {bucket['lake_count']:,} items, findings "
            f"{bucket['counts'] or 'none'}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
