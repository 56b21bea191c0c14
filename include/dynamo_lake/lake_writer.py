"""The one lake writer: CDC rows into hive-partitioned Parquet, staged, then published.

Layout of a lake table (``<lake>/<prefix>/<database>/<table>/``)::

    year=YYYY/month=MM/day=DD/<group>-<source>-<part>.parquet    what readers count
    _staging/<group>/<source>/year=.../<name>.parquet             work in progress
    _published/<group>.json                                       what a group published
    _errors/<group>/<source>.jsonl                                lines that were diverted

``group`` is the unit that is published at once (an export id; a stream batch) and
``source`` the unit that is written at once (one export data file). Names depend only on
those two and the part number, so a re-run writes the same names and replaces, never adds.
Readers (Athena, Hive, Spark, our DuckDB queries) skip ``_``-prefixed folders, so a write
that failed or was killed leaves nothing they count. :func:`publish` moves a group's staged
files to their final names (a rename locally; a server-side copy per object on S3, where
each object appears whole) and removes files a previous publish of the group made that the
new one did not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from dynamo_lake.cdc import CdcRow
from dynamo_lake.contract import COMPRESSIONS, MICROS_PER_DAY, Compression, partition_of
from dynamo_lake.errors import LakeWriteError
from dynamo_lake.storage import Location

__all__ = [
    "CDC_SCHEMA",
    "Compression",
    "LakeTable",
    "StagedFile",
    "StagedWriter",
    "WriterSettings",
    "partition_of",
    "publish",
]

log = logging.getLogger(__name__)


CDC_SCHEMA = pa.schema(
    [
        pa.field("uuid", pa.string(), nullable=False),
        pa.field("op", pa.string(), nullable=False),
        pa.field("time_stamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("data", pa.string(), nullable=False),
    ]
)
STAGING = "_staging"
PUBLISHED = "_published"
ERRORS = "_errors"


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


@dataclass(frozen=True)
class StagedFile:
    """A complete Parquet file in staging, and where it goes when published."""

    partition: str
    name: str
    rows: int
    source: str

    @property
    def final_path(self) -> str:
        return f"{self.partition}/{self.name}"


class LakeTable:
    """One lake table's root location and the paths inside it."""

    def __init__(self, location: Location) -> None:
        self.location = location

    @property
    def uri(self) -> str:
        return self.location.uri

    def staging(self, group: str, source: str | None = None) -> Location:
        return self.location.child(STAGING, group, source or "")

    def errors(self, group: str, source: str) -> Location:
        return self.location.child(ERRORS, group, f"{source}.jsonl")

    def published_record(self, group: str) -> Location:
        return self.location.child(PUBLISHED, f"{group}.json")

    def clear_staging(self, group: str, source: str | None = None) -> None:
        staging = self.staging(group, source)
        if staging.exists():
            staging.filesystem.delete_dir(staging.path)


class _PartitionFile:
    """An open Parquet file for one partition of one source, rolled at a row limit."""

    def __init__(self, writer: StagedWriter, partition: str) -> None:
        self._owner = writer
        self.partition = partition
        self.part = 0
        self.rows_in_file = 0
        self._writer: pq.ParquetWriter | None = None
        self._stream: pa.NativeFile | None = None
        # Rows wait for their row group as Arrow record batches: compact buffers rather
        # than Python objects, and nothing the garbage collector has to walk.
        self.batches: list[pa.RecordBatch] = []
        self.pending = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)
        self.pending += batch.num_rows

    def _name(self) -> str:
        return f"{self._owner.group}-{self._owner.source}-{self.part:05d}.parquet"

    def _open(self) -> pq.ParquetWriter:
        location = self._owner.table.staging(self._owner.group, self._owner.source).child(
            self.partition, self._name()
        )
        filesystem = location.filesystem
        if isinstance(filesystem, pafs.LocalFileSystem):
            filesystem.create_dir(location.path.rsplit("/", 1)[0], recursive=True)
        self._stream = filesystem.open_output_stream(location.path, compression=None)
        self._writer = pq.ParquetWriter(
            self._stream,
            CDC_SCHEMA,
            compression=self._owner.settings.compression,
            use_dictionary=["op"],
            write_statistics=["op", "time_stamp"],
        )
        return self._writer

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
            writer.write_table(pending.slice(0, take), row_group_size=settings.row_group_rows)
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
            StagedFile(self.partition, self._name(), self.rows_in_file, self._owner.source)
        )
        self._writer = None
        self._stream = None
        self.part += 1
        self.rows_in_file = 0


class StagedWriter:
    """Writes the rows of one source into staging, one file series per partition.

    Use as a context manager; :meth:`close` returns the staged files. On an exception the
    source's staging folder is removed, so a failed write leaves nothing behind.
    """

    def __init__(
        self, table: LakeTable, group: str, source: str, settings: WriterSettings | None = None
    ) -> None:
        self.table = table
        self.group = group
        self.source = source
        self.settings = settings or WriterSettings()
        self.staged: list[StagedFile] = []
        self.rows = 0
        self._partitions: dict[str, _PartitionFile] = {}
        table.clear_staging(group, source)  # a retried write starts from nothing

    def __enter__(self) -> StagedWriter:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if error is None:
            self.close()
        else:
            self.abort()

    def write(self, rows: Sequence[CdcRow]) -> None:
        if not rows:
            return
        uuids, ops, stamps, datas = zip(*rows, strict=True)
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array(uuids, pa.string()),
                pa.array(ops, pa.string()),
                pa.array(stamps, pa.timestamp("us", tz="UTC")),
                pa.array(datas, pa.string()),
            ],
            schema=CDC_SCHEMA,
        )
        first_day, last_day = min(stamps) // MICROS_PER_DAY, max(stamps) // MICROS_PER_DAY
        if first_day == last_day:  # a full export, or most of a stream batch: one partition
            self._add(partition_of(stamps[0]), batch)
        else:
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
            target.flush()

    def close(self) -> list[StagedFile]:
        for target in self._partitions.values():
            target.flush(final=True)
            target.close()
        self._partitions.clear()
        return self.staged

    def abort(self) -> None:
        for target in self._partitions.values():
            try:
                target.close()
            except Exception:  # cleaning up after the real error; keep that one
                log.warning("could not close a partial file of %s", self.source)
        self._partitions.clear()
        self.table.clear_staging(self.group, self.source)


def publish(table: LakeTable, group: str, staged: Iterable[StagedFile]) -> list[str]:
    """Move a group's staged files to their final names; return the final paths.

    Idempotent: a second call with the same files (already moved) checks they are in place.
    Files that an earlier publish of the same group made and this one does not are removed.
    """
    files = sorted(staged, key=lambda item: item.final_path)
    record = table.published_record(group)
    previous: set[str] = set()
    if record.exists():
        previous = {entry["path"] for entry in orjson.loads(record.read_bytes())["files"]}
    filesystem = table.location.filesystem
    created_dirs: set[str] = set()
    for item in files:
        source = table.staging(group, item.source).child(item.final_path)
        target = table.location.child(item.final_path)
        if source.exists():
            if isinstance(filesystem, pafs.LocalFileSystem):
                parent = target.path.rsplit("/", 1)[0]
                if parent not in created_dirs:
                    filesystem.create_dir(parent, recursive=True)
                    created_dirs.add(parent)
            filesystem.move(source.path, target.path)
        elif not target.exists():
            raise LakeWriteError(
                f"cannot publish {item.final_path}: neither staged nor already published"
            )
    final_paths = [item.final_path for item in files]
    for stale in sorted(previous - set(final_paths)):
        stale_location = table.location.child(stale)
        if stale_location.exists():
            filesystem.delete_file(stale_location.path)
            log.info("removed %s, published earlier for %s but not now", stale, group)
    record.write_bytes(
        orjson.dumps(
            {
                "group": group,
                "files": [{"path": item.final_path, "rows": item.rows} for item in files],
                "rows": sum(item.rows for item in files),
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    table.clear_staging(group)
    return final_paths
