"""The backfill job without Airflow: decide a run's exports from its params, keep the plan
of a run, and write the run's record beside the lake.

The DAG (``dags/dynamodb_backfill.py``) runs: plan (here) -> export
(:mod:`dynamo_lake.exports.api`, deferred) -> conversion and publishing
(:mod:`dynamo_lake.lake.conversion`) -> the Glue table (:mod:`dynamo_lake.lake.catalog`) and
the record (here). Each step is idempotent on its own: a retried task repeats its work and
writes the same names. The first plan of a run is stored beside its exports and reused when
the run is cleared, so "the latest restorable time" is resolved once per run.

Times are timezone-aware ``datetime``s in UTC.
"""

from __future__ import annotations

import logging
from datetime import datetime

import orjson

from dynamo_lake.config import TableConfig
from dynamo_lake.contract import BACKFILLS
from dynamo_lake.errors import ExportWindowError
from dynamo_lake.exports.api import iso
from dynamo_lake.exports.planning import (
    MIN_WINDOW,
    PitrWindow,
    full_export_request,
    incremental_export_request,
    parse_time,
    run_prefix,
    safe_name,
    split_window,
)
from dynamo_lake.records import BackfillPlan, BackfillRecord
from dynamo_lake.storage import Location, S3Options, resolve

__all__ = [
    "PLAN_FILE",
    "latest_backfill_record",
    "load_plan",
    "plan_backfill",
    "plan_uri",
    "read_backfill_record",
    "store_plan",
    "write_backfill_record",
]

log = logging.getLogger(__name__)

PLAN_FILE = "backfill-plan.json"


def plan_backfill(
    config: TableConfig,
    table_arn: str,
    window: PitrWindow,
    *,
    mode: str,
    run_key: str,
    export_time: str | datetime | None = None,
    export_from: str | datetime | None = None,
    export_to: str | datetime | None = None,
    compression: str | None = None,
    dry_run: bool = False,
    force: bool = False,
) -> BackfillPlan:
    """Check the requested times against the PITR window and decide the exports.

    ``run_key`` identifies the DAG run (its run id): with the parameters it makes the
    ClientTokens, so the same run asks for the same exports however often it is retried.
    """
    notes: list[str] = []
    if mode == "full":
        if export_from or export_to:
            raise ExportWindowError(
                "export_from/export_to are for mode 'incremental'; a full export takes export_time"
            )
        moment = parse_time(export_time, "export_time")
        if moment is None:
            moment = window.latest
            notes.append(f"export_time not given: using the latest restorable time {iso(moment)}")
        if not window.earliest <= moment <= window.latest:
            raise ExportWindowError(
                f"export_time {iso(moment)} is outside the table's point-in-time window "
                f"{window.describe()}; choose a time inside it"
            )
        exports = [full_export_request(config, table_arn, run_key, moment)]
    elif mode == "incremental":
        if export_time:
            raise ExportWindowError("export_time is for mode 'full'; give export_from/export_to")
        start = parse_time(export_from, "export_from")
        end = parse_time(export_to, "export_to")
        if start is None:
            raise ExportWindowError("mode 'incremental' needs export_from (and export_to)")
        if end is None:
            end = window.latest
            notes.append(f"export_to not given: using the latest restorable time {iso(end)}")
            if start >= end:
                raise ExportWindowError(
                    f"export_from {iso(start)} is not before the latest restorable time "
                    f"{iso(end)}: the window would be empty; choose an earlier start"
                )
        if start > end:
            raise ExportWindowError(
                f"export_from {iso(start)} is after export_to {iso(end)}: swap them"
            )
        if start == end:
            raise ExportWindowError(
                f"export_from and export_to are both {iso(start)}: the window is empty; "
                "an incremental export covers at least 15 minutes"
            )
        if end - start < MIN_WINDOW:
            raise ExportWindowError(
                f"the window [{iso(start)}, {iso(end)}) is shorter than DynamoDB's 15-minute "
                "minimum for incremental exports"
            )
        if start < window.earliest or end > window.latest:
            raise ExportWindowError(
                f"the window [{iso(start)}, {iso(end)}) is outside the table's point-in-time "
                f"window {window.describe()}; choose times inside it"
            )
        parts = split_window(start, end)
        if len(parts) > 1:
            notes.append(f"window longer than 24 hours: split into {len(parts)} exports")
        exports = [
            incremental_export_request(config, table_arn, run_key, a, b, sequence=index)
            for index, (a, b) in enumerate(parts)
        ]
    else:
        raise ExportWindowError(f"mode must be 'full' or 'incremental', got {mode!r}")
    return BackfillPlan(
        table=config.name,
        mode=mode,  # type: ignore[arg-type]
        lake_uri=config.lake_uri,
        exports=tuple(exports),
        pitr_window=window.describe(),
        dry_run=dry_run,
        compression=compression or config.compression,
        notes=tuple(notes),
        force=force,
        run_id=run_key,
        request={
            "mode": mode,
            "export_time": _text(export_time),
            "export_from": _text(export_from),
            "export_to": _text(export_to),
            "compression": compression,
            "force": force,
        },
    )


def _text(value: str | datetime | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (value or None)


def plan_uri(config: TableConfig, run_key: str) -> str:
    """Where a run's plan is kept: beside its exports in the export bucket."""
    return f"s3://{config.export_bucket}/{run_prefix(config, run_key)}/{PLAN_FILE}"


def load_plan(location: Location) -> BackfillPlan | None:
    """The plan a run stored earlier, or ``None``."""
    if not location.exists():
        return None
    return location.read_document(
        BackfillPlan.from_json, "backfill plan", "delete it to plan the run again"
    )


def store_plan(location: Location, plan: BackfillPlan) -> None:
    location.write_bytes(orjson.dumps(plan.to_json(), option=orjson.OPT_INDENT_2))


def _record_location(lake_uri: str, run_id: str, s3: S3Options | None) -> Location:
    return resolve(lake_uri, s3).child(BACKFILLS, f"{safe_name(run_id)}.json")


def write_backfill_record(record: BackfillRecord, s3: S3Options | None = None) -> str:
    """Write ``_backfills/<run id>.json`` beside the lake's partitions; return its URI."""
    location = _record_location(record.lake_uri, record.run_id, s3)
    location.write_bytes(
        orjson.dumps(record.to_json(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    return location.uri


def read_backfill_record(
    lake_uri: str, run_id: str, s3: S3Options | None = None
) -> BackfillRecord | None:
    """The record a backfill run wrote, or ``None``."""
    location = _record_location(lake_uri, run_id, s3)
    if not location.exists():
        return None
    return location.read_document(BackfillRecord.from_json, "backfill record")


def latest_backfill_record(lake_uri: str, s3: S3Options | None = None) -> BackfillRecord | None:
    """The record of the most recent backfill of the lake (one listing, one read)."""
    newest = resolve(lake_uri, s3).child(BACKFILLS).newest_file(".json")
    if newest is None:
        return None
    return newest.read_document(BackfillRecord.from_json, "backfill record")
