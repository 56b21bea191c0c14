"""
### DynamoDB current state: each table's live items as an Iceberg table, kept from the lake

For every configured table (or the one chosen), merges the lake's CDC rows into the
Iceberg table `<glue_table>_current` in the table's Glue database (files under the lake
table's `_current/` folder): one row per key with its exact `key`, `bucket`, `op`,
`time_stamp` (also `time_stamp_us`, a bigint of microseconds), `uuid` and `data`. Live
items are the rows with `op <> 'D'`; a deleted key keeps its row so that an older event
published late cannot bring it back.

**When it runs**: after every backfill, repair and reconciliation (the lake table's asset),
and by hand. Each run merges up to the **watermark** W: the newest cut time T the
reconciliation's schedule has reached (its last tick minus the table's settle margin), so
every scheduled reconciliation finds a snapshot at exactly its T. A snapshot holds the
latest state as of W of every lake row with `time_stamp` <= W published before the merge;
rows published later with an earlier time (a backfill of an old window, a repair, a late
Firehose file) are merged by the next run. A run with nothing new commits nothing.

**What a run does**: plan (each table's key, buckets and W) → prepare (per table: the new
lake files and the rows after the old W, cut at W and staged by bucket) → rewrite (mapped
across workers, each task a few buckets, one bucket in memory at a time: the bucket's rows
merged with its events, written as new files) → commit (per table: the rewritten buckets
replace the old ones in one Iceberg commit whose summary records W, the counts, and the
list of merged files; then snapshot expiry).

**Params**: `table` (`all tables`, or one).

**When a task fails**, its log ends with one line naming the problem and the fix: a missing
table (fix `tables.yaml`), a `state_buckets` that differs from the existing state's (set it
back, or drop the table to rebuild it), a lake file with rows outside its partition's day
(move it). A commit that finds the state moved since its plan (a reconciliation merged at
its own T) merges again in its task. A killed task is retried: files of a rewrite never
committed are orphans, removed an hour later; the last snapshot stays readable throughout.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, AssetAny, dag, get_current_context, task

from dynamo_lake.airflow.params import table_param
from dynamo_lake.config import load_tables
from dynamo_lake.errors import ConfigError

try:
    TABLES = load_tables()
except ConfigError as error:  # the import error shows this message, not our internals
    raise ConfigError(str(error)) from None

#: The lake tables' assets, as the backfill and the reconciliation announce them, by name
#: (an s3:// URI here would load the Amazon provider, and boto3, at every parse).
LAKES = [Asset.ref(name=f"dynamo_lake/{name}") for name in TABLES.tables]


@dag(
    dag_id="dynamodb_current_state",
    description="Keep each table's current state (Iceberg) merged from its S3 lake",
    doc_md=__doc__,
    schedule=AssetAny(*LAKES) if LAKES else None,
    catchup=False,
    max_active_runs=1,
    tags=["dynamodb", "data-lake", "iceberg"],
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
    },
    params={"table": table_param(TABLES.tables, allow_all=True)},
)
def dynamodb_current_state() -> None:
    @task
    def plan(params: dict[str, Any], dag_run: Any = None) -> list[dict[str, Any]]:
        from dynamo_lake.airflow import state_tasks

        # The run's own moment, never the wall clock: a re-run merges to the same W.
        return state_tasks.plan(dict(params), dag_run.run_after)

    @task(map_index_template="{{ table_name }}")
    def prepare(plan: dict[str, Any]) -> dict[str, Any]:
        from dynamo_lake.airflow import state_tasks

        get_current_context()["table_name"] = plan["table"]  # type: ignore[literal-required]
        return state_tasks.prepare(plan)

    @task
    def bucket_work(prepared: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from dynamo_lake.airflow import state_tasks
        from dynamo_lake.airflow.tasks import materialize

        return state_tasks.bucket_work(materialize(prepared))

    @task(map_index_template="{{ work_name }}")
    def rewrite(work: dict[str, Any], prepared: list[dict[str, Any]]) -> dict[str, Any]:
        from dynamo_lake.airflow import state_tasks
        from dynamo_lake.airflow.tasks import materialize

        buckets = work["buckets"]
        name = f"{work['table']} bucket {buckets[0]}" + (
            f" (+{len(buckets) - 1})" if len(buckets) > 1 else ""
        )
        get_current_context()["work_name"] = name  # type: ignore[literal-required]
        return state_tasks.rewrite(work, materialize(prepared))

    # A table with nothing to rewrite maps no rewrite task; its commit still runs.
    @task(map_index_template="{{ table_name }}", trigger_rule="none_failed")
    def commit(prepared: dict[str, Any], rewrites: list[dict[str, Any]]) -> dict[str, Any]:
        from dynamo_lake.airflow import state_tasks
        from dynamo_lake.airflow.tasks import materialize

        get_current_context()["table_name"] = prepared["table"]  # type: ignore[literal-required]
        return state_tasks.commit(prepared, materialize(rewrites))

    prepared = prepare.expand(plan=plan())
    rewritten = rewrite.partial(prepared=prepared).expand(work=bucket_work(prepared))
    commit.partial(rewrites=rewritten).expand(prepared=prepared)


dynamodb_current_state()
