"""Reading a DynamoDB point-in-time export exactly as AWS lays it out in S3: its manifests,
verified, and the rows of its data files.

The only way in is manifest-summary.json: it names manifest-files.json, which names each
data file (keys from the bucket root; incremental exports share one data folder, so a
prefix is never listed). Every object is checked against what the manifests promise: the
``.md5`` files of both manifests, each data file's ``md5Checksum`` (base64 MD5 of the
stored gzip object) and ``itemCount``, and the gzip stream's own end marker. Data files
are streamed in chunks, so memory does not grow with the file.

A local path works too when it sits inside a directory that mirrors the bucket: keys are
resolved against that directory.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from dynamo_lake.cdc import (
    CdcRow,
    parse_aws_time,
    row_from_full_export_line,
    row_from_incremental_export_line,
)
from dynamo_lake.codec import compiled_codec
from dynamo_lake.contract import EXPORT_ID, TIME_RANGE_END_MICROS, TIME_RANGE_START_MICROS
from dynamo_lake.errors import (
    DynamoLakeError,
    ExportFormatError,
    ExportIntegrityError,
    StorageError,
)
from dynamo_lake.exports.api import FULL_EXPORT, INCREMENTAL_EXPORT, ExportCoverage
from dynamo_lake.storage import Location, S3Options, resolve

__all__ = [
    "EXPORT_ID",
    "MAX_LINE_BYTES",
    "BadLine",
    "DataFile",
    "ExportManifest",
    "ExportSummary",
    "first_item",
    "read_manifest",
    "read_rows",
]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
#: The longest data line we accept. A DynamoDB item is at most 400 KB; its DynamoDB JSON
#: (type tags, escapes, base64) stays far below this, so a longer "line" is not an item
#: (a corrupt or hostile file) and is refused before it can exhaust memory.
MAX_LINE_BYTES = 32 << 20
_DATA_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,150}\.(json|ion)\.gz$")


@dataclass(frozen=True)
class ExportSummary:
    """The facts of manifest-summary.json that conversion needs (parsed tolerantly)."""

    export_arn: str
    export_type: str
    output_format: str
    item_count: int
    manifest_files_key: str
    output_view: str = "NEW_AND_OLD_IMAGES"
    export_time: int | None = None  # µs; full exports
    export_from_time: int | None = None  # µs; incremental exports
    export_to_time: int | None = None
    table_arn: str | None = None
    s3_bucket: str | None = None

    @property
    def export_id(self) -> str:
        """The ARN's last segment; checked against :data:`EXPORT_ID` when parsed."""
        return self.export_arn.rsplit("/", 1)[-1]

    @property
    def is_incremental(self) -> bool:
        return self.export_type == INCREMENTAL_EXPORT

    @property
    def coverage(self) -> ExportCoverage:
        """Which events the export holds (its moment, or its window)."""
        return ExportCoverage(
            self.export_type, self.export_time, self.export_from_time, self.export_to_time
        )

    @property
    def window(self) -> tuple[int, int] | None:
        """``[exportFromTime, exportToTime)`` in µs for an incremental export."""
        if self.export_from_time is None or self.export_to_time is None:
            return None
        return self.export_from_time, self.export_to_time


@dataclass(frozen=True)
class DataFile:
    """One line of manifest-files.json."""

    key: str
    item_count: int
    md5_checksum: str
    etag: str | None = None

    @property
    def stem(self) -> str:
        """The file's name without folders or ``.json.gz``: unique within an export
        (:func:`read_manifest` refuses a manifest where it is not)."""
        name = self.key.rsplit("/", 1)[-1]
        for suffix in (".json.gz", ".ion.gz", ".gz"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return name


@dataclass(frozen=True)
class ExportManifest:
    """A verified export: where it is, what it is, and its data files."""

    uri: str
    bucket_root: Location
    summary: ExportSummary
    data_files: tuple[DataFile, ...]

    def data_file_location(self, data_file: DataFile) -> Location:
        return self.bucket_root.child(data_file.key)

    def data_file(self, key: str) -> DataFile:
        for candidate in self.data_files:
            if candidate.key == key:
                return candidate
        raise ExportFormatError(f"{key} is not a data file of export {self.summary.export_id}")


@dataclass(frozen=True)
class BadLine:
    """A line that could not become a row, with where it was and why."""

    location: str
    line_number: int
    text: bytes
    reason: str


def _md5_b64(payload: bytes) -> str:
    return base64.b64encode(hashlib.md5(payload, usedforsecurity=False).digest()).decode()


def _read_checked_json(location: Location, check_md5: bool = True) -> bytes:
    payload = location.read_bytes()
    if not check_md5:
        return payload
    md5_location = location.sibling(location.name.rsplit(".", 1)[0] + ".md5")
    try:
        expected = md5_location.read_bytes().decode("ascii", "replace").strip()
    except StorageError:
        # Older exports and the docs name it .checksum; tolerate either, or none.
        log.warning("%s has no .md5 beside it; its content is not checked", location.uri)
        return payload
    actual = _md5_b64(payload)
    if expected != actual and expected != hashlib.md5(payload, usedforsecurity=False).hexdigest():
        raise ExportIntegrityError(
            location.uri, f"MD5 mismatch: .md5 file says {expected}, content has {actual}"
        )
    return payload


def _bucket_root(summary_location: Location, summary_key: str) -> Location:
    if summary_location.is_s3:
        bucket = summary_location.path.split("/", 1)[0]
        return Location(summary_location.store, bucket, f"s3://{bucket}")
    if not summary_location.path.endswith("/" + summary_key):
        raise ExportFormatError(
            f"{summary_location.uri} is not at its S3 key {summary_key!r} below a directory "
            "that mirrors the bucket; copy the export with its folders intact "
            "(aws s3 sync s3://<bucket>/<prefix> <dir>/<prefix>)"
        )
    root = summary_location.path[: -len(summary_key) - 1]
    return Location(summary_location.store, root, root)


def _parse_summary(raw: dict[str, Any], uri: str) -> ExportSummary:
    try:
        export_type = raw.get("exportType") or (
            INCREMENTAL_EXPORT if "exportFromTime" in raw else FULL_EXPORT
        )
        summary = ExportSummary(
            export_arn=str(raw["exportArn"]),
            export_type=str(export_type),
            output_format=str(raw.get("outputFormat") or "DYNAMODB_JSON"),
            item_count=int(raw.get("itemCount") or 0),
            manifest_files_key=str(raw["manifestFilesS3Key"]),
            output_view=str(raw.get("outputView") or "NEW_AND_OLD_IMAGES"),
            export_time=parse_aws_time(raw["exportTime"]) if raw.get("exportTime") else None,
            export_from_time=(
                parse_aws_time(raw["exportFromTime"]) if raw.get("exportFromTime") else None
            ),
            export_to_time=parse_aws_time(raw["exportToTime"]) if raw.get("exportToTime") else None,
            table_arn=raw.get("tableArn"),
            s3_bucket=raw.get("s3Bucket"),
        )
    except (KeyError, TypeError, ValueError, DynamoLakeError) as exc:
        raise ExportFormatError(f"{uri}: not a manifest-summary.json ({exc!r})") from None
    if summary.output_format != "DYNAMODB_JSON":
        raise ExportFormatError(
            f"{uri}: export format {summary.output_format} is not supported; "
            "export with ExportFormat=DYNAMODB_JSON"
        )
    if summary.export_type not in (FULL_EXPORT, INCREMENTAL_EXPORT):
        raise ExportFormatError(f"{uri}: unknown exportType {summary.export_type!r}")
    if summary.export_type == FULL_EXPORT and summary.export_time is None:
        raise ExportFormatError(f"{uri}: a full export's summary needs exportTime")
    if "/export/" not in summary.export_arn or not EXPORT_ID.match(summary.export_id):
        # The id names the lake files and folders of the export: never trust its shape.
        raise ExportFormatError(
            f"{uri}: exportArn {summary.export_arn!r} does not end in /export/<ExportId> "
            "shaped like 01700000000000-a1b2c3d4; is this a DynamoDB export's summary?"
        )
    if summary.item_count < 0:
        raise ExportFormatError(f"{uri}: itemCount {summary.item_count} is negative")
    window = summary.window
    if summary.is_incremental and window is not None and not window[0] < window[1]:
        raise ExportFormatError(
            f"{uri}: exportFromTime is not before exportToTime; the summary is damaged"
        )
    folder = summary.manifest_files_key.rsplit("/", 2)
    if (
        len(folder) != 3
        or folder[2] != "manifest-files.json"
        or folder[1] != summary.export_id
        or _has_dot_segments(summary.manifest_files_key)
    ):
        raise ExportFormatError(
            f"{uri}: manifestFilesS3Key {summary.manifest_files_key!r} is not "
            f"<prefix>/AWSDynamoDB/{summary.export_id}/manifest-files.json"
        )
    return summary


def _has_dot_segments(key: str) -> bool:
    return key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/"))


def _data_file(entry: object) -> DataFile:
    if not isinstance(entry, dict):
        raise TypeError(f"a line must be an object, got {type(entry).__name__}")
    key, count, md5 = entry["dataFileS3Key"], entry["itemCount"], entry["md5Checksum"]
    if not isinstance(key, str) or not key:
        raise ValueError("dataFileS3Key must be a non-empty string")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError("itemCount must be a whole number >= 0")
    if not isinstance(md5, str):
        raise ValueError("md5Checksum must be a string")
    etag = entry.get("etag")
    return DataFile(key=key, item_count=count, md5_checksum=md5, etag=str(etag) if etag else None)


def _check_data_files(
    data_files: list[DataFile], summary: ExportSummary, where: str
) -> tuple[DataFile, ...]:
    """Refuse keys outside the export's AWSDynamoDB folder, repeated keys or file names.

    Output files are named after the data file's name, so two listed files sharing a name
    (or one listed twice) would overwrite each other's rows in the lake.
    """
    folder = summary.manifest_files_key.rsplit("/", 2)[0] + "/"
    by_stem: dict[str, str] = {}
    for data_file in data_files:
        name = data_file.key.rsplit("/", 1)[-1]
        if (
            not data_file.key.startswith(folder)
            or _has_dot_segments(data_file.key)
            or not _DATA_FILE_NAME.match(name)
            or ".." in name
        ):
            raise ExportIntegrityError(
                where,
                f"dataFileS3Key {data_file.key!r} is not a data file below {folder} "
                "(<name>.json.gz); the manifest is damaged or not this export's",
            )
        if data_file.stem in by_stem:
            what = (
                "is listed twice"
                if by_stem[data_file.stem] == data_file.key
                else (f"has the same file name as {by_stem[data_file.stem]}")
            )
            raise ExportIntegrityError(
                where,
                f"data file {data_file.key} {what}; its rows would be counted twice or "
                "overwrite each other. The manifest is damaged: export again",
            )
        by_stem[data_file.stem] = data_file.key
    return tuple(data_files)


def read_manifest(source: str, s3: S3Options | None = None) -> ExportManifest:
    """Read and verify manifest-summary.json and manifest-files.json of one export."""
    summary_location = resolve(source, s3)
    if not summary_location.path.endswith("manifest-summary.json"):
        raise ExportFormatError(
            f"{source}: give the export's manifest-summary.json (from DescribeExport's "
            "ExportManifest), not a folder"
        )
    try:
        raw = orjson.loads(_read_checked_json(summary_location))
    except orjson.JSONDecodeError as exc:
        raise ExportFormatError(f"{summary_location.uri}: not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ExportFormatError(f"{summary_location.uri}: not a manifest-summary.json object")
    summary = _parse_summary(raw, summary_location.uri)
    summary_key = summary.manifest_files_key.rsplit("/", 1)[0] + "/manifest-summary.json"
    root = _bucket_root(summary_location, summary_key)
    files_location = root.child(summary.manifest_files_key)
    data_files = []
    for number, line in enumerate(_read_checked_json(files_location).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data_files.append(_data_file(orjson.loads(line)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ExportIntegrityError(
                f"{files_location.uri}:{number}", f"not a manifest-files.json line ({exc})"
            ) from None
    checked = _check_data_files(data_files, summary, files_location.uri)
    listed = sum(data_file.item_count for data_file in checked)
    if listed != summary.item_count:
        raise ExportIntegrityError(
            files_location.uri,
            f"data files list {listed} items but manifest-summary.json says {summary.item_count}",
        )
    return ExportManifest(summary_location.uri, root, summary, checked)


def _gzip_chunks(location: Location, expected_md5: str) -> Iterator[bytes]:
    """Decompressed chunks of one gzip object, checking its MD5 and completeness.

    Each chunk is at most 1 MiB however well the input compresses (a gzip bomb inflates
    in bounded pieces, never all at once).
    """
    digest = hashlib.md5(usedforsecurity=False)
    decompressor = zlib.decompressobj(wbits=31)
    member_open = False  # bytes fed to a gzip member whose end we have not seen yet
    try:
        stream = location.filesystem.open_input_stream(location.path, compression=None)
    except FileNotFoundError:
        raise ExportIntegrityError(
            location.uri, "listed in manifest-files.json but missing"
        ) from None
    except OSError as exc:
        raise StorageError(f"cannot read {location.uri}: {exc}") from None
    with stream:
        while compressed := _read(stream, location):
            digest.update(compressed)
            try:
                while True:
                    member_open = True
                    out = decompressor.decompress(compressed, _CHUNK)
                    if out:
                        yield out
                    if decompressor.eof:  # concatenated gzip members are legal
                        member_open = False
                        compressed = decompressor.unused_data
                        decompressor = zlib.decompressobj(wbits=31)
                        if not compressed:
                            break
                        continue
                    compressed = decompressor.unconsumed_tail
                    if not compressed and len(out) < _CHUNK:
                        break  # input used up and no output held back
            except zlib.error as exc:
                raise ExportIntegrityError(location.uri, f"corrupt gzip data ({exc})") from None
    if member_open:
        raise ExportIntegrityError(location.uri, "truncated gzip data (the stream has no end)")
    actual = base64.b64encode(digest.digest()).decode()
    if actual != expected_md5:
        raise ExportIntegrityError(
            location.uri,
            f"MD5 mismatch: manifest-files.json says {expected_md5}, object has {actual}",
        )


def _read(stream: Any, location: Location) -> bytes:
    try:
        return bytes(stream.read(_CHUNK))
    except OSError as exc:
        raise StorageError(f"cannot read {location.uri}: {' '.join(str(exc).split())}") from None


def _lines(chunks: Iterator[bytes], where: str) -> Iterator[list[bytes]]:
    """Batches of complete lines (without newlines) from a stream of byte chunks.

    A line longer than :data:`MAX_LINE_BYTES` raises instead of growing without bound.
    """
    pending = b""
    lines = 0
    for chunk in chunks:
        if not chunk:
            continue
        parts = (pending + chunk).split(b"\n")
        pending = parts.pop()
        lines += len(parts)
        if len(pending) > MAX_LINE_BYTES:
            raise ExportIntegrityError(
                f"{where}:{lines + 1}",
                f"line longer than {MAX_LINE_BYTES >> 20} MiB: not a DynamoDB item "
                "(items are at most 400 KB); the file is corrupt",
            )
        if parts:
            yield parts
    if pending:
        yield [pending]


RowBuilder = Callable[..., CdcRow]


def _row_builder(summary: ExportSummary) -> RowBuilder:
    if summary.is_incremental:
        view, window = summary.output_view, summary.window
        return lambda line, consume=False: row_from_incremental_export_line(
            line, view, window=window, consume=consume
        )
    export_time = summary.export_time
    assert export_time is not None
    return lambda line, consume=False: row_from_full_export_line(line, export_time, consume=consume)


RowBatch = Sequence[CdcRow]


class CompiledLines:
    """The compiled codec's loop over batches of raw lines (``_fastcodec.RowColumns``).

    Its batches hold rows as Arrow-layout columns (a sequence of :class:`CdcRow` on
    access); :meth:`take` adds rows until a line it declines and returns that line's index.
    """

    def __init__(self, compiled: Any, summary: ExportSummary, start: int, end: int) -> None:
        self._columns = compiled.RowColumns
        self._loads = orjson.loads
        self._export_time = None if summary.is_incremental else summary.export_time
        self._new_and_old = summary.output_view == "NEW_AND_OLD_IMAGES"
        self._start, self._end = start, end

    def batch(self) -> Any:
        """An empty ``RowColumns``: a :data:`RowBatch` with ``append``."""
        return self._columns(CdcRow)

    def take(self, lines: list[bytes], index: int, batch: Any) -> int:
        taken: int = batch.take_export_lines(
            lines,
            index,
            self._loads,
            self._export_time,
            self._new_and_old,
            self._start,
            self._end,
        )
        return taken


def _compiled_lines(summary: ExportSummary) -> CompiledLines | None:
    """The compiled codec's loop for this export, if that codec is in use and can take it."""
    compiled = compiled_codec()
    if compiled is None:
        return None
    start = end = 0
    if summary.is_incremental:
        start, end = summary.window or (TIME_RANGE_START_MICROS, TIME_RANGE_END_MICROS)
    elif summary.export_time is None:
        return None
    bounds = (start, end) if summary.is_incremental else (summary.export_time or 0,)
    if not all(-(2**63) <= bound < 2**63 for bound in bounds):
        return None  # beyond the compiled loop's integers: the pure way checks it
    return CompiledLines(compiled, summary, start, end)


def _reason(build: RowBuilder, line: bytes, error: Exception) -> str:
    """Why a line failed, with the attribute path: decoding in place lost it, so again."""
    if isinstance(error, orjson.JSONDecodeError):
        return f"malformed JSON ({error})"
    try:
        build(orjson.loads(line))
    except (DynamoLakeError, TypeError, AttributeError) as precise:
        return str(precise) or type(precise).__name__
    return str(error) or type(error).__name__  # pragma: no cover - the same input fails


def read_rows(
    manifest: ExportManifest,
    data_file: DataFile,
    on_bad_line: Callable[[BadLine], None] | None = None,
) -> Iterator[RowBatch]:
    """Rows of one data file, in batches, verified against the manifest when exhausted.

    A batch is a list of rows, or with the compiled codec its ``RowColumns`` (the same rows,
    kept in Arrow's layout for :class:`~dynamo_lake.lake.writer.StagedWriter`).

    A line that cannot become a row raises :class:`ExportIntegrityError` naming the file and
    line, unless ``on_bad_line`` is given: then it is handed over and counted. When the file
    ends, its MD5 and item count are checked; a mismatch raises even though batches were
    already yielded, so callers stage rows and publish only after the generator finishes.
    """
    location = manifest.data_file_location(data_file)
    build = _row_builder(manifest.summary)
    compiled = _compiled_lines(manifest.summary)
    rows_seen = 0
    bad_seen = 0
    line_number = 0
    loads = orjson.loads
    for lines in _lines(_gzip_chunks(location, data_file.md5_checksum), location.uri):
        batch: Any = [] if compiled is None else compiled.batch()
        append = batch.append
        index, count = 0, len(lines)
        while index < count:
            if compiled is not None:
                # Rows up to the first line the compiled codec declines: that one (blank,
                # malformed, unusual or invalid) goes the pure way below, then it resumes.
                index = compiled.take(lines, index, batch)
                if index == count:
                    break
            line = lines[index]
            index += 1
            if not line.strip():
                continue
            try:
                append(build(loads(line), consume=True))
            except (orjson.JSONDecodeError, DynamoLakeError, TypeError, AttributeError) as exc:
                reason = _reason(build, line, exc)
                where = line_number + index
                if on_bad_line is None:
                    raise ExportIntegrityError(f"{location.uri}:{where}", reason) from None
                on_bad_line(BadLine(location.uri, where, line, reason))
                bad_seen += 1
        line_number += count
        rows_seen += len(batch)
        if batch:
            yield batch
    if rows_seen + bad_seen != data_file.item_count:
        raise ExportIntegrityError(
            location.uri,
            f"item count mismatch: manifest-files.json says {data_file.item_count}, "
            f"file has {rows_seen + bad_seen} lines",
        )


def first_item(manifest: ExportManifest) -> dict[str, Any] | None:
    """The first item of the export as DynamoDB JSON (a full export's ``Item``, an
    incremental export's ``Keys``), or None when the export holds none: where the key
    attributes' types can be read without DynamoDB. Reads the first line only (no
    checksum: the conversion checks the whole file)."""
    for data_file in manifest.data_files:
        location = manifest.data_file_location(data_file)
        for lines in _lines(_gzip_chunks(location, data_file.md5_checksum), location.uri):
            for line in lines:
                if not line.strip():
                    continue
                try:
                    parsed = orjson.loads(line)
                except orjson.JSONDecodeError:
                    return None
                image = (
                    parsed.get("Keys") or parsed.get("Item") if isinstance(parsed, dict) else None
                )
                return image if isinstance(image, dict) else None
    return None
