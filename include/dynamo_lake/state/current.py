"""The current state of a lake table: an Iceberg table kept from the CDC log (no Airflow).

Per lake table ``<table>``, the Iceberg (format v2) table ``<table>_current`` in the same
catalog database holds one row per key (:data:`dynamo_lake.state.merge.STATE_SCHEMA`),
partitioned by ``bucket`` (identity), its files under the lake table's reserved folder
``_current/``. Live items are the rows with ``op <> 'D'``; a deleted key keeps a tombstone
so that an older event published late cannot bring it back.

**What a snapshot holds.** A snapshot with watermark W holds, per key, the contract's latest
state as of W over every lake row with ``time_stamp`` <= W in every data file the merge
listed. Its summary records W (``dynamo-lake.watermark-us``), the counts, and where the
list of merged files is kept (``dynamo-lake.merged-files``: a Parquet file of lake-relative
paths under ``_current/merged/``).

**Merging** (:func:`merge_state`) to a watermark W >= the state's W0 reads

* every lake file not in the merged list (backfills of old windows, repairs stamped in the
  past, late Firehose files), cut at W, and
* the files already merged in the partitions of W0's day and later, cut at W: the lake's
  layout puts a row in the partition of its own day, so the rows after W0 that an earlier
  merge cut off can only be there. A row outside its partition's day breaks that, and the
  merge refuses the file, naming it.

Re-reading a row merged before changes nothing (the rule is idempotent), so the second set
needs no lower cut. Only the buckets the events touch are rewritten (copy-on-write), bucket
by bucket, and all of them are replaced in one Iceberg commit: a reader sees the old
snapshot or the new one. A run with nothing new (the same W, no new file) commits nothing.

**Catalog.** A lake in S3 uses the Glue catalog (pyiceberg's ``GlueCatalog``: the lake's
Glue database in AWS; the emulator's Glue locally, the same code path). A lake in a local
folder uses pyiceberg's SQL catalog on SQLite in its ``_current/`` folder (development and
tests only: pyiceberg says so, and nothing but this process can read it).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from dynamo_lake import contract
from dynamo_lake.cdc import micros_text, micros_to_datetime
from dynamo_lake.errors import StateConflictError, StateError
from dynamo_lake.lake.query import LakeDatabase, lake_dataset, time_literal
from dynamo_lake.state.merge import (
    STATE_SCHEMA,
    bucket_sql,
    check_buckets,
    live,
    merge_rows,
)
from dynamo_lake.storage import S3Options, resolve

__all__ = [
    "MergeResult",
    "StateSnapshot",
    "StateTarget",
    "current_snapshot",
    "cut_watermark",
    "merge_state",
    "open_catalog",
    "open_state_table",
    "read_state",
    "remove_orphans",
    "state_snapshots",
]

log = logging.getLogger(__name__)

#: Snapshot summary properties this module writes (all strings, as Iceberg requires).
WATERMARK_US = "dynamo-lake.watermark-us"
WATERMARK = "dynamo-lake.watermark"
MERGED_FILES = "dynamo-lake.merged-files"
FILES_MERGED = "dynamo-lake.files-merged"
EVENTS_READ = "dynamo-lake.events-read"
BUCKETS_REWRITTEN = "dynamo-lake.buckets-rewritten"
LIVE_ITEMS = "dynamo-lake.live-items"
TOMBSTONES = "dynamo-lake.tombstones"
BUCKETS_PROPERTY = "dynamo-lake.buckets"
SUFFIX = "_current"
#: How often a merge that lost a commit race to another merge starts again on top of it.
COMMIT_ATTEMPTS = 3
#: Files under ``_current/`` that no snapshot refers to are removed once this old: an
#: interrupted merge's; a younger one may belong to a merge still running.
ORPHAN_AGE = timedelta(hours=1)


@dataclass(frozen=True)
class StateTarget:
    """Which lake table's current state, and how it is keyed and bucketed."""

    lake_uri: str
    database: str
    table: str  # the lake table's catalog name; the state table is ``<table>_current``
    key_names: tuple[str, ...]
    buckets: int

    @property
    def name(self) -> str:
        return f"{self.table}{SUFFIX}"

    @property
    def identifier(self) -> tuple[str, str]:
        return (self.database, self.name)

    @property
    def location(self) -> str:
        return f"{self.lake_uri.rstrip('/')}/{contract.CURRENT}"


@dataclass(frozen=True)
class StateSnapshot:
    """One snapshot of a current-state table, as this module recorded it."""

    snapshot_id: int
    watermark_us: int
    committed_at: datetime
    live_items: int
    tombstones: int
    merged_files: str  # the location of the merged-files list

    @property
    def watermark(self) -> str:
        return micros_text(self.watermark_us)


@dataclass(frozen=True)
class MergeResult:
    """What one merge did: the snapshot it committed (None: nothing new), and its counts."""

    snapshot: StateSnapshot | None
    watermark_us: int
    files_merged: int  # lake files new to the state
    events_read: int  # rows read at or before the watermark (some merged before)
    buckets_rewritten: int

    def text(self) -> str:
        if self.snapshot is None:
            return f"current state: nothing new up to {micros_text(self.watermark_us)}; no snapshot"
        return (
            f"current state: snapshot {self.snapshot.snapshot_id} at watermark "
            f"{self.snapshot.watermark}: {self.files_merged} new lake files, "
            f"{self.events_read:,} events read, {self.buckets_rewritten} buckets rewritten; "
            f"{self.snapshot.live_items:,} live items, {self.snapshot.tombstones:,} tombstones"
        )


def cut_watermark(schedule: str | None, settle_margin_minutes: int, now: datetime) -> int:
    """The watermark a scheduled merge moves the state to (µs): the newest cut time T the
    reconciliation's schedule has reached (its last tick at or before ``now`` minus the
    settle margin), so that every scheduled check finds a snapshot at exactly its T.
    Without a schedule (manual checks only): ``now`` minus the margin, to the second.
    """
    margin = timedelta(minutes=settle_margin_minutes)
    if not schedule:
        cut = (now - margin).replace(microsecond=0)
    else:
        from croniter import croniter  # type: ignore[import-untyped]

        tick = croniter(schedule, now).get_prev(datetime)
        if croniter.match(schedule, now) and now.second == 0 and now.microsecond == 0:
            tick = now  # exactly on a tick: that tick has been reached
        cut = tick - margin
    return int(cut.timestamp()) * 1_000_000 + cut.microsecond


# --- the catalog and the table ------------------------------------------------------------


def open_catalog(lake_uri: str, s3: S3Options | None = None, glue_client: Any = None) -> Any:
    """The catalog that holds the current state of the lake at ``lake_uri`` (see above).

    ``glue_client``: a boto3 Glue client to use (an Airflow connection's, which refreshes its
    credentials); without one, Glue is reached as S3 is (``AWS_ENDPOINT_URL_GLUE`` or
    ``AWS_ENDPOINT_URL`` for a local emulator).
    """
    if lake_uri.startswith("s3://"):
        from pyiceberg.catalog.glue import GlueCatalog

        options = s3 or S3Options.from_env()
        properties: dict[str, str] = {}
        glue_endpoint = os.environ.get("AWS_ENDPOINT_URL_GLUE") or os.environ.get(
            "AWS_ENDPOINT_URL"
        )
        if glue_endpoint:
            properties["glue.endpoint"] = glue_endpoint
        if options.endpoint_url:
            properties["s3.endpoint"] = options.endpoint_url
        if options.region:
            properties["glue.region"] = properties["s3.region"] = options.region
        keys = options.current_keys()
        if keys is not None:
            for service in ("glue", "s3"):
                properties[f"{service}.access-key-id"] = keys[0]
                properties[f"{service}.secret-access-key"] = keys[1]
                if keys[2]:
                    properties[f"{service}.session-token"] = keys[2]
        return GlueCatalog("glue", client=glue_client, **properties)
    from pyiceberg.catalog.sql import SqlCatalog

    folder = resolve(lake_uri).child(contract.CURRENT)
    os.makedirs(folder.path, exist_ok=True)
    return SqlCatalog(
        "local", uri=f"sqlite:///{folder.path}/catalog.db", warehouse=f"file://{folder.path}"
    )


def _iceberg_schema() -> Any:
    from pyiceberg.io.pyarrow import pyarrow_to_schema
    from pyiceberg.table.name_mapping import MappedField, NameMapping

    mapping = NameMapping(
        [
            MappedField(field_id=index, names=[name])  # type: ignore[call-arg]  # pydantic alias
            for index, name in enumerate(STATE_SCHEMA.names, 1)
        ]
    )
    return pyarrow_to_schema(STATE_SCHEMA, name_mapping=mapping)


def open_state_table(catalog: Any, target: StateTarget, *, create: bool = True) -> Any:
    """The target's current-state table, created (with its namespace locally) if ``create``.

    A table of that name at another location, or with another bucket count, is refused: the
    merge would mix two states.
    """
    from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    check_buckets(target.buckets)
    try:
        table = catalog.load_table(target.identifier)
    except NoSuchTableError:
        if not create:
            raise StateError(
                f"{'.'.join(target.identifier)}: no current-state table yet: run the "
                "dynamodb_current_state DAG (or `dynamo-lake state merge`) first"
            ) from None
        if catalog.__class__.__name__ == "SqlCatalog":
            catalog.create_namespace_if_not_exists(target.database)
        schema = _iceberg_schema()
        spec = PartitionSpec(
            PartitionField(
                source_id=schema.find_field("bucket").field_id,
                field_id=1000,
                transform=IdentityTransform(),
                name="bucket",
            )
        )
        try:
            table = catalog.create_table(
                target.identifier,
                schema=schema,
                partition_spec=spec,
                location=target.location,
                properties={
                    "format-version": "2",
                    BUCKETS_PROPERTY: str(target.buckets),
                    "write.parquet.compression-codec": "zstd",
                },
            )
        except TableAlreadyExistsError:  # another merge created it first
            table = catalog.load_table(target.identifier)
    _check_table(table, target)
    return table


def _check_table(table: Any, target: StateTarget) -> None:
    where = ".".join(target.identifier)
    if table.location().rstrip("/") != target.location:
        raise StateError(
            f"{where} lives at {table.location()}, not at {target.location}: it is not this "
            "lake's current state; drop it or rename the lake table"
        )
    buckets = table.properties.get(BUCKETS_PROPERTY)
    if buckets != str(target.buckets):
        raise StateError(
            f"{where} has {buckets} buckets and the tables file says {target.buckets}: a "
            "state's keys are bucketed once; set current_state.buckets back to "
            f"{buckets}, or drop the table to rebuild it from the log"
        )


# --- snapshots -----------------------------------------------------------------------------


def _snapshot_record(snapshot: Any) -> StateSnapshot | None:
    properties = snapshot.summary.additional_properties if snapshot.summary else {}
    if WATERMARK_US not in properties:
        return None  # not written by a merge (a user's own commit): no watermark to trust
    return StateSnapshot(
        snapshot_id=snapshot.snapshot_id,
        watermark_us=int(properties[WATERMARK_US]),
        committed_at=datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC),
        live_items=int(properties.get(LIVE_ITEMS, 0)),
        tombstones=int(properties.get(TOMBSTONES, 0)),
        merged_files=properties.get(MERGED_FILES, ""),
    )


def state_snapshots(table: Any) -> list[StateSnapshot]:
    """The table's merge snapshots, oldest first."""
    records = (_snapshot_record(snapshot) for snapshot in table.snapshots())
    return [record for record in records if record is not None]


def current_snapshot(table: Any) -> StateSnapshot | None:
    snapshot = table.current_snapshot()
    if snapshot is None:
        return None
    record = _snapshot_record(snapshot)
    if record is None:
        raise StateError(
            f"{table.name()}: its current snapshot {snapshot.snapshot_id} was not written by a "
            "merge (no watermark in its summary): something else commits to the current "
            "state; roll it back to the last merge's snapshot"
        )
    return record


def _in_bucket(bucket: int) -> Any:
    from pyiceberg.expressions import EqualTo

    return EqualTo("bucket", bucket)  # type: ignore[call-arg,arg-type]  # pydantic's signature


def read_state(
    table: Any, snapshot_id: int | None = None, *, bucket: int | None = None
) -> pa.Table:
    """The state's rows (tombstones included) at ``snapshot_id`` (default: the current)."""
    from pyiceberg.expressions import AlwaysTrue

    if table.current_snapshot() is None:
        return STATE_SCHEMA.empty_table()
    row_filter = AlwaysTrue() if bucket is None else _in_bucket(bucket)
    rows = table.scan(row_filter=row_filter, snapshot_id=snapshot_id).to_arrow()
    return rows.select(STATE_SCHEMA.names).cast(STATE_SCHEMA)


# --- merging -------------------------------------------------------------------------------


def _relative(path: str, base: str) -> str:
    return path[len(base) + 1 :] if path.startswith(base + "/") else path


def _partition_day(relative: str) -> str | None:
    """``YYYY-MM-DD`` of a lake-relative path ``year=YYYY/month=MM/day=DD/...``."""
    parts = relative.split("/")
    if len(parts) < 4:
        return None
    try:
        values = [part.split("=", 1) for part in parts[:3]]
        if [name for name, _ in values] != list(contract.PARTITION_KEYS):
            return None
        return "-".join(value for _, value in values)
    except ValueError:
        return None


def _read_merged(location: str, s3: S3Options | None) -> set[str]:
    if not location:
        return set()
    target = resolve(location, s3)
    try:
        table = pq.read_table(target.path, filesystem=target.filesystem, columns=["path"])
    except (FileNotFoundError, OSError, pa.ArrowInvalid) as exc:
        raise StateError(
            f"{location}: the list of lake files the current state has merged cannot be read "
            f"({' '.join(str(exc).split())[:200]}); without it the next merge cannot tell new "
            "files from merged ones: drop the current-state table to rebuild it from the log"
        ) from None
    return set(table.column("path").to_pylist())


def _write_merged(folder: str, paths: set[str], s3: S3Options | None) -> str:
    location = resolve(folder, s3).child("merged", f"{uuid.uuid4()}.parquet")
    rows = pa.table({"path": pa.array(sorted(paths), pa.string())})
    if not location.is_s3:
        os.makedirs(os.path.dirname(location.path), exist_ok=True)
    pq.write_table(rows, location.path, filesystem=location.filesystem, compression="zstd")
    return location.uri


def merge_state(
    target: StateTarget,
    watermark_us: int,
    *,
    s3: S3Options | None = None,
    catalog: Any = None,
    memory_limit_mb: int = 1024,
    orphan_age: timedelta = ORPHAN_AGE,
) -> MergeResult:
    """Merge the lake's events up to ``watermark_us`` into the current state (see above).

    A commit that loses a race to another merge starts again on top of it, at most
    :data:`COMMIT_ATTEMPTS` times, then raises :class:`StateConflictError`.
    """
    from pyiceberg.exceptions import CommitFailedException

    catalog = catalog or open_catalog(target.lake_uri, s3)
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        table = open_state_table(catalog, target)
        try:
            result = _merge_once(table, target, watermark_us, s3, memory_limit_mb)
            removed = remove_orphans(table, target, s3, older_than=orphan_age)
            if removed:
                log.info("current state: removed %d files no snapshot refers to", removed)
            return result
        except CommitFailedException as exc:
            log.warning("current state: commit attempt %d lost a race (%s)", attempt, exc)
    raise StateConflictError(
        f"{'.'.join(target.identifier)}: {COMMIT_ATTEMPTS} merges in a row lost the commit to "
        "another writer; run the merge again when the other one has finished"
    )


def _merge_once(
    table: Any,
    target: StateTarget,
    watermark_us: int,
    s3: S3Options | None,
    memory_mb: int,
) -> MergeResult:
    if not contract.TIME_RANGE_START_MICROS <= watermark_us < contract.TIME_RANGE_END_MICROS:
        raise StateError(
            f"watermark {watermark_us} is not a time in µs between 2012 and 2100: "
            "give microseconds since the epoch"
        )
    previous = current_snapshot(table)
    if previous is not None and watermark_us < previous.watermark_us:
        raise StateError(
            f"{table.name()}: the state is at {previous.watermark}, after the watermark "
            f"{micros_text(watermark_us)} asked for; a state only moves forward: read snapshot "
            f"{previous.snapshot_id} or an older one instead (`FOR VERSION AS OF`)"
        )
    merged = _read_merged(previous.merged_files, s3) if previous else set()
    lake = lake_dataset(target.lake_uri, s3)
    base = resolve(target.lake_uri, s3).path
    listed = {_relative(fragment.path, base): fragment for fragment in lake.get_fragments()}
    new = {path for path in listed if path not in merged}
    vanished = merged - set(listed)
    if vanished:
        # The lake writer retires files only for an export of the same moment that replaces
        # them with the same rows (the same uuids); anything else removed from the lake stays
        # merged, and only a rebuild (drop the table) forgets it.
        log.warning(
            "current state: %d merged lake files are gone from the lake (e.g. %s); their "
            "rows stay in the state: if they were removed by hand, drop %s to rebuild it",
            len(vanished),
            sorted(vanished)[0],
            table.name(),
        )
    reread: set[str] = set()
    if previous is not None and watermark_us > previous.watermark_us:
        since = f"{micros_to_datetime(previous.watermark_us):%Y-%m-%d}"
        reread = {
            path for path in listed if path in merged and (_partition_day(path) or "9999") >= since
        }
    if previous is not None and not new and watermark_us == previous.watermark_us:
        return MergeResult(None, watermark_us, 0, 0, 0)
    for path in sorted(new):
        _check_layout(listed[path], path, target.lake_uri)
    chosen = [listed[path] for path in sorted(new | reread)]
    database = LakeDatabase(memory_limit_mb=memory_mb)
    try:
        events = _load_events(database, lake, chosen, target, watermark_us, base)
        touched = [
            bucket
            for (bucket,) in database.connection.sql(
                "SELECT DISTINCT bucket FROM events ORDER BY bucket"
            ).fetchall()
        ]
        # An empty stretch of time still commits: the snapshot at the new watermark (with
        # the same files) is what a check at that T compares and tags.
        counts = _counts(previous)
        old_files: list[Any] = []
        new_files: list[Any] = []
        write_uuid = uuid.uuid4()
        for bucket in touched:
            old_rows = read_state(table, bucket=bucket)
            bucket_events = database.connection.sql(
                f"SELECT k, op, data, time_stamp, uuid FROM events WHERE bucket = {int(bucket)}"
            ).to_arrow_table()
            merged_rows = merge_rows(
                old_rows, bucket_events, target.buckets, connection=database.connection
            )
            counts = _count(counts, old_rows, -1)
            counts = _count(counts, merged_rows, +1)
            old_files.extend(_bucket_files(table, bucket))
            new_files.extend(_write_bucket(table, merged_rows, write_uuid))
        merged_list = _write_merged(target.location, merged | set(listed), s3)
        summary = {
            WATERMARK_US: str(watermark_us),
            WATERMARK: micros_text(watermark_us),
            MERGED_FILES: merged_list,
            FILES_MERGED: str(len(new)),
            EVENTS_READ: str(events),
            BUCKETS_REWRITTEN: str(len(touched)),
            LIVE_ITEMS: str(counts[0]),
            TOMBSTONES: str(counts[1]),
        }
        with (
            table.transaction() as transaction,
            transaction.update_snapshot(snapshot_properties=summary).overwrite() as overwrite,
        ):
            for data_file in old_files:
                overwrite.delete_data_file(data_file)
            for data_file in new_files:
                overwrite.append_data_file(data_file)
        snapshot = current_snapshot(table)
        return MergeResult(snapshot, watermark_us, len(new), events, len(touched))
    finally:
        database.close()


def _plain(path: str) -> str:
    """A file's path as the filesystem lists it (no ``s3://`` or ``file://``)."""
    for scheme in ("s3://", "s3a://", "file://"):
        if path.startswith(scheme):
            return path[len(scheme) :]
    return path


def _referenced_files(table: Any) -> set[str]:
    """Every data file a snapshot of ``table`` refers to (its manifests' entries, deleted
    ones included: an older snapshot still reads them)."""
    found: set[str] = set()
    for snapshot in table.snapshots():
        for manifest in snapshot.manifests(table.io):
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                found.add(_plain(entry.data_file.file_path))
    return found


def remove_orphans(
    table: Any, target: StateTarget, s3: S3Options | None, *, older_than: timedelta
) -> int:
    """Delete data files and merged-file lists under ``_current/`` that no snapshot refers
    to (an interrupted merge's), once older than ``older_than`` (younger ones may belong to
    a merge still running). Returns how many were deleted."""
    import pyarrow.fs as pafs

    referenced = _referenced_files(table)
    referenced |= {_plain(record.merged_files) for record in state_snapshots(table)}
    folder = resolve(target.location, s3)
    cutoff = datetime.now(UTC) - older_than
    removed = 0
    for sub in ("data", "merged"):
        selector = pafs.FileSelector(f"{folder.path}/{sub}", allow_not_found=True, recursive=True)
        for info in folder.filesystem.get_file_info(selector):
            if info.type != pafs.FileType.File or _plain(info.path) in referenced:
                continue
            written = info.mtime
            if written is not None and written.replace(tzinfo=written.tzinfo or UTC) > cutoff:
                continue
            folder.filesystem.delete_file(info.path)
            removed += 1
    return removed


def _load_events(
    database: LakeDatabase,
    lake: ds.Dataset,
    fragments: Sequence[Any],
    target: StateTarget,
    watermark_us: int,
    base: str,
) -> int:
    """Copy the chosen files' keyed rows at or before the watermark into ``events``, each
    with its bucket; a row stamped outside its partition's day is refused, naming its file."""
    chosen = ds.FileSystemDataset(
        list(fragments), lake.schema, ds.ParquetFileFormat(), lake.filesystem
    )
    database.add("lake_rows", chosen, list(target.key_names))
    cut = time_literal(watermark_us)
    database.connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE events AS
        SELECT k, op, data, time_stamp, uuid, {bucket_sql("k", target.buckets)} AS bucket
        FROM lake_rows
        WHERE k IS NOT NULL AND time_stamp IS NOT NULL AND time_stamp <= {cut}
        """
    )
    database.connection.execute("DROP TABLE lake_rows")
    ((rows,),) = database.connection.sql("SELECT count(*) FROM events").fetchall()
    return int(rows)


def _check_layout(fragment: Any, relative: str, lake_uri: str) -> None:
    """Refuse a new file whose rows are not all stamped on its partition's day (by the
    Parquet statistics of ``time_stamp``, or by reading the column where a writer left
    none): the merge finds the rows after a watermark by partition."""
    day = _partition_day(relative)
    where = f"{lake_uri.rstrip('/')}/{relative}"
    if day is None:
        raise StateError(
            f"{where}: a data file outside the year=/month=/day= partitions; every reader "
            "counts its rows but the merge cannot place them: move it into its rows' day"
        )
    metadata = fragment.metadata
    column = metadata.schema.names.index("time_stamp")
    bounds: list[Any] = []
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(column).statistics
        if statistics is None or not statistics.has_min_max:
            table = fragment.to_table(columns=["time_stamp"])
            bounds = [pc.min(table["time_stamp"]), pc.max(table["time_stamp"])]
            bounds = [bound.as_py() for bound in bounds if bound.is_valid]
            break
        bounds.extend([statistics.min, statistics.max])
    days = {f"{moment.astimezone(UTC):%Y-%m-%d}" for moment in bounds if moment is not None}
    if days - {day}:
        raise StateError(
            f"{where}: rows stamped on {', '.join(sorted(days - {day}))} lie in the partition "
            f"of {day}; the lake's layout puts each row in its own day's partition and the "
            "merge relies on it: rewrite the file's rows into their days (a writer other "
            "than this project's wrote it)"
        )


def _counts(previous: StateSnapshot | None) -> tuple[int, int]:
    return (previous.live_items, previous.tombstones) if previous else (0, 0)


def _count(counts: tuple[int, int], rows: pa.Table, sign: int) -> tuple[int, int]:
    alive = live(rows).num_rows
    return counts[0] + sign * alive, counts[1] + sign * (rows.num_rows - alive)


def _bucket_files(table: Any, bucket: int) -> Iterator[Any]:
    if table.current_snapshot() is None:
        return iter(())
    return (task.file for task in table.scan(row_filter=_in_bucket(bucket)).plan_files())


def _write_bucket(table: Any, rows: pa.Table, write_uuid: uuid.UUID) -> list[Any]:
    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    if rows.num_rows == 0:
        return []
    return list(_dataframe_to_data_files(table.metadata, rows, table.io, write_uuid=write_uuid))
