"""`make demo`: the product end to end on the embedded default.

1. Starts the local AWS stack (moto-based, loopback only) and creates the demo buckets.
2. Seeds the sample table `orders` (composite key, every attribute type, PITR and a stream).
3. Switches streaming on: the local stream relay (Kinesis + Firehose stand-in) reads from now.
4. Runs the backfill DAG with `airflow dags test` (a full PITR export, deferrable wait,
   mapped conversion, commit): the items that existed before streaming land in the lake.
5. Changes the table (updates, deletes, inserts); the relay delivers them through the
   Firehose Lambda into the same lake table.
6. Shows the lake with DuckDB: rows by operation and partition, one item's history, and
   the proof: the lake's latest state equals the table, item for item.
7. Runs the reconciliation DAG (the export method, as of now): the report says ok, and the
   current state's snapshot at T, compared with the export, is tagged verified-<T>.
8. Loses three changes on the stream (an insert, an update, a delete), and runs the
   reconciliation again with repair on: it compares with the snapshot step 7 verified and
   the lake rows since (not the whole log), names the three keys, writes three corrective
   rows, and its re-check is clean.
9. Runs the current-state DAG: the lake merged into the Iceberg table `orders_current`
   (the emulator's Glue catalog), whose live items equal the table.

Everything it writes is under `var/demo/` (Airflow home, logs); the lake lives in the
emulator's S3 and disappears with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "dev"))

from dynamo_lake.config import default_tables_file, load_tables  # noqa: E402
from dynamo_lake.lake.query import latest_state, query_lake  # noqa: E402
from dynamo_lake.reconciliation.report import ReconciliationReport, latest_report  # noqa: E402
from dynamo_lake.storage import S3Options  # noqa: E402
from local_aws import EmulatorSettings, LocalAwsProcess  # noqa: E402
from local_aws.seed import PARTITION_KEY, SORT_KEY, apply_churn, seed_sample_table  # noqa: E402
from stream_relay import Faults, StreamRelay, table_state  # noqa: E402

HOME = REPO / "var" / "demo"
ITEMS = int(os.environ.get("DEMO_ITEMS", "2000"))
CHURN = int(os.environ.get("DEMO_CHURN", "300"))


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def demo_tables_file() -> Path:
    """The shipped tables file with no settle margin: this demo drains the relay itself
    before each reconciliation, so every change up to "now" is in the lake (a margin guards
    against a stream that has not delivered yet)."""
    shipped = yaml.safe_load(default_tables_file().read_text())
    for entry in shipped["tables"].values():
        entry.setdefault("reconcile", {})["settle_margin_minutes"] = 0
    # Checks by hand only: the current state then merges up to now (a daily schedule would
    # hold it at midnight's cut, before this minutes-old table existed).
    shipped["reconciliation"] = {"schedule": None}
    target = HOME / "tables.yaml"
    target.write_text(yaml.safe_dump(shipped, sort_keys=False))
    return target


def airflow_environment(stack: LocalAwsProcess) -> dict[str, str]:
    environment = os.environ.copy()
    environment.update(stack.environment())
    environment.update(
        {
            "DYNAMO_LAKE_TABLES_FILE": str(demo_tables_file()),
            "AIRFLOW_HOME": str(HOME / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "DYNAMO_LAKE_EXPORT_POLL_SECONDS": "2",
        }
    )
    return environment


def run_logged(
    command: list[str], environment: dict[str, str], log: Path, *, may_fail: bool = False
) -> int:
    with log.open("wb") as output:
        result = subprocess.run(command, env=environment, stdout=output, stderr=subprocess.STDOUT)
    if result.returncode != 0 and not may_fail:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise SystemExit(f"{' '.join(command[:4])} failed; see {log}:\n" + "\n".join(tail))
    return result.returncode


def reconcile(
    airflow: str, environment: dict[str, str], log: Path, *, repair: bool, may_fail: bool
) -> None:
    as_of = datetime.now(UTC) - timedelta(seconds=1)
    conf = {
        "table": "orders",
        # The table is minutes old: a changes window needs 15 minutes of history.
        "method": "export",
        "as_of": as_of.isoformat().replace("+00:00", "Z"),
        "repair": "on" if repair else "off",
    }
    command = [
        airflow,
        "dags",
        "test",
        "dynamodb_reconciliation",
        "-c",
        orjson.dumps(conf).decode(),
    ]
    run_logged(command, environment, log, may_fail=may_fail)


def show_report(report: ReconciliationReport | None) -> ReconciliationReport:
    if report is None:
        raise SystemExit("the reconciliation wrote no report")
    print(
        f"as of {report.as_of} ({report.method}): {report.status.upper()}; "
        f"{report.table_count} items in the table's export, {report.lake_count} live in the "
        f"lake; missing {report.missing}, extra {report.extra}, different {report.different}"
    )
    for kind in ("missing", "extra", "different"):
        for key in report.samples.get(kind, []):
            print(f"  {kind:<9} {key}")
    cost = report.cost or {}
    if cost.get("basis") == "current state":
        read = (
            f"the current state at {cost['watermark']} (snapshot {cost['snapshot_id']}) and "
            f"the {cost['rows_read']} lake rows since"
        )
        if cost.get("bucket_tasks"):
            read += f", split into {cost['buckets']} bucket(s) and compared by mapped tasks"
    else:
        read = "the whole log (no current-state snapshot before T yet)"
    if cost:
        print(
            f"compared with {read}: {cost.get('lake_bytes', 0) / 1e3:,.1f} kB of the lake, "
            f"{cost.get('export_bytes', 0) / 1e3:,.1f} kB of the export"
        )
    if report.repair and report.repair.get("rows"):
        recheck = report.repair["recheck"]
        print(
            f"repair: {report.repair['rows']} corrective rows {report.repair['by_kind']} "
            f"(group {report.repair['group']}); re-check: {recheck['status'].upper()}"
        )
    verified = report.current_state or {}
    if verified.get("tag"):
        print(
            f"current state: Iceberg snapshot {verified['snapshot_id']} at T equals the table "
            f"({verified['table_items']} items): tagged {verified['tag']}"
        )
    elif verified:
        print(f"current state: not verified at T ({verified.get('error') or verified})")
    return report


def main() -> int:
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    config = load_tables().table("orders")
    airflow = str(Path(sys.executable).parent / "airflow")

    step("1. local AWS stack (moto + our export model) on 127.0.0.1")
    settings = EmulatorSettings(export_delay_seconds=3.0, pitr_lag_seconds=0.0)
    stack = LocalAwsProcess(settings=settings, log_path=HOME / "local_aws.log").start()
    try:
        environment = airflow_environment(stack)
        print(f"endpoint {stack.endpoint_url}")
        s3 = stack.client("s3", max_attempts=3)
        for bucket in (config.export_bucket, config.lake_bucket):
            s3.create_bucket(Bucket=bucket)
        migrate = subprocess.Popen(  # in parallel with seeding: about 10 s
            [airflow, "db", "migrate"],
            env=environment,
            stdout=(HOME / "airflow-db-migrate.log").open("wb"),
            stderr=subprocess.STDOUT,
        )

        step(f"2. sample table {config.dynamodb_table!r}: {ITEMS} items, PITR and stream on")
        dynamodb = stack.client("dynamodb", max_attempts=3)
        seeded = seed_sample_table(dynamodb, config.dynamodb_table, ITEMS, churn=0)
        print(f"table {seeded.table_arn}")

        step("3. streaming switched on: the relay reads the table's stream from now")
        options = S3Options(stack.endpoint_url, "us-east-1", "testing", "testing")
        relay = StreamRelay(
            stack.endpoint_url, config.dynamodb_table, config.lake_uri, s3=options, start="LATEST"
        )
        time.sleep(0.01)  # the export's time must follow the relay's start

        step("4. backfill: airflow dags test dynamodb_backfill (full export, latest time)")
        if migrate.wait() != 0:
            raise SystemExit(f"airflow db migrate failed; see {HOME / 'airflow-db-migrate.log'}")
        conf = orjson.dumps({"table": "orders", "mode": "full"}).decode()
        started = time.monotonic()
        log = HOME / "backfill-dag.log"
        run_logged([airflow, "dags", "test", "dynamodb_backfill", "-c", conf], environment, log)
        records = s3.list_objects_v2(
            Bucket=config.lake_bucket, Prefix=f"{config.lake_uri.split('/', 3)[3]}/_backfills/"
        ).get("Contents", [])
        if not records:
            raise SystemExit(f"the backfill run wrote no backfill record; see {log}")
        record = orjson.loads(
            s3.get_object(Bucket=config.lake_bucket, Key=records[-1]["Key"])["Body"].read()
        )
        print(
            f"run {record['run_id']}: {record['rows']} rows in {record['files']} files "
            f"from {len(record['exports'])} export(s) in {time.monotonic() - started:.0f} s "
            f"(task log: {log.relative_to(REPO)})"
        )
        print(f"export {record['exports'][0]['export_arn']}")
        print(f"Glue table {record['glue_table']} at {record['lake_uri']}")

        step(f"5. the table changes ({CHURN} updates, deletes, inserts); the relay delivers")
        counts = apply_churn(dynamodb, config.dynamodb_table, CHURN, seed=7)
        print(f"changes applied: {counts}")
        batches = relay.drain()
        delivered = sum(batch.ok for batch in batches)
        print(f"relay: {delivered} records in {len(batches)} Firehose-sized batches")

        step("6. the lake, read back with DuckDB")
        show_lake(config.lake_uri, options)
        in_lake = latest_state(config.lake_uri, [PARTITION_KEY, SORT_KEY], s3=options)
        in_table = table_state(stack.endpoint_url, config.dynamodb_table)
        missing, extra = len(in_table - in_lake), len(in_lake - in_table)
        verdict = "EQUALS" if not missing and not extra else "DIFFERS FROM"
        print(
            f"\nlatest state of the lake {verdict} the table: {len(in_table)} items in the "
            f"table, {len(in_lake)} live in the lake, {missing} missing, {extra} extra"
        )
        if verdict != "EQUALS":
            return 1

        step("7. reconciliation: airflow dags test dynamodb_reconciliation (export, as of now)")
        reconcile(
            airflow, environment, HOME / "reconciliation-dag.log", repair=False, may_fail=False
        )
        first = show_report(latest_report(config.lake_uri, options))

        step("8. the stream loses three changes; the reconciliation finds and repairs them")
        relay.faults = Faults(drop=1.0)
        lost = lose_three_changes(dynamodb, config.dynamodb_table)
        relay.drain()
        relay.faults = Faults()
        print(f"lost on the stream: {lost}")
        time.sleep(2.0)  # T (one second ago) must follow the lost changes
        reconcile(airflow, environment, HOME / "repair-dag.log", repair=True, may_fail=True)
        second = show_report(latest_report(config.lake_uri, options))
        in_lake = latest_state(config.lake_uri, [PARTITION_KEY, SORT_KEY], s3=options)
        in_table = table_state(stack.endpoint_url, config.dynamodb_table)
        repaired = in_lake == in_table
        print(
            f"after the repair the lake's latest state "
            f"{'EQUALS' if repaired else 'DIFFERS FROM'} the table ({len(in_table)} items)"
        )
        step("9. the current state: airflow dags test dynamodb_current_state (Iceberg)")
        current = build_current_state(airflow, environment, config, options, stack.client("glue"))
        print(
            f"the current state {'EQUALS' if current == in_table else 'DIFFERS FROM'} the "
            f"table: {len(current)} live items in {config.glue_database}."
            f"{config.glue_table}_current"
        )
        lake_copy = copy_lake(config.lake_uri, options, HOME / "lake")
        print(
            "\nWhat happened: a full export backfilled "
            f"{record['rows']} rows, the stream delivered {delivered} changes, the lake "
            f"matched the table ({first.status}), three lost changes were found "
            f"({second.missing} missing, {second.different} different, {second.extra} extra) "
            "and repaired.\nWhere to look next:\n"
            f"  the lake (a copy; the demo's S3 lived in memory): {lake_copy}/\n"
            f"  the reports: {lake_copy}/_reconciliation/ (latest.json is the newest)\n"
            f"  the task logs: {HOME.relative_to(REPO)}/*.log\n"
            "  `make airflow`: the same DAGs in the Airflow UI, with the Lake health page"
        )
        ok = first.status == "ok" and second.drift == 3 and repaired and current == in_table
        return 0 if ok else 1
    finally:
        with contextlib.suppress(Exception):
            stack.stop()


def build_current_state(
    airflow: str, environment: dict[str, str], config: Any, options: S3Options, glue: Any
) -> set[str]:
    """Run the current-state DAG; print its snapshot; the live items' data."""
    from dynamo_lake.state.current import current_snapshot, open_catalog, read_state
    from dynamo_lake.state.merge import live

    time.sleep(1.0)  # the watermark (now, to the second) must follow the repair's rows
    command = [airflow, "dags", "test", "dynamodb_current_state", "-c", '{"table": "orders"}']
    run_logged(command, environment, HOME / "current-state-dag.log", may_fail=False)
    catalog = open_catalog(config.lake_uri, options, glue_client=glue)
    table = catalog.load_table((config.glue_database, f"{config.glue_table}_current"))
    snapshot = current_snapshot(table)
    if snapshot is None:
        raise SystemExit("the current-state DAG committed no snapshot")
    print(
        f"Iceberg snapshot {snapshot.snapshot_id} at watermark {snapshot.watermark}: "
        f"{snapshot.live_items} live items, {snapshot.tombstones} tombstones "
        f"(metadata {table.metadata_location})"
    )
    return set(live(read_state(table)).column("data").to_pylist())


def copy_lake(lake_uri: str, options: S3Options, target: Path) -> Path:
    """Copy the lake table (partitions, records, reports) out of the in-memory S3."""
    from pyarrow import fs as pafs

    from dynamo_lake.storage import resolve

    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    lake = resolve(lake_uri, options)
    pafs.copy_files(
        lake.path,
        str(target),
        source_filesystem=lake.filesystem,
        destination_filesystem=pafs.LocalFileSystem(),
    )
    return target.relative_to(REPO)


def lose_three_changes(dynamodb: Any, table: str) -> dict[str, str]:
    """An insert, an update and a delete, which the relay (dropping everything) loses."""
    found = dynamodb.scan(TableName=table, Limit=2)["Items"]
    updated, deleted = found[0], found[1]
    keys = [PARTITION_KEY, SORT_KEY]
    dynamodb.update_item(
        TableName=table,
        Key={name: updated[name] for name in keys},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "changed while the stream was down"}},
    )
    dynamodb.delete_item(TableName=table, Key={name: deleted[name] for name in keys})
    inserted = {PARTITION_KEY: {"S": "customer#lost"}, SORT_KEY: updated[SORT_KEY]}
    dynamodb.put_item(TableName=table, Item={**inserted, "status": {"S": "new"}})
    return {
        "inserted": str(inserted[PARTITION_KEY]["S"]),
        "updated": str(updated[PARTITION_KEY]["S"]),
        "deleted": str(deleted[PARTITION_KEY]["S"]),
    }


def show_lake(lake_uri: str, options: S3Options) -> None:
    partitions = query_lake(
        lake_uri,
        """select year || '-' || month || '-' || day, op, count(*) from rows
           group by all order by all""",
        options,
    )
    print("rows by partition and operation:")
    for partition, op, count in partitions:
        print(f"  {partition}  {op}  {count:>6}")
    (key,) = query_lake(
        lake_uri,
        """select data ->> '$.pk', data ->> '$.sk' from rows
           group by all having count(distinct op) > 1 order by count(*) desc, 1, 2 limit 1""",
        options,
    )
    print(f"history of the item pk={key[0]!r}, sk={key[1]!r}:")
    history = query_lake(
        lake_uri,
        """select time_stamp, op, uuid, data from rows
           where data ->> '$.pk' = ? and data ->> '$.sk' = ? order by time_stamp""",
        options,
        list(key),
    )
    for stamp, op, uuid, data in history:
        print(f"  {stamp:%Y-%m-%d %H:%M:%S.%f}  {op}  {uuid}  {data[:70]}...")


if __name__ == "__main__":
    raise SystemExit(main())
