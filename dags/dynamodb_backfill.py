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
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import AssetAlias, Param, dag, task

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

    @task(max_active_tis_per_dagrun=8)
    def convert(batch: dict[str, Any]) -> dict[str, Any]:
        from dynamo_lake.airflow import tasks

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
        task_id="export", poll_interval=EXPORT_POLL_SECONDS, retries=3
    ).expand(export_request=exports_to_start(planned))
    batches = plan_conversion(planned, exports.output)
    converted = convert.expand(batch=batches)
    committed = commit(planned, exports.output, batches, converted)
    summary(planned, committed)


dynamodb_backfill()
