"""The backfill DAG's own task bodies: planning a run, committing it, describing it.

The blocks in between (export, conversion, publishing) are the shared ones in
:mod:`dynamo_lake.airflow.operators` and :mod:`dynamo_lake.airflow.tasks`. Values passed
between tasks are the JSON of :mod:`dynamo_lake.records`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from dynamo_lake import backfill
from dynamo_lake.airflow import tasks
from dynamo_lake.airflow.connections import aws_client, s3_options
from dynamo_lake.airflow.tasks import fails_fast, publish
from dynamo_lake.config import TableConfig, load_tables
from dynamo_lake.exports.planning import check_source
from dynamo_lake.lake.catalog import ensure_glue_table
from dynamo_lake.lake.conversion import check_not_in_lake, run_attempt
from dynamo_lake.lake.writer import LakeTable
from dynamo_lake.records import BackfillPlan, BackfillRecord, CommittedBackfill
from dynamo_lake.storage import S3Options, resolve

__all__ = [
    "commit",
    "describe_run",
    "exports_to_start",
    "lake_asset_event",
    "plan",
    "plan_conversion",
]

log = logging.getLogger(__name__)


def _table(name: str) -> TableConfig:
    return load_tables().table(name)


def _compression(chosen: str | None) -> str | None:
    """The form's "table default" (or nothing) means the table's configured compression."""
    return None if chosen in (None, "", "table default") else chosen


@fails_fast
def plan(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Validate the request against the table and PITR, and decide the exports.

    The first plan of a run is stored beside its exports and reused when the run (or this
    task) is cleared, so "the latest restorable time" is resolved once per run.
    """
    config = _table(params["table"])
    dynamodb = aws_client("dynamodb", config.aws_conn_id, config.region)
    s3 = aws_client("s3", config.aws_conn_id, config.region)
    options = s3_options(config.aws_conn_id, config.region)
    table_arn, window = check_source(dynamodb, s3, config)
    decided = backfill.plan_backfill(
        config,
        table_arn,
        window,
        mode=params["mode"],
        run_key=run_id,
        export_time=params.get("export_time"),
        export_from=params.get("export_from"),
        export_to=params.get("export_to"),
        compression=_compression(params.get("compression")),
        dry_run=bool(params.get("dry_run")),
        force=bool(params.get("force")),
    )
    stored_at = resolve(backfill.plan_uri(config, run_id), options)
    stored = backfill.load_plan(stored_at)
    if stored is not None and stored.request == decided.request:
        log.info("reusing the plan this run stored at %s", stored_at.uri)
        decided = replace(stored, dry_run=decided.dry_run)
    elif not decided.dry_run:
        if stored is not None:
            log.warning("the stored plan %s was for other params; planning again", stored_at.uri)
        backfill.store_plan(stored_at, decided)
    if not decided.dry_run:
        _refuse_repeated_events(decided, options)
    for note in decided.notes:
        log.info("%s", note)
    for request in decided.exports:
        log.info("planned: %s (ClientToken %s)", request.describe(), request.client_token)
    if decided.dry_run:
        log.info("dry run: nothing will be exported or written")
    return decided.to_json()


def _refuse_repeated_events(decided: BackfillPlan, options: S3Options) -> None:
    """Refuse, before exporting, a full export at a moment (or a window) the lake holds.

    The commit checks again against the export's real time; this saves an export that
    would be refused after its 10 minutes.
    """
    table = LakeTable(resolve(decided.lake_uri, options))
    for request in decided.exports:
        check_not_in_lake(
            table,
            "(planned)",
            request.expected_coverage(),
            run=decided.run_id,
            force=decided.force,
        )


@fails_fast
def commit(
    planned_json: dict[str, Any],
    exports: list[dict[str, Any]],
    batches: list[dict[str, Any]],
    run_id: str,
) -> dict[str, Any]:
    """Publish the run's exports, make sure the Glue table exists, write the run's record."""
    planned = BackfillPlan.from_json(planned_json)
    config = _table(planned.table)
    published = publish(
        exports,
        batches,
        target=planned.lake_uri,
        run_id=run_id,
        aws_conn_id=config.aws_conn_id,
        region=config.region,
        max_bad_lines=config.max_bad_lines,
        force=planned.force,
    )
    glue = aws_client("glue", config.aws_conn_id, config.region)
    catalog = ensure_glue_table(glue, config.glue_database, config.glue_table, planned.lake_uri)
    record = BackfillRecord(
        run_id=run_id,
        table=config.name,
        dynamodb_table=config.dynamodb_table,
        mode=planned.mode,
        lake_uri=planned.lake_uri,
        glue_table=f"{config.glue_database}.{config.glue_table}",
        exports=tuple(published),
        glue=catalog,
        committed_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    )
    record_uri = backfill.write_backfill_record(
        record, s3_options(config.aws_conn_id, config.region)
    )
    log.info(
        "committed %d rows in %d files from %d exports into %s (Glue table %s: %s); record %s",
        record.rows,
        record.files,
        len(published),
        record.lake_uri,
        record.glue_table,
        catalog,
        record_uri,
    )
    return CommittedBackfill(record, record_uri).to_json()


def describe_run(planned_json: dict[str, Any], committed: dict[str, Any] | None) -> dict[str, Any]:
    """One log paragraph and a small XCom: what was planned and what landed."""
    planned = BackfillPlan.from_json(planned_json)
    if planned.dry_run or committed is None:
        exports = [
            request.export_time or f"[{request.export_from}, {request.export_to})"
            for request in planned.exports
        ]
        log.info(
            "DRY RUN for %s (%s): would run %d exports %s into %s; PITR window %s",
            planned.table,
            planned.mode,
            len(exports),
            exports,
            planned.lake_uri,
            planned.pitr_window,
        )
        return {"dry_run": True, "table": planned.table, "planned_exports": exports}
    done = CommittedBackfill.from_json(committed).record
    log.info(
        "backfill of %s (%s): %d rows, %d files, %d bad lines, into %s; record %s",
        done.table,
        planned.mode,
        done.rows,
        done.files,
        done.bad_lines,
        done.lake_uri,
        committed["record_uri"],
    )
    return {
        "dry_run": False,
        "table": done.table,
        "lake_uri": done.lake_uri,
        "record_uri": committed["record_uri"],
        "rows": done.rows,
        "files": done.files,
        "bad_lines": done.bad_lines,
        "exports": [item.export_arn for item in done.exports],
    }


def exports_to_start(planned_json: dict[str, Any]) -> list[dict[str, Any]]:
    """The planned export requests; none on a dry run (so everything after is skipped)."""
    planned = BackfillPlan.from_json(planned_json)
    return [] if planned.dry_run else [request.to_json() for request in planned.exports]


def plan_conversion(
    planned_json: dict[str, Any], exports: list[dict[str, Any]], run_id: str
) -> list[dict[str, Any]]:
    """Cut the run's completed exports into conversion batches, into the planned lake."""
    planned = BackfillPlan.from_json(planned_json)
    config = _table(planned.table)
    return tasks.plan_conversion(
        exports,
        target=planned.lake_uri,
        attempt=run_attempt(run_id),
        compression=planned.compression,
        batch_size_mb=config.batch_size_mb,
        aws_conn_id=config.aws_conn_id,
        region=config.region,
    )


def lake_asset_event(committed: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The lake table's asset (name, URI) and the event's extra for a committed run."""
    done = CommittedBackfill.from_json(committed)
    return f"dynamo_lake/{done.record.table}", done.record.lake_uri, done.asset_extra()
