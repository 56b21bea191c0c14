"""
### DynamoDB backfill: point-in-time exports into the S3 data lake

Brings a DynamoDB table's rows into its lake table (Parquet CDC rows `uuid, op, time_stamp,
data`, partitioned `year=/month=/day=`) from a **point-in-time export**:

* **full**: the whole table as it was at `export_time` (default: the latest restorable
  time). Every item becomes an `I` row stamped with the export time.
* **incremental**: the changes in `[export_from, export_to)`, one row per changed item
  (`I`, `U` or `D`) stamped with its last write time. Windows over 24 hours are split
  into consecutive exports.

What a run does: **plan** (check the table, PITR and buckets; decide the exports) →
**export** (start with a deterministic ClientToken, then wait in the triggerer) →
**plan_conversion** (read the verified manifest, cut data files into batches) →
**convert** (one mapped task per batch, into a staging area readers ignore) →
**commit** (counts checked against the manifest, files published, Glue table ensured,
backfill record written, asset event emitted) → **summary**.

Re-running the run or any task writes the same files: nothing is duplicated or orphaned.
`dry_run` checks and plans, and writes nothing. Tables come from `include/config/tables.yaml`.

**Params**: `table` (a configured table); `mode` (full or incremental); `export_time` (full:
the moment, UTC text such as `2024-06-01T12:00:00Z`; empty: the latest restorable time);
`export_from`/`export_to` (incremental: the window `[from, to)`, at least 15 minutes; empty
end: the latest restorable time); `compression` (table default: the table's, zstd unless
set); `dry_run` (plan only); `force` (write events the lake already holds; readers then see
them twice).

**Progress**: the export task shows the export's state and elapsed time in its log while it
waits (deferred, in the triggerer); each convert task is named by its export and data files
and logs files, items, items/s and MB every 15 seconds.

**When it fails**, the failing task's log ends with one line naming the problem and the fix.
*plan*: a time outside the PITR window, PITR off, a missing bucket or a backfill whose events
the lake already holds: fix the input and trigger again (or tick `force`). *export*: DynamoDB
ended the export FAILED (its message is in the log; usually the export bucket's policy or KMS
key); too many concurrent exports is retried by itself. *convert*: bad lines beyond the
table's `max_bad_lines` (they are in the lake table's `_errors/` folder) or an export file that
fails its md5 or item count: nothing is visible to readers. *commit*: S3 or Glue refused;
whatever was published was undone; clear the task to retry. Any task can be cleared and run
again: it writes the same files.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import AssetAlias, Param, dag, get_current_context, task

from dynamo_lake.airflow.operators import DynamoDBExportOperator
from dynamo_lake.airflow.params import TIME_FORMAT_HINT, table_param, time_param
from dynamo_lake.config import load_tables
from dynamo_lake.contract import COMPRESSIONS
from dynamo_lake.errors import ConfigError

try:
    TABLES = load_tables()
except ConfigError as error:  # the import error shows this message, not our internals
    raise ConfigError(str(error)) from None

LAKE_TABLES = AssetAlias(name="dynamo_lake_tables")
# How often the triggerer asks DynamoDB about a running export (exports take 10+ minutes).
EXPORT_POLL_SECONDS = float(os.environ.get("DYNAMO_LAKE_EXPORT_POLL_SECONDS", "30"))
# Mapped export instances are named by table and moment (or window) in the UI.
EXPORT_NAME = (
    "{{ task.export_request['table'] }} "
    "{{ task.export_request['export_time'] or ('[' ~ task.export_request['export_from'] "
    "~ ', ' ~ task.export_request['export_to'] ~ ')') }}"
)


@dag(
    dag_id="dynamodb_backfill",
    description="Backfill a DynamoDB table into the S3 lake from a PITR export",
    doc_md=__doc__,
    schedule=None,
    catchup=False,
    max_active_runs=4,
    tags=["dynamodb", "data-lake", "backfill"],
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
    },
    params={
        "table": table_param(TABLES.tables),
        "mode": Param(
            "full",
            type="string",
            enum=["full", "incremental"],
            title="Export type",
            description="full: the table at one moment. incremental: the changes in a window.",
        ),
        "export_time": time_param(
            "Export time (full)",
            f"The moment to export ({TIME_FORMAT_HINT}). Empty: the latest restorable time.",
        ),
        "export_from": time_param(
            "Window start (incremental, inclusive)",
            f"{TIME_FORMAT_HINT}. At least 15 minutes before the end.",
        ),
        "export_to": time_param(
            "Window end (incremental, exclusive)",
            f"{TIME_FORMAT_HINT}. Empty: the latest restorable time. "
            "Windows over 24 hours become several exports.",
        ),
        "compression": Param(
            "table default",
            type="string",
            enum=["table default", *COMPRESSIONS],
            title="Parquet compression",
            description="table default: the compression set for the table (zstd unless set).",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Check the table and times and show the plan; export and write nothing.",
        ),
        "force": Param(
            False,
            type="boolean",
            title="Write even if the lake already holds these events",
            description="A backfill whose events the lake already holds (a full export at "
            "the same export time, or an overlapping window) is refused. Tick to write it "
            "anyway; readers then see those events twice and must deduplicate by uuid.",
        ),
    },
)
def dynamodb_backfill() -> None:
    @task
    def plan(params: dict[str, Any], run_id: str) -> dict[str, Any]:
        from dynamo_lake.airflow import backfill_tasks

        return backfill_tasks.plan(dict(params), run_id)

    @task
    def exports_to_start(planned: dict[str, Any]) -> list[dict[str, Any]]:
        """The planned export requests; none on a dry run (so everything after is skipped)."""
        from dynamo_lake.airflow import backfill_tasks

        return backfill_tasks.exports_to_start(planned)

    @task
    def plan_conversion(planned: dict[str, Any], exports: Any, run_id: str) -> list[dict[str, Any]]:
        from dynamo_lake.airflow import backfill_tasks, tasks

        return backfill_tasks.plan_conversion(planned, tasks.materialize(exports), run_id)

    @task(max_active_tis_per_dagrun=8, map_index_template="{{ batch_name }}")
    def convert(batch: dict[str, Any]) -> dict[str, Any]:
        from dynamo_lake.airflow import tasks

        context = get_current_context()
        context["batch_name"] = tasks.batch_name(batch)  # type: ignore[typeddict-unknown-key]
        return tasks.convert(batch)

    @task(outlets=[LAKE_TABLES])
    def commit(
        planned: dict[str, Any],
        exports: Any,
        batches: Any,
        converted: Any,
        run_id: str,
        outlet_events: Any = None,
    ) -> dict[str, Any]:
        from airflow.sdk import Asset

        from dynamo_lake.airflow import backfill_tasks, tasks

        committed = backfill_tasks.commit(
            planned, tasks.materialize(exports), tasks.materialize(batches), run_id
        )
        name, uri, extra = backfill_tasks.lake_asset_event(committed)
        outlet_events[LAKE_TABLES].add(Asset(name=name, uri=uri), extra=extra)
        return committed

    @task(trigger_rule="none_failed")
    def summary(planned: dict[str, Any], committed: dict[str, Any] | None = None) -> dict[str, Any]:
        from dynamo_lake.airflow import backfill_tasks

        return backfill_tasks.describe_run(planned, committed)

    planned = plan()
    exports = DynamoDBExportOperator.partial(
        task_id="export",
        poll_interval=EXPORT_POLL_SECONDS,
        retries=3,
        map_index_template=EXPORT_NAME,
    ).expand(export_request=exports_to_start(planned))
    batches = plan_conversion(planned, exports.output)
    converted = convert.expand(batch=batches)
    committed = commit(planned, exports.output, batches, converted)
    summary(planned, committed)


dynamodb_backfill()
