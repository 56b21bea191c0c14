"""The backfill job without Airflow: check the source, plan exports, start and watch them,
plan and convert batches of data files, and commit what was converted.

The DAG (``dags/dynamodb_backfill.py``) wires these functions into tasks; each function
is idempotent on its own, so a retried task repeats its work and writes the same names:

* an export is started with a ClientToken derived from the run and its parameters, so a
  retried start attaches to the export it already started (AWS keeps tokens 8 hours);
* a batch converts into ``_staging/<export id>/`` of the lake table and leaves a receipt;
* the commit checks every receipt against the manifest, then publishes, registers the Glue
  table, and writes the backfill record. Before it, readers see nothing of the run.

Times here are timezone-aware ``datetime``s in UTC; the API takes and returns them as such.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from botocore.exceptions import ClientError

from dynamo_lake.cdc import datetime_to_micros, micros_to_datetime
from dynamo_lake.config import TableConfig
from dynamo_lake.contract import (
    END_YEAR,
    FIRST_YEAR,
    TIME_RANGE_END_MICROS,
    TIME_RANGE_START_MICROS,
)
from dynamo_lake.convert import FileConversion, convert_data_file, publish_export
from dynamo_lake.errors import DynamoLakeError
from dynamo_lake.export_reader import (
    FULL_EXPORT,
    INCREMENTAL_EXPORT,
    ExportManifest,
    ExportSummary,
    read_manifest,
)
from dynamo_lake.lake_writer import LakeTable, Stage, StagedFile, WriterSettings, read_published
from dynamo_lake.storage import Location, S3Options, resolve

__all__ = [
    "BackfillPlan",
    "ExportFailedError",
    "ExportRequest",
    "ExportState",
    "ExportWindowError",
    "PitrUnavailableError",
    "PitrWindow",
    "SourceError",
    "check_source",
    "commit_exports",
    "convert_batch",
    "describe_export",
    "plan_backfill",
    "plan_batches",
    "split_window",
    "start_export",
]

log = logging.getLogger(__name__)

Mode = Literal["full", "incremental"]
MIN_WINDOW = timedelta(minutes=15)
MAX_WINDOW = timedelta(hours=24)
RECEIPTS = "_receipts"
BACKFILLS = "_backfills"

# FailureCodes AWS documents or returns for exports, in plain words.
_FAILURE_ADVICE = {
    "S3NoSuchBucket": "the export bucket does not exist; create it or fix export_bucket",
    "AccessDenied": "DynamoDB may not write to the export bucket/prefix; grant s3:PutObject "
    "(and kms:GenerateDataKey for a KMS key) to the account's DynamoDB export",
    "S3AccessDenied": "DynamoDB may not write to the export bucket/prefix; grant s3:PutObject",
    "LimitExceededException": "too many exports at once (300 concurrent or 100 TB); retry later",
    "KMSAccessDenied": "the KMS key does not let DynamoDB encrypt the export",
}


class SourceError(DynamoLakeError):
    """The table or a bucket named in the configuration cannot be used."""


class PitrUnavailableError(SourceError):
    """Point-in-time recovery is off for the table."""


class ExportWindowError(DynamoLakeError):
    """Requested export times lie outside what PITR can export, or are malformed."""


class ExportFailedError(DynamoLakeError):
    """DynamoDB reported the export FAILED (or it cannot be started)."""


@dataclass(frozen=True)
class PitrWindow:
    earliest: datetime
    latest: datetime

    def describe(self) -> str:
        return f"{_iso(self.earliest)} to {_iso(self.latest)}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


#: The contract's time range: no table has a restorable moment before DynamoDB's launch, and
#: a time past 2100 is a typo. Both bounds keep every later step (partitions, tokens) in range.
FIRST_MOMENT = micros_to_datetime(TIME_RANGE_START_MICROS)
LAST_MOMENT = micros_to_datetime(TIME_RANGE_END_MICROS)


def _parse_time(value: str | datetime | None, name: str) -> datetime | None:
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
            arguments["ExportType"] = "FULL_EXPORT"
            if self.export_time:
                arguments["ExportTime"] = datetime.fromisoformat(self.export_time)
        else:
            arguments["ExportType"] = "INCREMENTAL_EXPORT"
            arguments["IncrementalExportSpecification"] = {
                "ExportFromTime": datetime.fromisoformat(str(self.export_from)),
                "ExportToTime": datetime.fromisoformat(str(self.export_to)),
                "ExportViewType": "NEW_AND_OLD_IMAGES",
            }
        return arguments

    def expected_summary(self) -> ExportSummary:
        """What the export's manifest-summary.json will say about its time, before it runs.

        AWS records export times in milliseconds, so the requested time is cut to them.
        """
        if self.mode == "full":
            moment = datetime_to_micros(datetime.fromisoformat(str(self.export_time)))
            return ExportSummary(
                export_arn=f"{self.table_arn}/export/(planned)",
                export_type=FULL_EXPORT,
                output_format="DYNAMODB_JSON",
                item_count=0,
                manifest_files_key="",
                export_time=moment - moment % 1000,
            )
        return ExportSummary(
            export_arn=f"{self.table_arn}/export/(planned)",
            export_type=INCREMENTAL_EXPORT,
            output_format="DYNAMODB_JSON",
            item_count=0,
            manifest_files_key="",
            export_from_time=datetime_to_micros(datetime.fromisoformat(str(self.export_from))),
            export_to_time=datetime_to_micros(datetime.fromisoformat(str(self.export_to))),
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


@dataclass(frozen=True)
class BackfillPlan:
    """What a run will do: the exports in order, and whether it only looks (dry run).

    ``request`` is what the run asked for (its params); ``run_id`` the run. The plan of a
    run is stored (:func:`store_plan`) and reused when any of its tasks is cleared, so the
    run exports the same moment however often it is re-run.
    """

    table: str
    mode: Mode
    lake_uri: str
    exports: tuple[ExportRequest, ...]
    pitr_window: str
    dry_run: bool = False
    compression: str = "zstd"
    notes: tuple[str, ...] = field(default=())
    force: bool = False
    run_id: str = ""
    request: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "mode": self.mode,
            "lake_uri": self.lake_uri,
            "pitr_window": self.pitr_window,
            "dry_run": self.dry_run,
            "compression": self.compression,
            "notes": list(self.notes),
            "force": self.force,
            "run_id": self.run_id,
            "request": self.request,
            "exports": [request.to_json() for request in self.exports],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BackfillPlan:
        return cls(
            table=str(raw["table"]),
            mode=raw["mode"],
            lake_uri=str(raw["lake_uri"]),
            exports=tuple(ExportRequest.from_json(item) for item in raw["exports"]),
            pitr_window=str(raw["pitr_window"]),
            dry_run=bool(raw.get("dry_run")),
            compression=str(raw.get("compression") or "zstd"),
            notes=tuple(raw.get("notes") or ()),
            force=bool(raw.get("force")),
            run_id=str(raw.get("run_id") or ""),
            request=dict(raw.get("request") or {}),
        )


PLAN_FILE = "backfill-plan.json"


def run_prefix(config: TableConfig, run_key: str) -> str:
    """The run's folder in the export bucket: its exports and its stored plan live there."""
    return f"{config.export_prefix.strip('/')}/{_safe(run_key)}"


def plan_uri(config: TableConfig, run_key: str) -> str:
    return f"s3://{config.export_bucket}/{run_prefix(config, run_key)}/{PLAN_FILE}"


def load_plan(location: Location) -> BackfillPlan | None:
    """The plan a run stored earlier, or ``None``."""
    if not location.exists():
        return None
    try:
        return BackfillPlan.from_json(orjson.loads(location.read_bytes()))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SourceError(
            f"{location.uri} is not a backfill plan ({exc!r}); delete it to plan the run again"
        ) from None


def store_plan(location: Location, plan: BackfillPlan) -> None:
    location.write_bytes(orjson.dumps(plan.to_json(), option=orjson.OPT_INDENT_2))


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def check_source(dynamodb: Any, s3: Any, config: TableConfig) -> tuple[str, PitrWindow]:
    """The table's ARN and PITR window; raise a plain-words error if anything is missing."""
    try:
        table_arn = dynamodb.describe_table(TableName=config.dynamodb_table)["Table"]["TableArn"]
    except ClientError as exc:
        if _error_code(exc) == "ResourceNotFoundException":
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
            code = _error_code(exc)
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
    prefix = run_prefix(config, run_key)
    template = ExportRequest(
        table=config.name,
        table_arn=table_arn,
        aws_conn_id=config.aws_conn_id,
        region=config.region,
        bucket=config.export_bucket,
        prefix=prefix,
        mode="full",
        client_token="",
        kms_key_id=config.kms_key_id,
    )
    if mode == "full":
        if export_from or export_to:
            raise ExportWindowError(
                "export_from/export_to are for mode 'incremental'; a full export takes export_time"
            )
        moment = _parse_time(export_time, "export_time")
        if moment is None:
            moment = window.latest
            notes.append(f"export_time not given: using the latest restorable time {_iso(moment)}")
        if not window.earliest <= moment <= window.latest:
            raise ExportWindowError(
                f"export_time {_iso(moment)} is outside the table's point-in-time window "
                f"{window.describe()}; choose a time inside it"
            )
        token = client_token(run_key, config.name, table_arn, "full", _iso(moment))
        exports = [replace(template, client_token=token, export_time=moment.isoformat())]
    elif mode == "incremental":
        if export_time:
            raise ExportWindowError("export_time is for mode 'full'; give export_from/export_to")
        start = _parse_time(export_from, "export_from")
        end = _parse_time(export_to, "export_to")
        if start is None:
            raise ExportWindowError("mode 'incremental' needs export_from (and export_to)")
        if end is None:
            end = window.latest
            notes.append(f"export_to not given: using the latest restorable time {_iso(end)}")
            if start >= end:
                raise ExportWindowError(
                    f"export_from {_iso(start)} is not before the latest restorable time "
                    f"{_iso(end)}: the window would be empty; choose an earlier start"
                )
        if start > end:
            raise ExportWindowError(
                f"export_from {_iso(start)} is after export_to {_iso(end)}: swap them"
            )
        if start == end:
            raise ExportWindowError(
                f"export_from and export_to are both {_iso(start)}: the window is empty; "
                "an incremental export covers at least 15 minutes"
            )
        if end - start < MIN_WINDOW:
            raise ExportWindowError(
                f"the window [{_iso(start)}, {_iso(end)}) is shorter than DynamoDB's 15-minute "
                "minimum for incremental exports"
            )
        if start < window.earliest or end > window.latest:
            raise ExportWindowError(
                f"the window [{_iso(start)}, {_iso(end)}) is outside the table's point-in-time "
                f"window {window.describe()}; choose times inside it"
            )
        parts = split_window(start, end)
        if len(parts) > 1:
            notes.append(f"window longer than 24 hours: split into {len(parts)} exports")
        exports = [
            replace(
                template,
                mode="incremental",
                client_token=client_token(
                    run_key, config.name, table_arn, "incremental", _iso(a), _iso(b)
                ),
                export_from=a.isoformat(),
                export_to=b.isoformat(),
                sequence=index,
            )
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


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:200]


def start_export(dynamodb: Any, request: ExportRequest) -> str:
    """Start (or, with the same ClientToken, re-attach to) the export; return its ARN."""
    try:
        response = dynamodb.export_table_to_point_in_time(**request.api_arguments())
    except ClientError as exc:
        code = _error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "")
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
        if code == "LimitExceededException":
            raise ExportFailedError(f"{request.describe()}: {_FAILURE_ADVICE[code]}") from None
        if code in ("ValidationException", "TableNotFoundException"):
            raise ExportFailedError(f"{request.describe()}: {code}: {message}") from None
        raise
    arn = str(response["ExportDescription"]["ExportArn"])
    log.info(
        "%s: export %s (%s)", request.describe(), arn, response["ExportDescription"]["ExportStatus"]
    )
    return arn


@dataclass(frozen=True)
class ExportState:
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
        advice = _FAILURE_ADVICE.get(self.failure_code or "", "")
        words = f"{self.failure_code}: {self.failure_message}" if self.failure_code else self.status
        return f"export {self.export_arn} failed ({words})" + (f": {advice}" if advice else "")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def describe_export(dynamodb: Any, export_arn: str) -> ExportState:
    description = dynamodb.describe_export(ExportArn=export_arn)["ExportDescription"]
    manifest = description.get("ExportManifest")
    return ExportState(
        export_arn=export_arn,
        status=str(description["ExportStatus"]),
        manifest_uri=f"s3://{description['S3Bucket']}/{manifest}" if manifest else None,
        item_count=description.get("ItemCount"),
        failure_code=description.get("FailureCode"),
        failure_message=description.get("FailureMessage"),
        start_time=_iso(description["StartTime"]) if description.get("StartTime") else None,
        end_time=_iso(description["EndTime"]) if description.get("EndTime") else None,
    )


# --- conversion in batches -------------------------------------------------------------


def run_attempt(run_key: str) -> str:
    """The lake writer's attempt name for a run: every task of the run shares its staging,
    and no other run or CLI invocation touches it."""
    return f"run-{hashlib.sha256(run_key.encode()).hexdigest()[:16]}"


def plan_batches(
    manifest: ExportManifest, target_bytes: int, max_batches: int = 1024
) -> list[list[str]]:
    """Group the export's data files into batches of about ``target_bytes`` (gzip size).

    Sizes come from one HEAD per data file; files keep manifest order so batches (and
    their ids) are the same on every retry. At most ``max_batches`` (Airflow maps them to
    task instances; raise ``batch_size_mb`` for a larger export).
    """
    filesystem = manifest.bucket_root.filesystem
    paths = [manifest.data_file_location(data_file).path for data_file in manifest.data_files]
    sizes = [info.size or 0 for info in filesystem.get_file_info(paths)] if paths else []
    batches: list[list[str]] = []
    current: list[str] = []
    current_bytes = 0
    for data_file, size in zip(manifest.data_files, sizes, strict=True):
        if current and current_bytes + size > target_bytes:
            batches.append(current)
            current, current_bytes = [], 0
        current.append(data_file.key)
        current_bytes += size
    if current:
        batches.append(current)
    if len(batches) > max_batches:
        raise DynamoLakeError(
            f"{len(batches)} batches exceed the limit of {max_batches}; raise batch_size_mb"
        )
    return batches


def _receipt_location(table: LakeTable, stage: Stage, batch: int) -> Location:
    return table.staging(stage).child(RECEIPTS, f"batch-{batch:05d}.json")


def convert_batch(
    manifest_uri: str,
    keys: Sequence[str],
    lake_uri: str,
    batch: int,
    s3: S3Options | None = None,
    compression: str = "zstd",
    *,
    attempt: str,
) -> dict[str, Any]:
    """Convert some data files of an export into staging and leave a receipt; return counts."""
    manifest = read_manifest(manifest_uri, s3)
    table = LakeTable(resolve(lake_uri, s3))
    stage = Stage(manifest.summary.export_id, attempt)
    settings = WriterSettings(compression=compression)  # type: ignore[arg-type]
    conversions = [
        convert_data_file(manifest, manifest.data_file(key), table, stage, settings) for key in keys
    ]
    receipt = {
        "export_id": manifest.summary.export_id,
        "batch": batch,
        "files": [_conversion_json(conversion) for conversion in conversions],
    }
    _receipt_location(table, stage, batch).write_bytes(orjson.dumps(receipt))
    return {
        "export_id": manifest.summary.export_id,
        "batch": batch,
        "data_files": len(conversions),
        "rows": sum(c.rows for c in conversions),
        "bad_lines": sum(c.bad_lines for c in conversions),
    }


def _conversion_json(conversion: FileConversion) -> dict[str, Any]:
    raw = asdict(conversion)
    raw["staged"] = [asdict(item) for item in conversion.staged]
    return raw


def _conversion_from_json(raw: dict[str, Any]) -> FileConversion:
    staged = tuple(StagedFile(**item) for item in raw.pop("staged"))
    return FileConversion(staged=staged, **raw)


def _time_text(micros: int | None) -> str | None:
    return None if micros is None else _iso(micros_to_datetime(micros))


def commit_exports(
    exports: Sequence[dict[str, Any]],
    lake_uri: str,
    batches_per_export: dict[str, int],
    s3: S3Options | None = None,
    max_bad_lines: int = 0,
    *,
    run_id: str,
    force: bool = False,
) -> list[dict[str, Any]]:
    """Verify and publish each export's batches, in the order given; return per-export facts.

    ``exports`` are dicts with ``manifest_uri`` (and anything else worth recording);
    ``batches_per_export`` maps an export id to how many batches were planned for it. Times
    reported are the export's own (manifest-summary.json: AWS keeps milliseconds), with
    what the run asked for beside them.
    """
    table = LakeTable(resolve(lake_uri, s3))
    attempt = run_attempt(run_id)
    committed = []
    for export in exports:
        manifest = read_manifest(export["manifest_uri"], s3)
        summary = manifest.summary
        stage = Stage(summary.export_id, attempt)
        receipts = [
            _receipt_location(table, stage, batch)
            for batch in range(batches_per_export.get(summary.export_id, 0))
        ]
        missing = [receipt for receipt in receipts if not receipt.exists()]
        earlier = read_published(table, summary.export_id)
        if not missing:
            conversions = [
                _conversion_from_json(item)
                for receipt in receipts
                for item in orjson.loads(receipt.read_bytes())["files"]
            ]
            published = publish_export(
                manifest, table, stage, conversions, max_bad_lines, run=run_id, force=force
            )
            rows = sum(c.rows for c in conversions)
            bad = sum(c.bad_lines for c in conversions)
        elif (
            earlier is not None
            and earlier.state == "published"
            and earlier.about.get("run") == run_id
        ):  # an earlier attempt of this commit published it and cleared its staging
            published = sorted(earlier.paths)
            rows, bad = earlier.rows, summary.item_count - earlier.rows
        else:
            raise DynamoLakeError(
                f"{missing[0].uri} is missing: a batch of export {summary.export_id} was not "
                "converted by this run; clear the run's convert tasks to convert it again"
            )
        committed.append(
            {
                **export,
                "export_id": summary.export_id,
                "export_type": summary.export_type,
                "item_count": summary.item_count,
                "requested_export_time": export.get("export_time"),
                "export_time": _time_text(summary.export_time),
                "export_from": _time_text(summary.export_from_time),
                "export_to": _time_text(summary.export_to_time),
                "rows": rows,
                "bad_lines": bad,
                "files": len(published),
                "partitions": sorted({path.rsplit("/", 1)[0] for path in published}),
            }
        )
    return committed


def write_backfill_record(
    lake_uri: str, run_id: str, record: dict[str, Any], s3: S3Options | None = None
) -> str:
    """Write ``_backfills/<run id>.json`` beside the lake's partitions; return its URI."""
    location = resolve(lake_uri, s3).child(BACKFILLS, f"{_safe(run_id)}.json")
    location.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return location.uri
