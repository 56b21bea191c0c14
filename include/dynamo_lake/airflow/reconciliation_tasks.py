"""The reconciliation DAG's own task bodies: plan each table, check it, judge, alert.

Exports, their conversion into each table's work location, and publishing there are the
shared blocks (:mod:`dynamo_lake.airflow.operators`, :mod:`dynamo_lake.airflow.tasks`);
the work location is the *target*, so readers of the lake never see the table side.
Values passed between tasks are the JSON of :mod:`dynamo_lake.records` and of the report.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from dynamo_lake.airflow import tasks
from dynamo_lake.airflow.connections import aws_client, s3_options
from dynamo_lake.airflow.params import ALL_TABLES
from dynamo_lake.airflow.tasks import fails_fast
from dynamo_lake.config import TableConfig, load_tables
from dynamo_lake.errors import SourceError, StateError, aws_error_code
from dynamo_lake.exports.planning import PitrWindow, check_source
from dynamo_lake.lake.conversion import run_attempt
from dynamo_lake.reconciliation.compare import ScanResult, scan_count
from dynamo_lake.reconciliation.plan import key_attributes, plan_reconciliation
from dynamo_lake.reconciliation.report import ReconciliationReport, write_report
from dynamo_lake.reconciliation.run import cleanup_work, reconcile_table, sweep_work
from dynamo_lake.records import ConversionBatch, ExportResult, ReconciliationPlan

__all__ = [
    "bucket_units",
    "check",
    "check_inputs",
    "clean_work",
    "compare",
    "exports_to_start",
    "judge",
    "plan",
    "plan_conversion",
    "plan_split",
    "publish_work",
    "scan",
    "settle_until",
    "split",
]

log = logging.getLogger(__name__)


def _table_arn_and_keys(config: TableConfig) -> tuple[str, tuple[tuple[str, str], ...]]:
    from botocore.exceptions import ClientError

    dynamodb = aws_client("dynamodb", config.aws_conn_id, config.region)
    try:
        arn = dynamodb.describe_table(TableName=config.dynamodb_table)["Table"]["TableArn"]
    except ClientError as exc:
        if aws_error_code(exc) == "ResourceNotFoundException":
            raise SourceError(
                f"DynamoDB table {config.dynamodb_table!r} (configured as {config.name!r}) does "
                "not exist; fix dynamodb_table or region in the tables file"
            ) from None
        raise
    return str(arn), key_attributes(dynamodb, config.dynamodb_table)


@fails_fast
def plan(params: dict[str, Any], run_id: str, data_interval_end: datetime) -> list[dict[str, Any]]:
    """One plan per table to check (``table`` "all tables" or empty: every configured table).

    ``data_interval_end`` is the run's (a manual run without one passes its ``run_after``).
    """
    configured = load_tables()
    chosen = params.get("table")
    names = [chosen] if chosen and chosen != ALL_TABLES else sorted(configured.tables)
    method = params.get("method") or None
    if method == "table default":
        method = None
    repair = params.get("repair")
    now = datetime.now(UTC)
    plans = []
    for name in names:
        config = configured.table(name)
        table_arn, keys = _table_arn_and_keys(config)
        chosen = method or config.reconcile.method
        window: PitrWindow | None = None
        if chosen in ("export", "changes"):
            dynamodb = aws_client("dynamodb", config.aws_conn_id, config.region)
            s3 = aws_client("s3", config.aws_conn_id, config.region)
            _, window = check_source(dynamodb, s3, config)
        decided = plan_reconciliation(
            config,
            table_arn,
            keys,
            window,
            run_id=run_id,
            data_interval_end=data_interval_end,
            now=now,
            method=method,
            as_of=params.get("as_of"),
            repair=None if repair in (None, "table default") else bool(repair),
        )
        log.info(
            "%s: %s as of %s%s",
            name,
            decided.method,
            decided.as_of,
            " with repair" if decided.repair else "",
        )
        _sweep(config, decided, now)
        plans.append(decided.to_json())
    return plans


def _sweep(config: TableConfig, decided: ReconciliationPlan, now: datetime) -> None:
    """Remove work folders that killed runs left (copies of the table); never fatal."""
    from dynamo_lake.errors import DynamoLakeError

    try:
        sweep_work(
            config.lake_uri,
            s3_options(config.aws_conn_id, config.region),
            now,
            keep=decided.work_uri.rsplit("/", 1)[-1],
        )
    except (DynamoLakeError, OSError) as exc:
        log.warning("could not sweep old work folders of %s: %s", config.name, exc)


def exports_to_start(plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The exports the planned methods need (none for count and scan; two for changes)."""
    return [
        request.to_json()
        for item in plans
        for request in ReconciliationPlan.from_json(item).export_requests
    ]


def _plan_of(plans: list[ReconciliationPlan], export: ExportResult) -> ReconciliationPlan:
    for candidate in plans:
        if any(
            request.client_token == export.client_token for request in candidate.export_requests
        ):
            return candidate
    raise SourceError(f"export {export.export_arn} belongs to no planned table")


def plan_conversion(
    plans_json: list[dict[str, Any]], exports: list[dict[str, Any]], run_id: str
) -> list[dict[str, Any]]:
    """Cut each table's exports into batches, converting into that table's work location."""
    plans = [ReconciliationPlan.from_json(item) for item in plans_json]
    batches: list[dict[str, Any]] = []
    for export in exports:
        owner = _plan_of(plans, ExportResult.from_json(export))
        config = load_tables().table(owner.table)
        batches += tasks.plan_conversion(
            [export],
            target=owner.work_uri,
            attempt=run_attempt(run_id),
            compression="zstd",
            batch_size_mb=config.batch_size_mb,
            aws_conn_id=owner.aws_conn_id,
            region=owner.region,
        )
    return batches


@fails_fast
def publish_work(
    plans_json: list[dict[str, Any]],
    exports: list[dict[str, Any]],
    batches: list[dict[str, Any]],
    run_id: str,
) -> dict[str, str]:
    """Publish each table's converted exports in its work location; table -> the ARN of
    its (main) export."""
    plans = [ReconciliationPlan.from_json(item) for item in plans_json]
    published: dict[str, str] = {}
    for owner in plans:
        if owner.export_request is None:
            continue
        mine = sorted(  # in the order they are published
            (
                export
                for export in exports
                if _plan_of(plans, ExportResult.from_json(export)).table == owner.table
            ),
            key=lambda export: ExportResult.from_json(export).sequence,
        )
        work = [
            batch for batch in batches if ConversionBatch.from_json(batch).target == owner.work_uri
        ]
        done = tasks.publish(
            mine,
            work,
            target=owner.work_uri,
            run_id=run_id,
            aws_conn_id=owner.aws_conn_id,
            region=owner.region,
            max_bad_lines=load_tables().table(owner.table).max_bad_lines,
        )
        main = owner.export_request.client_token
        for export, result in zip(mine, done, strict=True):
            if ExportResult.from_json(export).client_token == main:
                published[owner.table] = result.export_arn
    return published


@fails_fast
def scan(plan_json: dict[str, Any]) -> dict[str, Any]:
    """``{"table": ..., "scan": ...}``: the exact scan of the scan method (``None`` for the
    others; a mapped task's ``None`` would leave no result to line up with its table)."""
    planned = ReconciliationPlan.from_json(plan_json)
    if planned.method != "scan":
        return {"table": planned.table, "scan": None}
    dynamodb = aws_client("dynamodb", planned.aws_conn_id, planned.region)
    result = scan_count(
        dynamodb,
        planned.dynamodb_table,
        segments=planned.scan_segments,
        pages_per_second=planned.scan_pages_per_second,
    )
    log.info(
        "%s: %d items in %d pages, %.1f read capacity units",
        planned.table,
        result.count,
        result.pages,
        result.consumed_read_capacity,
    )
    return {
        "table": planned.table,
        "scan": {
            "count": result.count,
            "started": result.started,
            "ended": result.ended,
            "consumed_read_capacity": result.consumed_read_capacity,
            "pages": result.pages,
        },
    }


@fails_fast
def plan_split(plans_json: list[dict[str, Any]], published: Any) -> list[dict[str, Any]]:
    """Per table compared from its current state (an ``export`` or ``changes`` check whose
    export was published, on DuckDB): its rows split into the state's buckets, compared
    bucket by bucket across workers. Tables not listed are compared whole by ``check``."""
    from dynamo_lake.reconciliation.run import plan_buckets

    splits = []
    for plan_json in plans_json:
        planned = ReconciliationPlan.from_json(plan_json)
        if planned.table not in (published or {}):
            continue
        split = plan_buckets(
            planned,
            s3_options(planned.aws_conn_id, planned.region),
            glue=_glue(planned),
        )
        if split is not None:
            log.info(
                "%s: %d buckets in %d compare tasks, split by %d tasks",
                planned.table,
                split["buckets"],
                len(split["tasks"]),
                len(split["parts"]),
            )
            splits.append(split)
    return splits


def _light(split: dict[str, Any]) -> dict[str, Any]:
    from dynamo_lake.reconciliation.buckets import without_parts

    return without_parts(split)


def _plan_json(plans_json: list[dict[str, Any]], table: str) -> dict[str, Any]:
    (found,) = [item for item in plans_json if item["table"] == table]
    return found


def bucket_units(
    plans_json: list[dict[str, Any]], splits: list[dict[str, Any]], kind: str
) -> list[dict[str, Any]]:
    """The tasks to map of each table's split: ``kind`` ``part`` (a split task per part of
    its rows) or ``task`` (a compare task per group of its buckets)."""
    return [
        {"plan_json": _plan_json(plans_json, split["table"]), "split": _light(split), kind: unit}
        for split in splits
        for unit in (split["parts"] if kind == "part" else range(len(split["tasks"])))
    ]


@fails_fast
def split(plan_json: dict[str, Any], split: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """Write one part of a table's rows (the export's, the lake's since the snapshot) into
    the state's buckets."""
    from dynamo_lake.reconciliation.buckets import split_part

    planned = ReconciliationPlan.from_json(plan_json)
    written = split_part(planned, split, part, s3_options(planned.aws_conn_id, planned.region))
    log.info("%s part %d: %s rows split", planned.table, part["part"], written)
    return {"table": planned.table, "part": part["part"], **written}


@fails_fast
def compare(plan_json: dict[str, Any], split: dict[str, Any], task: int) -> dict[str, Any]:
    """Compare some buckets of one table, one at a time; their counts, samples and the
    file of their findings, for the table's check to gather."""
    from dynamo_lake.reconciliation.buckets import compare_buckets

    planned = ReconciliationPlan.from_json(plan_json)
    found = compare_buckets(
        planned,
        split,
        task,
        s3=s3_options(planned.aws_conn_id, planned.region),
        glue=_glue(planned),
    )
    log.info(
        "%s buckets %s: %s; peak memory %.0f MB",
        planned.table,
        found["buckets"],
        found["comparison"]["counts"] or "no finding",
        found["peak_memory_mb"],
    )
    return found


def _glue(planned: ReconciliationPlan) -> Any:
    """Glue, where the current state's catalog is (a lake in S3), else None."""
    if not planned.lake_uri.startswith("s3://"):
        return None
    return aws_client("glue", planned.aws_conn_id, planned.region)


def settle_until(plans_json: list[dict[str, Any]], scans: list[dict[str, Any]]) -> int | None:
    """When the lake has settled past every scan's end (µs), or None if nothing was scanned."""
    margins = {item["table"]: item["settle_margin_minutes"] for item in plans_json}
    moments = [
        found["scan"]["ended"] + margins[found["table"]] * 60_000_000
        for found in scans
        if found.get("scan")
    ]
    return max(moments) if moments else None


def check_inputs(
    plans_json: list[dict[str, Any]],
    scans: list[dict[str, Any]],
    published: Any,
    splits: list[dict[str, Any]] | None = None,
    compared: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The arguments of each table's check: its plan, its scan, the exports published, and
    (a table compared bucket by bucket) its split and the compare tasks' results."""
    by_table = {found["table"]: found.get("scan") for found in scans}
    split_of = {split["table"]: _light(split) for split in splits or []}
    return [
        {
            "plan_json": plan,
            "scan_json": by_table.get(plan["table"]),
            "published": published or {},
            "by_bucket": (
                {
                    "split": split_of[plan["table"]],
                    "compared": [item for item in compared or [] if item["table"] == plan["table"]],
                }
                if plan["table"] in split_of
                else None
            ),
        }
        for plan in plans_json
    ]


@fails_fast
def check(
    plan_json: dict[str, Any],
    published: dict[str, str] | None,
    scan_json: dict[str, Any] | None,
    by_bucket: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compare one table with its lake (or gather its buckets' comparisons); repair if
    planned; write the report; return it."""
    planned = ReconciliationPlan.from_json(plan_json)
    options = s3_options(planned.aws_conn_id, planned.region)
    athena = glue = None
    if planned.engine == "athena" or planned.lake_uri.startswith("s3://"):
        # Athena's catalog, and the current state's (a comparison from the state)
        glue = aws_client("glue", planned.aws_conn_id, planned.region)
    if planned.engine == "athena":
        from airflow.providers.amazon.aws.hooks.athena import AthenaHook

        athena = AthenaHook(aws_conn_id=planned.aws_conn_id, region_name=planned.region).conn
    report = reconcile_table(
        planned,
        s3=options,
        dynamodb=aws_client("dynamodb", planned.aws_conn_id, planned.region),
        athena=athena,
        glue=glue,
        export_arn=(published or {}).get(planned.table),
        scan=ScanResult(**scan_json) if scan_json else None,
        by_bucket=by_bucket,
    )
    if planned.method in ("export", "changes") and report.healthy:
        report = _verify_current_state(planned, report, options)
    return {
        "report": report.to_json(),
        "lake_uri": planned.lake_uri,
        "sns_topic_arn": planned.sns_topic_arn,
        "aws_conn_id": planned.aws_conn_id,
        "region": planned.region,
    }


def _verify_current_state(
    planned: ReconciliationPlan, report: ReconciliationReport, options: Any
) -> ReconciliationReport:
    """Tag the current state's snapshot at T when it equals the export; the verdict stands
    whatever becomes of the tag, and the report says which."""
    from dynamo_lake.airflow import state_tasks

    try:
        verification = state_tasks.verify(load_tables().table(planned.table), planned, options)
    except StateError as exc:
        log.warning("current state not verified at T: %s", exc)
        found: dict[str, Any] = {"error": str(exc)}
    else:
        log.info("%s", verification.text())
        found = verification.to_json()
    report = replace(report, current_state=found)
    write_report(planned.lake_uri, report, options)
    return report


def clean_work(plans_json: list[dict[str, Any]] | None) -> None:
    """Remove each table's work location (the converted export: a copy of the table),
    whatever became of the checks (the DAG's teardown; nothing when planning failed)."""
    for plan_json in plans_json or []:
        planned = ReconciliationPlan.from_json(plan_json)
        if planned.method in ("export", "changes"):
            cleanup_work(planned, s3_options(planned.aws_conn_id, planned.region))


def asset_event(checked: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The lake table's asset (name, URI) and the extra of a reconciliation's event."""
    report = ReconciliationReport.from_json(checked["report"])
    extra = {
        "kind": "reconciliation",
        "status": report.status,
        "as_of": report.as_of,
        "method": report.method,
        "table_count": report.table_count,
        "lake_count": report.lake_count,
        "missing": report.missing,
        "extra": report.extra,
        "different": report.different,
        "phantoms": report.phantoms,
        "ambiguous": report.ambiguous,
        "findings": (report.findings or {}).get("rows"),
        "repair_rows": (report.repair or {}).get("rows"),
        "run_id": report.run_id,
    }
    return f"dynamo_lake/{report.table}", checked["lake_uri"], extra


def drift_message(report: ReconciliationReport) -> str:
    """What an operator is told when a table drifted (or was repaired)."""
    counts = ", ".join(
        f"{kind} {getattr(report, kind)}"
        for kind in ("missing", "extra", "different", "phantoms", "ambiguous")
        if getattr(report, kind)
    )
    repaired = ""
    if report.repair and report.repair.get("rows"):
        recheck = (report.repair.get("recheck") or {}).get("status")
        repaired = f"; repaired with {report.repair['rows']} rows, re-check {recheck}"
    findings = ""
    if report.findings and report.findings.get("uri"):
        findings = f"; every finding in {report.findings['uri']}"
    what = {
        "repaired": "the lake did not match and was repaired",
        "inconclusive": "some keys could not be ruled on",
    }.get(report.status, "the lake does not match")
    return (
        f"DynamoDB table {report.table}: {what} as of {report.as_of} "
        f"({report.method}): table {report.table_count}, lake {report.lake_count}"
        + (f", {counts}" if counts else "")
        + (f"; {report.tolerance.get('reasoning')}" if report.method in ("count", "scan") else "")
        + repaired
        + findings
        + (f"; {report.message}" if report.message else "")
    )


def judge(checked: dict[str, Any]) -> dict[str, Any]:
    """Fail (red in the UI, and the alert) when the table drifted; pass otherwise.

    ``repaired`` passes (the lake matches now) and ``inconclusive`` passes with a warning
    (no drift found; some keys not ruled on): both still send the table's SNS message."""
    from dynamo_lake.airflow.task_errors import ProblemToFix

    report = ReconciliationReport.from_json(checked["report"])
    if report.status in ("drift", "error"):
        raise ProblemToFix(drift_message(report))  # the verdict, one line: no traceback
    if report.status in ("repaired", "inconclusive"):
        from airflow.sdk import get_current_context

        log.warning("%s", drift_message(report))
        _publish(checked, report, get_current_context())
    log.info("%s: %s as of %s (%s)", report.table, report.status, report.as_of, report.method)
    return {"table": report.table, "status": report.status, "as_of": report.as_of}


def notify_drift(context: Any) -> None:
    """Failure callback of the judge: publish the drift to the table's SNS topic, if it has
    one, with the provider's SnsNotifier."""
    ti = context["ti"]
    checked = ti.xcom_pull(task_ids="check", map_indexes=ti.map_index)
    if not checked or not checked.get("sns_topic_arn"):
        return
    _publish(checked, ReconciliationReport.from_json(checked["report"]), context)


def _publish(checked: dict[str, Any], report: ReconciliationReport, context: Any) -> None:
    from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

    if not checked.get("sns_topic_arn"):
        return
    subject = {"repaired": "Lake repaired", "inconclusive": "Lake check inconclusive"}.get(
        report.status, "Lake drift"
    )
    SnsNotifier(
        aws_conn_id=checked["aws_conn_id"],
        region_name=checked["region"],
        target_arn=checked["sns_topic_arn"],
        subject=f"{subject}: {report.table} as of {report.as_of}"[:100],
        message=drift_message(report),
    ).notify(context)


def table_of(plan_json: dict[str, Any]) -> str:
    return str(plan_json["table"])
