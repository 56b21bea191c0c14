"""DynamoDB's export API, as the product uses it: a request decided in advance, its start
with a deterministic ClientToken, and its state. boto3 only.

The triggerer imports this module (and nothing heavier): it runs many triggers in one
process, so neither pyarrow nor yaml may load with it. Times are timezone-aware UTC
``datetime``s in the API and ISO-8601 text in the JSON of a request.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from dynamo_lake.cdc import datetime_to_micros
from dynamo_lake.errors import (
    ExportFailedError,
    ExportLimitError,
    ExportWindowError,
    PitrUnavailableError,
    aws_error_code,
    aws_error_message,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

__all__ = [
    "FULL_EXPORT",
    "INCREMENTAL_EXPORT",
    "ExportCoverage",
    "ExportRequest",
    "ExportState",
    "describe_export",
    "failure_advice",
    "iso",
    "start_export",
]

log = logging.getLogger(__name__)

FULL_EXPORT = "FULL_EXPORT"
INCREMENTAL_EXPORT = "INCREMENTAL_EXPORT"
Mode = Literal["full", "incremental"]

# FailureCodes AWS documents or returns for exports, in plain words.
_FAILURE_ADVICE = {
    "S3NoSuchBucket": "the export bucket does not exist; create it or fix export_bucket",
    "AccessDenied": "DynamoDB may not write to the export bucket/prefix; grant s3:PutObject "
    "(and kms:GenerateDataKey for a KMS key) to the account's DynamoDB export",
    "S3AccessDenied": "DynamoDB may not write to the export bucket/prefix; grant s3:PutObject",
    "LimitExceededException": "too many exports at once (300 concurrent or 100 TB); retry later",
    "KMSAccessDenied": "the KMS key does not let DynamoDB encrypt the export",
}


def failure_advice(code: str) -> str:
    """What to do about an export failure code, or ``""`` if there is nothing to add."""
    return _FAILURE_ADVICE.get(code, "")


def iso(moment: datetime) -> str:
    """``2024-06-01T12:00:00.123000Z``-style text of an aware time, in UTC."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class ExportCoverage:
    """Which events an export holds: a full export's moment, or an incremental window.

    Times are µs since the epoch. Two exports repeat each other's events when both are full
    at the same moment, or both incremental with windows sharing a moment (windows are
    half-open). A full and an incremental export never share a row.
    """

    export_type: str
    export_time: int | None = None
    export_from: int | None = None
    export_to: int | None = None

    def overlaps(self, other: ExportCoverage) -> bool:
        if self.export_type != other.export_type:
            return False
        if self.export_type == FULL_EXPORT:
            return self.export_time is not None and self.export_time == other.export_time
        if None in (self.export_from, self.export_to, other.export_from, other.export_to):
            return False
        return bool(
            self.export_from < other.export_to  # type: ignore[operator]
            and other.export_from < self.export_to  # type: ignore[operator]
        )


@dataclass(frozen=True)
class ExportRequest:
    """One ExportTableToPointInTime call, fully determined before it is made."""

    table: str
    table_arn: str
    aws_conn_id: str
    region: str | None
    bucket: str
    prefix: str
    mode: Mode
    client_token: str
    export_time: str | None = None
    export_from: str | None = None
    export_to: str | None = None
    kms_key_id: str | None = None
    sequence: int = 0

    def api_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "TableArn": self.table_arn,
            "S3Bucket": self.bucket,
            "S3Prefix": self.prefix,
            "ClientToken": self.client_token,
            "ExportFormat": "DYNAMODB_JSON",
        }
        if self.kms_key_id:
            arguments["S3SseAlgorithm"] = "KMS"
            arguments["S3SseKmsKeyId"] = self.kms_key_id
        if self.mode == "full":
            arguments["ExportType"] = FULL_EXPORT
            if self.export_time:
                arguments["ExportTime"] = datetime.fromisoformat(self.export_time)
        else:
            arguments["ExportType"] = INCREMENTAL_EXPORT
            arguments["IncrementalExportSpecification"] = {
                "ExportFromTime": datetime.fromisoformat(str(self.export_from)),
                "ExportToTime": datetime.fromisoformat(str(self.export_to)),
                "ExportViewType": "NEW_AND_OLD_IMAGES",
            }
        return arguments

    def expected_coverage(self) -> ExportCoverage:
        """What the export will hold, before it runs. AWS records export times in
        milliseconds, so the requested moment is cut to them."""
        if self.mode == "full":
            moment = datetime_to_micros(datetime.fromisoformat(str(self.export_time)))
            return ExportCoverage(FULL_EXPORT, export_time=moment - moment % 1000)
        return ExportCoverage(
            INCREMENTAL_EXPORT,
            export_from=datetime_to_micros(datetime.fromisoformat(str(self.export_from))),
            export_to=datetime_to_micros(datetime.fromisoformat(str(self.export_to))),
        )

    def describe(self) -> str:
        if self.mode == "full":
            return f"full export of {self.table} at {self.export_time}"
        return f"incremental export of {self.table} for [{self.export_from}, {self.export_to})"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ExportRequest:
        return cls(**raw)


def start_export(dynamodb: DynamoDBClient, request: ExportRequest) -> str:
    """Start (or, with the same ClientToken, re-attach to) the export; return its ARN.

    Refusals no retry can fix raise :class:`ExportFailedError` (or a PITR/window error);
    anything else (throttling, a transport error) propagates for the caller's retries.
    """
    from botocore.exceptions import ClientError

    try:
        response = dynamodb.export_table_to_point_in_time(**request.api_arguments())
    except ClientError as exc:
        code, message = aws_error_code(exc), aws_error_message(exc)
        if code == "PointInTimeRecoveryUnavailableException":
            raise PitrUnavailableError(
                f"Point-in-time recovery is off for {request.table}: {message}"
            ) from None
        if code == "InvalidExportTimeException":
            raise ExportWindowError(f"{request.describe()}: {message}") from None
        if code == "ExportConflictException":
            raise ExportFailedError(
                f"{request.describe()}: an export with ClientToken {request.client_token} "
                "was started with other parameters (ExportConflictException); start a new run"
            ) from None
        if code in ("ValidationException", "TableNotFoundException"):
            raise ExportFailedError(f"{request.describe()}: {code}: {message}") from None
        if code == "LimitExceededException":
            raise ExportLimitError(
                f"{request.describe()}: DynamoDB refused to start it for now: "
                f"{failure_advice(code)} ({message}); the task retries"
            ) from None
        raise
    description = response["ExportDescription"]
    arn = str(description["ExportArn"])
    log.info("%s: export %s (%s)", request.describe(), arn, description["ExportStatus"])
    return arn


@dataclass(frozen=True)
class ExportState:
    """What DescribeExport says about an export (manifest URI once it COMPLETED)."""

    export_arn: str
    status: str
    manifest_uri: str | None = None
    item_count: int | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    start_time: str | None = None
    end_time: str | None = None

    @property
    def done(self) -> bool:
        return self.status != "IN_PROGRESS"

    def failure_reason(self) -> str:
        advice = failure_advice(self.failure_code or "")
        words = f"{self.failure_code}: {self.failure_message}" if self.failure_code else self.status
        return f"export {self.export_arn} failed ({words})" + (f": {advice}" if advice else "")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ExportState:
        return cls(**raw)


def describe_export(dynamodb: DynamoDBClient, export_arn: str) -> ExportState:
    description: Any = dynamodb.describe_export(ExportArn=export_arn)["ExportDescription"]
    manifest = description.get("ExportManifest")
    return ExportState(
        export_arn=export_arn,
        status=str(description["ExportStatus"]),
        manifest_uri=f"s3://{description['S3Bucket']}/{manifest}" if manifest else None,
        item_count=description.get("ItemCount"),
        failure_code=description.get("FailureCode"),
        failure_message=description.get("FailureMessage"),
        start_time=iso(description["StartTime"]) if description.get("StartTime") else None,
        end_time=iso(description["EndTime"]) if description.get("EndTime") else None,
    )
