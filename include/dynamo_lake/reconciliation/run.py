"""One table's reconciliation, start to report: compare, repair if asked, check again.

The table side is ready before this runs: a converted export in the plan's work location
(``export``, ``changes``), an exact scan (``scan``), or DescribeTable (``count``, asked
here). The report is written under the lake's ``_reconciliation/`` whatever the outcome;
an error is reported too, then raised.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from dynamo_lake.cdc import datetime_to_micros, micros_to_datetime
from dynamo_lake.errors import DynamoLakeError
from dynamo_lake.lake.conversion import run_attempt
from dynamo_lake.lake.query import lake_dataset
from dynamo_lake.lake.writer import LakeTable, Stage
from dynamo_lake.reconciliation.compare import (
    HOUR_MICROS,
    Comparison,
    KeyAttribute,
    ScanResult,
    compare_changes,
    compare_count,
    compare_export,
)
from dynamo_lake.reconciliation.engines import AthenaEngine, DuckDBEngine, Engine
from dynamo_lake.reconciliation.plan import as_of_text
from dynamo_lake.reconciliation.repair import RepairWriter, repair_group
from dynamo_lake.reconciliation.report import ReconciliationReport, write_report
from dynamo_lake.records import ReconciliationPlan
from dynamo_lake.storage import S3Options, resolve

__all__ = ["cleanup_work", "open_engine", "reconcile_export", "reconcile_table"]

log = logging.getLogger(__name__)


def open_engine(
    plan: ReconciliationPlan,
    s3: S3Options | None,
    *,
    athena: Any = None,
    glue: Any = None,
    with_snapshot: bool = True,
) -> Engine:
    """The engine the table is configured for, over the lake (and the work location)."""
    if plan.engine == "athena":
        return AthenaEngine(
            athena,
            glue,
            database=plan.glue_database,
            lake_table=plan.glue_table,
            snapshot_location=plan.work_uri if with_snapshot else None,
            workgroup=plan.athena_workgroup,
            output_location=str(plan.athena_output_location),
        )
    return DuckDBEngine(
        lake_dataset(plan.lake_uri, s3),
        lake_dataset(plan.work_uri, s3) if with_snapshot else None,
        memory_limit_mb=plan.duckdb_memory_limit_mb,
    )


def _iso(micros: int) -> str:
    return f"{micros_to_datetime(micros):%Y-%m-%dT%H:%M:%S.%fZ}"


def _compare(
    plan: ReconciliationPlan,
    engine: Engine,
    keys: list[KeyAttribute],
    *,
    dynamodb: Any,
    scan: ScanResult | None,
    now: datetime,
    on_drift: Any = None,
) -> Comparison:
    epsilon = plan.epsilon_ms * 1000
    if plan.method == "export":
        return compare_export(engine, keys, plan.as_of, epsilon, on_drift)
    if plan.method == "changes":
        assert plan.window_start is not None
        return compare_changes(engine, keys, plan.as_of, epsilon, plan.window_start, on_drift)
    if plan.method == "scan":
        assert scan is not None
        return compare_count(
            engine,
            keys,
            method="scan",
            table_count=scan.count,
            lake_moment=scan.ended,
            events_from=scan.started,
            events_to=scan.ended,
            slack=plan.count_slack,
            reasoning=(
                f"an exact scan from {_iso(scan.started)} to {_iso(scan.ended)} is not a "
                "snapshot: each change during it may have been counted or not"
            ),
        )
    table_count = int(dynamodb.describe_table(TableName=plan.dynamodb_table)["Table"]["ItemCount"])
    now_micros = datetime_to_micros(now)
    stale_from = now_micros - plan.count_staleness_hours * HOUR_MICROS
    start, end = min(plan.as_of, stale_from), max(plan.as_of, now_micros)
    return compare_count(
        engine,
        keys,
        method="count",
        table_count=table_count,
        lake_moment=plan.as_of,
        events_from=start,
        events_to=end,
        slack=plan.count_slack,
        reasoning=(
            f"DescribeTable.ItemCount is refreshed about every {plan.count_staleness_hours} h, "
            f"so it describes the table at some moment from {_iso(stale_from)} to "
            f"{_iso(now_micros)}; the lake is counted at T={_iso(plan.as_of)}; they may differ "
            f"by the changes from {_iso(start)} to {_iso(end)}"
        ),
    )


def _summary(comparison: Comparison) -> dict[str, Any]:
    by_method = comparison.method in ("export", "changes")
    return {
        "status": "drift" if comparison.drifted else "ok",
        "missing": comparison.counts.get("missing", 0) if by_method else None,
        "extra": comparison.counts.get("extra", 0) if by_method else None,
        "different": comparison.counts.get("different", 0) if by_method else None,
        "phantoms": comparison.counts.get("phantom", 0) if comparison.method == "changes" else None,
    }


def reconcile_table(
    plan: ReconciliationPlan,
    *,
    s3: S3Options | None,
    dynamodb: Any = None,
    athena: Any = None,
    glue: Any = None,
    export_arn: str | None = None,
    scan: ScanResult | None = None,
    now: datetime | None = None,
    write: bool = True,
) -> ReconciliationReport:
    """Compare, repair if the plan says so, check again; write and return the report."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    keys = [KeyAttribute(name, kind) for name, kind in plan.keys]
    with_snapshot = plan.method in ("export", "changes")
    base: dict[str, Any] = {
        "table": plan.table,
        "as_of": as_of_text(plan),
        "method": plan.method,
        "run_id": plan.run_id,
        "export_arn": export_arn,
        "engine": plan.engine,
        "window": (
            [_iso(plan.window_start), as_of_text(plan)] if plan.window_start is not None else None
        ),
    }
    repairer: RepairWriter | None = None
    try:
        if plan.repair and with_snapshot:
            lake = LakeTable(resolve(plan.lake_uri, s3))
            group = repair_group(lake, plan.run_id, plan.table, plan.as_of)
            repairer = RepairWriter(
                lake, Stage(group, run_attempt(plan.run_id)), plan.method, plan.as_of
            )
        engine = open_engine(plan, s3, athena=athena, glue=glue, with_snapshot=with_snapshot)
        try:
            comparison = _compare(
                plan,
                engine,
                keys,
                dynamodb=dynamodb,
                scan=scan,
                now=now,
                on_drift=repairer.add if repairer else None,
            )
        finally:
            engine.close()
        repair: dict[str, Any] | None = None
        if repairer is not None:
            paths = repairer.publish() if comparison.drifted else []
            if not paths:
                repairer.abort()
            repair = {
                "group": repairer.stage.group if paths else None,
                "rows": repairer.rows if paths else 0,
                "by_kind": repairer.by_kind if paths else {},
                "files": len(paths),
                "recheck": None,
            }
            if paths:
                again = open_engine(plan, s3, athena=athena, glue=glue)
                try:
                    recheck = _compare(plan, again, keys, dynamodb=dynamodb, scan=scan, now=now)
                finally:
                    again.close()
                repair["recheck"] = _summary(recheck)
            repairer = None
        report = ReconciliationReport(
            **base,
            **_summary(comparison),
            table_count=comparison.table_count,
            lake_count=comparison.lake_count,
            tolerance={
                "epsilon_ms": plan.epsilon_ms,
                "count_bound": comparison.bound,
                "reasoning": comparison.reasoning
                or (
                    f"a key is drift only if the lake differs from the table both at T - "
                    f"{plan.epsilon_ms} ms and at T + {plan.epsilon_ms} ms"
                ),
            },
            samples={
                "missing": comparison.samples.get("missing", []),
                "extra": comparison.samples.get("extra", []),
                "different": comparison.samples.get("different", []),
                "phantoms": comparison.samples.get("phantom", []),
            },
            repair=repair,
            consumed_read_capacity=scan.consumed_read_capacity if scan else None,
            seconds=round(time.monotonic() - started, 3),
        )
    except DynamoLakeError as exc:
        if repairer is not None:
            repairer.abort()
        report = ReconciliationReport(
            **base, status="error", message=str(exc), seconds=round(time.monotonic() - started, 3)
        )
        if write:
            write_report(plan.lake_uri, report, s3)
        raise
    if write:
        write_report(plan.lake_uri, report, s3)
    log.info("%s", report.table_text())
    return report


def cleanup_work(plan: ReconciliationPlan, s3: S3Options | None) -> None:
    """Remove the run's work location (the converted export) once the report is written."""
    resolve(plan.work_uri, s3).delete_tree()


def _key_types(
    location_uris: list[str], names: list[str], s3: S3Options | None
) -> tuple[tuple[str, str], ...]:
    """The key attributes' DynamoDB types, read off a row (numbers are N, text S or B)."""
    import orjson

    for uri in location_uris:
        dataset = lake_dataset(uri, s3)
        for batch in dataset.to_batches(columns=["data"], batch_size=1):
            if batch.num_rows:
                item = orjson.loads(batch.column(0)[0].as_py())
                return tuple(
                    (name, "N" if isinstance(item.get(name), int | float) else "S")
                    for name in names
                )
    return tuple((name, "S") for name in names)


def reconcile_export(
    *,
    lake: str,
    export: str,
    keys: list[str],
    as_of: str | None = None,
    epsilon_ms: int = 1000,
    repair: bool = False,
    s3: S3Options | None = None,
) -> ReconciliationReport:
    """Compare an export (its manifest-summary.json) with a lake table, outside Airflow.

    A full export is compared key by key (``export``); an incremental one as the day's
    changes (``changes``). T defaults to the export's time (or its window's end). The
    export is converted into a work location beside the lake (a temporary folder for a
    local lake), removed afterwards. The report is returned, not written to the lake.
    """
    import tempfile

    from dynamo_lake.exports.manifest import read_manifest
    from dynamo_lake.exports.planning import parse_time, safe_name
    from dynamo_lake.lake.conversion import convert_export, new_attempt

    manifest = read_manifest(export, s3)
    summary = manifest.summary
    moment = parse_time(as_of, "--as-of") if as_of else None
    default = summary.export_to_time if summary.is_incremental else summary.export_time
    as_of_micros = datetime_to_micros(moment) if moment else int(default or 0)
    attempt = new_attempt()
    target = resolve(lake, s3)
    scratch = None
    if target.is_s3:
        work_uri = f"{target.uri}/_reconciliation/work/{safe_name(attempt)}"
    else:
        scratch = tempfile.TemporaryDirectory(prefix="reconcile-work-")
        work_uri = scratch.name
    try:
        convert_export(export, work_uri, s3=s3, force=True, attempt=attempt)
        plan = ReconciliationPlan(
            table=summary.table_arn.rsplit("/", 1)[-1] if summary.table_arn else "table",
            dynamodb_table=summary.table_arn.rsplit("/", 1)[-1] if summary.table_arn else "",
            table_arn=summary.table_arn or "",
            lake_uri=target.uri,
            work_uri=work_uri,
            method="changes" if summary.is_incremental else "export",
            as_of=as_of_micros,
            epsilon_ms=epsilon_ms,
            repair=repair,
            engine="duckdb",
            keys=_key_types([target.uri, work_uri], keys, s3),
            run_id=attempt,
            aws_conn_id="",
            region=None,
            glue_database="",
            glue_table="",
            window_start=summary.export_from_time if summary.is_incremental else None,
        )
        return reconcile_table(plan, s3=s3, export_arn=summary.export_arn, write=False)
    finally:
        if scratch is not None:
            scratch.cleanup()
        else:
            resolve(work_uri, s3).delete_tree()
