"""Current-state benchmark: the daily merge against recomputing the state from the log.

One run generates (or reuses from ``bench-data/``) a CDC log in the contract's layout
(Parquet, ZSTD, ``year=/month=/day=``, every row in the partition of its own UTC day;
``data`` is ~145 bytes of canonical JSON keyed by the string attribute ``pk``; a random
36-character uuid), deterministic for a seed, under
``bench-data/state-v1-<items>i-<changes>c-<days>d/log/`` (delete it to regenerate):

* day 0 (2024-06-01): the initial backfill, one insert per item, all at the export's time,
  in files of 1M rows named as the lake writer names a backfill's;
* days 1..D: ``--changes`` events a day, 80 % updates of random live items, 10 % inserts of
  new items, 10 % deletes (of the oldest items, as a TTL would: the live item count stays
  ``--items`` and the state gains a tombstone per delete), at random times of that day, in
  ``--files-per-day`` files of consecutive times, named as Firehose names its files.

Then it replays the days against a current-state table (``dynamo_lake.state.current``,
the local folder lake: pyiceberg's SQL catalog in ``<lake>/_current/``). The run's lake is
a folder of hard links to the log, to which each day's files are added before that day's
merge, so the log grows as it would. Day d is merged to the watermark W = midnight at the
end of day d (every row of days 0..d is <= W), each step in a fresh process whose peak RSS
(``VmHWM``) is its own, as the DAG's mapped tasks run them:

``plan``
    :func:`plan_merge`: the new lake files' rows up to W staged by bucket.
``bucket``
    :func:`merge_bucket`, one process per bucket of the plan, one after the other.
``commit``
    :func:`commit_merge` and :func:`remove_orphans`, as the DAG's commit task does.

Day 0 (the initial build), day 1 and day D are measured step by step; the days between are
merged by :func:`merge_state` in one process per day (``--steps-every-day``: step by step
too), so the state really grows day by day. After each day, untimed, snapshots older than
the ``--keep-snapshots`` newest are expired and the files no snapshot reads are removed
(the DAG's daily expiry, seven days, compressed into the run's minutes).

At day D, each in a fresh process, with the same DuckDB memory limit:

``recompute``
    the latest state recomputed from the whole log: the log copied into DuckDB with exact
    keys (``LakeDatabase.add``), the latest row of every key as of W (tombstones included,
    with uuid, data and bucket: the state table's columns) written to one ZSTD Parquet
    file. A lower bound of a rebuild: no sort by key, no Iceberg commit.
``read log``
    the latest-state query (``latest_state_sql``) over the day-D log: every live item with
    its data, to an Arrow table (copy into DuckDB included).
``read state``
    the live items of the current state: ``live(read_state(table))``, to an Arrow table.
``read state/duckdb``
    the same rows read by DuckDB from the current snapshot's data files
    (``SELECT key, op, data ... WHERE op <> 'D'``, to an Arrow table).

The run's lake and state stay in ``run/`` beside ``log/`` until the next run (at the
default scale, up to ``--keep-snapshots`` + 1 copies of the state: several GB).

What the issue asks, printed with each measured ratio and whether it is met: the daily
merge's cost is flat (day D / day 1 <= 1.3); at day D a merge is >= 2x cheaper than the
recompute; reading the current state's live items is >= 5x cheaper than the latest-state
query over the log (printed for both ways of reading the state; ``read_state`` is the
module's own); and the peak memory of the plan step and of each bucket's task.

Times cover the work only (interpreter start-up and imports are excluded); a merge's time
is the sum of its steps'. CPU seconds are the process's (all threads). DuckDB spills to the
process's ``TMPDIR`` (a fresh folder per process), whose peak size is reported. The goals of
the issue are printed next to what was measured; nothing is asserted (timings on a shared
machine are noisy). Results are also written as JSON to
``bench-data/bench_state-<items>i-<changes>c-<days>d.json``.

Usage::

    python benchmarks/bench_state.py          # = make bench-state: 10M items, 1M a day, 30 days
    python benchmarks/bench_state.py --items 200000 --changes 20000 --days 5     # quick
    python benchmarks/bench_state.py --items 2000000 --changes 200000 --days 30  # medium

Other options: ``--buckets`` (default ``default_buckets(items)``: 16 for 10M),
``--memory-limit-mb`` (DuckDB's, every step and baseline; default 1024, the tables file's
default), ``--files-per-day`` (8), ``--keep-snapshots`` (7; 0 keeps all), ``--steps-every-day``,
``--seed``, ``--json PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DATA = ROOT / "bench-data"
START = 1_717_200_000_000_000  # 2024-06-01T00:00:00Z: day 0, the backfill
DAY = 86_400_000_000
EXPORT_AT = START + DAY // 2  # the backfill's export time
GENERATOR = "v1"  # bump when the generated log changes
INSERT_SHARE = DELETE_SHARE = 0.1  # of a day's changes; the rest are updates
BACKFILL_FILE_ROWS = 1_000_000
DATABASE, TABLE, KEY_NAMES = "bench", "items", ("pk",)
NOTE = "an order of some size, with a note long enough to be typical"

for _extra in (ROOT / "dev", ROOT / "include"):
    if str(_extra) not in sys.path:
        sys.path.insert(0, str(_extra))


# --- the log -------------------------------------------------------------------------------


def _shares(changes: int) -> tuple[int, int, int]:
    """Updates, inserts and deletes of one day."""
    inserts, deletes = round(changes * INSERT_SHARE), round(changes * DELETE_SHARE)
    return changes - inserts - deletes, inserts, deletes


def _random_sql(seed: int, day: int, salt: str, first: int = 0) -> str:
    """DuckDB SQL: a deterministic 60-bit number per row ``first + i`` (md5: the same in
    every DuckDB version)."""
    return f"('0x' || substr(md5('{seed}-{day}-{salt}-' || ({first} + i)), 1, 15))::UBIGINT"


def _rows_sql(
    seed: int, day: int, key: str, op: str, time_us: str, count: int, first: int = 0
) -> str:
    """DuckDB SQL: ``count`` lake rows (uuid, op, time_us, data) of ``day``, ordered by time;
    ``first``: the index of the first row in its day (uuids are unique across a day's files)."""
    digest = f"md5('{seed}-{day}-u-' || ({first} + i))"
    uuid = (
        f"substr({digest}, 1, 8) || '-' || substr({digest}, 9, 4) || '-' || "
        f"substr({digest}, 13, 4) || '-' || substr({digest}, 17, 4) || '-' || "
        f"substr({digest}, 21, 12)"
    )
    amount = f"({_random_sql(seed, day, 'a', first)} % 100000)"
    return f"""
        WITH events AS (
            SELECT i, {key} AS key, {op} AS op, {time_us} AS time_us FROM range({count}) r(i)
        )
        SELECT {uuid} AS uuid, op, time_us,
            '{{"amount":' || {amount} || ',"note":"{NOTE}","pk":"item#' || key
                || '","status":"v{day}","updated":' || time_us || '}}' AS data
        FROM events ORDER BY time_us, i
    """


def _partition(day: int) -> str:
    from dynamo_lake.contract import partition_of

    return partition_of(START + day * DAY)


def _write_rows(connection: Any, sql: str, folder: Path, names: list[str]) -> None:
    """The rows of ``sql`` in CDC_SCHEMA, as len(names) files of consecutive rows."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from dynamo_lake.lake.writer import CDC_SCHEMA

    found = connection.sql(sql).to_arrow_table()
    table = pa.table(
        [
            found["uuid"],
            found["op"],
            pc.cast(pc.cast(found["time_us"], pa.int64()), pa.timestamp("us", tz="UTC")),
            found["data"],
        ],
        schema=CDC_SCHEMA,
    )
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-table.num_rows // len(names))
    for index, name in enumerate(names):
        part = table.slice(index * size, size)
        pq.write_table(part, folder / name, compression="zstd")


def _write_log(folder: Path, items: int, changes: int, days: int, files: int, seed: int) -> None:
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    # Day 0: the backfill, as the lake writer publishes an export (``<export id>-...``).
    export_id = f"0{EXPORT_AT // 1000}-5eed{seed % 65536:04x}"
    for start in range(0, items, BACKFILL_FILE_ROWS):
        count = min(BACKFILL_FILE_ROWS, items - start)
        sql = _rows_sql(seed, 0, f"{start} + i", "'I'", str(EXPORT_AT), count, start)
        name = f"{export_id}-data-{start // BACKFILL_FILE_ROWS:05d}-00000.parquet"
        _write_rows(connection, sql, folder / _partition(0), [name])
    updates, inserts, deletes = _shares(changes)
    for day in range(1, days + 1):
        # Deletes take the oldest items (keys below day * deletes); updates any item live
        # all day; inserts new keys after the last day's. Times are random in the day.
        low, high = day * deletes, items + (day - 1) * inserts
        key = f"""CASE
            WHEN i < {updates} THEN {low} + {_random_sql(seed, day, "k")} % {high - low}
            WHEN i < {updates + inserts} THEN {high} + i - {updates}
            ELSE {(day - 1) * deletes} + i - {updates + inserts} END"""
        op = f"CASE WHEN i < {updates} THEN 'U' WHEN i < {updates + inserts} THEN 'I' ELSE 'D' END"
        time_us = f"{START + day * DAY} + {_random_sql(seed, day, 't')} % {DAY}"
        sql = _rows_sql(seed, day, key, op, time_us, changes)
        moment = datetime.fromtimestamp((START + day * DAY) // 1_000_000, UTC)
        names = [
            f"dynamo-cdc-1-{moment + timedelta(hours=24 * part / files):%Y-%m-%d-%H-%M-%S}-"
            f"{seed:08x}-0000-4000-8000-{day:06d}{part:06d}.parquet"
            for part in range(files)
        ]
        _write_rows(connection, sql, folder / _partition(day), names)
    connection.close()


def _log(args: argparse.Namespace) -> Path:
    folder = BENCH_DATA / _name(args) / "log"
    if not folder.exists():
        started = time.perf_counter()
        temporary = folder.with_name("log.tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        _write_log(temporary, args.items, args.changes, args.days, args.files_per_day, args.seed)
        temporary.rename(folder)
        print(
            f"generated {folder.parent.name} in {time.perf_counter() - started:.0f} s", flush=True
        )
    return folder


def _params(args: argparse.Namespace) -> str:
    """``<items>i-<changes>c-<days>d``, and any other input option that is not the default."""
    name = f"{args.items}i-{args.changes}c-{args.days}d"
    if args.files_per_day != 8:
        name += f"-{args.files_per_day}f"
    if args.seed != 1:
        name += f"-s{args.seed}"
    return name


def _name(args: argparse.Namespace) -> str:
    """The cache folder of the log (and of the run's lake and state)."""
    return f"state-{GENERATOR}-{_params(args)}"


def _add_day(log: Path, lake: Path, day: int) -> int:
    """Hard-link day ``day``'s log files into the run's lake; returns how many."""
    source, target = log / _partition(day), lake / _partition(day)
    target.mkdir(parents=True, exist_ok=True)
    files = sorted(source.iterdir())
    for path in files:
        try:
            os.link(path, target / path.name)
        except OSError:
            shutil.copy2(path, target / path.name)
    return len(files)


# --- the measurements (each in a fresh subprocess) -----------------------------------------


def _status(field: str) -> int:
    """A field of /proc/self/status (VmHWM: peak RSS; VmRSS: now), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    return 0


def _plain(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def _child(mode: str, params: dict[str, Any]) -> dict[str, Any]:
    """One measurement, in this (fresh) process: imports first, untimed."""
    import duckdb
    import pyarrow as pa  # noqa: F401
    import pyarrow.dataset  # noqa: F401
    import pyarrow.parquet as pq
    import pyiceberg.catalog.sql
    import pyiceberg.expressions
    import pyiceberg.io.pyarrow
    import pyiceberg.partitioning
    import pyiceberg.table
    import pyiceberg.transforms  # noqa: F401

    from dynamo_lake.lake.query import (
        LakeDatabase,
        keyed_rows_sql,
        lake_dataset,
        latest_of_sql,
        latest_state_sql,
        time_literal,
    )
    from dynamo_lake.state.current import (
        ORPHAN_AGE,
        BucketMerge,
        MergePlan,
        StateTarget,
        commit_merge,
        merge_bucket,
        merge_state,
        open_catalog,
        open_state_table,
        plan_merge,
        read_state,
        remove_orphans,
    )
    from dynamo_lake.state.maintenance import expire_state
    from dynamo_lake.state.merge import bucket_sql, live

    spill = Path(os.environ["TMPDIR"])
    peak_spill = [0]

    def watch() -> None:
        while True:
            size = sum(f.stat().st_size for f in spill.rglob("*") if f.is_file())
            peak_spill[0] = max(peak_spill[0], size)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    lake, memory, watermark = params["lake"], params["memory_limit_mb"], params["watermark_us"]
    target = StateTarget(lake, DATABASE, TABLE, KEY_NAMES, params["buckets"])
    found: dict[str, Any] = {"base_mb": _status("VmRSS")}

    def checksum(rows: Any, key: str) -> dict[str, Any]:
        # Untimed: what the reads returned, to compare the state with the log.
        connection = duckdb.connect()
        connection.register("found_rows", rows)
        ((count, size, digest),) = connection.sql(
            f"SELECT count(*), sum(length(data)), sum(hash({key}, data)) FROM found_rows"
        ).fetchall()
        connection.close()
        return {"rows": int(count), "data_chars": int(size or 0), "digest": str(digest)}

    started, cpu = time.perf_counter(), time.process_time()
    if mode == "plan":
        planned = plan_merge(target, watermark, catalog=open_catalog(lake), memory_limit_mb=memory)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = _status("VmHWM")
        Path(params["out"]).write_text(json.dumps(planned and planned.as_json()))
        if planned is not None:
            found.update(
                events_read=planned.events_read,
                files_merged=planned.files_merged,
                buckets=list(planned.buckets),
            )
    elif mode == "bucket":
        planned = MergePlan.from_json(json.loads(Path(params["plan"]).read_text()))
        merged = merge_bucket(
            target, planned, params["bucket"], catalog=open_catalog(lake), memory_limit_mb=memory
        )
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = _status("VmHWM")
        Path(params["out"]).write_text(json.dumps(merged.as_json()))
        staged = Path(_plain(planned.staging)) / f"bucket={params['bucket']}.parquet"
        found.update(
            bucket=params["bucket"],
            events=pq.read_metadata(staged).num_rows if staged.exists() else 0,
            rows=sum(pq.read_metadata(_plain(path)).num_rows for path in merged.files),
            files=len(merged.files),
        )
    elif mode == "commit":
        planned = MergePlan.from_json(json.loads(Path(params["plan"]).read_text()))
        merges = [BucketMerge.from_json(json.loads(Path(p).read_text())) for p in params["merges"]]
        catalog = open_catalog(lake)
        result = commit_merge(target, planned, merges, catalog=catalog)
        remove_orphans(open_state_table(catalog, target), target, None, older_than=ORPHAN_AGE)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = _status("VmHWM")
        assert result.snapshot is not None
        found.update(live=result.snapshot.live_items, tombstones=result.snapshot.tombstones)
    elif mode == "merge":
        result = merge_state(target, watermark, catalog=open_catalog(lake), memory_limit_mb=memory)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = _status("VmHWM")
        assert result.snapshot is not None
        found.update(
            live=result.snapshot.live_items,
            tombstones=result.snapshot.tombstones,
            events_read=result.events_read,
            files_merged=result.files_merged,
            buckets=result.buckets_rewritten,
        )
    elif mode == "maintain":
        # Untimed housekeeping: keep the newest snapshots, drop the files no one reads.
        catalog = open_catalog(lake)
        table = open_state_table(catalog, target, create=False)
        moments = sorted(snapshot.timestamp_ms for snapshot in table.snapshots())
        expired = 0
        if len(moments) > params["keep"]:
            oldest_kept = datetime.fromtimestamp(moments[-params["keep"]] / 1000, UTC)
            expiry = expire_state(table, now=oldest_kept, retention=timedelta(0))
            expired = expiry.snapshots_expired
        table = open_state_table(catalog, target, create=False)
        removed = remove_orphans(table, target, None, older_than=timedelta(0))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = _status("VmHWM")
        files = list(table.scan().plan_files())
        found.update(
            expired=expired,
            removed=removed,
            state_files=len(files),
            state_mb=sum(task.file.file_size_in_bytes for task in files) / 1e6,
        )
        on_disk = [path for path in Path(lake, "_current", "data").rglob("*") if path.is_file()]
        found.update(
            disk_files=len(on_disk), disk_mb=sum(path.stat().st_size for path in on_disk) / 1e6
        )
    elif mode == "recompute":
        out = Path(params["out"])
        database = LakeDatabase(memory_limit_mb=memory)
        log_rows = database.add("lake_log", lake_dataset(lake), list(KEY_NAMES))
        keyed = f"({keyed_rows_sql('lake_log', f'time_stamp <= {time_literal(watermark)}')}) keyed"
        database.connection.execute(
            f"""
            COPY (
                SELECT k AS key, {bucket_sql("k", params["buckets"])} AS bucket, op, time_stamp,
                    epoch_us(time_stamp) AS time_stamp_us, uuid, data
                FROM ({latest_of_sql(keyed, with_uuid=True)}) latest
            ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
            """
        )
        database.close()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = _status("VmHWM")
        found.update(log_rows=log_rows, rows=pq.read_metadata(out).num_rows)
    elif mode == "read-log":
        database = LakeDatabase(memory_limit_mb=memory)
        database.add("lake_log", lake_dataset(lake), list(KEY_NAMES))
        rows = database.connection.sql(latest_state_sql("lake_log", watermark)).to_arrow_table()
        database.close()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = _status("VmHWM")
        found.update(checksum(rows, "k"))
    elif mode == "read-state":
        table = open_state_table(open_catalog(lake), target, create=False)
        rows = live(read_state(table))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = _status("VmHWM")
        found.update(checksum(rows, "key"))
    elif mode == "read-state/duckdb":
        table = open_state_table(open_catalog(lake), target, create=False)
        files = [_plain(task.file.file_path) for task in table.scan().plan_files()]
        listed = ", ".join("'" + path.replace("'", "''") + "'" for path in files)
        connection = duckdb.connect()
        connection.execute(f"SET memory_limit = '{int(memory)}MB'")
        connection.execute(f"SET temp_directory = '{spill}'")
        rows = connection.sql(
            f"SELECT key, op, data FROM read_parquet([{listed}]) WHERE op <> 'D'"
        ).to_arrow_table()
        connection.close()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = _status("VmHWM")
        found.update(checksum(rows, "key"), files=len(files))
    else:
        raise SystemExit(f"unknown mode {mode}")
    return {
        **found,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_mb": peak,
        "spill_mb": peak_spill[0] // (1 << 20),
    }


def _measure(mode: str, work: Path, script: Path | None = None, **params: Any) -> dict[str, Any]:
    """Run ``mode`` of ``script`` (this one by default) in a fresh process (its own TMPDIR,
    for DuckDB's spill)."""
    spill = work / "tmp"
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    env = dict(os.environ)
    env["TMPDIR"] = str(spill)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "dev"), str(ROOT / "include"), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    command = [sys.executable, str((script or Path(__file__)).resolve()), "--child", mode]
    command += ["--params", json.dumps(params)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    shutil.rmtree(spill, ignore_errors=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        log = work / f"failed-{mode.replace('/', '-')}.log"
        log.write_text(f"{json.dumps(params)}\n{done.stdout}\n{done.stderr}")
        raise SystemExit(
            f"{mode} failed (exit {done.returncode}; params {json.dumps(params)}; full output in "
            f"{log}):\n{done.stderr[-4000:]}"
        )
    return dict(json.loads(lines[-1][len("RESULT ") :]))


def _merge_steps(work: Path, common: dict[str, Any], watermark: int) -> dict[str, Any]:
    """One merge as the DAG's tasks run it: plan, each bucket, commit; each its own process."""
    plan_file = work / "plan.json"
    plan = _measure("plan", work, **common, watermark_us=watermark, out=str(plan_file))
    if "buckets" not in plan:
        raise SystemExit(f"plan_merge found nothing new up to {watermark}: {plan}")
    buckets = []
    for bucket in plan["buckets"]:
        out = work / f"bucket-{bucket}.json"
        buckets.append(
            _measure(
                "bucket",
                work,
                **common,
                watermark_us=watermark,
                plan=str(plan_file),
                bucket=bucket,
                out=str(out),
            )
        )
    merges = [str(work / f"bucket-{bucket}.json") for bucket in plan["buckets"]]
    commit = _measure(
        "commit", work, **common, watermark_us=watermark, plan=str(plan_file), merges=merges
    )
    steps = [plan, *buckets, commit]
    return {
        "mode": "steps",
        "seconds": sum(step["seconds"] for step in steps),
        "cpu_seconds": sum(step["cpu_seconds"] for step in steps),
        "plan_seconds": plan["seconds"],
        "buckets_seconds": sum(step["seconds"] for step in buckets),
        "commit_seconds": commit["seconds"],
        "events_read": plan["events_read"],
        "files_merged": plan["files_merged"],
        "buckets_rewritten": len(buckets),
        "live": commit["live"],
        "tombstones": commit["tombstones"],
        "plan_mb": plan["peak_mb"],
        "bucket_mb": max((step["peak_mb"] for step in buckets), default=0),
        "commit_mb": commit["peak_mb"],
        "spill_mb": max(step["spill_mb"] for step in steps),
        "plan": plan,
        "buckets": buckets,
        "commit": commit,
    }


def _merge_once(work: Path, common: dict[str, Any], watermark: int) -> dict[str, Any]:
    found = _measure("merge", work, **common, watermark_us=watermark)
    return {
        "mode": "one process",
        **{name: found[name] for name in ("seconds", "cpu_seconds", "events_read")},
        "files_merged": found["files_merged"],
        "buckets_rewritten": found["buckets"],
        "live": found["live"],
        "tombstones": found["tombstones"],
        "peak_mb": found["peak_mb"],
        "spill_mb": found["spill_mb"],
    }


# --- the run -------------------------------------------------------------------------------


def _day_line(day: int, merged: dict[str, Any], lake_rows: int) -> str:
    line = (
        f"day {day:>3} ({merged['mode']}): lake {lake_rows:,} rows, "
        f"{merged['events_read']:,} events read, {merged['buckets_rewritten']} buckets; "
        f"{merged['seconds']:.1f} s (cpu {merged['cpu_seconds']:.1f} s)"
    )
    if merged["mode"] == "steps":
        line += (
            f" = plan {merged['plan_seconds']:.1f} + buckets {merged['buckets_seconds']:.1f} "
            f"+ commit {merged['commit_seconds']:.1f}; peak RSS plan {merged['plan_mb']} MB, "
            f"bucket max {merged['bucket_mb']} MB, commit {merged['commit_mb']} MB"
        )
    else:
        line += f"; peak RSS {merged['peak_mb']} MB"
    return line + f"; state {merged['live']:,} live + {merged['tombstones']:,} tombstones"


def _cell(merged: dict[str, Any], name: str, width: int, form: str) -> str:
    """A stepwise merge's ``name``, formatted; blank for a merge in one process."""
    value = format(merged[name], form) if merged["mode"] == "steps" else ""
    return f"{value:>{width}}"


def _peak(found: dict[str, Any]) -> int:
    """A measurement's peak RSS; a stepwise merge's: its largest step's."""
    if "peak_mb" in found:
        return int(found["peak_mb"])
    return max(int(found[name]) for name in ("plan_mb", "bucket_mb", "commit_mb"))


def _goal(ratio: str, wall: float, cpu: float, goal: float, *, at_most: bool) -> str:
    """A ratio of work seconds and of CPU seconds, each with the goal and whether it is met."""
    unit = "" if at_most else "x"
    sign = "≤" if at_most else "≥"
    parts = []
    for name, value in (("wall", wall), ("cpu", cpu)):
        met = value <= goal if at_most else value >= goal
        parts.append(f"{name} {value:.2f}{unit} ({'met' if met else 'NOT met'})")
    return f"{ratio}: {', '.join(parts)}; goal {sign} {goal:g}{unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000_000, help="items of the backfill")
    parser.add_argument("--changes", type=int, default=1_000_000, help="events a day")
    parser.add_argument("--days", type=int, default=30, help="days of changes after day 0")
    parser.add_argument("--buckets", type=int, help="default: default_buckets(items)")
    parser.add_argument("--memory-limit-mb", type=int, default=1024, help="DuckDB's limit")
    parser.add_argument("--files-per-day", type=int, default=8, help="Firehose files a day")
    parser.add_argument("--keep-snapshots", type=int, default=7, help="0: never expire")
    parser.add_argument("--steps-every-day", action="store_true", help="not only 0, 1 and D")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="default: bench-data/bench_state-<...>.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(_child(args.child, json.loads(args.params))), flush=True)
        return 0

    from dynamo_lake.state.merge import check_buckets, default_buckets

    updates, inserts, deletes = _shares(args.changes)
    if args.days < 1 or args.changes < 1 or deletes * args.days >= args.items:
        parser.error("need days >= 1, changes >= 1 and deletes (10 % of changes) * days < items")
    buckets = check_buckets(args.buckets or default_buckets(args.items))
    BENCH_DATA.mkdir(exist_ok=True)
    log = _log(args)
    folder = BENCH_DATA / _name(args)
    lake, work = folder / "run", folder / "work"
    for path in (lake, work):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    common = {"lake": str(lake), "buckets": buckets, "memory_limit_mb": args.memory_limit_mb}
    cores = os.cpu_count()
    print(
        f"current state of {args.items:,} items, {args.changes:,} changes a day "
        f"({updates:,} updates, {inserts:,} inserts, {deletes:,} deletes) for {args.days} days; "
        f"{buckets} buckets, DuckDB memory limit {args.memory_limit_mb} MB, {cores} cores",
        flush=True,
    )

    days: list[dict[str, Any]] = []
    for day in range(args.days + 1):
        files = _add_day(log, lake, day)
        watermark = START + (day + 1) * DAY
        stepwise = day in (0, 1, args.days) or args.steps_every_day
        merged = (_merge_steps if stepwise else _merge_once)(work, common, watermark)
        lake_rows = args.items + day * args.changes
        merged.update(day=day, watermark_us=watermark, lake_files_added=files, lake_rows=lake_rows)
        if args.keep_snapshots:
            merged["maintenance"] = _measure(
                "maintain", work, **common, watermark_us=watermark, keep=args.keep_snapshots
            )
        days.append(merged)
        print(_day_line(day, merged, lake_rows), flush=True)

    final = START + (args.days + 1) * DAY
    print("day", args.days, "baselines: recompute, read log, read state ...", flush=True)
    recompute_out = work / "recomputed.parquet"
    recompute = _measure("recompute", work, **common, watermark_us=final, out=str(recompute_out))
    recompute_out.unlink(missing_ok=True)
    read_log = _measure("read-log", work, **common, watermark_us=final)
    read_state = _measure("read-state", work, **common, watermark_us=final)
    read_duckdb = _measure("read-state/duckdb", work, **common, watermark_us=final)

    first, last = days[1], days[-1]
    initial = days[0]
    lake_rows = args.items + args.days * args.changes
    print(
        f"\nwork seconds (imports excluded), CPU seconds of all threads, peak RSS (VmHWM) of "
        f"each process (max MB: a stepwise merge's largest step); {buckets} buckets, {cores} cores"
    )
    print(
        f"{'day':>4} {'how':<12} {'lake rows':>12} {'events':>10} {'state rows':>12} "
        f"{'seconds':>8} {'cpu s':>7} {'plan s':>7} {'buckets s':>9} {'commit s':>8} "
        f"{'plan MB':>7} {'max MB':>7} {'spill MB':>8}"
    )
    for merged in days:
        print(
            f"{merged['day']:>4} {merged['mode']:<12} {merged['lake_rows']:>12,} "
            f"{merged['events_read']:>10,} {merged['live'] + merged['tombstones']:>12,} "
            f"{merged['seconds']:>8.1f} {merged['cpu_seconds']:>7.1f} "
            f"{_cell(merged, 'plan_seconds', 7, '.1f')} "
            f"{_cell(merged, 'buckets_seconds', 9, '.1f')} "
            f"{_cell(merged, 'commit_seconds', 8, '.1f')} {_cell(merged, 'plan_mb', 7, 'd')} "
            f"{_peak(merged):>7} {merged['spill_mb']:>8}"
        )

    print(f"\nday {args.days}: {lake_rows:,} rows in the log")
    header = f"{'contender':<34} {'seconds':>8} {'cpu s':>7} {'RSS MB':>7} {'spill MB':>8}"
    print(f"{header}  result")
    for name, found, result in (
        (
            "merge, initial build (day 0)",
            initial,
            f"{initial['live']:,} items",
        ),
        ("merge, day 1", first, f"{first['events_read']:,} events"),
        (f"merge, day {args.days}", last, f"{last['events_read']:,} events"),
        ("recompute from the log", recompute, f"{recompute['rows']:,} keys"),
        ("read: latest state over the log", read_log, f"{read_log['rows']:,} live items"),
        ("read: current state (read_state)", read_state, f"{read_state['rows']:,} live items"),
        ("read: current state (DuckDB)", read_duckdb, f"{read_duckdb['rows']:,} live items"),
    ):
        print(
            f"{name:<34} {found['seconds']:>8.2f} {found['cpu_seconds']:>7.2f} {_peak(found):>7} "
            f"{found['spill_mb']:>8}  {result}"
        )

    def ratio(top: dict[str, Any], bottom: dict[str, Any]) -> tuple[float, float]:
        return top["seconds"] / bottom["seconds"], top["cpu_seconds"] / bottom["cpu_seconds"]

    flat, cheaper = ratio(last, first), ratio(recompute, last)
    read_api, read_sql = ratio(read_log, read_state), ratio(read_log, read_duckdb)
    bucket_rows = [step["rows"] for step in last["buckets"]]
    bucket_events = [step["events"] for step in last["buckets"]]
    bucket_mb = [step["peak_mb"] for step in last["buckets"]]
    same = all(
        read_log[name] == found[name]
        for found in (read_state, read_duckdb)
        for name in ("rows", "data_chars", "digest")
    )
    expected_live = args.items + args.days * (inserts - deletes)
    print()
    state_growth = (last["live"] + last["tombstones"]) / (first["live"] + first["tombstones"])
    print(
        _goal(f"merge: day {args.days} / day 1", *flat, 1.3, at_most=True)
        + f" (state rows {state_growth:.2f}x)"
    )
    print(_goal(f"merge: recompute / merge at day {args.days}", *cheaper, 2, at_most=False))
    print(_goal("read: log query / state (read_state + live)", *read_api, 5, at_most=False))
    print(_goal("read: log query / state (DuckDB over its files)", *read_sql, 5, at_most=False))
    print(
        f"memory at day {args.days}: plan step {last['plan_mb']} MB; bucket task max "
        f"{max(bucket_mb)} MB (median {statistics.median(bucket_mb):.0f}) over {len(bucket_mb)} "
        f"buckets of {min(bucket_rows):,}-{max(bucket_rows):,} rows "
        f"({statistics.median(bucket_events):,.0f} events each); commit {last['commit_mb']} MB"
    )
    print(
        f"memory of the initial build: plan step {initial['plan_mb']} MB; bucket task max "
        f"{initial['bucket_mb']} MB; recompute {recompute['peak_mb']} MB "
        f"(spill {recompute['spill_mb']} MB)"
    )
    if "maintenance" in last:
        kept = last["maintenance"]
        print(
            f"state files at day {args.days}: {kept['state_files']} in the current snapshot "
            f"({kept['state_mb']:,.0f} MB); {kept['disk_files']} on disk ({kept['disk_mb']:,.0f} "
            f"MB) after expiring all but the {args.keep_snapshots} newest snapshots and "
            "removing the files no snapshot refers to"
        )
    print(
        f"state at day {args.days}: {last['live']:,} live items (expected {expected_live:,}), "
        f"{last['tombstones']:,} tombstones (expected {args.days * deletes:,}); "
        f"reads of the state equal the log's latest state: {'yes' if same else 'NO'}"
    )

    extra = "" if args.buckets is None else f"-{buckets}b"
    out = args.json or BENCH_DATA / f"bench_state-{_params(args)}{extra}.json"
    report = {
        "params": {
            **{
                name: value
                for name, value in vars(args).items()
                if name not in ("json", "child", "params")
            },
            "buckets": buckets,
            "cores": cores,
        },
        "days": days,
        "recompute": recompute,
        "read_log": read_log,
        "read_state": read_state,
        "read_state_duckdb": read_duckdb,
        "ratios": {
            "merge_last_over_first": flat[0],
            "merge_last_over_first_cpu": flat[1],
            "recompute_over_merge": cheaper[0],
            "recompute_over_merge_cpu": cheaper[1],
            "read_log_over_state": read_api[0],
            "read_log_over_state_cpu": read_api[1],
            "read_log_over_state_duckdb": read_sql[0],
            "read_log_over_state_duckdb_cpu": read_sql[1],
        },
        "state_equals_log": same,
    }
    out.write_text(json.dumps(report, indent=1))
    print(f"results: {out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
