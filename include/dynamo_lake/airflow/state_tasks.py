"""The current-state DAG's task bodies: plan each table's merge, then merge it.

Values passed between tasks are plain JSON: a plan names the lake, the catalog entry, the
key attributes, the bucket count and the watermark; a merge returns what it committed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from dynamo_lake.airflow.connections import aws_client, s3_options
from dynamo_lake.airflow.params import ALL_TABLES
from dynamo_lake.airflow.tasks import fails_fast
from dynamo_lake.cdc import micros_text
from dynamo_lake.config import TableConfig, load_tables
from dynamo_lake.errors import SourceError, StateError, aws_error_code
from dynamo_lake.lake.query import lake_dataset
from dynamo_lake.reconciliation.plan import key_attributes
from dynamo_lake.records import ReconciliationPlan
from dynamo_lake.state.current import (
    BUCKETS_PROPERTY,
    StateTarget,
    current_snapshot,
    cut_watermark,
    merge_state,
    open_catalog,
    open_state_table,
)
from dynamo_lake.state.maintenance import expire_state
from dynamo_lake.state.merge import default_buckets
from dynamo_lake.state.verify import Verification, verify_changes_check, verify_export_check
from dynamo_lake.storage import S3Options

__all__ = ["merge", "plan", "verify"]

log = logging.getLogger(__name__)


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


@fails_fast
def merge(plan_json: dict[str, Any]) -> dict[str, Any]:
    """Merge one table's lake into its current state up to the plan's watermark."""
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
    )
    catalog = _catalog(config)
    watermark = int(plan_json["watermark_us"])
    # A reconciliation verifies at its own T and may have moved the state past the
    # schedule's cut (a check by hand, closer to now): the DAG then merges the late files at
    # the state's own watermark, never back.
    table = open_state_table(catalog, target)
    head = current_snapshot(table)
    if head is not None and head.watermark_us > watermark:
        log.info(
            "the state is at %s, past this run's cut %s: merging late files at %s",
            head.watermark,
            micros_text(watermark),
            head.watermark,
        )
        watermark = head.watermark_us
    result = merge_state(
        target,
        watermark,
        s3=s3_options(config.aws_conn_id, config.region),
        catalog=catalog,
        memory_limit_mb=config.reconcile.duckdb_memory_limit_mb,
    )
    log.info("%s", result.text())
    # Snapshot expiry after the merge; the files only expired snapshots read are removed as
    # orphans by the next merge.
    table = open_state_table(catalog, target, create=False)
    expiry = expire_state(table, now=datetime.fromisoformat(plan_json["planned_at"]))
    log.info("%s", expiry.text())
    snapshot = result.snapshot
    return {
        "table": plan_json["table"],
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
