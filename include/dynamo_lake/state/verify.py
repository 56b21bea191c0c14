"""Verified snapshots: a current-state snapshot proven equal to the DynamoDB table at T.

A reconciliation with the ``export`` method has the table at T in its work location (the
full export, converted). When its verdict is healthy, the current state is merged to the
watermark T and that snapshot is compared **directly** with the export: every key, live or
not, and every item's canonical ``data`` byte for byte. Only an exact match earns the tag
``verified-<T>`` (:func:`tag_name`). The comparison has no ε: a stream time a little off
around T, which the log-based check tolerates, leaves the tag off that day rather than
tagging a snapshot that differs from the table. Drift leaves it off too.

A ``changes`` check tags by the **chain rule** (:func:`verify_changes_check`): the previous
verified snapshot S(P) must lie in the check's window [window start, T]; then every key of
K = (keys the incremental export says changed) ∪ (keys whose state differs between S(P) and
S(T)) is compared, a key of the export with the export's final image, any other key of K
with its state in S(P). By induction S(P) is the table at P; a key outside K changed neither
in DynamoDB in the window nor in the state, so S(T) holds the table's state for it too.
The second set catches a late lake file in an old window, which moves a key's state
although DynamoDB never changed it that day.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.dataset as ds

from dynamo_lake.cdc import datetime_to_micros, micros_to_datetime
from dynamo_lake.errors import StateError
from dynamo_lake.lake.query import LakeDatabase, latest_rows_sql
from dynamo_lake.state.current import (
    StateSnapshot,
    StateTarget,
    current_snapshot,
    merge_state,
    open_catalog,
    open_state_table,
    read_state,
)
from dynamo_lake.state.merge import live
from dynamo_lake.storage import S3Options

__all__ = [
    "Verification",
    "tag_moment",
    "tag_name",
    "tag_snapshot",
    "verified_tags",
    "verify_against_export",
    "verify_changes_check",
    "verify_export_check",
]

TAG_PREFIX = "verified-"
#: How long a verified tag is kept, counted from its T (see dynamo_lake.state.maintenance).
TAG_RETENTION = timedelta(days=90)


def tag_name(as_of_us: int) -> str:
    """``verified-20240601T120000.000000Z`` for T = 2024-06-01T12:00:00Z."""
    return f"{TAG_PREFIX}{micros_to_datetime(as_of_us):%Y%m%dT%H%M%S.%f}Z"


@dataclass(frozen=True)
class Verification:
    """A snapshot against the table at T: how many keys, and how many differ."""

    snapshot_id: int
    watermark: str
    table_items: int
    state_items: int
    missing: int  # in the table, not live in the snapshot
    extra: int  # live in the snapshot, not in the table
    different: int  # both, with other data
    tag: str | None = None  # set once the snapshot is tagged
    compared: int | None = None  # keys compared (a changes check: the chain rule's K)
    chained_to: str | None = None  # a changes check: the previous verified snapshot

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def to_json(self) -> dict[str, Any]:
        found = asdict(self)
        found["snapshot_id"] = str(self.snapshot_id)  # beyond a double: keep every digit
        return found

    def text(self) -> str:
        if self.equal:
            verdict = f"equals the table ({self.table_items:,} items)"
        else:
            verdict = (
                f"differs from the table: missing {self.missing}, extra {self.extra}, "
                f"different {self.different}; no tag"
            )
        tag = f", tagged {self.tag}" if self.tag else ""
        return f"current-state snapshot {self.snapshot_id} at {self.watermark} {verdict}{tag}"


def verify_against_export(
    table: Any,
    snapshot: StateSnapshot,
    export_rows: ds.Dataset,
    key_names: list[str],
    *,
    memory_limit_mb: int = 1024,
) -> Verification:
    """Compare ``snapshot``'s live items with the table's items in ``export_rows`` (a full
    export converted into CDC rows: the contract's latest state of those rows is the table
    at T), key by key and byte by byte."""
    database = LakeDatabase(memory_limit_mb=memory_limit_mb)
    try:
        database.add("table_rows", export_rows, key_names)
        state = live(read_state(table, snapshot.snapshot_id))
        database.connection.register("state_rows", state.select(["key", "data"]))
        ((table_items, state_items, missing, extra, different),) = database.connection.sql(
            f"""
            WITH items AS (
                SELECT k, data FROM ({latest_rows_sql("table_rows")}) latest WHERE op <> 'D'
            )
            SELECT
                (SELECT count(*) FROM items),
                (SELECT count(*) FROM state_rows),
                count(*) FILTER (WHERE s.key IS NULL),
                count(*) FILTER (WHERE t.k IS NULL),
                count(*) FILTER (WHERE t.k IS NOT NULL AND s.key IS NOT NULL
                                 AND t.data IS DISTINCT FROM s.data)
            FROM items t FULL OUTER JOIN state_rows s ON t.k = s.key
            """
        ).fetchall()
        return Verification(
            snapshot_id=snapshot.snapshot_id,
            watermark=snapshot.watermark,
            table_items=int(table_items),
            state_items=int(state_items),
            missing=int(missing),
            extra=int(extra),
            different=int(different),
        )
    finally:
        database.close()


def tag_snapshot(table: Any, snapshot_id: int, as_of_us: int) -> str:
    """Tag ``snapshot_id`` as verified at T; a tag of that T on another snapshot (an earlier
    verification of the same T, before a late file was merged) moves to this one."""
    name = tag_name(as_of_us)
    existing = table.metadata.refs.get(name)
    if existing is not None and existing.snapshot_id == snapshot_id:
        return name
    manage = table.manage_snapshots()
    if existing is not None:
        manage = manage.remove_tag(name)
    # max-ref-age is recorded for other engines; pyiceberg does not enforce it, and
    # dynamo_lake.state.maintenance removes tags past it.
    manage.create_tag(
        snapshot_id=snapshot_id,
        tag_name=name,
        max_ref_age_ms=int(TAG_RETENTION.total_seconds() * 1000),
    ).commit()
    return name


def verified_tags(table: Any) -> dict[str, int]:
    """The table's verified tags and the snapshots they name, oldest T first."""
    return {
        name: ref.snapshot_id
        for name, ref in sorted(table.metadata.refs.items())
        if name.startswith(TAG_PREFIX)
    }


def verify_export_check(
    target: StateTarget,
    as_of_us: int,
    export_rows: ds.Dataset,
    *,
    s3: S3Options | None = None,
    catalog: Any = None,
    memory_limit_mb: int = 1024,
) -> Verification:
    """After a healthy ``export`` check at T: merge the state to T, compare that snapshot with
    the export, and tag it when they are equal. A state already past T cannot hold a
    snapshot at T: :class:`StateError` says so (the check's verdict stands either way)."""
    table, snapshot = _snapshot_at(target, as_of_us, s3, catalog, memory_limit_mb)
    verification = verify_against_export(
        table, snapshot, export_rows, list(target.key_names), memory_limit_mb=memory_limit_mb
    )
    return _tag_if_equal(table, verification, as_of_us)


def _snapshot_at(
    target: StateTarget, as_of_us: int, s3: S3Options | None, catalog: Any, memory_mb: int
) -> tuple[Any, StateSnapshot]:
    """Merge the state to T (late files, the repair's rows); the table and its snapshot at T."""
    catalog = catalog or open_catalog(target.lake_uri, s3)
    merge_state(target, as_of_us, s3=s3, catalog=catalog, memory_limit_mb=memory_mb)
    table = open_state_table(catalog, target, create=False)
    snapshot = current_snapshot(table)
    if snapshot is None or snapshot.watermark_us != as_of_us:  # pragma: no cover - merge_state
        raise StateError(f"{table.name()}: no snapshot at {tag_name(as_of_us)} after the merge")
    return table, snapshot


def _tag_if_equal(table: Any, verification: Verification, as_of_us: int) -> Verification:
    if not verification.equal:
        return verification
    name = tag_snapshot(table, verification.snapshot_id, as_of_us)
    return Verification(**{**asdict(verification), "tag": name})


def tag_moment(name: str) -> datetime | None:
    """The T a verified tag names (None: not a verified tag's name)."""
    if not name.startswith(TAG_PREFIX):
        return None
    try:
        moment = datetime.strptime(name[len(TAG_PREFIX) :], "%Y%m%dT%H%M%S.%fZ")
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC)


def previous_verified(table: Any, window_start_us: int, as_of_us: int) -> tuple[int, int] | None:
    """The newest verified tag with T in ``[window_start, as_of)``: (its T, its snapshot)."""
    found: tuple[int, int] | None = None
    for name, snapshot_id in verified_tags(table).items():
        tagged = tag_moment(name)
        moment = None if tagged is None else datetime_to_micros(tagged)
        if moment is None or not window_start_us <= moment < as_of_us:
            continue
        if found is None or moment > found[0]:
            found = (moment, snapshot_id)
    return found


def verify_changes_check(
    target: StateTarget,
    as_of_us: int,
    window_start_us: int,
    changes_rows: ds.Dataset,
    *,
    s3: S3Options | None = None,
    catalog: Any = None,
    memory_limit_mb: int = 1024,
) -> Verification:
    """After a healthy ``changes`` check of ``[window_start, T)``: merge the state to T and
    tag S(T) by the chain rule (see above). Without a verified snapshot in the window there
    is no chain: :class:`StateError` says so, and how to start one (an ``export`` check)."""
    table, snapshot = _snapshot_at(target, as_of_us, s3, catalog, memory_limit_mb)
    previous = previous_verified(table, window_start_us, as_of_us)
    if previous is None:
        raise StateError(
            f"{table.name()}: no verified snapshot in the changes window from "
            f"{tag_name(window_start_us)[len(TAG_PREFIX) :]}: a changes check chains to the "
            "previous verified snapshot; run an export check to start a chain"
        )
    database = LakeDatabase(memory_limit_mb=memory_limit_mb)
    try:
        database.add("changed_rows", changes_rows, list(target.key_names))
        for name, snapshot_id in (("before", previous[1]), ("after", snapshot.snapshot_id)):
            rows = read_state(table, snapshot_id).select(["key", "op", "data"])
            database.connection.register(f"{name}_arrow", rows)
            database.connection.execute(
                f"CREATE TEMP TABLE {name} AS SELECT key, op <> 'D' AS alive, data "
                f"FROM {name}_arrow"
            )
        ((compared, missing, extra, different, table_items, state_items),) = (
            database.connection.sql(
                f"""
            WITH changed AS (
                SELECT k AS key, op <> 'D' AS alive, data
                FROM ({latest_rows_sql("changed_rows")}) latest
            ),
            moved AS (
                SELECT coalesce(b.key, a.key) AS key FROM before b FULL OUTER JOIN after a
                ON b.key = a.key
                WHERE (coalesce(b.alive, false) <> coalesce(a.alive, false))
                   OR (coalesce(a.alive, false) AND b.data IS DISTINCT FROM a.data)
            ),
            expected AS (
                SELECT key, alive, data FROM changed
                UNION ALL
                SELECT m.key, coalesce(b.alive, false), b.data FROM moved m
                LEFT JOIN before b ON b.key = m.key
                WHERE m.key NOT IN (SELECT key FROM changed)
            ),
            compared AS (
                SELECT e.key, e.alive AS want_alive, e.data AS want_data,
                    coalesce(a.alive, false) AS have_alive, a.data AS have_data
                FROM expected e LEFT JOIN after a ON a.key = e.key
            )
            SELECT count(*),
                count(*) FILTER (WHERE want_alive AND NOT have_alive),
                count(*) FILTER (WHERE have_alive AND NOT want_alive),
                count(*) FILTER (WHERE want_alive AND have_alive
                                 AND want_data IS DISTINCT FROM have_data),
                (SELECT count(*) FROM changed WHERE alive),
                (SELECT count(*) FROM after WHERE alive)
            FROM compared
            """
            ).fetchall()
        )
    finally:
        database.close()
    verification = Verification(
        snapshot_id=snapshot.snapshot_id,
        watermark=snapshot.watermark,
        table_items=int(table_items),
        state_items=int(state_items),
        missing=int(missing),
        extra=int(extra),
        different=int(different),
        compared=int(compared),
        chained_to=str(previous[1]),
    )
    return _tag_if_equal(table, verification, as_of_us)
