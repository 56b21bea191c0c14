"""Reconciliation benchmark: latest state and a key-level diff on DuckDB, under a memory limit.

One run generates (or reuses from ``bench-data/``) synthetic lake tables in the contract's
layout (Parquet, ZSTD, ``year=/month=/day=``; rows of ~200 bytes of canonical JSON, 2 or 3
events per key), then times, each in a fresh process whose peak RSS (``VmHWM``) is its own:

``scan``
    a plain scan of the lake's four columns (``count(*)``, ``max`` of each): the least any
    query over the lake must do.
``latest``
    the lake's latest state (``dynamo_lake.lake.query.live_count_sql``: the one
    definition's aggregation, the latest row per key by the tie rule): live items counted,
    under DuckDB's memory limit (default 1 GB), spilling to a temporary folder whose peak
    size is reported.
``latest+data``
    the same carrying each live item's ``data`` (``latest_state_sql``), as a comparison must.
``diff``
    the export method's key-level comparison (``compare_export``: the three cuts T-ε, T,
    T+ε, missing/extra/different with samples) of a full export of N items against a lake of
    M rows.
``latest/joined``, ``diff/joined`` (the baseline of exact keys)
    the same SQL with each row's key made by DuckDB while copying, as the reconciliation
    did before keys were exact: the key attributes' text from DuckDB's JSON reader joined by
    U+001F (which merges keys whose values hold that character, and reads a number through a
    double). The ratios say what exact keys cost.

Every time includes the engine's copy of the Parquet into DuckDB tables, with each row's key
(what a reconciliation does before its query; see ``dynamo_lake.reconciliation.engines``).

Usage::

    python benchmarks/bench_reconcile.py                  # 10M-row lake; 1M export vs 4M lake
    python benchmarks/bench_reconcile.py --rows 2000000 --diff-lake-rows 800000 --diff-items 200000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DATA = ROOT / "bench-data"
T = 1_717_243_200_000_000  # 2024-06-01T12:00:00Z
DAY = 86_400_000_000

for _extra in (ROOT / "dev", ROOT / "include"):
    if str(_extra) not in sys.path:
        sys.path.insert(0, str(_extra))


def _key_data(key: object, version: object) -> object:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(
        '{"pk":"customer#',
        pc.cast(key, pa.string()),
        '","sk":',
        pc.cast(pc.multiply(key, 7), pa.string()),
        ',"status":"v',
        pc.cast(version, pa.string()),
        '","note":"an order of some size, with a note long enough to be typical"}',
        "",
    )


def _count_up(size: int, start: int) -> object:
    import pyarrow as pa
    import pyarrow.compute as pc

    ones = pa.repeat(pa.scalar(1, pa.int64()), size)
    return pc.add(pc.subtract(pc.cumulative_sum(ones), 1), start)


def _write_lake(folder: Path, rows: int, events: int) -> None:
    """``rows`` events, ``events`` per key (an insert, then updates), spread over the
    ``3 * events`` days before T; every key's last event is live."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from dynamo_lake.lake.writer import CDC_SCHEMA

    chunk = 1_000_000
    for start in range(0, rows, chunk):
        size = min(chunk, rows - start)
        index = _count_up(size, start)
        key = pc.divide(index, events)
        version = pc.subtract(index, pc.multiply(key, events))
        back = pc.add(pc.multiply(pc.subtract(events - 1, version), DAY * 3), pc.multiply(key, 7))
        table = pa.table(
            [
                pc.binary_join_element_wise("u-", pc.cast(index, pa.string()), ""),
                pc.if_else(pc.equal(version, 0), "I", "U"),
                pc.cast(pc.subtract(T - DAY, back), pa.timestamp("us", tz="UTC")),
                _key_data(key, version),
            ],
            schema=CDC_SCHEMA,
        )
        target = folder / "year=2024" / "month=05" / "day=25"
        target.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, target / f"part-{start // chunk:05d}.parquet", compression="zstd")


def _write_export(folder: Path, items: int, events: int) -> None:
    """A full export at T of ``items`` keys: the lake's latest data, 0.1 % of it changed."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from dynamo_lake.lake.writer import CDC_SCHEMA

    key = _count_up(items, 0)
    changed = pc.equal(pc.bit_wise_and(key, 1023), 5)
    version = pc.if_else(changed, 99, events - 1)
    table = pa.table(
        [
            pc.binary_join_element_wise("x-", pc.cast(key, pa.string()), ""),
            pa.repeat("I", items),
            pa.repeat(pa.scalar(T, pa.timestamp("us", tz="UTC")), items),
            _key_data(key, version),
        ],
        schema=CDC_SCHEMA,
    )
    target = folder / "year=2024" / "month=06" / "day=01"
    target.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target / "export.parquet", compression="zstd", row_group_size=65_536)


_CHILD = r"""
import json, re, sys, threading, time, os
from pathlib import Path
sys.path[:0] = [{include!r}]
from dynamo_lake.lake.query import LakeDatabase, lake_dataset, latest_state_sql, live_count_sql
from dynamo_lake.reconciliation.engines import DuckDBEngine
from dynamo_lake.reconciliation.compare import KeyAttribute, compare_export
mode, lake, snapshot, memory, spill = sys.argv[1:6]
peak_spill = [0]
def watch():
    while True:
        size = sum(f.stat().st_size for f in Path(spill).rglob("*") if f.is_file())
        peak_spill[0] = max(peak_spill[0], size)
        time.sleep(0.2)
threading.Thread(target=watch, daemon=True).start()
started = time.perf_counter()  # the engine copies the Parquet into DuckDB: timed too
snapshot_ds = lake_dataset(snapshot) if snapshot != "-" else None
if mode.endswith("/joined"):
    import pyarrow.dataset as ds
    from dynamo_lake.reconciliation.engines import _empty
    class Joined(DuckDBEngine):
        # The baseline: keys made by DuckDB's JSON reader, joined by U+001F, while copying.
        def __init__(self, lake, snapshot):
            self.database = LakeDatabase(memory_limit_mb=int(memory), spill_folder=spill)
            self.connection = self.database.connection
            for name, source in (("lake", lake), ("snapshot", snapshot or _empty())):
                scanner = ds.Scanner.from_dataset(
                    source, columns=["uuid", "op", "time_stamp", "data"], batch_size=65_536,
                    batch_readahead=2, fragment_readahead=1)
                self.connection.register("source", scanner)
                self.connection.execute(
                    f"CREATE TEMP TABLE {{name}} AS SELECT uuid, op, time_stamp, data, "
                    f"(data ->> '$.pk') || chr(31) || (data ->> '$.sk') AS k, TRUE AS stream "
                    f"FROM source")
                self.connection.unregister("source")
    engine = Joined(lake_dataset(lake), snapshot_ds)
else:
    engine = DuckDBEngine(lake_dataset(lake), snapshot_ds, key_names=["pk", "sk"],
                          memory_limit_mb=int(memory), spill_folder=spill)
kind = mode.split("/")[0]
if kind == "scan":
    result = engine.connection.sql(
        "SELECT count(*), max(uuid), max(op), max(time_stamp), max(length(data)) FROM lake"
    ).fetchall()[0][0]
elif kind == "latest":
    result = engine.connection.sql(live_count_sql("lake")).fetchall()[0][0]
elif kind == "latest+data":
    result = engine.connection.sql(
        f"SELECT count(*), max(length(data)) FROM ({{latest_state_sql('lake')}}) live"
    ).fetchall()[0][0]
else:
    keys = [KeyAttribute("pk", "S"), KeyAttribute("sk", "N")]
    found = compare_export(engine, keys, {t}, 1_000_000)
    result = {{"table": found.table_count, "lake": found.lake_count, "drift": found.counts}}
seconds = time.perf_counter() - started
status = Path("/proc/self/status").read_text()
peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) // 1024
print(json.dumps({{"seconds": seconds, "result": result, "peak_mb": peak,
                  "spill_mb": peak_spill[0] // (1 << 20)}}))
"""


def _measure(mode: str, lake: Path, snapshot: Path | None, memory_mb: int) -> dict[str, object]:
    spill = BENCH_DATA / f"spill-{mode.replace('/', '-')}"
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    script = _CHILD.format(include=str(ROOT / "include"), t=T)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            mode,
            str(lake),
            str(snapshot or "-"),
            str(memory_mb),
            str(spill),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    shutil.rmtree(spill, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _lake(rows: int, events: int) -> Path:
    folder = BENCH_DATA / f"lake-v2-{rows}r-{events}e"
    if not folder.exists():
        started = time.perf_counter()
        temporary = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        _write_lake(temporary, rows, events)
        temporary.rename(folder)
        print(f"generated {folder.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--diff-lake-rows", type=int, default=4_000_000)
    parser.add_argument("--diff-items", type=int, default=1_000_000)
    parser.add_argument("--memory-limit-mb", type=int, default=1024)
    args = parser.parse_args()
    BENCH_DATA.mkdir(exist_ok=True)

    big = _lake(args.rows, 3)
    scan = _measure("scan", big, None, args.memory_limit_mb)
    latest = _measure("latest", big, None, args.memory_limit_mb)
    latest_joined = _measure("latest/joined", big, None, args.memory_limit_mb)
    with_data = _measure("latest+data", big, None, args.memory_limit_mb)

    events = max(1, args.diff_lake_rows // args.diff_items)
    lake = _lake(args.diff_items * events, events)
    export = BENCH_DATA / f"export-v2-{args.diff_items}i-{events}e"
    if not export.exists():
        _write_export(export, args.diff_items, events)
    diff = _measure("diff", lake, export, args.memory_limit_mb)
    diff_joined = _measure("diff/joined", lake, export, args.memory_limit_mb)

    cores = os.cpu_count()
    print(
        f"\nDuckDB, memory limit {args.memory_limit_mb} MB, {cores} cores; peak RSS of each process"
    )
    header = f"{'contender':<13} {'rows':>12} {'seconds':>9} {'rows/s':>12} {'RSS MB':>7}"
    print(f"{header} {'spill MB':>9}  result")
    for name, rows, found in (
        ("scan", args.rows, scan),
        ("latest", args.rows, latest),
        ("latest/joined", args.rows, latest_joined),
        ("latest+data", args.rows, with_data),
        ("diff", args.diff_lake_rows + args.diff_items, diff),
        ("diff/joined", args.diff_lake_rows + args.diff_items, diff_joined),
    ):
        seconds = float(found["seconds"])  # type: ignore[arg-type]
        print(
            f"{name:<13} {rows:>12,} {seconds:>9.2f} {rows / seconds:>12,.0f} "
            f"{found['peak_mb']:>7} {found['spill_mb']:>9}  {found['result']}"
        )

    def seconds(found: dict[str, object]) -> float:
        return float(found["seconds"])  # type: ignore[arg-type]

    print(f"\nlatest state / plain scan: {seconds(latest) / seconds(scan):.2f}x (goal: within 3x)")
    print(
        "latest state with each live item's data / plain scan: "
        f"{seconds(with_data) / seconds(scan):.2f}x"
    )
    print(
        f"exact keys / keys joined in SQL: latest {seconds(latest) / seconds(latest_joined):.2f}x, "
        f"diff {seconds(diff) / seconds(diff_joined):.2f}x (goal: at most 1.3x)"
    )
    print(
        f"diff of a {args.diff_items:,}-item export against a {args.diff_lake_rows:,}-row lake: "
        f"{seconds(diff):.1f} s, peak RSS {diff['peak_mb']} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
