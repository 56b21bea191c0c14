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
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

import orjson

from dynamo_lake.errors import ExportIntegrityError
from dynamo_lake.export_reader import BadLine, DataFile, ExportManifest, read_manifest, read_rows
from dynamo_lake.lake_writer import (
    Compression,
    LakeTable,
    StagedFile,
    StagedWriter,
    WriterSettings,
    publish,
)
from dynamo_lake.storage import S3Options, resolve

__all__ = [
    "ConversionResult",
    "FileConversion",
    "convert_data_file",
    "convert_export",
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
    settings: WriterSettings | None = None,
) -> FileConversion:
    """Stage the rows of one data file; divert bad lines to ``_errors/``.

    Raises :class:`ExportIntegrityError` when the file does not match the manifest (MD5,
    item count, truncated gzip); its staging is removed then.
    """
    group = manifest.summary.export_id
    bad_lines: list[BadLine] = []
    with StagedWriter(table, group, data_file.stem, settings) as writer:
        for batch in read_rows(manifest, data_file, on_bad_line=bad_lines.append):
            writer.write(batch)
    errors = table.errors(group, data_file.stem)
    if bad_lines:
        errors.write_bytes(b"\n".join(_error_record(bad) for bad in bad_lines) + b"\n")
        log.warning("%d bad lines of %s kept in %s", len(bad_lines), data_file.key, errors.uri)
    elif errors.exists():  # left by an earlier attempt on different input
        errors.filesystem.delete_file(errors.path)
    first = bad_lines[0] if bad_lines else None
    return FileConversion(
        key=data_file.key,
        rows=writer.rows,
        bad_lines=len(bad_lines),
        staged=tuple(writer.staged),
        first_bad_line=f"{first.location}:{first.line_number}: {first.reason}" if first else None,
        errors_uri=errors.uri if bad_lines else None,
    )


def publish_export(
    manifest: ExportManifest,
    table: LakeTable,
    conversions: Sequence[FileConversion],
    max_bad_lines: int = 0,
) -> list[str]:
    """Check the counts of every data file against the manifest, then publish them.

    Rows plus diverted lines must equal each file's ``itemCount`` and the summary's total;
    diverted lines above ``max_bad_lines`` fail the export (with the first one named).
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
        if done.rows + done.bad_lines != data_file.item_count:
            raise ExportIntegrityError(
                data_file.key,
                f"converted {done.rows} rows and {done.bad_lines} bad lines, "
                f"but manifest-files.json says {data_file.item_count} items",
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
    rows = sum(conversion.rows for conversion in conversions)
    if rows + bad != summary.item_count:  # pragma: no cover - implied by the per-file check
        raise ExportIntegrityError(manifest.uri, f"{rows} rows for {summary.item_count} items")
    staged = [item for conversion in conversions for item in conversion.staged]
    return publish(table, summary.export_id, staged)


def convert_export(
    source: str,
    lake: str,
    *,
    compression: Compression = "zstd",
    workers: int = 1,
    max_bad_lines: int = 0,
    s3: S3Options | None = None,
    settings: WriterSettings | None = None,
) -> ConversionResult:
    """Convert one export (full or incremental) into the lake table at ``lake``.

    ``source`` is the ``s3://`` URI of manifest-summary.json or a local path to it;
    ``lake`` is the table's folder (``.../<database>/<table>``). With ``workers > 1`` data
    files are converted in that many processes.
    """
    started = time.perf_counter()
    manifest = read_manifest(source, s3)
    table = LakeTable(resolve(lake, s3))
    settings = settings or WriterSettings(compression=compression)
    group = manifest.summary.export_id
    table.clear_staging(group)
    try:
        if workers > 1 and len(manifest.data_files) > 1:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                futures = [
                    pool.submit(convert_data_file, manifest, data_file, table, settings)
                    for data_file in manifest.data_files
                ]
                conversions = [future.result() for future in futures]
        else:
            conversions = [
                convert_data_file(manifest, data_file, table, settings)
                for data_file in manifest.data_files
            ]
        published = publish_export(manifest, table, conversions, max_bad_lines)
    except BaseException:
        table.clear_staging(group)  # nothing half-done stays, even out of sight
        raise
    return ConversionResult(
        export_id=group,
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
