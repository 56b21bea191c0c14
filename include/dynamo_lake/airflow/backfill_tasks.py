"""The backfill DAG's task bodies: configuration and AWS clients in, core calls, small dicts out.

Each function is what one task does; the DAG file only declares and wires them. Values
passed between them are the small JSON dicts the core's ``to_json`` methods make (XCom
carries pointers and counts, never rows).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from dynamo_lake import backfill
from dynamo_lake.airflow.hooks import aws_client, s3_options
from dynamo_lake.catalog import CatalogError, ensure_glue_table
from dynamo_lake.config import ConfigError, TableConfig, load_tables
from dynamo_lake.convert import check_not_in_lake
from dynamo_lake.errors import (
    DuplicateEventsError,
    ExportFormatError,
    ExportIntegrityError,
    InvalidRecordError,
)
from dynamo_lake.export_reader import read_manifest
from dynamo_lake.lake_writer import LakeTable
from dynamo_lake.storage import S3Options, resolve

log = logging.getLogger(__name__)
MIB = 1024 * 1024


# Errors that a retry cannot fix: the task fails at once with the error's plain words.
PERMANENT = (
    ConfigError,
    backfill.SourceError,
    backfill.ExportWindowError,
    backfill.ExportFailedError,
    ExportIntegrityError,
    ExportFormatError,
    InvalidRecordError,
    CatalogError,
    DuplicateEventsError,
)
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def fails_fast(function: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except PERMANENT as exc:
            raise AirflowFailException(str(exc)) from exc

    return wrapper


def materialize(values: Sequence[T]) -> list[T]:
    """A mapped task's outputs as a list, read in one request.

    ``list()`` over Airflow's lazy XCom sequence reads item by item until one past the end,
    and that last read logs an "XCom not found" error in the scheduler for every run.
    """
    return list(values[:])


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
    table_arn, window = backfill.check_source(dynamodb, s3, config)
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
        _refuse_repeated_events(config, decided, options)
    for note in decided.notes:
        log.info("%s", note)
    for request in decided.exports:
        log.info("planned: %s (ClientToken %s)", request.describe(), request.client_token)
    if decided.dry_run:
        log.info("dry run: nothing will be exported or written")
    return decided.to_json()


def _refuse_repeated_events(
    config: TableConfig, decided: backfill.BackfillPlan, options: S3Options
) -> None:
    """Refuse, before exporting, a full export at a moment (or a window) the lake holds.

    The commit checks again against the export's real time; this saves a 10-minute export
    that would be refused. The export's time is rounded to AWS's milliseconds first.
    """
    table = LakeTable(resolve(decided.lake_uri, options))
    for request in decided.exports:
        check_not_in_lake(
            table, request.expected_summary(), run=decided.run_id, force=decided.force
        )


@fails_fast
def plan_conversion(planned: dict[str, Any], exports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Read each export's verified manifest and cut its data files into batches."""
    config = _table(planned["table"])
    options = s3_options(config.aws_conn_id, config.region)
    batches: list[dict[str, Any]] = []
    for export in sorted(exports, key=lambda item: item["sequence"]):
        manifest = read_manifest(export["manifest_uri"], options)
        groups = backfill.plan_batches(manifest, config.batch_size_mb * MIB)
        log.info(
            "export %s: %d data files, %d items, %d batches",
            manifest.summary.export_id,
            len(manifest.data_files),
            manifest.summary.item_count,
            len(groups),
        )
        batches += [
            {
                "table": config.name,
                "lake_uri": planned["lake_uri"],
                "manifest_uri": export["manifest_uri"],
                "export_id": manifest.summary.export_id,
                "keys": keys,
                "batch": number,
                "compression": planned["compression"],
                "attempt": backfill.run_attempt(planned["run_id"]),
            }
            for number, keys in enumerate(groups)
        ]
    return batches


@fails_fast
def convert(batch: dict[str, Any]) -> dict[str, Any]:
    """Convert one batch of data files into the lake table's staging area."""
    config = _table(batch["table"])
    counts = backfill.convert_batch(
        batch["manifest_uri"],
        batch["keys"],
        batch["lake_uri"],
        batch["batch"],
        s3_options(config.aws_conn_id, config.region),
        compression=batch["compression"],
        attempt=batch["attempt"],
    )
    log.info("batch %s of %s: %s", batch["batch"], counts["export_id"], counts)
    return counts


def _batches_per_export(batches: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for batch in batches:
        counts[batch["export_id"]] = counts.get(batch["export_id"], 0) + 1
    return counts


@fails_fast
def commit(
    planned: dict[str, Any],
    exports: list[dict[str, Any]],
    batches: list[dict[str, Any]],
    run_id: str,
) -> dict[str, Any]:
    """Verify counts, publish, make sure the Glue table exists, write the backfill record."""
    config = _table(planned["table"])
    options = s3_options(config.aws_conn_id, config.region)
    ordered = sorted(exports, key=lambda item: item["sequence"])
    committed = backfill.commit_exports(
        ordered,
        planned["lake_uri"],
        _batches_per_export(batches),
        options,
        max_bad_lines=config.max_bad_lines,
        run_id=run_id,
        force=bool(planned.get("force")),
    )
    glue = aws_client("glue", config.aws_conn_id, config.region)
    catalog = ensure_glue_table(glue, config.glue_database, config.glue_table, config.lake_uri)
    record = {
        "run_id": run_id,
        "table": config.name,
        "dynamodb_table": config.dynamodb_table,
        "mode": planned["mode"],
        "lake_uri": config.lake_uri,
        "glue_table": f"{config.glue_database}.{config.glue_table}",
        "exports": committed,
        "rows": sum(item["rows"] for item in committed),
        "bad_lines": sum(item["bad_lines"] for item in committed),
        "files": sum(item["files"] for item in committed),
    }
    record_uri = backfill.write_backfill_record(config.lake_uri, run_id, record, options)
    log.info(
        "committed %d rows in %d files from %d exports into %s (Glue table %s: %s); record %s",
        record["rows"],
        record["files"],
        len(committed),
        config.lake_uri,
        record["glue_table"],
        catalog,
        record_uri,
    )
    return {
        "table": config.name,
        "lake_uri": config.lake_uri,
        "record_uri": record_uri,
        "rows": record["rows"],
        "files": record["files"],
        "bad_lines": record["bad_lines"],
        "exports": [
            {
                "export_arn": item["export_arn"],
                "rows": item["rows"],
                "export_time": item.get("export_time"),
                "requested_export_time": item.get("requested_export_time"),
                "export_from": item.get("export_from"),
                "export_to": item.get("export_to"),
            }
            for item in committed
        ],
        "glue": catalog,
    }


def summarize(planned: dict[str, Any], committed: dict[str, Any] | None) -> dict[str, Any]:
    """One log paragraph and a small XCom: what was planned and what landed."""
    if planned.get("dry_run") or committed is None:
        exports = [
            request.get("export_time") or f"[{request['export_from']}, {request['export_to']})"
            for request in planned["exports"]
        ]
        log.info(
            "DRY RUN for %s (%s): would run %d exports %s into %s; PITR window %s",
            planned["table"],
            planned["mode"],
            len(exports),
            exports,
            planned["lake_uri"],
            planned["pitr_window"],
        )
        return {"dry_run": True, "table": planned["table"], "planned_exports": exports}
    log.info(
        "backfill of %s (%s): %d rows, %d files, %d bad lines, into %s; record %s",
        committed["table"],
        planned["mode"],
        committed["rows"],
        committed["files"],
        committed["bad_lines"],
        committed["lake_uri"],
        committed["record_uri"],
    )
    return {"dry_run": False, **committed}
