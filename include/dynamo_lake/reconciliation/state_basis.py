"""The lake side of a comparison read from the current state: a snapshot plus the log since.

The log-based comparison (:mod:`dynamo_lake.reconciliation.sql`) takes each key's state at
``T - ε``, T and ``T + ε`` from every lake row. Each of those is a maximum (the contract's
latest row), and a maximum over all rows up to a cut equals the maximum of the rows up to
an earlier moment W and those after it. A current-state snapshot at watermark W holds,
per key, the latest of the rows up to W of every file its merges listed
(:mod:`dynamo_lake.state.current`). So the relation

    the snapshot's rows (one per key, tombstones included)
    ∪ every row of the lake files the snapshot has not merged (late files, repairs)
    ∪ the rows after W of the merged files in the partitions of W's day and later

has, at every cut at or after W, the same latest row per key as the whole lake, and the
same SQL over it gives the same findings (the log-based path stays as the test oracle and
as the fallback). The rows before W of merged files in later partitions cannot exist: the
merge refused any file with a row outside its partition's day.

A cut must lie at or after W: ``export`` needs ``W <= T - ε``; ``changes`` also judges the
state just before its window (``< start - ε``) and needs ``W < start - ε``
(:func:`snapshot_bound`). The newest snapshot within the bound is used; the table reads
one day or two of log instead of its whole history.

For ``changes``, only the keys the comparison can look at are taken from the snapshot: the
keys the export lists and the keys of the rows read since W (a key with neither has no
finding); the lake's live count is the snapshot's own count moved by those keys. The cost
then follows the day's changes, not the table's size, apart from reading the snapshot's
files once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from dynamo_lake import contract
from dynamo_lake.errors import StateError
from dynamo_lake.lake.query import KEYED_SCHEMA, LakeDatabase, time_literal
from dynamo_lake.state.current import (
    BUCKETS_PROPERTY,
    SUFFIX,
    StateSnapshot,
    after_watermark,
    list_lake_files,
    plain_path,
    state_snapshots,
)
from dynamo_lake.state.merge import bucket_filter, bucket_sql
from dynamo_lake.storage import S3Options, resolve

__all__ = [
    "StateBasis",
    "choose_basis",
    "load_state_table",
    "open_snapshot",
    "snapshot_bound",
    "stage_events",
]

log = logging.getLogger(__name__)


def snapshot_bound(method: str, as_of: int, epsilon: int, window_start: int | None) -> int:
    """The latest watermark (µs) a snapshot may have to stand in for the log's rows up to
    it in a ``method`` comparison at ``as_of``."""
    if method == "export":
        return as_of - epsilon
    if method == "changes" and window_start is not None:
        return window_start - epsilon - 1
    raise StateError(f"a {method} comparison is not made from the current state")


@dataclass
class StateBasis:
    """A snapshot of the current state and the lake files to read beside it."""

    table: Any  # the Iceberg table
    snapshot: StateSnapshot
    lake: ds.Dataset
    filesystem: Any  # the lake's (the state's files are under its _current/)
    unmerged: list[Any]  # fragments: read whole
    after: list[Any]  # fragments of merged files: their rows after the watermark
    lake_count_offset: int = 0  # live items of the keys not read (changes)
    rows_read: int = 0

    def lake_bytes(self, sizes: dict[str, int]) -> int:
        """Bytes read: the lake files read beside the snapshot (``sizes``: the lake's file
        sizes by path) and the snapshot's data files (from its manifests)."""
        files = sum(sizes.get(fragment.path, 0) for fragment in [*self.unmerged, *self.after])
        scan = self.table.scan(snapshot_id=self.snapshot.snapshot_id)
        return files + sum(int(task.file.file_size_in_bytes) for task in scan.plan_files())

    def describe(self) -> dict[str, Any]:
        return {
            "basis": "current state",
            "snapshot_id": str(self.snapshot.snapshot_id),
            "watermark": self.snapshot.watermark,
            "unmerged_files": len(self.unmerged),
            "files_after_watermark": len(self.after),
            "rows_read": self.rows_read,
        }

    @property
    def buckets(self) -> int:
        """The state's bucket count (a key's bucket: :func:`dynamo_lake.state.merge.bucket_of`)."""
        return int(self.table.properties.get(BUCKETS_PROPERTY, 1))

    def load(
        self,
        database: LakeDatabase,
        key_names: Sequence[str],
        *,
        keys_of: str | None = None,
        tombstones_only: bool = False,
        bucket: int | None = None,
        events: Iterator[pa.RecordBatch] | None = None,
    ) -> int:
        """Copy the basis into DuckDB in the keyed form: the snapshot's rows into ``base``
        (not the stream's; a tombstone's data is empty text, never NULL, so that the
        latest-row aggregation keeps it) and the lake rows read beside it into ``lake``;
        returns the latter's count.

        ``keys_of``: a table with column ``k``; of the snapshot, only the rows of its keys
        and of the keys of the rows read are taken (a key with neither has no finding), and
        the live count of the others is kept aside (:attr:`lake_count_offset`).
        ``tombstones_only``: with ``keys_of``, every live row is taken and only the
        tombstones are chosen so (any other makes no finding and no count: its key is absent
        on both sides at every cut), so that the deleted keys a table has gathered over its
        history do not weigh on each check. ``bucket``: only that bucket's keys (and rows
        without a key in bucket 0, which counts them). ``events``: those lake rows already
        read, in the keyed form (one bucket's, split by
        :mod:`~dynamo_lake.reconciliation.buckets`), instead of the basis's files."""
        in_bucket = "TRUE" if bucket is None else bucket_filter(bucket, self.buckets)
        if events is not None:
            rows = database.add_keyed("lake", events)
        else:
            rows = database.add("lake", self.files(self.unmerged), key_names, where=in_bucket)
            rows += database.add(
                "lake",
                self.files(self.after),
                key_names,
                where=f"time_stamp > {time_literal(self.snapshot.watermark_us)} AND {in_bucket}",
                replace=False,
            )
        self.rows_read = rows
        if keys_of is None:
            database.add_keyed("base", self._snapshot_rows(bucket))
            return rows
        connection = database.connection
        connection.execute(
            "CREATE OR REPLACE TEMP TABLE basis_keys AS SELECT DISTINCT k FROM lake "
            f"WHERE k IS NOT NULL UNION SELECT k FROM {keys_of} WHERE k IS NOT NULL"
        )
        wanted = connection.sql(
            f"SELECT {bucket_sql('k', self.buckets)} AS b, k FROM basis_keys"
        ).to_arrow_table()
        connection.execute("DROP TABLE basis_keys")
        only = _by_bucket(wanted)
        database.add_keyed("base", self._snapshot_rows(bucket, only=only, live_too=tombstones_only))
        if tombstones_only:
            return rows
        ((live_taken,),) = connection.execute(
            "SELECT count(*) FROM base WHERE op <> 'D'"
        ).fetchall()
        live = self.snapshot.live_items if bucket is None else self._live_in(bucket)
        self.lake_count_offset = live - int(live_taken)
        return rows

    def _live_in(self, bucket: int) -> int:
        """The snapshot's live items in ``bucket`` (its ``op`` column only)."""
        reader = self.table.scan(
            row_filter=_in_bucket(bucket),
            snapshot_id=self.snapshot.snapshot_id,
            selected_fields=("op",),
        ).to_arrow_batch_reader()
        return sum(
            batch.num_rows - (pc.sum(pc.equal(batch.column("op"), "D")).as_py() or 0)
            for batch in reader
        )

    def files(self, fragments: list[Any]) -> ds.Dataset:
        return ds.FileSystemDataset(
            fragments, self.lake.schema, ds.ParquetFileFormat(), self.filesystem
        )

    def _snapshot_rows(
        self,
        bucket: int | None = None,
        *,
        only: dict[int, pa.Array] | None = None,
        live_too: bool = False,
    ) -> Iterator[pa.RecordBatch]:
        """The snapshot's rows (of one bucket; of the keys ``only``, when given) in the keyed
        form, a batch at a time. Its data files are read straight with pyarrow, one at a
        time (pyiceberg's reader holds a whole file's rows at once); a snapshot with delete
        files (another engine's commit: this project's merges write none) is read through
        pyiceberg, which applies them. ``only`` (the keys wanted, by bucket) is applied to
        each file as it is read, so that the rows of other keys never reach DuckDB; a data
        file holds one bucket (the state is partitioned by it), matched against that
        bucket's keys only, and skipped when it has none. ``live_too``: the live rows of
        every key are taken too (``only`` then chooses the tombstones)."""
        from pyiceberg.expressions import AlwaysTrue

        columns = ["key", "op", "time_stamp", "uuid", "data"]
        scan = self.table.scan(
            row_filter=AlwaysTrue() if bucket is None else _in_bucket(bucket),
            snapshot_id=self.snapshot.snapshot_id,
            selected_fields=tuple(columns),
        )
        tasks = list(scan.plan_files())
        batches: Iterator[pa.RecordBatch]
        if any(task.delete_files for task in tasks):
            batches = iter(scan.to_arrow_batch_reader())
            if only is not None:
                wanted = _every(only)
                batches = (
                    batch.filter(_keep(batch.column("key"), wanted, batch, live_too))
                    for batch in batches
                )
        else:
            files: list[tuple[str, pa.Array | None]] = []
            every: pa.Array | None = None
            for task in tasks:
                path = plain_path(task.file.file_path)
                if only is None:
                    files.append((path, None))
                    continue
                held = _file_bucket(task)
                if held is None:  # not ours to know: match against every key wanted
                    every = _every(only) if every is None else every
                    files.append((path, every))
                elif held in only or live_too:
                    files.append((path, only.get(held, _every({}))))
            batches = self._file_batches(files, live_too)
        for batch in batches:
            if not batch.num_rows:
                continue
            yield pa.RecordBatch.from_arrays(
                [
                    batch.column("uuid").cast(pa.string()),
                    batch.column("op").cast(pa.string()),
                    batch.column("time_stamp").cast(KEYED_SCHEMA.field("time_stamp").type),
                    pc.fill_null(batch.column("data").cast(pa.string()), ""),
                    batch.column("key").cast(pa.string()),
                    pa.array([False] * batch.num_rows, pa.bool_()),
                ],
                schema=KEYED_SCHEMA,
            )

    def _file_batches(
        self, files: list[tuple[str, pa.Array | None]], live_too: bool = False
    ) -> Iterator[pa.RecordBatch]:
        """Each file's rows; with keys ``only``, a file's keys are read first and matched at
        once (one lookup set per file, not per batch), and a file without one is skipped
        (``live_too``: its live rows are kept whatever their key)."""
        columns = ["key", "op", "time_stamp", "uuid", "data"]
        for path, only in files:
            with self.filesystem.open_input_file(path) as handle:
                file = pq.ParquetFile(handle)
                if only is None:
                    yield from file.iter_batches(batch_size=65_536, columns=columns)
                    continue
                keys = file.read(columns=["key"]).column("key").combine_chunks()
                keep = _among(keys, only)
                if not live_too and not pc.any(keep).as_py():
                    continue
                offset = 0
                for batch in file.iter_batches(batch_size=65_536, columns=columns[1:]):
                    rows = batch.num_rows
                    mask = keep.slice(offset, rows)
                    if live_too:
                        mask = pc.or_(mask, pc.not_equal(batch.column("op"), "D"))
                    yield pa.RecordBatch.from_arrays(
                        [keys.slice(offset, rows).filter(mask), *batch.filter(mask).columns],
                        names=columns,
                    )
                    offset += rows


def _by_bucket(wanted: pa.Table) -> dict[int, pa.Array]:
    """Keys (column ``k``) by their bucket (column ``b``)."""
    grouped = wanted.group_by("b").aggregate([("k", "list")])
    return {
        int(bucket): grouped.column("k_list")[index].values
        for index, bucket in enumerate(grouped.column("b").to_pylist())
        if bucket is not None
    }


def _file_bucket(task: Any) -> int | None:
    """The bucket a state data file holds (its partition), or None if it does not say."""
    try:
        value = task.file.partition[0]
    except (IndexError, KeyError, TypeError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _every(only: dict[int, pa.Array]) -> pa.Array:
    """All the keys wanted, of every bucket."""
    return pa.concat_arrays(list(only.values())) if only else pa.array([], pa.string())


def _keep(keys: pa.Array, only: pa.Array, batch: pa.RecordBatch, live_too: bool) -> pa.Array:
    """A batch's rows to keep: its keys among ``only`` (or, with ``live_too``, live)."""
    mask = _among(keys, only)
    return pc.or_(mask, pc.not_equal(batch.column("op"), "D")) if live_too else mask


def _among(keys: pa.Array, only: pa.Array) -> pa.Array:
    """Which of ``keys`` are among ``only`` (a mask)."""
    return pc.is_in(keys, value_set=only.cast(keys.type))


#: The staged events' columns (see :data:`dynamo_lake.lake.catalog.STAGED_EVENT_COLUMNS`).
STAGED_EVENTS = pa.schema(
    [
        pa.field("uuid", pa.string()),
        pa.field("op", pa.string()),
        pa.field("data", pa.string()),
        pa.field("k", pa.string()),
        pa.field("stream", pa.bool_()),
        pa.field("time_stamp_us", pa.int64()),
    ]
)


def stage_events(
    basis: StateBasis, location: str, key_names: Sequence[str], s3: S3Options | None
) -> int:
    """Write the lake rows the basis reads beside its snapshot (the unmerged files whole,
    the merged ones after its watermark) to one Parquet file under ``location``, each with
    its exact key and its time in µs (what Athena then reads exactly); returns the rows."""
    from dynamo_lake.lake.query import keyed_batches

    watermark = pa.scalar(basis.snapshot.watermark_us, pa.int64())
    target = resolve(location, s3).child("events-0.parquet")
    if not target.is_s3:
        import os

        os.makedirs(os.path.dirname(target.path), exist_ok=True)
    rows = 0
    with pq.ParquetWriter(
        target.path, STAGED_EVENTS, filesystem=target.filesystem, compression="zstd"
    ) as writer:
        for fragments, after in ((basis.unmerged, False), (basis.after, True)):
            for batch in keyed_batches(basis.files(fragments), key_names):
                micros = batch.column("time_stamp").cast(pa.int64())
                if after:
                    keep = pc.greater(micros, watermark)
                    batch, micros = batch.filter(keep), micros.filter(keep)
                if not batch.num_rows:
                    continue
                writer.write_batch(
                    pa.RecordBatch.from_arrays(
                        [
                            batch.column("uuid"),
                            batch.column("op"),
                            batch.column("data"),
                            batch.column("k"),
                            batch.column("stream"),
                            micros,
                        ],
                        schema=STAGED_EVENTS,
                    )
                )
                rows += batch.num_rows
    basis.rows_read = rows
    return rows


def _in_bucket(bucket: int) -> Any:
    from pyiceberg.expressions import EqualTo

    return EqualTo("bucket", bucket)  # type: ignore[call-arg,arg-type]  # pydantic's signature


def load_state_table(catalog: Any, database: str, table: str) -> Any | None:
    """The current-state table of the lake table ``database.table``, or None if it has none."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    try:
        return catalog.load_table((database, f"{table}{SUFFIX}"))
    except (NoSuchTableError, NoSuchNamespaceError):
        return None


def choose_basis(
    lake_uri: str,
    database: str,
    table: str,
    *,
    bound: int,
    s3: S3Options | None,
    key_names: Sequence[str] | None = None,
    catalog: Any = None,
    glue_client: Any = None,
    snapshot_id: int | None = None,
) -> StateBasis | None:
    """The newest readable snapshot with a watermark at or before ``bound`` (or the one
    named ``snapshot_id``, if within it) whose keys are made of ``key_names`` (when given),
    and the lake files to read beside it; None when the table has no current state or no
    such snapshot (the comparison then reads the log)."""
    from dynamo_lake.state.current import open_catalog

    location = resolve(lake_uri, s3)
    if not location.is_s3 and not location.child(contract.CURRENT, "catalog.db").exists():
        return None  # a local lake never merged: opening the catalog would create one
    catalog = catalog or open_catalog(lake_uri, s3, glue_client=glue_client)
    state = load_state_table(catalog, database, table)
    if state is None:
        return None
    records = state_snapshots(state)
    if key_names is not None:
        # Keys made of other attributes (a state keyed before they were recorded, or by
        # another key schema) would be compared as other keys.
        records = [record for record in records if record.key_names == tuple(key_names)]
    candidates = [
        record
        for record in records
        if record.watermark_us <= bound and snapshot_id in (None, record.snapshot_id)
    ]
    if not candidates:
        return None
    snapshot = max(candidates, key=lambda record: (record.watermark_us, record.committed_at))
    lake, listed, merged = list_lake_files(lake_uri, snapshot, s3)
    later = after_watermark(listed, merged, snapshot.watermark_us)
    return StateBasis(
        table=state,
        snapshot=snapshot,
        lake=lake,
        filesystem=location.filesystem,
        unmerged=[listed[path] for path in sorted(listed) if path not in merged],
        after=[listed[path] for path in sorted(later)],
    )


def open_snapshot(
    lake_uri: str,
    database: str,
    table: str,
    snapshot_id: int,
    *,
    s3: S3Options | None,
    catalog: Any = None,
    glue_client: Any = None,
) -> StateBasis:
    """The snapshot ``snapshot_id`` of the table's current state, with no lake files beside
    it (a bucket comparison reads the rows split for it instead); a
    :class:`~dynamo_lake.errors.StateError` when it is gone."""
    from dynamo_lake.state.current import open_catalog

    location = resolve(lake_uri, s3)
    catalog = catalog or open_catalog(lake_uri, s3, glue_client=glue_client)
    state = load_state_table(catalog, database, table)
    found = [
        record
        for record in (state_snapshots(state) if state is not None else [])
        if record.snapshot_id == snapshot_id
    ]
    if not found:
        raise StateError(
            f"{database}.{table}{SUFFIX} has no snapshot {snapshot_id} any more (expired or "
            "the state was rebuilt since this run planned): run the check again, which "
            "chooses a snapshot anew"
        )
    return StateBasis(
        table=state,
        snapshot=found[0],
        lake=None,
        filesystem=location.filesystem,
        unmerged=[],
        after=[],
    )
