"""Keeping a current-state table small: snapshot expiry that never drops a verified tag too
young to go, and our own ``max-ref-age`` for those tags (pyiceberg keeps a tag forever).

* A verified tag (``verified-<T>``) older than the tag retention, counted from its T, is
  removed: pyiceberg records ``max-ref-age-ms`` but does not enforce it.
* Then every snapshot committed before the snapshot retention is expired, except the
  current one and those a remaining tag names: a tag survives expiry, and reading it
  (``FOR VERSION AS OF``) still works.
* The files only expired snapshots read become orphans, and the next merge removes them
  (:func:`dynamo_lake.state.current.remove_orphans`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dynamo_lake.state.verify import TAG_RETENTION, tag_moment

__all__ = ["SNAPSHOT_RETENTION", "TAG_RETENTION", "Expiry", "expire_state"]

SNAPSHOT_RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class Expiry:
    tags_removed: tuple[str, ...]
    snapshots_expired: int

    def text(self) -> str:
        removed = ", ".join(self.tags_removed) or "none"
        return (
            f"current state: {self.snapshots_expired} snapshots expired; verified tags past "
            f"their retention removed: {removed}"
        )


def expire_state(
    table: Any,
    *,
    now: datetime,
    retention: timedelta = SNAPSHOT_RETENTION,
    tag_retention: timedelta = TAG_RETENTION,
) -> Expiry:
    """Remove verified tags older than ``tag_retention`` (by their T), then expire the
    snapshots committed more than ``retention`` before ``now`` that no ref names."""
    removed = []
    for name in sorted(table.metadata.refs):
        moment = tag_moment(name)
        if moment is not None and now - moment > tag_retention:
            removed.append(name)
    if removed:
        manage = table.manage_snapshots()
        for name in removed:
            manage = manage.remove_tag(name)
        manage.commit()
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
    current = table.current_snapshot()
    if current is not None:
        protected.add(current.snapshot_id)
    cutoff = (now - retention).timestamp() * 1000
    expired = [
        snapshot.snapshot_id
        for snapshot in table.snapshots()
        if snapshot.timestamp_ms < cutoff and snapshot.snapshot_id not in protected
    ]
    if expired:
        table.maintenance.expire_snapshots().by_ids(expired).commit()
    return Expiry(tuple(removed), len(expired))
