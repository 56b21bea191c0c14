"""ExportTableToPointInTime, DescribeExport and ListExports as AWS does them.

An export is validated and its content fixed at request time from the item history (the table
as of ExportTime, or the compacted changes of an incremental window); it then stays IN_PROGRESS
for `export_delay_seconds` of real time, after which its files are written to S3 in AWS's layout
(`_started`, data files, manifest-files.json, manifest-summary.json and their .md5) and it ends
COMPLETED, or FAILED with S3NoSuchBucket when the bucket does not exist.

Fixing the content keeps references to the history's images only; the JSON, gzip and S3 writes
happen when the export finishes (on its timer thread), so a request for an export of millions of
items returns in seconds, and DescribeExport answers IN_PROGRESS while the files are written.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from local_aws.clock import EmulatorClock, iso_from_micros
from local_aws.history import Image, ItemChange, TableHistory, key_identity
from local_aws.protocol import ApiError, epoch_seconds, micros_from_epoch, validation_error
from local_aws.settings import EmulatorSettings

FULL_EXPORT = "FULL_EXPORT"
INCREMENTAL_EXPORT = "INCREMENTAL_EXPORT"
NEW_AND_OLD_IMAGES = "NEW_AND_OLD_IMAGES"
NEW_IMAGE = "NEW_IMAGE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
INCREMENTAL_MINIMUM_BILLED_BYTES = 10 * 1024 * 1024
_MICROS_PER_DAY = 86_400 * 1_000_000
#: How long a DescribeExport waits for the export's files being written before answering.
_DESCRIBE_WAITS_SECONDS = 5.0


class ObjectStore(Protocol):
    """Where export files go: the emulator's own S3."""

    def bucket_exists(self, bucket: str) -> bool: ...

    def put_object(self, bucket: str, key: str, body: bytes) -> str:
        """Store an object and return its ETag without quotes."""
        ...


TableLookup = Callable[[str], TableHistory | None]


@dataclass
class RestorableWindow:
    earliest_micros: int
    latest_micros: int


def restorable_window(
    table: TableHistory, now_micros: int, settings: EmulatorSettings
) -> RestorableWindow:
    """PITR window of an enabled table: from enabling (or the recovery period) to now minus lag."""
    assert table.pitr_enabled_micros is not None
    earliest = max(
        table.pitr_enabled_micros, now_micros - table.recovery_period_days * _MICROS_PER_DAY
    )
    latest = max(earliest, now_micros - round(settings.pitr_lag_seconds * 1_000_000))
    return RestorableWindow(earliest, latest)


def attribute_size(value: Image) -> int:
    """DynamoDB's item-size arithmetic, close enough to bill an export."""
    (kind, payload), *_ = value.items()
    if kind == "S":
        return len(payload.encode())
    if kind == "N":
        return len(payload.lstrip("-").replace(".", "")) // 2 + 1
    if kind == "B":
        return _decoded_length(payload)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(v.encode()) for v in payload)
    if kind == "NS":
        return sum(len(v.lstrip("-").replace(".", "")) // 2 + 1 for v in payload)
    if kind == "BS":
        return sum(_decoded_length(v) for v in payload)
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in payload.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in payload)
    return 0


def _decoded_length(text: str) -> int:
    """Bytes behind a padded base64 text, without decoding it."""
    return len(text) * 3 // 4 - text[-2:].count("=")


def item_size(image: Image) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in image.items())


def _json_line(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document)  # compact UTF-8, as json.dumps(ensure_ascii=False) writes


def _b64_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def _data_file_name() -> str:
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()[:26]


@dataclass
class ExportJob:
    """One export: its request, its fixed content, and where it is in its life."""

    export_id: str
    export_arn: str
    table_arn: str
    table_id: str
    request: dict[str, Any]
    fingerprint: str
    client_token: str
    export_type: str
    export_format: str
    start_micros: int
    ready_at_monotonic: float
    export_time_micros: int | None = None
    from_micros: int | None = None
    to_micros: int | None = None
    view_type: str | None = None
    key_names: tuple[str, ...] = ()
    #: The content, fixed at request time: the items (full) or the changes (incremental).
    lines: list[Image] | list[ItemChange] = field(default_factory=list)
    status: str = IN_PROGRESS
    end_micros: int | None = None
    item_count: int = 0
    billed_size_bytes: int = 0
    manifest_key: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def bucket(self) -> str:
        return str(self.request["S3Bucket"])

    @property
    def prefix(self) -> str | None:
        prefix = self.request.get("S3Prefix")
        return str(prefix) if prefix else None

    @property
    def export_root(self) -> str:
        """`<prefix>/AWSDynamoDB`, or `AWSDynamoDB` without a prefix."""
        return f"{self.prefix.rstrip('/')}/AWSDynamoDB" if self.prefix else "AWSDynamoDB"

    def description(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "ExportArn": self.export_arn,
            "ExportStatus": self.status,
            "StartTime": epoch_seconds(self.start_micros),
            "TableArn": self.table_arn,
            "TableId": self.table_id,
            "ClientToken": self.client_token,
            "S3Bucket": self.bucket,
            "S3SseAlgorithm": self.request.get("S3SseAlgorithm", "AES256"),
            "ExportFormat": self.export_format,
        }
        for optional in ("S3Prefix", "S3BucketOwner", "S3SseKmsKeyId"):
            if self.request.get(optional):
                described[optional] = self.request[optional]
        if self.export_time_micros is not None:
            described["ExportTime"] = epoch_seconds(self.export_time_micros)
        if self.export_type == INCREMENTAL_EXPORT:
            assert self.from_micros is not None and self.to_micros is not None
            described["IncrementalExportSpecification"] = {
                "ExportFromTime": epoch_seconds(self.from_micros),
                "ExportToTime": epoch_seconds(self.to_micros),
                "ExportViewType": self.view_type,
            }
        if "ExportType" in self.request:
            described["ExportType"] = self.export_type
        if self.status != IN_PROGRESS:
            assert self.end_micros is not None
            described["EndTime"] = epoch_seconds(self.end_micros)
        if self.status == COMPLETED:
            described["ExportManifest"] = self.manifest_key
            described["ItemCount"] = self.item_count
            described["BilledSizeBytes"] = self.billed_size_bytes
        if self.status == FAILED:
            described["FailureCode"] = self.failure_code
            described["FailureMessage"] = self.failure_message
        return described

    def summary(self) -> dict[str, Any]:
        summarized = {"ExportArn": self.export_arn, "ExportStatus": self.status}
        if "ExportType" in self.request:
            summarized["ExportType"] = self.export_type
        return summarized


class ExportService:
    """The emulated export API of one emulator: jobs, ClientTokens and file writing."""

    def __init__(
        self,
        settings: EmulatorSettings,
        clock: EmulatorClock,
        store: ObjectStore,
        find_table: TableLookup,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._store = store
        self._find_table = find_table
        self._lock = threading.RLock()
        self._jobs: dict[str, ExportJob] = {}
        self._tokens: dict[str, ExportJob] = {}
        self._timers: list[threading.Timer] = []

    # -- API operations -------------------------------------------------------------------

    def export_table(self, request: dict[str, Any]) -> dict[str, Any]:
        now = self._clock.now_micros()
        for required in ("TableArn", "S3Bucket"):
            if not request.get(required):
                raise validation_error(f"1 validation error detected: {required} is required")
        fingerprint = json.dumps(
            {k: v for k, v in request.items() if k != "ClientToken"}, sort_keys=True
        )
        token = str(request.get("ClientToken") or secrets.token_hex(16))
        with self._lock:
            previous = self._tokens.get(token)
            ttl = round(self._settings.client_token_ttl_seconds * 1_000_000)
            if previous is not None and now - previous.start_micros <= ttl:
                if previous.fingerprint != fingerprint:
                    raise ApiError(
                        "ExportConflictException",
                        f"ClientToken {token} was already used for export "
                        f"{previous.export_arn} with different parameters",
                    )
                self._finalize_if_due(previous)
                return {"ExportDescription": previous.description()}
            job = self._new_job(request, token, fingerprint, now)
            self._jobs[job.export_arn] = job
            self._tokens[token] = job
        if self._store.bucket_exists(job.bucket):
            self._store.put_object(job.bucket, f"{job.export_root}/{job.export_id}/_started", b"")
        self._schedule(job)
        return {"ExportDescription": job.description()}

    def describe_export(self, request: dict[str, Any]) -> dict[str, Any]:
        arn = request.get("ExportArn")
        if not arn:
            raise validation_error("1 validation error detected: ExportArn is required")
        with self._lock:
            job = self._jobs.get(str(arn))
        if job is None:
            raise ApiError("ExportNotFoundException", f"Export not found: {arn}")
        self._finalize_if_due(job)
        return {"ExportDescription": job.description()}

    def list_exports(self, request: dict[str, Any]) -> dict[str, Any]:
        table_arn = request.get("TableArn")
        max_results = int(request.get("MaxResults") or 25)
        if not 1 <= max_results <= 25:
            raise validation_error("MaxResults must be between 1 and 25")
        start = int(request.get("NextToken") or 0)
        with self._lock:
            jobs = [j for j in self._jobs.values() if not table_arn or j.table_arn == table_arn]
        page = jobs[start : start + max_results]
        for job in page:
            self._finalize_if_due(job)
        listed: dict[str, Any] = {"ExportSummaries": [job.summary() for job in page]}
        if start + max_results < len(jobs):
            listed["NextToken"] = str(start + max_results)
        return listed

    def reset(self) -> None:
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            self._jobs.clear()
            self._tokens.clear()

    shutdown = reset

    # -- Validation and content --------------------------------------------------------------

    def _new_job(
        self, request: dict[str, Any], token: str, fingerprint: str, now: int
    ) -> ExportJob:
        table_arn = str(request["TableArn"])
        if not table_arn.startswith("arn:"):
            raise validation_error(f"TableArn must be an ARN, got {table_arn!r}")
        table = self._find_table(table_arn)
        if table is None:
            raise ApiError("TableNotFoundException", f"Table not found: {table_arn}")
        if table.pitr_enabled_micros is None:
            raise ApiError(
                "PointInTimeRecoveryUnavailableException",
                f"Point in time recovery is not enabled for table '{table.table_name}'",
            )
        export_format = str(request.get("ExportFormat") or "DYNAMODB_JSON")
        if export_format != "DYNAMODB_JSON":
            raise validation_error(
                f"ExportFormat {export_format} is not supported by the local emulator "
                "(only DYNAMODB_JSON)"
            )
        export_type = str(request.get("ExportType") or FULL_EXPORT)
        if export_type not in (FULL_EXPORT, INCREMENTAL_EXPORT):
            raise validation_error("ExportType must be FULL_EXPORT or INCREMENTAL_EXPORT")
        window = restorable_window(table, now, self._settings)
        export_id = f"0{now // 1000:013d}-{secrets.token_hex(4)}"
        job = ExportJob(
            export_id=export_id,
            export_arn=f"{table.table_arn}/export/{export_id}",
            table_arn=table.table_arn,
            table_id=table.table_id,
            request=request,
            fingerprint=fingerprint,
            client_token=token,
            export_type=export_type,
            export_format=export_format,
            start_micros=now,
            ready_at_monotonic=time.monotonic() + self._settings.export_delay_seconds,
        )
        if export_type == FULL_EXPORT:
            self._plan_full(job, table, window)
        else:
            self._plan_incremental(job, table, window)
        return job

    def _plan_full(self, job: ExportJob, table: TableHistory, window: RestorableWindow) -> None:
        if "ExportTime" in job.request:
            export_time = micros_from_epoch(job.request["ExportTime"], "ExportTime")
            if not window.earliest_micros <= export_time <= window.latest_micros:
                raise ApiError(
                    "InvalidExportTimeException",
                    f"ExportTime {iso_from_micros(export_time)} is outside the point in time "
                    f"recovery window [{iso_from_micros(window.earliest_micros)}, "
                    f"{iso_from_micros(window.latest_micros)}]",
                )
        else:
            export_time = window.latest_micros
        job.export_time_micros = export_time
        job.key_names = table.key_names
        job.lines = list(table.state_at(export_time))

    def _plan_incremental(
        self, job: ExportJob, table: TableHistory, window: RestorableWindow
    ) -> None:
        if "ExportTime" in job.request:
            raise validation_error("ExportTime cannot be used with an INCREMENTAL_EXPORT")
        spec = job.request.get("IncrementalExportSpecification") or {}
        if "ExportFromTime" not in spec:
            raise validation_error(
                "IncrementalExportSpecification.ExportFromTime is required for an "
                "INCREMENTAL_EXPORT"
            )
        from_micros = micros_from_epoch(spec["ExportFromTime"], "ExportFromTime")
        to_micros = (
            micros_from_epoch(spec["ExportToTime"], "ExportToTime")
            if "ExportToTime" in spec
            else window.latest_micros
        )
        view_type = str(spec.get("ExportViewType") or NEW_AND_OLD_IMAGES)
        if view_type not in (NEW_AND_OLD_IMAGES, NEW_IMAGE):
            raise validation_error("ExportViewType must be NEW_IMAGE or NEW_AND_OLD_IMAGES")
        if to_micros <= from_micros:
            raise validation_error("ExportToTime must be after ExportFromTime")
        duration = (to_micros - from_micros) / 1_000_000
        low = self._settings.incremental_min_window_seconds
        high = self._settings.incremental_max_window_seconds
        if not low <= duration <= high:
            raise validation_error(
                f"The incremental export period must be between {low:g} and {high:g} seconds "
                f"(15 minutes and 24 hours in AWS); got {duration:g} seconds"
            )
        if from_micros < window.earliest_micros or to_micros > window.latest_micros:
            raise ApiError(
                "InvalidExportTimeException",
                f"Incremental export window [{iso_from_micros(from_micros)}, "
                f"{iso_from_micros(to_micros)}) is outside the point in time recovery window "
                f"[{iso_from_micros(window.earliest_micros)}, "
                f"{iso_from_micros(window.latest_micros)}]",
            )
        job.from_micros, job.to_micros, job.view_type = from_micros, to_micros, view_type
        job.lines = list(table.changes_between(from_micros, to_micros))

    # -- Completion -----------------------------------------------------------------------

    def _schedule(self, job: ExportJob) -> None:
        timer = threading.Timer(
            self._settings.export_delay_seconds, self._finalize_if_due, (job, True)
        )
        timer.daemon = True
        with self._lock:
            self._timers = [t for t in self._timers if t.is_alive()]
            self._timers.append(timer)
        timer.start()

    def _finalize_if_due(self, job: ExportJob, force: bool = False) -> None:
        """Write the files once the delay is over. A DescribeExport waits up to a few seconds
        for a write in progress (a small export is then COMPLETED at once, as tests expect),
        then answers IN_PROGRESS; only the timer (``force``) waits for the write to end."""
        if not job.lock.acquire(timeout=-1 if force else _DESCRIBE_WAITS_SECONDS):
            return
        try:
            if job.status != IN_PROGRESS:
                return
            if not force and time.monotonic() < job.ready_at_monotonic:
                return
            job.end_micros = max(self._clock.now_micros(), job.start_micros)
            if not self._store.bucket_exists(job.bucket):
                job.status = FAILED
                job.failure_code = "S3NoSuchBucket"
                job.failure_message = "The specified bucket does not exist"
            else:
                self._write_files(job)
                job.status = COMPLETED
            job.lines = []
        finally:
            job.lock.release()

    def _write_files(self, job: ExportJob) -> None:
        folder = f"{job.export_root}/{job.export_id}"
        incremental = job.export_type == INCREMENTAL_EXPORT
        data_folder = f"{job.export_root}/data" if incremental else f"{folder}/data"

        def keys_of(line: Image | ItemChange) -> Image:
            if isinstance(line, ItemChange):
                return line.keys
            return {name: line[name] for name in job.key_names}

        def document_of(line: Image | ItemChange) -> dict[str, Any]:
            if isinstance(line, ItemChange):
                return _incremental_line(line, job.view_type or NEW_AND_OLD_IMAGES)
            return {"Item": line}

        lines: list[Image | ItemChange] = sorted(
            job.lines, key=lambda line: _partition_order(keys_of(line))
        )
        per_file = self._settings.items_per_export_file
        file_count = math.ceil(len(lines) / per_file)
        chunks = [
            lines[i * len(lines) // file_count : (i + 1) * len(lines) // file_count]
            for i in range(file_count)
        ]
        chunks += [[] for _ in range(max(self._settings.empty_data_files, 1 - file_count))]
        manifest_lines = []
        for chunk in chunks:
            content = b"".join(_json_line(document_of(line)) + b"\n" for line in chunk)
            body = gzip.compress(content, compresslevel=6, mtime=0)  # AWS's level is unknown
            key = f"{data_folder}/{_data_file_name()}.json.gz"
            etag = self._store.put_object(job.bucket, key, body)
            manifest_lines.append(
                _json_line(
                    {
                        "itemCount": len(chunk),
                        "md5Checksum": _b64_md5(body),
                        "etag": etag,
                        "dataFileS3Key": key,
                    }
                )
            )
        manifest_files = b"".join(line + b"\n" for line in manifest_lines)
        manifest_files_key = f"{folder}/manifest-files.json"
        self._store.put_object(job.bucket, manifest_files_key, manifest_files)
        self._store.put_object(
            job.bucket, f"{folder}/manifest-files.md5", _b64_md5(manifest_files).encode()
        )
        job.item_count = len(lines)
        billed = sum(
            sum(item_size(i) for i in (line.old_image, line.new_image) if i)
            if isinstance(line, ItemChange)
            else item_size(line)
            for line in lines
        )
        if incremental:
            billed = max(billed, INCREMENTAL_MINIMUM_BILLED_BYTES)
        job.billed_size_bytes = billed
        assert job.end_micros is not None
        summary = self._manifest_summary(job, manifest_files_key, job.end_micros)
        summary_body = json.dumps(summary, separators=(",", ":")).encode()
        job.manifest_key = f"{folder}/manifest-summary.json"
        self._store.put_object(job.bucket, job.manifest_key, summary_body)
        self._store.put_object(
            job.bucket, f"{folder}/manifest-summary.md5", _b64_md5(summary_body).encode()
        )

    def _manifest_summary(
        self, job: ExportJob, manifest_files_key: str, end_micros: int
    ) -> dict[str, Any]:
        incremental = job.export_type == INCREMENTAL_EXPORT
        summary: dict[str, Any] = {
            "version": "2023-08-01" if incremental else "2020-06-30",
            "exportArn": job.export_arn,
            "startTime": iso_from_micros(job.start_micros),
            "endTime": iso_from_micros(end_micros),
            "tableArn": job.table_arn,
            "tableId": job.table_id,
        }
        if incremental:
            assert job.from_micros is not None and job.to_micros is not None
            summary["exportFromTime"] = iso_from_micros(job.from_micros)
            summary["exportToTime"] = iso_from_micros(job.to_micros)
        else:
            assert job.export_time_micros is not None
            summary["exportTime"] = iso_from_micros(job.export_time_micros)
        summary.update(
            {
                "s3Bucket": job.bucket,
                "s3Prefix": job.prefix,
                "s3SseAlgorithm": job.request.get("S3SseAlgorithm", "AES256"),
                "s3SseKmsKeyId": job.request.get("S3SseKmsKeyId"),
                "manifestFilesS3Key": manifest_files_key,
                "billedSizeBytes": job.billed_size_bytes,
                "itemCount": job.item_count,
                "outputFormat": job.export_format,
            }
        )
        if incremental:
            summary["outputView"] = job.view_type
        summary["exportType"] = job.export_type
        return summary


def _partition_order(key: Image) -> str:
    """Items are spread over files by key hash, as DynamoDB partitions spread them."""
    return hashlib.md5(key_identity(key).encode()).hexdigest()


def _incremental_line(change: ItemChange, view_type: str) -> dict[str, Any]:
    document: dict[str, Any] = {
        "Metadata": {"WriteTimestampMicros": {"N": str(change.last_write_micros)}},
        "Keys": change.keys,
    }
    if view_type == NEW_AND_OLD_IMAGES and change.old_image is not None:
        document["OldImage"] = change.old_image
    if change.new_image is not None:
        document["NewImage"] = change.new_image
    return document
