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

The second set needs only its rows after W0: every merge takes, of each file it merged, the
rows up to its own watermark, and of the merged files the rows between the watermarks, so
after it every merged file's rows up to W are in the state (and re-reading one would change
nothing: the rule is idempotent). Only the buckets the events touch are rewritten
(copy-on-write), each on its own (:func:`merge_bucket`, one bucket in memory; the DAG maps
them across workers), and all of them replace the old ones in one Iceberg commit
(:func:`commit_merge`): a reader sees the old
snapshot or the new one. A run with nothing new (the same W, no new file) commits nothing.

**Catalog.** A lake in S3 uses the Glue catalog (pyiceberg's ``GlueCatalog``: the lake's
Glue database in AWS; the emulator's Glue locally, the same code path). A lake in a local
folder uses pyiceberg's SQL catalog on SQLite in its ``_current/`` folder (development and
tests only: pyiceberg says so, and nothing but this process can read it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Sequence
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
from dynamo_lake.state.columns import TypedColumn, with_typed_columns
from dynamo_lake.state.merge import (
    STATE_SCHEMA,
    bucket_sql,
    check_buckets,
    live,
    merge_rows,
)
from dynamo_lake.storage import Location, S3Options, resolve

__all__ = [
    "BucketMerge",
    "MergePlan",
    "MergeResult",
    "StateSnapshot",
    "StateTarget",
    "after_watermark",
    "commit_merge",
    "current_snapshot",
    "cut_watermark",
    "list_lake_files",
    "merge_bucket",
    "merge_state",
    "open_catalog",
    "open_state_table",
    "plain_path",
    "plan_merge",
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
#: The typed columns a snapshot's files hold (``name:type`` joined by commas).
COLUMNS = "dynamo-lake.columns"
#: The key attributes a snapshot's keys are made of (a JSON array, partition key first).
KEY_NAMES = "dynamo-lake.key-names"
SUFFIX = "_current"
#: How often a merge that lost a commit race to another merge starts again on top of it.
COMMIT_ATTEMPTS = 3
#: Files under ``_current/`` that no snapshot refers to are removed once this old: an
#: interrupted merge's; a younger one may belong to a merge still running.
ORPHAN_AGE = timedelta(hours=1)
#: A bucket with more than this many times the files its bytes need is rewritten.
CROWDED_FILES = 4
#: The lake's keyed events as a merge stages them per bucket.
KEYED_EVENTS = pa.schema(
    [
        pa.field("k", pa.string()),
        pa.field("op", pa.string()),
        pa.field("data", pa.string()),
        pa.field("time_stamp", pa.timestamp("us", tz="UTC")),
        pa.field("uuid", pa.string()),
    ]
)


@dataclass(frozen=True)
class StateTarget:
    """Which lake table's current state, and how it is keyed and bucketed."""

    lake_uri: str
    database: str
    table: str  # the lake table's catalog name; the state table is ``<table>_current``
    key_names: tuple[str, ...]
    buckets: int
    columns: tuple[TypedColumn, ...] = ()  # the tables file's state_columns

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
    columns: str = ""  # the typed columns its files hold (``name:type,...``)
    key_names: tuple[str, ...] | None = None  # None: written before they were recorded

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


def _arrow_schema(columns: Sequence[TypedColumn]) -> pa.Schema:
    return pa.schema(
        [*STATE_SCHEMA, *(pa.field(column.name, column.arrow_type) for column in columns)]
    )


def _iceberg_schema(columns: Sequence[TypedColumn] = ()) -> Any:
    from pyiceberg.io.pyarrow import pyarrow_to_schema
    from pyiceberg.table.name_mapping import MappedField, NameMapping

    arrow = _arrow_schema(columns)
    mapping = NameMapping(
        [
            MappedField(field_id=index, names=[name])  # type: ignore[call-arg]  # pydantic alias
            for index, name in enumerate(arrow.names, 1)
        ]
    )
    return pyarrow_to_schema(arrow, name_mapping=mapping)


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
        # The lake table's database, as a backfill would create it: a state merged from a
        # lake only the stream has written yet (never backfilled) has none.
        catalog.create_namespace_if_not_exists(target.database)
        schema = _iceberg_schema(target.columns)
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


def _evolve_columns(table: Any, target: StateTarget) -> Any:
    """Add the typed columns the tables file names and the table lacks; drop those it no
    longer names. The next merge fills them (a snapshot records which columns its files
    hold, and a merge rewrites every bucket when that differs). A column whose type changed
    is refused: Iceberg cannot turn a string into a decimal."""
    have = {field.name: field for field in table.schema().fields}
    extra = [name for name in have if name not in STATE_SCHEMA.names]
    wanted = {column.name: column for column in target.columns}
    wanted_schema = _iceberg_schema(target.columns)
    for name, column in wanted.items():
        if name in have and have[name].field_type != wanted_schema.find_field(name).field_type:
            raise StateError(
                f"{table.name()}: column {name} is {have[name].field_type} and the tables file "
                f"says {column.type}: a column's type cannot change in place; rename it in "
                "state_columns, or drop the current-state table to rebuild it"
            )
    added = [name for name in wanted if name not in have]
    dropped = [name for name in extra if name not in wanted]
    if added or dropped:
        with table.update_schema() as update:
            for name in added:
                update.add_column(name, wanted_schema.find_field(name).field_type)
            for name in dropped:
                update.delete_column(name)
        log.info(
            "current state: columns added %s, dropped %s; the next merge rewrites every bucket",
            added or "none",
            dropped or "none",
        )
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
        columns=properties.get(COLUMNS, ""),
        key_names=tuple(json.loads(properties[KEY_NAMES])) if KEY_NAMES in properties else None,
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


def list_lake_files(
    lake_uri: str, snapshot: StateSnapshot | None, s3: S3Options | None
) -> tuple[ds.Dataset, dict[str, Any], set[str]]:
    """The lake table's dataset, its files (lake-relative path -> fragment) and the paths
    ``snapshot`` has merged (none without a snapshot)."""
    merged = _read_merged(snapshot.merged_files, s3) if snapshot else set()
    lake = lake_dataset(lake_uri, s3)
    base = resolve(lake_uri, s3).path
    listed = {_relative(fragment.path, base): fragment for fragment in lake.get_fragments()}
    return lake, listed, merged


def after_watermark(listed: dict[str, Any], merged: set[str], watermark_us: int) -> set[str]:
    """The merged files that may hold rows after ``watermark_us``: those in the partitions
    of its day and later (the lake's layout puts a row in its own day's partition, and the
    merge refused any new file that breaks it)."""
    since = f"{micros_to_datetime(watermark_us):%Y-%m-%d}"
    return {path for path in listed if path in merged and (_partition_day(path) or "9999") >= since}


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


@dataclass(frozen=True)
class MergePlan:
    """A merge planned: the lake's events up to the watermark, cut and sorted by bucket into
    ``staging`` (``bucket=<b>.parquet``), and the buckets to rewrite. Plain JSON
    (:meth:`as_json`) passes it between tasks; :func:`merge_bucket` rewrites one bucket on
    any worker and :func:`commit_merge` commits them all at once."""

    watermark_us: int
    base_snapshot_id: int | None  # the snapshot the merge builds on; the commit checks it
    buckets: tuple[int, ...]  # with events, or with more files than their rows need
    staging: str
    merged_files: str  # the merged-files list the commit records
    files_merged: int
    events_read: int
    base_live_items: int
    base_tombstones: int

    def as_json(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in self.__dataclass_fields__},
            "buckets": list(self.buckets),
            "base_snapshot_id": None
            if self.base_snapshot_id is None
            else str(self.base_snapshot_id),  # a 64-bit id: JSON readers parse doubles
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> MergePlan:
        base = value["base_snapshot_id"]
        return cls(
            **{
                **value,
                "buckets": tuple(int(bucket) for bucket in value["buckets"]),
                "base_snapshot_id": None if base is None else int(base),
            }
        )


@dataclass(frozen=True)
class BucketMerge:
    """One bucket rewritten: its new data files, and its counts before and after."""

    bucket: int
    files: tuple[str, ...]
    live_delta: int
    tombstone_delta: int

    def as_json(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in self.__dataclass_fields__},
            "files": list(self.files),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> BucketMerge:
        return cls(**{**value, "files": tuple(value["files"])})


def merge_state(
    target: StateTarget,
    watermark_us: int,
    *,
    s3: S3Options | None = None,
    catalog: Any = None,
    memory_limit_mb: int = 1024,
    orphan_age: timedelta = ORPHAN_AGE,
) -> MergeResult:
    """Merge the lake's events up to ``watermark_us`` into the current state (see above), in
    this process: :func:`plan_merge`, :func:`merge_bucket` per bucket, :func:`commit_merge`.

    A commit that loses a race to another merge starts again on top of it, at most
    :data:`COMMIT_ATTEMPTS` times, then raises :class:`StateConflictError`.
    """
    catalog = catalog or open_catalog(target.lake_uri, s3)
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        plan = plan_merge(
            target, watermark_us, s3=s3, catalog=catalog, memory_limit_mb=memory_limit_mb
        )
        if plan is None:
            result = MergeResult(None, watermark_us, 0, 0, 0)
            break
        table = open_state_table(catalog, target, create=False) if plan.buckets else None
        merges = [
            merge_bucket(
                target,
                plan,
                bucket,
                s3=s3,
                catalog=catalog,
                memory_limit_mb=memory_limit_mb,
                table=table,
            )
            for bucket in plan.buckets
        ]
        try:
            result = commit_merge(target, plan, merges, s3=s3, catalog=catalog)
            break
        except StateConflictError as exc:
            log.warning("current state: commit attempt %d lost a race (%s)", attempt, exc)
    else:
        raise StateConflictError(
            f"{'.'.join(target.identifier)}: {COMMIT_ATTEMPTS} merges in a row lost the "
            "commit to another writer; run the merge again when the other one has finished"
        )
    removed = remove_orphans(open_state_table(catalog, target), target, s3, older_than=orphan_age)
    if removed:
        log.info("current state: removed %d files no snapshot refers to", removed)
    return result


def plan_merge(
    target: StateTarget,
    watermark_us: int,
    *,
    s3: S3Options | None = None,
    catalog: Any = None,
    memory_limit_mb: int = 1024,
) -> MergePlan | None:
    """Plan a merge to ``watermark_us``: list the lake files not merged yet and the merged
    ones that may hold rows after the state's watermark, copy their rows up to the new
    watermark into staging sorted by bucket, and choose the buckets to rewrite. None: the
    same watermark and nothing new (no snapshot to commit)."""
    if not contract.TIME_RANGE_START_MICROS <= watermark_us < contract.TIME_RANGE_END_MICROS:
        raise StateError(
            f"watermark {watermark_us} is not a time in µs between 2012 and 2100: "
            "give microseconds since the epoch"
        )
    catalog = catalog or open_catalog(target.lake_uri, s3)
    table = _evolve_columns(open_state_table(catalog, target), target)
    previous = current_snapshot(table)
    if previous is not None and watermark_us < previous.watermark_us:
        raise StateError(
            f"{table.name()}: the state is at {previous.watermark}, after the watermark "
            f"{micros_text(watermark_us)} asked for; a state only moves forward: read snapshot "
            f"{previous.snapshot_id} or an older one instead (`FOR VERSION AS OF`)"
        )
    if previous is not None and previous.key_names not in (None, target.key_names):
        raise StateError(
            f"{table.name()}: its keys are made of {list(previous.key_names)}, and this merge's "
            f"of {list(target.key_names)}: a state is keyed once (the table's key schema "
            "changed?); drop the current-state table to rebuild it from the log"
        )
    lake, listed, merged = list_lake_files(target.lake_uri, previous, s3)
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
        reread = after_watermark(listed, merged, previous.watermark_us)
    columns = _columns_text(target.columns)
    recolumned = previous is not None and previous.columns != columns
    same = previous is not None and watermark_us == previous.watermark_us
    if same and not new and not recolumned:
        return None
    for path in sorted(new):
        _check_layout(listed[path], path, target.lake_uri)
    files = {
        "new": [listed[path] for path in sorted(new)],
        "reread": [listed[path] for path in sorted(reread)],
    }
    staging = resolve(target.location, s3).child("staging", str(uuid.uuid4()))
    database = LakeDatabase(memory_limit_mb=memory_limit_mb)
    try:
        events = _load_events(
            database,
            lake,
            files,
            target,
            watermark_us,
            None if previous is None else previous.watermark_us,
        )
        touched = _stage_by_bucket(database, staging)
    finally:
        database.close()
    # An empty stretch of time still commits: the snapshot at the new watermark (with the
    # same files) is what a check at that T compares and tags.
    crowded = _crowded_buckets(table, every=recolumned) if previous is not None else set()
    live_items, tombstones = _counts(previous)
    return MergePlan(
        watermark_us=watermark_us,
        base_snapshot_id=None if previous is None else previous.snapshot_id,
        buckets=tuple(sorted(touched | crowded)),
        staging=staging.uri,
        merged_files=_write_merged(target.location, merged | set(listed), s3),
        files_merged=len(new),
        events_read=events,
        base_live_items=live_items,
        base_tombstones=tombstones,
    )


def merge_bucket(
    target: StateTarget,
    plan: MergePlan,
    bucket: int,
    *,
    s3: S3Options | None = None,
    catalog: Any = None,
    memory_limit_mb: int = 1024,
    table: Any = None,
) -> BucketMerge:
    """Rewrite one bucket of the plan: its rows in the plan's base snapshot merged with its
    staged events, written as new data files (not yet committed). Memory: one bucket's rows.
    Run again, it writes other files; those of an attempt never committed are orphans.
    ``table``: the state table already loaded (one catalog read for many buckets)."""
    if bucket not in plan.buckets:
        raise StateError(f"bucket {bucket} is not one the plan rewrites ({len(plan.buckets)})")
    if table is None:
        catalog = catalog or open_catalog(target.lake_uri, s3)
        table = open_state_table(catalog, target, create=False)
    if plan.base_snapshot_id is None:
        old_rows = STATE_SCHEMA.empty_table()
    else:
        old_rows = read_state(table, plan.base_snapshot_id, bucket=bucket)
    staged = resolve(plan.staging, s3).child(f"bucket={bucket}.parquet")
    if staged.exists():
        events = pq.read_table(staged.path, filesystem=staged.filesystem)
    else:  # rewritten for its file count only
        events = KEYED_EVENTS.empty_table()
    database = LakeDatabase(memory_limit_mb=memory_limit_mb)
    try:
        rows = merge_rows(old_rows, events, target.buckets, connection=database.connection)
    finally:
        database.close()
    before, after = _count((0, 0), old_rows, 1), _count((0, 0), rows, 1)
    rows = with_typed_columns(rows, target.columns, table.name())
    files = tuple(data_file.file_path for data_file in _write_bucket(table, rows))
    return BucketMerge(bucket, files, after[0] - before[0], after[1] - before[1])


def commit_merge(
    target: StateTarget,
    plan: MergePlan,
    merges: Sequence[BucketMerge],
    *,
    s3: S3Options | None = None,
    catalog: Any = None,
) -> MergeResult:
    """Replace the plan's buckets with their rewrites in one Iceberg commit whose summary
    records the watermark, the counts and the merged-files list. The state must still be at
    the plan's base snapshot (else :class:`StateConflictError`: plan again on top of it)."""
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.io.pyarrow import parquet_file_to_data_file

    catalog = catalog or open_catalog(target.lake_uri, s3)
    table = open_state_table(catalog, target, create=False)
    head = table.current_snapshot()
    if (None if head is None else head.snapshot_id) != plan.base_snapshot_id:
        raise StateConflictError(
            f"{table.name()}: another merge committed snapshot {head.snapshot_id if head else None}"
            f" after this one was planned on {plan.base_snapshot_id}: plan it again"
        )
    if sorted(merge.bucket for merge in merges) != list(plan.buckets):
        raise StateError(
            f"{table.name()}: the plan rewrites {len(plan.buckets)} buckets and "
            f"{len(merges)} rewrites were given: commit every bucket of the plan once"
        )
    old_files = _bucket_files(table, plan.base_snapshot_id, set(plan.buckets))
    new_files = [
        parquet_file_to_data_file(table.io, table.metadata, path)
        for merge in merges
        for path in merge.files
    ]
    live_items = plan.base_live_items + sum(merge.live_delta for merge in merges)
    tombstones = plan.base_tombstones + sum(merge.tombstone_delta for merge in merges)
    summary = {
        WATERMARK_US: str(plan.watermark_us),
        WATERMARK: micros_text(plan.watermark_us),
        MERGED_FILES: plan.merged_files,
        FILES_MERGED: str(plan.files_merged),
        EVENTS_READ: str(plan.events_read),
        BUCKETS_REWRITTEN: str(len(plan.buckets)),
        LIVE_ITEMS: str(live_items),
        TOMBSTONES: str(tombstones),
        COLUMNS: _columns_text(target.columns),
        KEY_NAMES: json.dumps(list(target.key_names)),
    }
    try:
        with (
            table.transaction() as transaction,
            transaction.update_snapshot(snapshot_properties=summary).overwrite() as overwrite,
        ):
            for data_file in old_files:
                overwrite.delete_data_file(data_file)
            for data_file in new_files:
                overwrite.append_data_file(data_file)
    except CommitFailedException as exc:
        raise StateConflictError(
            f"{table.name()}: the commit lost a race to another writer ({exc}): plan again"
        ) from None
    with contextlib.suppress(OSError):
        resolve(plan.staging, s3).delete_tree()  # else removed with the orphans
    snapshot = current_snapshot(table)
    return MergeResult(
        snapshot, plan.watermark_us, plan.files_merged, plan.events_read, len(plan.buckets)
    )


def plain_path(path: str) -> str:
    """A file's path as the filesystem lists it (no ``s3://`` or ``file://``)."""
    for scheme in ("s3://", "s3a://", "file://"):
        if path.startswith(scheme):
            return path[len(scheme) :]
    return path


def _referenced_files(table: Any) -> set[str]:
    """Every data file a snapshot of ``table`` reads: its manifests' live entries. A
    manifest's deleted entries name the files that snapshot replaced (pyiceberg 0.12 carries
    such manifests into every later snapshot); a snapshot that still reads one of them lists
    it live, so counting the deleted entries too would keep every state ever written."""
    found: set[str] = set()
    for snapshot in table.snapshots():
        for manifest in snapshot.manifests(table.io):
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                found.add(plain_path(entry.data_file.file_path))
    return found


def remove_orphans(
    table: Any, target: StateTarget, s3: S3Options | None, *, older_than: timedelta
) -> int:
    """Delete data files and merged-file lists under ``_current/`` that no snapshot refers
    to (an interrupted merge's), once older than ``older_than`` (younger ones may belong to
    a merge still running). Returns how many were deleted."""
    import pyarrow.fs as pafs

    referenced = _referenced_files(table)
    referenced |= {plain_path(record.merged_files) for record in state_snapshots(table)}
    folder = resolve(target.location, s3)
    cutoff = datetime.now(UTC) - older_than
    removed = 0
    for sub in ("data", "merged", "staging"):
        selector = pafs.FileSelector(f"{folder.path}/{sub}", allow_not_found=True, recursive=True)
        for info in folder.filesystem.get_file_info(selector):
            if info.type != pafs.FileType.File or plain_path(info.path) in referenced:
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
    files: dict[str, list[Any]],
    target: StateTarget,
    watermark_us: int,
    since_us: int | None,
) -> int:
    """Copy into ``events``, each with its bucket, the keyed rows at or before the watermark
    of the ``new`` files, and of the ``reread`` (merged) files those after ``since_us`` (the
    state's watermark: every merged file's rows up to it are in the state already)."""
    cut = time_literal(watermark_us)
    selects = []
    for name, fragments in files.items():
        if not fragments:
            continue
        chosen = ds.FileSystemDataset(
            list(fragments), lake.schema, ds.ParquetFileFormat(), lake.filesystem
        )
        database.add(f"{name}_rows", chosen, list(target.key_names))
        lower = ""
        if name == "reread" and since_us is not None:
            lower = f" AND time_stamp > {time_literal(since_us)}"
        _refuse_keyless(database, f"{name}_rows", lower, target)
        selects.append(
            f"SELECT k, op, data, time_stamp, uuid, {bucket_sql('k', target.buckets)} AS bucket"
            f" FROM {name}_rows WHERE k IS NOT NULL AND time_stamp IS NOT NULL"
            f" AND time_stamp <= {cut}{lower}"
        )
    if not selects:
        selects.append(
            "SELECT NULL::VARCHAR AS k, NULL::VARCHAR AS op, NULL::VARCHAR AS data, "
            "NULL::TIMESTAMPTZ AS time_stamp, NULL::VARCHAR AS uuid, NULL::INTEGER AS bucket "
            "WHERE false"
        )
    database.connection.execute(
        f"CREATE OR REPLACE TEMP TABLE events AS {' UNION ALL '.join(selects)}"
    )
    for name, fragments in files.items():
        if fragments:
            database.connection.execute(f"DROP TABLE {name}_rows")
    ((rows,),) = database.connection.sql("SELECT count(*) FROM events").fetchall()
    return int(rows)


def _refuse_keyless(database: LakeDatabase, rows: str, lower: str, target: StateTarget) -> None:
    """A row without a key cannot be placed in the state, and the reconciliation refuses a
    lake that holds one: the merge refuses it too, rather than leave it out unseen."""
    ((count, example),) = database.connection.sql(
        f"SELECT count(*), max(uuid) FROM {rows} WHERE k IS NULL{lower}"
    ).fetchall()
    if count:
        names = ", ".join(repr(name) for name in target.key_names)
        raise StateError(
            f"{target.lake_uri}: {count} lake rows without a key (e.g. the row with uuid "
            f"{example}): their data is not a JSON object with the key attributes {names}; "
            "find them by uuid and move their files out of the lake table's folder"
        )


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


def _bucket_files(table: Any, snapshot_id: int | None, buckets: set[int]) -> list[Any]:
    """The data files of ``buckets`` in snapshot ``snapshot_id`` (none before the first)."""
    if snapshot_id is None or not buckets:
        return []
    tasks = table.scan(snapshot_id=snapshot_id).plan_files()
    return [task.file for task in tasks if task.file.partition[0] in buckets]


def _columns_text(columns: Sequence[TypedColumn]) -> str:
    return ",".join(column.text for column in columns)


def _crowded_buckets(table: Any, *, every: bool = False) -> set[int]:
    """Buckets of the current snapshot with more files than their bytes need (written with
    a smaller target file size, or by another writer): a merge rewrites them even without
    events, which is the state's compaction. ``every``: all buckets that have files (the
    typed columns changed)."""
    target = int(table.properties.get("write.target-file-size-bytes", 512 << 20))
    files: dict[int, list[int]] = {}
    for task in table.scan().plan_files():
        files.setdefault(task.file.partition[0], []).append(task.file.file_size_in_bytes)
    return {
        bucket
        for bucket, sizes in files.items()
        if every or len(sizes) > CROWDED_FILES * max(1, -(-sum(sizes) // target))
    }


def _write_bucket(table: Any, rows: pa.Table) -> list[Any]:
    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    if rows.num_rows == 0:
        return []
    return list(_dataframe_to_data_files(table.metadata, rows, table.io, write_uuid=uuid.uuid4()))


def _stage_by_bucket(database: LakeDatabase, staging: Location) -> set[int]:
    """Write ``events`` sorted by bucket into one Parquet file per bucket under ``staging``
    (streamed: one batch and one open writer at a time); returns the buckets written."""
    reader = database.connection.sql(
        "SELECT k, op, data, time_stamp, uuid, bucket FROM events ORDER BY bucket"
    ).fetch_record_batch(64_000)
    written: set[int] = set()
    writer: pq.ParquetWriter | None = None
    current = -1
    if not staging.is_s3:
        os.makedirs(staging.path, exist_ok=True)
    try:
        for batch in reader:
            runs = pc.run_end_encode(batch.column("bucket"))
            ends = runs.run_ends.to_pylist()
            for start, stop, bucket in zip(
                [0, *ends[:-1]], ends, runs.values.to_pylist(), strict=True
            ):
                if bucket != current:
                    if writer is not None:
                        writer.close()
                    path = staging.child(f"bucket={bucket}.parquet")
                    writer = pq.ParquetWriter(
                        path.path, KEYED_EVENTS, filesystem=path.filesystem, compression="zstd"
                    )
                    current = bucket
                    written.add(bucket)
                part = batch.slice(start, stop - start).select(KEYED_EVENTS.names)
                assert writer is not None
                writer.write_table(pa.Table.from_batches([part]).cast(KEYED_EVENTS))
    finally:
        if writer is not None:
            writer.close()
    return written
