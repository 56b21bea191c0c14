"""Deciding a reconciliation: the cut time T, the method, and what it must export.

T is the run's data interval end minus the table's settle margin (longer than Firehose's
buffering plus the Lambda), never the wall clock, so a re-run of a day checks the same
moment; an explicit ``as_of`` overrides it. T is cut to whole milliseconds, the precision
of an export's moment, so the export and the lake are compared at the same instant. An
``as_of`` inside the settle margin (less than that before now) is refused: the stream's
last changes may not be in the lake yet.

The ``changes`` method checks the day before T with two incremental exports: ``[T - 24h,
T)`` (AWS's longest window) and the *lead-in* ``[T - 24h - 15 min, T - 24h)`` (its
shortest). Together they start 15 minutes before the previous daily run's T, so
consecutive runs' phantom ranges (``[start + ε, T - ε)``) overlap by 15 minutes less 2ε:
every moment is checked by some run even though each stream time may be ε off. Both start
no earlier than the table's point-in-time window (nothing before it can be exported).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dynamo_lake.cdc import datetime_to_micros, micros_to_datetime
from dynamo_lake.config import RECONCILE_METHODS, TableConfig
from dynamo_lake.contract import RECONCILIATION
from dynamo_lake.errors import ExportWindowError, SourceError
from dynamo_lake.exports.api import iso
from dynamo_lake.exports.planning import (
    MIN_WINDOW,
    PitrWindow,
    full_export_request,
    incremental_export_request,
    parse_time,
    safe_name,
)
from dynamo_lake.records import ReconciliationPlan

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

__all__ = ["CHANGES_WINDOW", "cut_time", "key_attributes", "plan_reconciliation", "run_key"]

#: The window the ``changes`` method checks: the day before T.
CHANGES_WINDOW = timedelta(hours=24)
_NEEDS_EXPORT = ("export", "changes")


def run_key(run_id: str) -> str:
    """The key that names a reconciliation run's exports and ClientTokens (never a
    backfill's)."""
    return f"reconcile-{run_id}"


def cut_time(data_interval_end: datetime, settle_margin_minutes: int) -> datetime:
    """T for a scheduled run: the interval's end minus the settle margin, whole ms."""
    moment = data_interval_end.astimezone(UTC) - timedelta(minutes=settle_margin_minutes)
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def key_attributes(dynamodb: DynamoDBClient, table_name: str) -> tuple[tuple[str, str], ...]:
    """The table's key attributes as ``(name, type)``, partition key first."""
    description: Any = dynamodb.describe_table(TableName=table_name)["Table"]
    types = {
        item["AttributeName"]: item["AttributeType"] for item in description["AttributeDefinitions"]
    }
    schema = sorted(description["KeySchema"], key=lambda item: item["KeyType"] != "HASH")
    return tuple((item["AttributeName"], types[item["AttributeName"]]) for item in schema)


def plan_reconciliation(
    config: TableConfig,
    table_arn: str,
    keys: tuple[tuple[str, str], ...],
    window: PitrWindow | None,
    *,
    run_id: str,
    data_interval_end: datetime,
    now: datetime,
    method: str | None = None,
    as_of: str | datetime | None = None,
    repair: bool | None = None,
) -> ReconciliationPlan:
    """Check the request against the table's settings and PITR window; decide T and the export.

    ``window`` (the PITR window) is needed by the export-based methods only. ``now`` is used
    to refuse an ``as_of`` in the future, never to choose T.
    """
    settings = config.reconcile
    chosen = method or settings.method
    if chosen not in RECONCILE_METHODS:
        raise ExportWindowError(f"method {chosen!r} is not one of {', '.join(RECONCILE_METHODS)}")
    wants_repair = settings.repair if repair is None else repair
    if wants_repair and chosen not in _NEEDS_EXPORT:
        raise ExportWindowError(
            f"repair needs the export or changes method (it writes the table's images), not "
            f"{chosen!r}; choose method export or changes, or leave repair off"
        )
    moment = parse_time(as_of, "as_of") if as_of not in (None, "") else None
    if moment is None:
        moment = cut_time(data_interval_end, settings.settle_margin_minutes)
    else:
        moment = moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)
        if moment > now:
            raise ExportWindowError(
                f"as_of {iso(moment)} is in the future (now {iso(now)}); the lake cannot be "
                "checked against a moment that has not happened"
            )
        settled = now - timedelta(minutes=settings.settle_margin_minutes)
        if moment > settled:
            raise ExportWindowError(
                f"as_of {iso(moment)} is within the table's settle margin of "
                f"{settings.settle_margin_minutes} minutes before now ({iso(now)}): the "
                "stream's last changes may not have reached the lake, so keys would look "
                f"missing; choose an as_of at or before {iso(settled)}"
            )
    export_request = lead_in_request = None
    window_start = None
    key = run_key(run_id)
    if chosen in _NEEDS_EXPORT:
        if window is None:
            raise SourceError(f"table {config.name!r}: its point-in-time window is unknown")
        start = moment - CHANGES_WINDOW if chosen == "changes" else moment
        if chosen == "changes" and start < window.earliest <= moment - MIN_WINDOW:
            # Nothing before the PITR window can be exported: check the changes since it.
            start = window.earliest
        if not (window.earliest <= start and moment <= window.latest):
            what = (
                f"the changes window [{iso(start)}, {iso(moment)})"
                if chosen == "changes"
                else f"as_of {iso(moment)}"
            )
            raise ExportWindowError(
                f"{what} is outside the table's point-in-time window {window.describe()}; "
                "choose an as_of inside it (the changes method needs at least the 15 minutes "
                "before it)"
            )
        if chosen == "export":
            export_request = full_export_request(config, table_arn, key, moment)
        else:
            export_request = incremental_export_request(config, table_arn, key, start, moment)
            lead_in = start - MIN_WINDOW
            if lead_in >= window.earliest:
                lead_in_request = incremental_export_request(
                    config, table_arn, key, lead_in, start, sequence=1
                )
                start = lead_in
            window_start = datetime_to_micros(start)
    return ReconciliationPlan(
        table=config.name,
        dynamodb_table=config.dynamodb_table,
        table_arn=table_arn,
        lake_uri=config.lake_uri,
        work_uri=f"{config.lake_uri}/{RECONCILIATION}/work/{safe_name(run_id)}",
        method=chosen,
        as_of=datetime_to_micros(moment),
        epsilon_ms=settings.epsilon_ms,
        repair=wants_repair,
        engine=settings.engine,
        keys=keys,
        run_id=run_id,
        aws_conn_id=config.aws_conn_id,
        region=config.region,
        glue_database=config.glue_database,
        glue_table=config.glue_table,
        export_request=export_request,
        lead_in_request=lead_in_request,
        window_start=window_start,
        settle_margin_minutes=settings.settle_margin_minutes,
        count_staleness_hours=settings.count_staleness_hours,
        count_slack=settings.count_slack,
        scan_segments=settings.scan_segments,
        scan_pages_per_second=float(settings.scan_pages_per_second),
        duckdb_memory_limit_mb=settings.duckdb_memory_limit_mb,
        athena_workgroup=settings.athena_workgroup,
        athena_output_location=settings.athena_output_location,
        sns_topic_arn=settings.sns_topic_arn,
    )


def as_of_text(plan: ReconciliationPlan) -> str:
    """T as the report states it: ISO-8601 UTC with microseconds."""
    return f"{micros_to_datetime(plan.as_of):%Y-%m-%dT%H:%M:%S.%fZ}"
