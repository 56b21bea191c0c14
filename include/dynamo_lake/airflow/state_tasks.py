"""The current-state DAG's task bodies: per table, plan a merge, rewrite its buckets (mapped
across workers), commit them in one Iceberg commit.

Values passed between tasks are plain JSON: a plan names the lake, the catalog entry, the
key attributes, the bucket count and the watermark; a merge returns what it committed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dynamo_lake.airflow.connections import aws_client, s3_options
from dynamo_lake.airflow.params import ALL_TABLES
from dynamo_lake.airflow.tasks import fails_fast
from dynamo_lake.cdc import micros_text
from dynamo_lake.config import TableConfig, load_tables
from dynamo_lake.errors import SourceError, StateConflictError, StateError, aws_error_code
from dynamo_lake.lake.query import lake_dataset
from dynamo_lake.reconciliation.plan import key_attributes
from dynamo_lake.records import ReconciliationPlan
from dynamo_lake.state.current import (
    BUCKETS_PROPERTY,
    ORPHAN_AGE,
    BucketMerge,
    MergePlan,
    MergeResult,
    StateTarget,
    commit_merge,
    current_snapshot,
    cut_watermark,
    merge_bucket,
    merge_state,
    open_catalog,
    open_state_table,
    plan_merge,
    remove_orphans,
)
from dynamo_lake.state.maintenance import expire_state
from dynamo_lake.state.merge import deal_buckets, default_buckets
from dynamo_lake.state.verify import Verification, verify_changes_check, verify_export_check
from dynamo_lake.storage import S3Options

__all__ = ["bucket_work", "commit", "plan", "prepare", "rewrite", "verify"]

log = logging.getLogger(__name__)

#: At most this many rewrite tasks per table and run; more buckets share a task.
MAX_BUCKET_TASKS = 128


def _catalog(config: TableConfig) -> Any:
    return open_catalog(
        config.lake_uri,
        s3_options(config.aws_conn_id, config.region),
        glue_client=aws_client("glue", config.aws_conn_id, config.region),
    )


def _buckets(config: TableConfig, item_count: int) -> int:
    """The tables file's ``state_buckets``; else the existing state's; else from the size."""
    if config.state_buckets is not None:
        return config.state_buckets
    from pyiceberg.exceptions import NoSuchTableError

    try:
        table = _catalog(config).load_table((config.glue_database, f"{config.glue_table}_current"))
    except NoSuchTableError:
        return default_buckets(item_count)
    return int(table.properties.get(BUCKETS_PROPERTY, default_buckets(item_count)))


@fails_fast
def plan(params: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """One merge per table (``table`` "all tables" or empty: every configured table), each to
    the newest cut time its reconciliation schedule has reached."""
    from botocore.exceptions import ClientError

    configured = load_tables()
    chosen = params.get("table")
    names = [chosen] if chosen and chosen != ALL_TABLES else sorted(configured.tables)
    plans = []
    for name in names:
        config = configured.table(name)
        dynamodb = aws_client("dynamodb", config.aws_conn_id, config.region)
        try:
            description = dynamodb.describe_table(TableName=config.dynamodb_table)["Table"]
        except ClientError as exc:
            if aws_error_code(exc) == "ResourceNotFoundException":
                raise SourceError(
                    f"DynamoDB table {config.dynamodb_table!r} (configured as {name!r}) does "
                    "not exist; fix dynamodb_table or region in the tables file"
                ) from None
            raise
        keys = key_attributes(dynamodb, config.dynamodb_table)
        watermark = cut_watermark(
            configured.reconciliation_schedule, config.reconcile.settle_margin_minutes, now
        )
        plans.append(
            {
                "table": name,
                "lake_uri": config.lake_uri,
                "database": config.glue_database,
                "glue_table": config.glue_table,
                "key_names": [key for key, _ in keys],
                "buckets": _buckets(config, int(description.get("ItemCount", 0))),
                "watermark_us": watermark,
                "planned_at": now.isoformat(),
            }
        )
    return plans


def _target(plan_json: dict[str, Any]) -> tuple[TableConfig, StateTarget]:
    config = load_tables().table(plan_json["table"])
    if config.lake_uri != plan_json["lake_uri"]:
        raise StateError(
            f"{plan_json['table']}: the tables file now puts the lake at {config.lake_uri}, "
            f"not {plan_json['lake_uri']} as when this run was planned: run the DAG again"
        )
    target = StateTarget(
        plan_json["lake_uri"],
        plan_json["database"],
        plan_json["glue_table"],
        tuple(plan_json["key_names"]),
        int(plan_json["buckets"]),
        config.state_columns,
    )
    return config, target


def _watermark(table: Any, plan_json: dict[str, Any]) -> int:
    """The plan's watermark, or the state's own when a reconciliation verified at a T past
    the schedule's cut (a check by hand, closer to now): late files are then merged at the
    state's watermark, never back."""
    watermark = int(plan_json["watermark_us"])
    head = current_snapshot(table)
    if head is not None and head.watermark_us > watermark:
        log.info(
            "the state is at %s, past this run's cut %s: merging late files at %s",
            head.watermark,
            micros_text(watermark),
            head.watermark,
        )
        return head.watermark_us
    return watermark


@fails_fast
def prepare(plan_json: dict[str, Any]) -> dict[str, Any]:
    """Plan one table's merge (:func:`plan_merge`): its events staged by bucket, and the
    buckets to rewrite; ``merge`` is None when there is nothing new."""
    config, target = _target(plan_json)
    catalog = _catalog(config)
    options = s3_options(config.aws_conn_id, config.region)
    watermark = _watermark(open_state_table(catalog, target), plan_json)
    planned = plan_merge(
        target,
        watermark,
        s3=options,
        catalog=catalog,
        memory_limit_mb=config.reconcile.duckdb_memory_limit_mb,
    )
    if planned is None:
        log.info("current state: nothing new up to %s", micros_text(watermark))
    else:
        log.info(
            "current state: %d new lake files, %s events up to %s; %d buckets to rewrite",
            planned.files_merged,
            f"{planned.events_read:,}",
            micros_text(watermark),
            len(planned.buckets),
        )
    return {**plan_json, "merge": None if planned is None else planned.as_json()}


def bucket_work(prepared: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rewrites to map: per table, its buckets dealt into at most
    :data:`MAX_BUCKET_TASKS` tasks (a task rewrites its buckets one at a time, so its memory
    stays one bucket's; Airflow maps at most 1024 tasks by default)."""
    work: list[dict[str, Any]] = []
    for item in prepared:
        if item["merge"] is None:
            continue
        work.extend(
            {"table": item["table"], "buckets": dealt}
            for dealt in deal_buckets(item["merge"]["buckets"], MAX_BUCKET_TASKS)
        )
    return work


def _prepared_for(prepared: Sequence[dict[str, Any]], table: str) -> dict[str, Any]:
    (item,) = [item for item in prepared if item["table"] == table]
    return item


@fails_fast
def rewrite(work: dict[str, Any], prepared: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Rewrite some of one table's buckets (:func:`merge_bucket`), each as new data files
    that the table's commit adds; returns what each rewrite wrote, for the plan's staging."""
    item = _prepared_for(prepared, work["table"])
    config, target = _target(item)
    catalog = _catalog(config)
    options = s3_options(config.aws_conn_id, config.region)
    planned = MergePlan.from_json(item["merge"])
    table = open_state_table(catalog, target, create=False)
    merges = []
    for bucket in work["buckets"]:
        merged = merge_bucket(
            target,
            planned,
            int(bucket),
            s3=options,
            catalog=catalog,
            memory_limit_mb=config.reconcile.duckdb_memory_limit_mb,
            table=table,
        )
        log.info(
            "bucket %d: %d files, live items %+d, tombstones %+d",
            merged.bucket,
            len(merged.files),
            merged.live_delta,
            merged.tombstone_delta,
        )
        merges.append(merged.as_json())
    return {"table": work["table"], "staging": planned.staging, "merges": merges}


@fails_fast
def commit(prepared: dict[str, Any], rewrites: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Commit one table's rewritten buckets in one Iceberg commit, then expire snapshots.

    When another merge committed after this run planned (a reconciliation verifying at its
    own T), the rewrites are stale: the merge is done again here, in this task, on top of it
    (their files are orphans, removed after an hour)."""
    config, target = _target(prepared)
    catalog = _catalog(config)
    options = s3_options(config.aws_conn_id, config.region)
    result: MergeResult | None = None
    if prepared["merge"] is None:  # prepare found nothing new: nothing to commit
        table = open_state_table(catalog, target)
        result = MergeResult(None, _watermark(table, prepared), 0, 0, 0)
    else:
        planned = MergePlan.from_json(prepared["merge"])
        merges = [
            BucketMerge.from_json(merged)
            for done in rewrites
            if done["table"] == prepared["table"] and done["staging"] == planned.staging
            for merged in done["merges"]
        ]
        try:
            result = commit_merge(target, planned, merges, s3=options, catalog=catalog)
        except StateConflictError as exc:
            log.warning("%s; merging again in this task", exc)
    if result is None:  # another merge committed after this run planned
        table = open_state_table(catalog, target)
        result = merge_state(
            target,
            _watermark(table, prepared),
            s3=options,
            catalog=catalog,
            memory_limit_mb=config.reconcile.duckdb_memory_limit_mb,
        )
    elif prepared["merge"] is not None:
        removed = remove_orphans(
            open_state_table(catalog, target), target, options, older_than=ORPHAN_AGE
        )
        if removed:
            log.info("current state: removed %d files no snapshot refers to", removed)
    log.info("%s", result.text())
    # Snapshot expiry after the merge; the files only expired snapshots read are removed as
    # orphans by the next merge.
    table = open_state_table(catalog, target, create=False)
    expiry = expire_state(table, now=datetime.fromisoformat(prepared["planned_at"]))
    log.info("%s", expiry.text())
    snapshot = result.snapshot
    return {
        "table": prepared["table"],
        "state_table": ".".join(target.identifier),
        "snapshot_id": None if snapshot is None else str(snapshot.snapshot_id),
        "watermark": None if snapshot is None else snapshot.watermark,
        "files_merged": result.files_merged,
        "events_read": result.events_read,
        "buckets_rewritten": result.buckets_rewritten,
        "live_items": None if snapshot is None else snapshot.live_items,
        "snapshots_expired": expiry.snapshots_expired,
        "tags_removed": list(expiry.tags_removed),
    }


def verify(config: TableConfig, planned: ReconciliationPlan, options: S3Options) -> Verification:
    """After a healthy ``export`` or ``changes`` check: the snapshot at T against the
    converted export (all keys; or the chain rule's keys), tagged ``verified-<T>`` when equal
    (see :mod:`dynamo_lake.state.verify`)."""
    dynamodb = aws_client("dynamodb", config.aws_conn_id, config.region)
    description = dynamodb.describe_table(TableName=config.dynamodb_table)["Table"]
    target = StateTarget(
        config.lake_uri,
        config.glue_database,
        config.glue_table,
        tuple(name for name, _ in planned.keys),
        _buckets(config, int(description.get("ItemCount", 0))),
        config.state_columns,
    )
    rows = lake_dataset(planned.work_uri, options)
    memory = config.reconcile.duckdb_memory_limit_mb
    if planned.method == "changes":
        if planned.window_start is None:
            raise StateError(f"{planned.table}: a changes plan without a window start")
        return verify_changes_check(
            target,
            planned.as_of,
            planned.window_start,
            rows,
            s3=options,
            catalog=_catalog(config),
            memory_limit_mb=memory,
        )
    return verify_export_check(
        target, planned.as_of, rows, s3=options, catalog=_catalog(config), memory_limit_mb=memory
    )
