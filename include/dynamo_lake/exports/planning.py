"""Deciding exports before they run: the table's PITR window, times checked against it,
windows cut to DynamoDB's limits, and requests with deterministic ClientTokens.

A request's ClientToken is a function of the run and of what it asks, so a retried task
asks for the same export (and AWS attaches it to the one already started, for 8 hours).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dynamo_lake.cdc import micros_to_datetime
from dynamo_lake.config import TableConfig
from dynamo_lake.contract import (
    END_YEAR,
    FIRST_YEAR,
    TIME_RANGE_END_MICROS,
    TIME_RANGE_START_MICROS,
)
from dynamo_lake.errors import (
    ExportWindowError,
    PitrUnavailableError,
    SourceError,
    aws_error_code,
)
from dynamo_lake.exports.api import ExportRequest, iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_s3.client import S3Client

__all__ = [
    "MAX_WINDOW",
    "MIN_WINDOW",
    "PitrWindow",
    "check_source",
    "client_token",
    "full_export_request",
    "incremental_export_request",
    "parse_time",
    "run_prefix",
    "safe_name",
    "split_window",
]

MIN_WINDOW = timedelta(minutes=15)
MAX_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class PitrWindow:
    earliest: datetime
    latest: datetime

    def describe(self) -> str:
        return f"{iso(self.earliest)} to {iso(self.latest)}"


#: The contract's time range: no table has a restorable moment before DynamoDB's launch, and
#: a time past 2100 is a typo. Both bounds keep every later step (partitions, tokens) in range.
FIRST_MOMENT = micros_to_datetime(TIME_RANGE_START_MICROS)
LAST_MOMENT = micros_to_datetime(TIME_RANGE_END_MICROS)


def parse_time(value: str | datetime | None, name: str) -> datetime | None:
    """An ISO-8601 / RFC 3339 time (``T`` and ``Z`` in either case) as an aware UTC time."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        try:
            # RFC 3339 (the form's "date-time") allows a lowercase t and z.
            moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        except ValueError:
            raise ExportWindowError(
                f"{name} {value!r} is not an ISO-8601 time; write e.g. 2024-06-01T12:00:00Z"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        moment = LAST_MOMENT  # beyond what a datetime holds in UTC: refused just below
    if not FIRST_MOMENT <= moment < LAST_MOMENT:
        raise ExportWindowError(
            f"{name} {value!r} is outside {FIRST_YEAR}-{END_YEAR - 1} (DynamoDB's lifetime): "
            "check the year"
        )
    return moment


def check_source(
    dynamodb: DynamoDBClient, s3: S3Client, config: TableConfig
) -> tuple[str, PitrWindow]:
    """The table's ARN and PITR window; raise a plain-words error if anything is missing."""
    from botocore.exceptions import ClientError

    try:
        table_arn = dynamodb.describe_table(TableName=config.dynamodb_table)["Table"]["TableArn"]
    except ClientError as exc:
        if aws_error_code(exc) == "ResourceNotFoundException":
            raise SourceError(
                f"DynamoDB table {config.dynamodb_table!r} (configured as {config.name!r}) "
                f"does not exist in {config.region or 'the connection region'}; fix "
                "dynamodb_table or region in the tables file"
            ) from None
        raise
    backups = dynamodb.describe_continuous_backups(TableName=config.dynamodb_table)
    pitr = backups["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
    if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
        raise PitrUnavailableError(
            f"Point-in-time recovery is off for table {config.dynamodb_table!r}: enable it with "
            f"`aws dynamodb update-continuous-backups --table-name {config.dynamodb_table} "
            "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true`; exports "
            "can cover times from then on"
        )
    window = PitrWindow(
        pitr["EarliestRestorableDateTime"].astimezone(UTC),
        pitr["LatestRestorableDateTime"].astimezone(UTC),
    )
    for role, bucket in (
        ("export_bucket", config.export_bucket),
        ("lake_bucket", config.lake_bucket),
    ):
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            code = aws_error_code(exc)
            reason = (
                "does not exist" if code in ("404", "NoSuchBucket") else f"is not usable ({code})"
            )
            raise SourceError(
                f"S3 bucket {bucket!r} ({role} of {config.name!r}) {reason}; create it or fix "
                f"{role} in the tables file"
            ) from None
    return table_arn, window


def split_window(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Consecutive windows of at most 24 hours covering ``[start, end)``, near-equal in length.

    Equal parts (rather than 24 h and a remainder) keep every part above the 15-minute
    minimum whenever the whole window is. Bounds are computed in whole microseconds, so no
    part exceeds 24 hours however the ends are rounded.
    """
    total = (end - start) // timedelta(microseconds=1)
    maximum = MAX_WINDOW // timedelta(microseconds=1)
    parts = max(1, -(-total // maximum))
    bounds = [start + timedelta(microseconds=total * index // parts) for index in range(parts)]
    return list(zip(bounds, [*bounds[1:], end], strict=True))


def client_token(*parts: object) -> str:
    """A ClientToken for ExportTableToPointInTime from anything that identifies the request."""
    text = "\x1f".join(str(part) for part in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:36]


def safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:200]


def run_prefix(config: TableConfig, run_key: str) -> str:
    """The run's folder in the export bucket: its exports (and what it stores) live there."""
    return f"{config.export_prefix.strip('/')}/{safe_name(run_key)}"


def _template(config: TableConfig, table_arn: str, run_key: str) -> dict[str, Any]:
    return {
        "table": config.name,
        "table_arn": table_arn,
        "aws_conn_id": config.aws_conn_id,
        "region": config.region,
        "bucket": config.export_bucket,
        "prefix": run_prefix(config, run_key),
        "kms_key_id": config.kms_key_id,
    }


def full_export_request(
    config: TableConfig, table_arn: str, run_key: str, moment: datetime
) -> ExportRequest:
    """The full export of the table at ``moment`` for the run ``run_key``."""
    return ExportRequest(
        **_template(config, table_arn, run_key),
        mode="full",
        client_token=client_token(run_key, config.name, table_arn, "full", iso(moment)),
        export_time=moment.isoformat(),
    )


def incremental_export_request(
    config: TableConfig,
    table_arn: str,
    run_key: str,
    start: datetime,
    end: datetime,
    sequence: int = 0,
) -> ExportRequest:
    """The incremental export of ``[start, end)`` (at most 24 h) for the run ``run_key``."""
    return ExportRequest(
        **_template(config, table_arn, run_key),
        mode="incremental",
        client_token=client_token(
            run_key, config.name, table_arn, "incremental", iso(start), iso(end)
        ),
        export_from=start.isoformat(),
        export_to=end.isoformat(),
        sequence=sequence,
    )
