"""An export into a lake table (or a work location): read, verify, stage, count, publish.

:func:`convert_data_file` is the unit of work (one export data file into staging). Airflow
maps :func:`convert_batch` over batches of files (:func:`plan_batches`) on separate workers,
each leaving a receipt, and :func:`publish_exports` checks the receipts against the
manifests and publishes; :func:`convert_export` does the whole export in one process
(optionally over several cores) for the CLI. Either way nothing is published until every
file's rows were written and counted against the manifest, lines that cannot become rows
are kept under ``_errors/`` beside the table, never dropped, and an export whose events
the lake already holds is refused (:func:`check_not_in_lake`).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import logging
import os
import resource
import signal
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import orjson

from dynamo_lake.cdc import micros_to_datetime
from dynamo_lake.contract import Compression
from dynamo_lake.errors import DuplicateEventsError, ExportIntegrityError, LakeWriteError
from dynamo_lake.exports.api import FULL_EXPORT, ExportCoverage
from dynamo_lake.exports.manifest import (
    EXPORT_ID,
    BadLine,
    DataFile,
    ExportManifest,
    ExportSummary,
    read_manifest,
    read_rows,
)
from dynamo_lake.lake.writer import (
    LakeTable,
    Stage,
    StagedWriter,
    WriterSettings,
    publish,
    published_groups,
    read_published,
    unpublish,
)
from dynamo_lake.records import (
    BatchReceipt,
    ConversionBatch,
    ExportResult,
    FileConversion,
    PublishedExport,
)
from dynamo_lake.storage import Location, S3Options, resolve

__all__ = [
    "ConversionResult",
    "LakeExport",
    "Progress",
    "check_not_in_lake",
    "convert_batch",
    "convert_data_file",
    "convert_export",
    "export_about",
    "lake_exports",
    "new_attempt",
    "peak_memory_mb",
    "plan_batches",
    "publish_export",
    "publish_exports",
    "run_attempt",
]

RECEIPTS = "_receipts"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConversionResult:
    """A published export. ``files`` and ``partitions`` count what readers now see."""

    export_id: str
    export_type: str
    lake: str
    rows: int
    bad_lines: int
    data_files: int
    files: int
    partitions: int
    seconds: float
    published: tuple[str, ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, object]:
        return {
            "export_id": self.export_id,
            "export_type": self.export_type,
            "lake": self.lake,
            "rows": self.rows,
            "bad_lines": self.bad_lines,
            "data_files": self.data_files,
            "files": self.files,
            "partitions": self.partitions,
            "seconds": round(self.seconds, 3),
        }


def _error_record(bad: BadLine) -> bytes:
    return orjson.dumps(
        {
            "errorCode": "Export.MalformedLine",
            "errorMessage": bad.reason,
            "source": bad.location,
            "line": bad.line_number,
            "rawData": base64.b64encode(bad.text).decode("ascii"),
        }
    )


def peak_memory_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Progress:
    """Logs a conversion's progress at most every ``interval`` seconds: files, items,
    items per second, gzip megabytes and peak memory, so a long task shows it is moving."""

    def __init__(self, files: int, interval: float = 15.0) -> None:
        self.files = files
        self.interval = interval
        self.started = self.last = time.monotonic()
        self.done_files = 0
        self.items = 0
        self.megabytes = 0.0

    def rows(self, count: int, current: str) -> None:
        self.items += count
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._log(f"converting {current}")

    def file_done(self, megabytes: float) -> None:
        self.done_files += 1
        self.megabytes += megabytes
        self._log("file done")

    def _log(self, what: str) -> None:
        seconds = max(time.monotonic() - self.started, 1e-9)
        log.info(
            "%s: %d of %d export data files, %d items, %.0f items/s, %s of gzip read, "
            "peak memory %.0f MB",
            what,
            self.done_files,
            self.files,
            self.items,
            self.items / seconds,
            _size(self.megabytes),
            peak_memory_mb(),
        )


def _size(megabytes: float) -> str:
    """A size as people read it: ``312 KB``, ``4.2 MB``, ``1.3 GB``."""
    if megabytes < 1:
        return f"{megabytes * 1024:.0f} KB"
    if megabytes < 1024:
        return f"{megabytes:.1f} MB"
    return f"{megabytes / 1024:.1f} GB"


def convert_data_file(
    manifest: ExportManifest,
    data_file: DataFile,
    table: LakeTable,
    stage: Stage,
    settings: WriterSettings | None = None,
    progress: Progress | None = None,
) -> FileConversion:
    """Stage the rows of one data file; divert bad lines to ``_errors/``.

    Raises :class:`ExportIntegrityError` when the file does not match the manifest (MD5,
    item count, truncated gzip); its staging is removed then.
    """
    bad_lines: list[BadLine] = []
    with StagedWriter(table, stage, data_file.stem, settings) as writer:
        for batch in read_rows(manifest, data_file, on_bad_line=bad_lines.append):
            writer.write(batch)
            if progress is not None:
                progress.rows(len(batch), data_file.key)
    errors = table.errors(stage.group, data_file.stem)
    if bad_lines:
        errors.write_bytes(b"\n".join(_error_record(bad) for bad in bad_lines) + b"\n")
        log.warning("%d bad lines of %s kept in %s", len(bad_lines), data_file.key, errors.uri)
    else:  # an earlier attempt on different input may have left some
        errors.delete()
    first = bad_lines[0] if bad_lines else None
    return FileConversion(
        key=data_file.key,
        rows=writer.rows,
        bad_lines=len(bad_lines),
        staged=tuple(writer.staged),
        first_bad_line=f"{first.location}:{first.line_number}: {first.reason}" if first else None,
        errors_uri=errors.uri if bad_lines else None,
    )


# --- which exports the lake holds ------------------------------------------------------


def export_about(summary: ExportSummary, run: str | None = None) -> dict[str, Any]:
    """What a published export group records about itself (``about`` of its record)."""
    return {
        "kind": "export",
        "export_arn": summary.export_arn,
        "export_type": summary.export_type,
        "table_arn": summary.table_arn,
        "export_time": summary.export_time,
        "export_from": summary.export_from_time,
        "export_to": summary.export_to_time,
        "item_count": summary.item_count,
        "run": run,
    }


@dataclass(frozen=True)
class LakeExport:
    """An export published in a lake table, as its publish record describes it."""

    export_id: str
    coverage: ExportCoverage
    run: str | None

    def describe(self) -> str:
        coverage = self.coverage
        if coverage.export_type == FULL_EXPORT and coverage.export_time is not None:
            moment = f" at {_iso(coverage.export_time)}"
        elif coverage.export_from is not None and coverage.export_to is not None:
            moment = f" for [{_iso(coverage.export_from)}, {_iso(coverage.export_to)})"
        else:
            moment = ""
        by = f", published by run {self.run}" if self.run else ""
        return f"export {self.export_id}{moment}{by}"


def _iso(micros: int) -> str:
    return micros_to_datetime(micros).isoformat().replace("+00:00", "Z")


def lake_exports(table: LakeTable) -> list[LakeExport]:
    """Every export published into the table (read from the groups' publish records)."""
    found = []
    for group in published_groups(table):
        if not EXPORT_ID.match(group):
            continue  # stream batches and other groups
        record = read_published(table, group)
        about = record.about if record else {}
        if about.get("kind") != "export":
            continue
        coverage = ExportCoverage(
            str(about.get("export_type")),
            about.get("export_time"),
            about.get("export_from"),
            about.get("export_to"),
        )
        found.append(LakeExport(group, coverage, about.get("run")))
    return found


def check_not_in_lake(
    table: LakeTable,
    export_id: str,
    coverage: ExportCoverage,
    *,
    run: str | None = None,
    force: bool = False,
) -> list[LakeExport]:
    """Refuse an export whose events the lake already holds from another export.

    Returns the exports that the same ``run`` published earlier and this one repeats (a
    re-planned run; the caller retires them once this one is published). With ``force``
    nothing is refused: readers then find those events twice (deduplicate by ``uuid``).
    """
    repeats = [
        found
        for found in lake_exports(table)
        if found.export_id != export_id and found.coverage.overlaps(coverage)
    ]
    earlier_of_run = [found for found in repeats if run is not None and found.run == run]
    others = [found for found in repeats if found not in earlier_of_run]
    if others and not force:
        what = (
            f"a full export at {_iso(coverage.export_time)}"
            if coverage.export_type == FULL_EXPORT and coverage.export_time is not None
            else "an incremental window"
        )
        raise DuplicateEventsError(
            f"{table.uri} already holds the events of {what} from "
            f"{'; '.join(found.describe() for found in others)}: converting export "
            f"{export_id} would add them a second time. Skip this backfill, choose a "
            "time or window the lake does not hold, or force it (force=true, --force); "
            "readers then see those events twice and must deduplicate by uuid"
        )
    if others:
        log.warning(
            "forced: %s repeats events of %s",
            export_id,
            "; ".join(found.describe() for found in others),
        )
    return earlier_of_run


def publish_export(
    manifest: ExportManifest,
    table: LakeTable,
    stage: Stage,
    conversions: Sequence[FileConversion],
    max_bad_lines: int = 0,
    *,
    run: str | None = None,
    force: bool = False,
) -> list[str]:
    """Check the counts of every data file against the manifest, then publish them.

    Rows plus diverted lines must equal each file's ``itemCount`` and the summary's total;
    diverted lines above ``max_bad_lines`` fail the export (with the first one named). An
    export whose events the lake already holds is refused unless ``force``
    (:func:`check_not_in_lake`); one that ``run`` published before and this one repeats is
    retired once this one is published.
    """
    summary = manifest.summary
    by_key = {conversion.key: conversion for conversion in conversions}
    missing = [data_file.key for data_file in manifest.data_files if data_file.key not in by_key]
    if missing:
        raise ExportIntegrityError(
            manifest.uri, f"{len(missing)} data files were not converted, e.g. {missing[0]}"
        )
    for data_file in manifest.data_files:
        done = by_key[data_file.key]
        staged_rows = sum(item.rows for item in done.staged)
        if done.rows + done.bad_lines != data_file.item_count or staged_rows != done.rows:
            raise ExportIntegrityError(
                data_file.key,
                f"converted {done.rows} rows ({staged_rows} in staged files) and "
                f"{done.bad_lines} bad lines, but manifest-files.json says "
                f"{data_file.item_count} items",
            )
    bad = sum(conversion.bad_lines for conversion in conversions)
    if bad > max_bad_lines:
        first = next(c.first_bad_line for c in conversions if c.first_bad_line)
        where = sorted({c.errors_uri for c in conversions if c.errors_uri})
        raise ExportIntegrityError(
            manifest.uri,
            f"{bad} lines could not be read (allowed: {max_bad_lines}); first: {first}; "
            f"all kept in {', '.join(where)}. Nothing was published.",
        )
    superseded = check_not_in_lake(table, summary.export_id, summary.coverage, run=run, force=force)
    staged = [item for conversion in conversions for item in conversion.staged]
    paths = publish(table, stage, staged, about=export_about(summary, run))
    for earlier in superseded:
        # The same run exported the same moment again (its tasks were cleared after the
        # ClientToken expired): the new export replaces the old, never adds to it.
        removed = unpublish(table, earlier.export_id, owner=stage.attempt)
        log.warning(
            "retired %s (%d files): export %s of the same run replaces it",
            earlier.describe(),
            removed,
            summary.export_id,
        )
    return paths


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
        raise LakeWriteError(
            f"{len(batches)} batches exceed the limit of {max_batches}; raise batch_size_mb"
        )
    return batches


def _receipt_location(table: LakeTable, stage: Stage, batch: int) -> Location:
    return table.staging(stage).child(RECEIPTS, f"batch-{batch:05d}.json")


def convert_batch(batch: ConversionBatch, s3: S3Options | None = None) -> BatchReceipt:
    """Convert some data files of an export into the target's staging; leave a receipt."""
    manifest = read_manifest(batch.manifest_uri, s3)
    table = LakeTable(resolve(batch.target, s3))
    stage = Stage(manifest.summary.export_id, batch.attempt)
    settings = WriterSettings(compression=batch.compression)  # type: ignore[arg-type]
    progress = Progress(len(batch.keys))
    files = []
    for key in batch.keys:
        data_file = manifest.data_file(key)
        files.append(convert_data_file(manifest, data_file, table, stage, settings, progress))
        progress.file_done(manifest.data_file_location(data_file).size() / 1e6)
    receipt = BatchReceipt(
        export_id=manifest.summary.export_id, batch=batch.batch, files=tuple(files)
    )
    _receipt_location(table, stage, batch.batch).write_bytes(orjson.dumps(receipt.to_json()))
    return receipt


def _time_text(micros: int | None) -> str | None:
    return None if micros is None else _iso(micros)


def publish_exports(
    exports: Sequence[ExportResult],
    target: str,
    batches_per_export: dict[str, int],
    s3: S3Options | None = None,
    *,
    run_id: str,
    max_bad_lines: int = 0,
    force: bool = False,
) -> list[PublishedExport]:
    """Check each export's receipts against its manifest and publish it, in order.

    ``batches_per_export`` maps an export id to how many batches were planned for it.
    Times reported are the export's own (manifest-summary.json: AWS keeps milliseconds),
    with what the run asked for beside them. Publishing again what this run already
    published (a retried task) reports it without writing anything.
    """
    table = LakeTable(resolve(target, s3))
    attempt = run_attempt(run_id)
    published_exports = []
    for export in sorted(exports, key=lambda item: item.sequence):
        manifest = read_manifest(export.manifest_uri, s3)
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
                conversion
                for receipt in receipts
                for conversion in BatchReceipt.from_json(orjson.loads(receipt.read_bytes())).files
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
        ):  # an earlier attempt of this step published it and cleared its staging
            published = sorted(earlier.paths)
            rows, bad = earlier.rows, summary.item_count - earlier.rows
        else:
            raise LakeWriteError(
                f"{missing[0].uri} is missing: a batch of export {summary.export_id} was not "
                "converted by this run; clear the run's convert tasks to convert it again"
            )
        published_exports.append(
            PublishedExport(
                sequence=export.sequence,
                export_arn=export.export_arn,
                export_id=summary.export_id,
                export_type=summary.export_type,
                manifest_uri=export.manifest_uri,
                item_count=summary.item_count,
                rows=rows,
                bad_lines=bad,
                files=len(published),
                partitions=tuple(sorted({path.rsplit("/", 1)[0] for path in published})),
                export_time=_time_text(summary.export_time),
                export_from=_time_text(summary.export_from_time),
                export_to=_time_text(summary.export_to_time),
                requested_export_time=export.export_time,
                client_token=export.client_token,
            )
        )
    return published_exports


def new_attempt() -> str:
    """A fresh attempt name for a writer that is not part of a run (a CLI invocation)."""
    return f"cli-{uuid.uuid4().hex[:12]}"


def _die_with_parent(parent: int) -> None:
    """Worker initializer: the kernel kills this worker when its parent dies (Linux).

    Without it a killed ``convert --workers N`` leaves its workers converting for minutes.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above ran
        os._exit(1)


_PR_SET_PDEATHSIG = 1


def _convert_one(
    arguments: tuple[ExportManifest, DataFile, LakeTable, Stage, WriterSettings],
) -> FileConversion:
    return convert_data_file(*arguments)


def convert_export(
    source: str,
    lake: str,
    *,
    compression: Compression = "zstd",
    workers: int = 1,
    max_bad_lines: int = 0,
    s3: S3Options | None = None,
    settings: WriterSettings | None = None,
    force: bool = False,
    attempt: str | None = None,
) -> ConversionResult:
    """Convert one export (full or incremental) into the lake table at ``lake``.

    ``source`` is the ``s3://`` URI of manifest-summary.json or a local path to it;
    ``lake`` is the table's folder (``.../<database>/<table>``). With ``workers > 1`` data
    files are converted in that many processes (which die with this one). ``force``
    converts an export whose events the lake already holds (see :func:`check_not_in_lake`).
    """
    started = time.perf_counter()
    manifest = read_manifest(source, s3)
    location = resolve(lake, s3)
    location.check_folder("lake")
    table = LakeTable(location)
    settings = settings or WriterSettings(compression=compression)
    stage = Stage(manifest.summary.export_id, attempt or new_attempt())
    summary = manifest.summary
    check_not_in_lake(table, summary.export_id, summary.coverage, force=force)  # before work
    jobs = [(manifest, data_file, table, stage, settings) for data_file in manifest.data_files]
    try:
        if workers > 1 and len(jobs) > 1:
            context = get_context("spawn")
            with context.Pool(
                min(workers, len(jobs)), initializer=_die_with_parent, initargs=(os.getpid(),)
            ) as pool:
                conversions = list(pool.imap(_convert_one, jobs))
        else:
            conversions = [_convert_one(job) for job in jobs]
        published = publish_export(manifest, table, stage, conversions, max_bad_lines, force=force)
    except BaseException:
        table.clear_staging(stage)  # nothing half-done stays, even out of sight
        raise
    return ConversionResult(
        export_id=stage.group,
        export_type=manifest.summary.export_type,
        lake=table.uri,
        rows=sum(conversion.rows for conversion in conversions),
        bad_lines=sum(conversion.bad_lines for conversion in conversions),
        data_files=len(manifest.data_files),
        files=len(published),
        partitions=len({path.rsplit("/", 1)[0] for path in published}),
        seconds=time.perf_counter() - started,
        published=tuple(published),
    )
