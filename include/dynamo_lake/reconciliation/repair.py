"""Repair: corrective CDC rows for the keys a comparison found drifting, never edits.

For a key the lake lacks (or has deleted): an ``I`` row with the table's image; for a key
whose data differs: a ``U`` row with the table's image; for a key the table no longer has:
a ``D`` row with the lake's last image. Phantoms (changes the table never had, found by the
``changes`` method) are not repaired: their true state before the window is unknown there;
the ``export`` method repairs them.

Rows are stamped T (``export``), or with the item's write time (``changes``) unless the
lake holds a later event for the key, in which case T, so the repair is the latest state.
Nothing is stamped after T. The rows are written through the lake writer as their own
published group, named for the run, table and T: a repeated repair writes the same uuids
and the same files.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from dynamo_lake.cdc import CdcRow, row_from_canonical
from dynamo_lake.lake.writer import LakeTable, Stage, StagedWriter, publish, published_groups
from dynamo_lake.reconciliation.engines import Finding

__all__ = ["RepairWriter", "repair_group"]

log = logging.getLogger(__name__)
_BATCH = 10_000


def repair_group(lake: LakeTable, run_id: str, table: str, as_of: int) -> str:
    """The group a repair of ``table`` at ``as_of`` by ``run_id`` publishes as.

    Named for the run, table and T, so a retried repair writes the same files. If that
    group was already published (the run repaired, and later found new drift), the next
    repair gets the next number, so it never replaces, and undoes, the earlier repair.
    """
    digest = hashlib.sha256(f"{run_id}\x1f{table}\x1f{as_of}".encode()).hexdigest()[:16]
    base = f"repair-{digest}"
    existing = {group for group in published_groups(lake) if group.startswith(base)}
    if base not in existing:
        return base
    number = 2
    while f"{base}-{number}" in existing:
        number += 1
    return f"{base}-{number}"


@dataclass
class RepairWriter:
    """Stages corrective rows as findings stream by; :meth:`publish` makes them visible."""

    table: LakeTable
    stage: Stage
    method: str
    as_of: int
    rows: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    _writer: StagedWriter | None = None
    _pending: list[CdcRow] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._writer = StagedWriter(self.table, self.stage, "repair")

    def _stamp(self, finding: Finding) -> int:
        if self.method != "changes" or finding.table_time is None:
            return self.as_of
        if finding.lake_time is not None and finding.lake_time >= finding.table_time:
            return self.as_of
        return min(finding.table_time, self.as_of)

    def add(self, finding: Finding) -> None:
        if finding.kind == "missing" and finding.table_data is not None:
            row = row_from_canonical("I", self._stamp(finding), finding.table_data)
        elif finding.kind == "different" and finding.table_data is not None:
            row = row_from_canonical("U", self._stamp(finding), finding.table_data)
        elif finding.kind == "extra" and finding.lake_data is not None:
            row = row_from_canonical("D", self._stamp(finding), finding.lake_data)
        else:
            return  # phantoms, and anything without the image it would need
        self._pending.append(row)
        self.by_kind[finding.kind] = self.by_kind.get(finding.kind, 0) + 1
        if len(self._pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending and self._writer is not None:
            self._writer.write(sorted(self._pending, key=lambda row: row.time_stamp))
            self.rows += len(self._pending)
            self._pending = []

    def publish(self) -> list[str]:
        """Publish the staged rows as the repair's group (nothing if there are none)."""
        self._flush()
        assert self._writer is not None
        staged = self._writer.close()
        if not staged:
            self.table.clear_staging(self.stage)
            return []
        paths = publish(
            self.table, self.stage, staged, about={"kind": "repair", "as_of": self.as_of}
        )
        log.info("repair %s: %d rows in %d files", self.stage.group, self.rows, len(paths))
        return paths

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
