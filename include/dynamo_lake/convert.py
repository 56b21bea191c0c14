"""One export into the lake: read, verify, stage, count, publish.

:func:`convert_data_file` is the unit of work (one export data file into staging); the
backfill DAG maps it over batches of files on separate workers. :func:`convert_export`
runs the whole export in one process (optionally over several cores) for the CLI and the
demo. Either way nothing is published until every file's rows were written and counted
against the manifest, and lines that cannot become rows are kept under ``_errors/``
beside the table, never dropped.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import logging
import os
import signal
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import orjson

from dynamo_lake.cdc import micros_to_datetime
from dynamo_lake.errors import DuplicateEventsError, ExportIntegrityError
from dynamo_lake.export_reader import (
    EXPORT_ID,
    FULL_EXPORT,
    BadLine,
    DataFile,
    ExportManifest,
    ExportSummary,
    read_manifest,
    read_rows,
)
from dynamo_lake.lake_writer import (
    Compression,
    LakeTable,
    Stage,
    StagedFile,
    StagedWriter,
    WriterSettings,
    publish,
    published_groups,
    read_published,
    unpublish,
)
from dynamo_lake.storage import S3Options, resolve

__all__ = [
    "ConversionResult",
    "FileConversion",
    "LakeExport",
    "check_not_in_lake",
    "convert_data_file",
    "convert_export",
    "export_about",
    "lake_exports",
    "new_attempt",
    "publish_export",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileConversion:
    """What one data file became: rows staged, lines diverted, files staged."""

    key: str
    rows: int
    bad_lines: int
    staged: tuple[StagedFile, ...]
    first_bad_line: str | None = None
    errors_uri: str | None = None


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

    def summary(self) -> dict[str, object]:
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


def convert_data_file(
    manifest: ExportManifest,
    data_file: DataFile,
    table: LakeTable,
    stage: Stage,
    settings: WriterSettings | None = None,
) -> FileConversion:
    """Stage the rows of one data file; divert bad lines to ``_errors/``.

    Raises :class:`ExportIntegrityError` when the file does not match the manifest (MD5,
    item count, truncated gzip); its staging is removed then.
    """
    bad_lines: list[BadLine] = []
    with StagedWriter(table, stage, data_file.stem, settings) as writer:
        for batch in read_rows(manifest, data_file, on_bad_line=bad_lines.append):
            writer.write(batch)
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
    export_type: str
    export_time: int | None
    export_from: int | None
    export_to: int | None
    run: str | None

    def overlaps(self, summary: ExportSummary) -> bool:
        """True when ``summary``'s rows would repeat events this export already holds.

        Full exports repeat each other only at the same ``exportTime`` (rows are stamped
        with it); incremental exports whenever their windows share a moment. A full and an
        incremental export never share a row (different ops and times).
        """
        if summary.export_type != self.export_type:
            return False
        if not summary.is_incremental:
            return summary.export_time == self.export_time
        window = summary.window
        if window is None or self.export_from is None or self.export_to is None:
            return False
        return window[0] < self.export_to and self.export_from < window[1]

    def describe(self) -> str:
        if self.export_type == FULL_EXPORT and self.export_time is not None:
            moment = f"at {_iso(self.export_time)}"
        elif self.export_from is not None and self.export_to is not None:
            moment = f"for [{_iso(self.export_from)}, {_iso(self.export_to)})"
        else:
            moment = ""
        by = f", published by run {self.run}" if self.run else ""
        return f"export {self.export_id} {moment}{by}".replace("  ", " ")


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
        found.append(
            LakeExport(
                export_id=group,
                export_type=str(about.get("export_type")),
                export_time=about.get("export_time"),
                export_from=about.get("export_from"),
                export_to=about.get("export_to"),
                run=about.get("run"),
            )
        )
    return found


def check_not_in_lake(
    table: LakeTable, summary: ExportSummary, *, run: str | None = None, force: bool = False
) -> list[LakeExport]:
    """Refuse an export whose events the lake already holds from another export.

    Returns the exports that the same ``run`` published earlier and this one repeats (a
    re-planned run; the caller retires them once this one is published). With ``force``
    nothing is refused: readers then find those events twice (deduplicate by ``uuid``).
    """
    repeats = [
        found
        for found in lake_exports(table)
        if found.export_id != summary.export_id and found.overlaps(summary)
    ]
    earlier_of_run = [found for found in repeats if run is not None and found.run == run]
    others = [found for found in repeats if found not in earlier_of_run]
    if others and not force:
        what = (
            f"a full export at {_iso(summary.export_time)}"
            if summary.export_time is not None and not summary.is_incremental
            else "an incremental window"
        )
        raise DuplicateEventsError(
            f"{table.uri} already holds the events of {what} from "
            f"{'; '.join(found.describe() for found in others)}: converting export "
            f"{summary.export_id} would add them a second time. Skip this backfill, choose a "
            "time or window the lake does not hold, or force it (force=true, --force); "
            "readers then see those events twice and must deduplicate by uuid"
        )
    if others:
        log.warning(
            "forced: %s repeats events of %s",
            summary.export_id,
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
    superseded = check_not_in_lake(table, summary, run=run, force=force)
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
    check_not_in_lake(table, manifest.summary, force=force)  # before any work
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
