"""`make load`: a backfill and an export reconciliation of millions of items, through Airflow.

What it runs, on this machine and on loopback only:

1. `make airflow`'s stack (the local AWS emulator in its own process, then Airflow's api-server,
   scheduler, dag-processor and triggerer with LocalExecutor, parallelism 2), with a tables
   file of its own: one table, `load_orders`, whose exports are cut into batches of
   `--batch-mb` of gzip so the conversion is mapped over several tasks.
2. Creates the table (PITR on) over the DynamoDB API and records `--items` items in its history
   with the emulator's bulk load (`local_aws.bulk`: 5 million items through BatchWriteItem would
   take most of an hour; exports read the history, so they see the items as written).
3. Triggers `dynamodb_backfill` (full export at a moment after the load) over the REST API and
   waits; then `dynamodb_reconciliation` with method `export` at a later moment, and waits.
4. Prints, per task: state, seconds, items and items/s (conversion tasks) and the task
   process's peak memory (the line every task's log ends with); the emulator's peak memory;
   and checks the outcome: the backfill record holds every item once, and the report says OK
   with table and lake counts equal to `--items`.

It fails (exit 1) when a run fails, a count is off, or a task's peak memory exceeds the bounds
the README states: `--convert-bound-mb` for a conversion task (it follows the size of a data
file, not of the table), `--memory-bound-mb` for any other (the reconciliation's check: the
table's DuckDB memory limit plus the interpreter, pyarrow and the scan's buffers). Results
go to `var/load/results.json`.

    .venv/bin/python benchmarks/load_run.py                 # 5,000,000 items (make load)
    .venv/bin/python benchmarks/load_run.py --items 200000  # a quick rehearsal
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "dev"), str(REPO / "include")]

from airflow_local import AirflowApi, LocalAirflow, free_port  # noqa: E402

from dynamo_lake.backfill import latest_backfill_record  # noqa: E402
from dynamo_lake.reconciliation.report import latest_report  # noqa: E402
from dynamo_lake.storage import S3Options  # noqa: E402
from local_aws import EmulatorSettings  # noqa: E402
from local_aws.seed import create_sample_table  # noqa: E402

HOME = REPO / "var" / "load"
TABLE = "load_orders"
LAKE_URI = "s3://load-lake/dynamo-cdc/load/orders"
BULK_CHUNK = 250_000
PEAK = re.compile(r"peak memory of this task process: (\d+) MB")
ITEMS = re.compile(r"file done: \d+ of \d+ files, (\d+) items")

TABLES_YAML = """\
# Written by benchmarks/load_run.py for the load run: one table, exports cut into batches.
defaults:
  aws_conn_id: aws_default
  region: us-east-1
reconciliation:
  schedule: null
tables:
  {table}:
    description: Load run ({items:,} items)
    dynamodb_table: {table}
    export_bucket: load-exports
    export_prefix: exports/{table}
    lake_bucket: load-lake
    glue_database: load
    glue_table: orders
    batch_size_mb: {batch_mb}
    reconcile:
      method: export
      duckdb_memory_limit_mb: {duckdb_mb}
"""


def typed(moment: datetime) -> str:
    """A moment as the forms take it: UTC text to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def task_figures(api: AirflowApi, home: Path, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Per task instance: state, seconds, items (conversions), peak memory (from its log)."""
    figures = []
    for ti in sorted(
        api.task_instances(dag_id, run_id), key=lambda t: (t["start_date"] or "", t["map_index"])
    ):
        folder = (
            home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={ti['task_id']}"
        )
        if ti["map_index"] >= 0:
            folder = folder / f"map_index={ti['map_index']}"
        log = folder / f"attempt={ti['try_number']}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        peaks = PEAK.findall(text)
        items = ITEMS.findall(text)
        seconds = float(ti["duration"] or 0.0)
        figures.append(
            {
                "task": ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""),
                "state": ti["state"],
                "tries": ti["try_number"],
                "seconds": round(seconds, 1),
                "items": int(items[-1]) if items else None,
                "items_per_s": round(int(items[-1]) / seconds) if items and seconds else None,
                "peak_mb": int(peaks[-1]) if peaks else None,
            }
        )
    return figures


def print_table(title: str, wall: float, figures: list[dict[str, Any]]) -> None:
    print(f"\n{title}: {wall:.0f} s from trigger to end")
    print("| task | state | seconds | items | items/s | peak memory MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for row in figures:
        print(
            f"| {row['task']} | {row['state']} | {row['seconds']:.1f} | "
            f"{'' if row['items'] is None else format(row['items'], ',')} | "
            f"{'' if row['items_per_s'] is None else format(row['items_per_s'], ',')} | "
            f"{'' if row['peak_mb'] is None else row['peak_mb']} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=5_000_000)
    parser.add_argument("--items-per-file", type=int, default=250_000)
    parser.add_argument("--batch-mb", type=int, default=64)
    parser.add_argument("--duckdb-mb", type=int, default=1024)
    parser.add_argument("--convert-bound-mb", type=int, default=512)
    parser.add_argument("--memory-bound-mb", type=int, default=2048)
    parser.add_argument("--timeout-minutes", type=float, default=90)
    args = parser.parse_args(argv)

    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    tables_file = HOME / "tables.yaml"
    tables_file.write_text(
        TABLES_YAML.format(
            table=TABLE, items=args.items, batch_mb=args.batch_mb, duckdb_mb=args.duckdb_mb
        )
    )
    emulator = EmulatorSettings(
        export_delay_seconds=5.0,
        pitr_lag_seconds=1.0,
        items_per_export_file=args.items_per_file,
        empty_data_files=1,
    )
    airflow = LocalAirflow(
        HOME / "airflow",
        port=free_port(),
        tables_file=tables_file,
        emulator=emulator,
        demo_table=False,
        extra_environment={"DYNAMO_LAKE_EXPORT_POLL_SECONDS": "5"},
    )
    results: dict[str, Any] = {"items": args.items, "items_per_file": args.items_per_file}
    failures: list[str] = []
    print(f"starting the local AWS stack and Airflow in {HOME.relative_to(REPO)}/ ...", flush=True)
    with airflow:
        stack = airflow.stack
        assert stack is not None
        s3 = stack.client("s3", max_attempts=3)
        for bucket in ("load-exports", "load-lake"):
            s3.create_bucket(Bucket=bucket)
        create_sample_table(stack.client("dynamodb", max_attempts=3), TABLE)

        started = time.monotonic()
        for first in range(0, args.items, BULK_CHUNK):
            stack.bulk_load(TABLE, first, min(BULK_CHUNK, args.items - first))
            print(f"  loaded {min(first + BULK_CHUNK, args.items):,} items", flush=True)
        results["load_seconds"] = round(time.monotonic() - started, 1)
        assert stack.pid is not None
        emulator_pid = stack.pid
        results["emulator_after_load_mb"] = round(peak_rss_mb(emulator_pid))
        time.sleep(2.0)  # the export moment must be after the load and within PITR's window
        export_time = typed(stack.now() - timedelta(seconds=1))

        api = airflow.api()
        timeout = args.timeout_minutes * 60
        for name, dag_id, conf in (
            ("backfill", "dynamodb_backfill", {"table": TABLE, "export_time": export_time}),
            ("reconciliation", "dynamodb_reconciliation", None),
        ):
            if conf is None:
                time.sleep(1.0)
                conf = {"table": TABLE, "method": "export", "as_of": typed(stack.now())}
            print(f"triggering {dag_id} with {conf}", flush=True)
            started = time.monotonic()
            run_id = api.trigger(dag_id, conf)
            run = api.wait_for_run(dag_id, run_id, timeout=timeout)
            wall = time.monotonic() - started
            figures = task_figures(api, airflow.home, dag_id, run_id)
            print_table(f"{dag_id} ({run['state']})", wall, figures)
            results[name] = {"run_id": run_id, "state": run["state"], "seconds": round(wall)}
            results[name]["tasks"] = figures
            if run["state"] != "success":
                failures.append(f"{dag_id} run {run_id} ended {run['state']}")
                break
        results["emulator_peak_mb"] = round(peak_rss_mb(emulator_pid))

        options = S3Options(stack.endpoint_url, "us-east-1", "testing", "testing")
        record = latest_backfill_record(LAKE_URI, options)
        if record is None or record.rows != args.items:
            failures.append(
                f"backfill record holds {record and record.rows} rows, not {args.items}"
            )
        report = latest_report(LAKE_URI, options)
        if report is None:
            failures.append("no reconciliation report")
        else:
            results["report"] = {
                "status": report.status,
                "table_count": report.table_count,
                "lake_count": report.lake_count,
                "missing": report.missing,
                "extra": report.extra,
                "different": report.different,
            }
            if report.status != "ok" or report.table_count != args.items:
                failures.append(f"report: {results['report']}")
    for name in ("backfill", "reconciliation"):
        for row in results.get(name, {}).get("tasks", []):
            bound = (
                args.convert_bound_mb if row["task"].startswith("convert") else args.memory_bound_mb
            )
            if row["peak_mb"] is not None and row["peak_mb"] > bound:
                failures.append(
                    f"{name} task {row['task']} peaked at {row['peak_mb']} MB, over the bound "
                    f"of {bound} MB"
                )
    results["failures"] = failures
    (HOME / "results.json").write_text(json.dumps(results, indent=2))
    print(
        f"\nload {results['load_seconds']} s; emulator peak {results['emulator_peak_mb']} MB; "
        f"report {results.get('report')}"
    )
    print(f"results: {(HOME / 'results.json').relative_to(REPO)}")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
