"""The one lake writer: CDC rows into hive-partitioned Parquet, staged, then published.

Layout of a lake table (``<lake>/<prefix>/<database>/<table>/``)::

    year=YYYY/month=MM/day=DD/<group>-<source>-<part>.parquet    what readers count
    _staging/<group>/<attempt>/<source>/year=.../<name>.parquet   work in progress
    _published/<group>.json                                       what a group published
    _published/<group>.lock                                       held while it publishes
    _errors/<group>/<source>.jsonl                                lines that were diverted

``group`` is the unit that is published at once (an export id; a stream batch),
``source`` the unit that is written at once (one export data file) and ``attempt`` the
writer (a run; a CLI invocation), so concurrent writers of one group never touch each
other's staging. Final names depend only on group, source and part number, so a re-run
writes the same names and replaces, never adds. Readers (Athena, Hive, Spark, our DuckDB
queries) skip ``_``-prefixed folders, so a write that failed or was killed leaves nothing
they count. :func:`publish` copies a stage's verified files to their final names (a
server-side copy per object on S3, where each object appears whole; a hard link and a
rename locally) under a lease, after writing the group's record, and undoes itself if a
copy fails; it removes files a previous publish of the group made that the new one did not.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from dynamo_lake.cdc import CdcRow
from dynamo_lake.contract import (
    COLUMNS,
    COMPRESSIONS,
    ERRORS,
    MICROS_PER_DAY,
    PUBLISHED,
    STAGING,
    Compression,
    partition_of,
)
from dynamo_lake.errors import DynamoLakeError, LakeWriteError, PublishFailedError, StorageError
from dynamo_lake.records import StagedFile
from dynamo_lake.storage import Lease, Location, acquire_lease

__all__ = [
    "CDC_SCHEMA",
    "Compression",
    "LakeTable",
    "PublishedFile",
    "PublishedGroup",
    "Stage",
    "StagedFile",
    "StagedWriter",
    "WriterSettings",
    "check_name",
    "publish",
    "published_groups",
    "read_published",
    "unpublish",
]

log = logging.getLogger(__name__)


_ARROW_TYPES = {"string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC")}
#: The contract's columns as Parquet stores them: never null, time stamps in µs, UTC.
CDC_SCHEMA = pa.schema(
    [pa.field(column.name, _ARROW_TYPES[column.kind], nullable=False) for column in COLUMNS]
)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


@dataclass(frozen=True)
class WriterSettings:
    """Parquet knobs. Defaults keep a row group near 30 MB and a file near 1M rows."""

    compression: Compression = "zstd"
    row_group_rows: int = 65_536
    max_rows_per_file: int = 1_000_000

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise LakeWriteError(
                f"compression {self.compression!r} is not one of {', '.join(COMPRESSIONS)}"
            )
        if self.row_group_rows < 1 or self.max_rows_per_file < self.row_group_rows:
            raise LakeWriteError("need 1 <= row_group_rows <= max_rows_per_file")


def check_name(kind: str, name: str) -> str:
    """Refuse a group, attempt or source name that could leave its folder or clash."""
    if not _SAFE_NAME.match(name) or ".." in name:
        raise LakeWriteError(
            f"{kind} name {name!r} is not allowed: use 1-200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'"
        )
    return name


@dataclass(frozen=True)
class Stage:
    """Who writes what: ``group`` is published at once (an export id, a stream batch);
    ``attempt`` isolates concurrent writers of one group (a run, a CLI invocation), so one
    never removes or publishes another's half-written files."""

    group: str
    attempt: str

    def __post_init__(self) -> None:
        check_name("group", self.group)
        check_name("attempt", self.attempt)


class LakeTable:
    """One lake table's root location and the paths inside it."""

    def __init__(self, location: Location) -> None:
        self.location = location

    @property
    def uri(self) -> str:
        return self.location.uri

    def staging(self, stage: Stage, source: str | None = None) -> Location:
        return self.location.child(STAGING, stage.group, stage.attempt, source or "")

    def errors(self, group: str, source: str) -> Location:
        return self.location.child(ERRORS, check_name("group", group), f"{source}.jsonl")

    def published_record(self, group: str) -> Location:
        return self.location.child(PUBLISHED, f"{check_name('group', group)}.json")

    def publish_lease(self, group: str) -> Location:
        return self.location.child(PUBLISHED, f"{check_name('group', group)}.lock")

    def publish_undo(self, group: str) -> Location:
        """Where a publish keeps the files it replaces until it has finished."""
        return self.location.child(PUBLISHED, f"{check_name('group', group)}.undo")

    def clear_staging(self, stage: Stage, source: str | None = None) -> None:
        self.staging(stage, source).delete_tree()

    def clear_group_staging(self, group: str) -> None:
        """Remove every attempt's staging of a published group: what killed writers left,
        and what a concurrent writer of the same files would publish (its publish then
        finds the group already published)."""
        self.location.child(STAGING, check_name("group", group)).delete_tree()


def _digest_uuids(digest: Any, uuids: pa.ChunkedArray) -> None:
    """Feed ``uuid\n`` of every row to ``digest``, straight from the Arrow buffers."""
    for chunk in uuids.chunks:
        if not len(chunk):
            continue
        lines = pc.binary_join_element_wise(chunk, "", "\n")  # uuid + "\n" + ""
        offsets = pa.Array.from_buffers(
            pa.int32(), len(lines) + 1, [None, lines.buffers()[1]], offset=lines.offset
        )
        first, last = offsets[0].as_py(), offsets[-1].as_py()
        digest.update(memoryview(lines.buffers()[2])[first:last])


class _PartitionFile:
    """An open Parquet file for one partition of one source, rolled at a row limit."""

    def __init__(self, writer: StagedWriter, partition: str) -> None:
        self._owner = writer
        self.partition = partition
        self.part = 0
        self.rows_in_file = 0
        self._writer: pq.ParquetWriter | None = None
        self._stream: pa.NativeFile | None = None
        self._location: Location | None = None
        # Rows wait for their row group as Arrow record batches: compact buffers rather
        # than Python objects, and nothing the garbage collector has to walk.
        self.batches: list[pa.RecordBatch] = []
        self.pending = 0
        self._digest = hashlib.sha256()

    def add(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)
        self.pending += batch.num_rows

    def _name(self) -> str:
        return f"{self._owner.stage.group}-{self._owner.source}-{self.part:05d}.parquet"

    def _open(self) -> pq.ParquetWriter:
        owner = self._owner
        location = owner.table.staging(owner.stage, owner.source).child(
            self.partition, self._name()
        )
        self._location = location
        filesystem = location.filesystem
        if isinstance(filesystem, pafs.LocalFileSystem):
            filesystem.create_dir(location.path.rsplit("/", 1)[0], recursive=True)
        self._stream = filesystem.open_output_stream(location.path, compression=None)
        self._writer = pq.ParquetWriter(
            self._stream,
            CDC_SCHEMA,
            compression=owner.settings.compression,
            use_dictionary=["op"],
            write_statistics=["op", "time_stamp"],
        )
        return self._writer

    def where(self) -> str:
        return self._location.uri if self._location else f"{self.partition}/{self._name()}"

    def flush(self, final: bool = False) -> None:
        """Write full row groups; with ``final``, the remainder too."""
        settings = self._owner.settings
        while self.pending and (final or self.pending >= settings.row_group_rows):
            room = settings.max_rows_per_file - self.rows_in_file
            take = min(room, settings.row_group_rows, self.pending)
            pending = pa.Table.from_batches(self.batches, schema=CDC_SCHEMA)
            rest = pending.slice(take)
            self.batches = rest.to_batches() if rest.num_rows else []
            self.pending = rest.num_rows
            writer = self._writer or self._open()
            rows = pending.slice(0, take)
            writer.write_table(rows, row_group_size=settings.row_group_rows)
            _digest_uuids(self._digest, rows.column("uuid"))
            self.rows_in_file += take
            if self.rows_in_file >= settings.max_rows_per_file:
                self.close()

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        assert self._stream is not None
        self._stream.close()
        self._owner.staged.append(
            StagedFile(
                self.partition,
                self._name(),
                self.rows_in_file,
                self._owner.source,
                self._digest.hexdigest(),
            )
        )
        self._writer = None
        self._stream = None
        self.part += 1
        self.rows_in_file = 0
        self._digest = hashlib.sha256()


def _columns_batch(columns: Any) -> pa.RecordBatch:
    """A record batch over the compiled codec's ``RowColumns`` buffers (no copy, no
    Python object per row). The codec wrote valid UTF-8 and monotonic offsets."""
    uuid_offsets, uuids, op_offsets, ops, stamps, data_offsets, datas = (
        pa.py_buffer(buffer) for buffer in columns.arrow_buffers()
    )
    count = len(columns)
    return pa.RecordBatch.from_arrays(
        [
            pa.Array.from_buffers(pa.string(), count, [None, uuid_offsets, uuids]),
            pa.Array.from_buffers(pa.string(), count, [None, op_offsets, ops]),
            pa.Array.from_buffers(_ARROW_TYPES["timestamp"], count, [None, stamps]),
            pa.Array.from_buffers(pa.string(), count, [None, data_offsets, datas]),
        ],
        schema=CDC_SCHEMA,
    )


class StagedWriter:
    """Writes the rows of one source into staging, one file series per partition.

    Use as a context manager; :meth:`close` returns the staged files. On an exception the
    source's staging folder is removed, so a failed write leaves nothing behind. Storage
    errors (a full disk, S3 refusing a part after its retries) become
    :class:`LakeWriteError` naming the file.
    """

    def __init__(
        self, table: LakeTable, stage: Stage, source: str, settings: WriterSettings | None = None
    ) -> None:
        self.table = table
        self.stage = stage
        self.source = check_name("source", source)
        self.settings = settings or WriterSettings()
        self.staged: list[StagedFile] = []
        self.rows = 0
        self._partitions: dict[str, _PartitionFile] = {}
        table.clear_staging(stage, source)  # a retried write starts from nothing

    def __enter__(self) -> StagedWriter:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if error is None:
            self.close()
        else:
            self.abort()

    def write(self, rows: Sequence[CdcRow]) -> None:
        """Add rows: a sequence of :class:`CdcRow`, or the compiled codec's ``RowColumns``
        (rows already in Arrow's layout, with ``arrow_buffers``)."""
        if not rows:
            return
        if hasattr(rows, "arrow_buffers"):
            columns: Any = rows
            batch = _columns_batch(columns)
            first_stamp, last_stamp = columns.min_stamp, columns.max_stamp
        else:
            uuids, ops, stamps, datas = zip(*rows, strict=True)
            batch = pa.RecordBatch.from_arrays(
                [
                    pa.array(uuids, pa.string()),
                    pa.array(ops, pa.string()),
                    pa.array(stamps, _ARROW_TYPES["timestamp"]),
                    pa.array(datas, pa.string()),
                ],
                schema=CDC_SCHEMA,
            )
            first_stamp, last_stamp = min(stamps), max(stamps)
        first_day, last_day = first_stamp // MICROS_PER_DAY, last_stamp // MICROS_PER_DAY
        if first_day == last_day:  # a full export, or most of a stream batch: one partition
            self._add(partition_of(first_stamp), batch)
        else:
            stamps = batch.column("time_stamp").cast(pa.int64()).to_pylist()
            day_of_row = [stamp // MICROS_PER_DAY for stamp in stamps]
            days = pa.array(day_of_row, pa.int64())
            for day in sorted(set(day_of_row)):
                self._add(partition_of(day * MICROS_PER_DAY), batch.filter(pc.equal(days, day)))
        self.rows += len(rows)

    def _add(self, partition: str, batch: pa.RecordBatch) -> None:
        target = self._partitions.get(partition)
        if target is None:
            target = self._partitions[partition] = _PartitionFile(self, partition)
        target.add(batch)
        if target.pending >= self.settings.row_group_rows:
            try:
                target.flush()
            except OSError as exc:
                raise LakeWriteError(f"cannot write {target.where()}: {_one_line(exc)}") from None

    def close(self) -> list[StagedFile]:
        for target in self._partitions.values():
            try:
                target.flush(final=True)
                target.close()
            except OSError as exc:
                raise LakeWriteError(f"cannot write {target.where()}: {_one_line(exc)}") from None
        self._partitions.clear()
        return self.staged

    def abort(self) -> None:
        for target in self._partitions.values():
            try:
                target.close()
            except Exception:  # cleaning up after the real error; keep that one
                log.warning("could not close a partial file of %s", self.source)
        self._partitions.clear()
        try:
            self.table.clear_staging(self.stage, self.source)
        except StorageError as exc:  # the real error matters more; staging is invisible
            log.warning("could not remove the staging of %s: %s", self.source, exc)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --- publishing ------------------------------------------------------------------------

PublishState = Literal["publishing", "published"]


@dataclass(frozen=True)
class PublishedFile:
    path: str  # below the table: year=YYYY/month=MM/day=DD/<name>.parquet
    rows: int
    digest: str = ""  # of its uuids, as StagedFile.digest


@dataclass(frozen=True)
class PublishedGroup:
    """``_published/<group>.json``: what a group made visible, and what it is about.

    ``state`` is ``publishing`` from before the first file is copied until the last
    earlier file is removed; then ``published``. A ``publishing`` record left by a killed
    process lists in ``previous`` what may still be visible, so the next publish of the
    group removes what it does not make again. ``about`` is the caller's description of
    the group (for an export: its ARN, type and times; the run that published it).
    """

    group: str
    state: PublishState
    files: tuple[PublishedFile, ...]
    about: dict[str, Any] = field(default_factory=dict)
    previous: tuple[str, ...] = ()
    attempt: str = ""

    @property
    def rows(self) -> int:
        return sum(item.rows for item in self.files)

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(item.path for item in self.files)

    def possibly_visible(self) -> frozenset[str]:
        """Files readers may see because of this group (all, if it was cut short)."""
        if self.state == "published":
            return self.paths
        return self.paths | frozenset(self.previous)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "group": self.group,
                "state": self.state,
                "attempt": self.attempt,
                "rows": self.rows,
                "files": [
                    {"path": item.path, "rows": item.rows, "digest": item.digest}
                    for item in self.files
                ],
                "previous": list(self.previous),
                "about": self.about,
            },
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def from_json(cls, payload: bytes, where: str) -> PublishedGroup:
        try:
            raw = orjson.loads(payload)
            return cls(
                group=str(raw["group"]),
                state="publishing" if raw.get("state") == "publishing" else "published",
                files=tuple(
                    PublishedFile(str(item["path"]), int(item["rows"]), str(item.get("digest", "")))
                    for item in raw["files"]
                ),
                about=dict(raw.get("about") or {}),
                previous=tuple(str(path) for path in raw.get("previous") or ()),
                attempt=str(raw.get("attempt") or ""),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise LakeWriteError(
                f"{where} is not a publish record ({exc!r}); restore it from the bucket's "
                "versions or delete it and publish the group again"
            ) from None


def read_published(table: LakeTable, group: str) -> PublishedGroup | None:
    """The group's publish record, or ``None`` if it was never published."""
    record = table.published_record(group)
    if not record.exists():
        return None
    return PublishedGroup.from_json(record.read_bytes(), record.uri)


def published_groups(table: LakeTable) -> list[str]:
    """Names of the groups that have a publish record in the table."""
    folder = table.location.child(PUBLISHED)
    return [
        item.name[: -len(".json")] for item in folder.list_files() if item.name.endswith(".json")
    ]


def _check_unique(files: Sequence[StagedFile]) -> None:
    seen: dict[str, str] = {}
    for item in files:
        if item.final_path in seen:
            raise LakeWriteError(
                f"two staged files would be published as {item.final_path} (sources "
                f"{seen[item.final_path]!r} and {item.source!r}); their rows would overwrite "
                "each other. Give every source a distinct name"
            )
        seen[item.final_path] = item.source


def _staged_rows(location: Location) -> int | None:
    try:
        return int(pq.read_metadata(location.path, filesystem=location.filesystem).num_rows)
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowInvalid) as exc:
        raise LakeWriteError(f"cannot read staged file {location.uri}: {_one_line(exc)}") from None


def publish(
    table: LakeTable,
    stage: Stage,
    staged: Iterable[StagedFile],
    *,
    about: dict[str, Any] | None = None,
) -> list[str]:
    """Make a stage's files visible under their final names, as one group; return the paths.

    Nothing becomes visible unless every staged file is in place with the rows it claims,
    and the group's record (state ``publishing``) was written first. A failure while
    copying removes what this call made visible and restores the earlier record, so readers
    keep the group's earlier files (or none). One publish of a group runs at a time (a
    lease); another raises :class:`~dynamo_lake.storage.LeaseHeldError` before touching
    anything. Files an earlier publish of the group made and this one does not are removed.
    Idempotent: when the staged files are gone because this stage was already published,
    it returns the published paths.
    """
    files = sorted(staged, key=lambda item: item.final_path)
    _check_unique(files)
    lease = acquire_lease(table.publish_lease(stage.group), owner=stage.attempt)
    try:
        return _publish_held(table, stage, files, about or {}, lease)
    finally:
        try:
            lease.release()
        except (StorageError, OSError) as exc:  # it expires on its own
            log.warning("could not release %s: %s", lease.location.uri, exc)


def _publish_held(
    table: LakeTable,
    stage: Stage,
    files: list[StagedFile],
    about: dict[str, Any],
    lease: Lease,
) -> list[str]:
    group = stage.group
    record = table.published_record(group)
    earlier = read_published(table, group)
    visible_before = earlier.possibly_visible() if earlier else frozenset()
    final_paths = [item.final_path for item in files]
    sources = [table.staging(stage, item.source).child(item.final_path) for item in files]
    found = [_staged_rows(source) for source in sources]
    if (
        None in found
        and earlier is not None
        and earlier.state == "published"
        and earlier.paths == frozenset(final_paths)
    ):
        table.clear_group_staging(group)  # an earlier call published exactly these files
        return final_paths
    for item, source, rows in zip(files, sources, found, strict=True):
        if rows is None:
            raise LakeWriteError(
                f"cannot publish {item.final_path}: its staged file {source.uri} is missing "
                "(removed by another run, or never written); nothing was published. Convert "
                "the export again"
            )
        if rows != item.rows:
            raise LakeWriteError(
                f"staged file {source.uri} holds {rows} rows, not the {item.rows} recorded "
                "for it; nothing was published. Convert the export again"
            )
    published = [PublishedFile(item.final_path, item.rows, item.digest) for item in files]
    record.write_bytes(
        PublishedGroup(
            group,
            "publishing",
            tuple(published),
            about,
            tuple(sorted(visible_before)),
            stage.attempt,
        ).to_json()
    )
    same_rows = (
        {item.path: item.digest for item in earlier.files if item.digest}
        if earlier is not None and earlier.state == "published"
        else {}
    )
    undo = table.publish_undo(group)
    made: list[Location] = []
    replaced: list[str] = []
    try:
        for item, source in zip(files, sources, strict=True):
            lease.keep()
            target = table.location.child(item.final_path)
            if item.final_path not in visible_before:
                made.append(target)
            elif same_rows.get(item.final_path) != item.digest and target.exists():
                # Other rows under the same name (other file sizes): keep the old file
                # until the publish is through, so a failure can put it back.
                target.copy_to(undo.child(item.final_path))
                replaced.append(item.final_path)
            source.copy_to(target)
    except BaseException as exc:
        _roll_back(table, group, made, replaced, earlier)
        if isinstance(exc, DynamoLakeError):
            raise PublishFailedError(
                f"publishing {group} into {table.uri} failed and was undone (readers see what "
                f"they saw before): {exc}"
            ) from None
        raise
    for stale in sorted(visible_before - frozenset(final_paths)):
        table.location.child(stale).delete()
        log.info("removed %s, published earlier for %s but not now", stale, group)
    record.write_bytes(
        PublishedGroup(group, "published", tuple(published), about, (), stage.attempt).to_json()
    )
    undo.delete_tree()
    table.clear_group_staging(group)
    return final_paths


def _roll_back(
    table: LakeTable,
    group: str,
    made: list[Location],
    replaced: list[str],
    earlier: PublishedGroup | None,
) -> None:
    """Undo a publish cut short: put replaced files back, remove what it added, restore the
    old record."""
    undo = table.publish_undo(group)
    try:
        for path in replaced:
            undo.child(path).copy_to(table.location.child(path))
        for location in made:
            if location.is_file():
                location.delete()
        record = table.published_record(group)
        if earlier is None:
            record.delete()
        else:
            record.write_bytes(earlier.to_json())
        undo.delete_tree()
    except (StorageError, OSError) as exc:
        log.error(
            "could not undo the publish of %s (%s); its record stays 'publishing' and the "
            "replaced files stay in %s; the next publish of the group finishes or replaces it",
            group,
            exc,
            undo.uri,
        )


def unpublish(table: LakeTable, group: str, owner: str) -> int:
    """Remove a group from the lake: its files, then its record. Returns files removed."""
    lease = acquire_lease(table.publish_lease(group), owner=owner)
    try:
        earlier = read_published(table, group)
        if earlier is None:
            return 0
        visible = sorted(earlier.possibly_visible())
        for path in visible:
            table.location.child(path).delete()
        table.published_record(group).delete()
        return len(visible)
    finally:
        lease.release()
