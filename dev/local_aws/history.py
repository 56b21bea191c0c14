"""Every version of every item, with its write time: what makes point-in-time exports possible.

moto keeps only each item's current state. The emulator records, after each successful write, the
item's new image (or a tombstone) stamped with the emulator clock, so an export can rebuild the
table as of any instant and an incremental export can compare two instants. One `TableHistory`
per live table; dropping or re-creating a table starts a new one.
"""

from __future__ import annotations

import bisect
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: An item in DynamoDB JSON, exactly as the JSON protocol carries it (B as base64 strings).
Image = dict[str, Any]


def key_identity(key: Image) -> str:
    """A stable string for a primary key, whatever the attribute order of the request."""
    return json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ItemVersion:
    """The state of one item from `written_micros` on; `image` None means deleted."""

    written_micros: int
    image: Image | None


@dataclass(frozen=True)
class ItemChange:
    """One item's compacted change over an incremental export window."""

    keys: Image
    old_image: Image | None
    new_image: Image | None
    last_write_micros: int


@dataclass
class TableHistory:
    """The write history of one table, plus its point-in-time recovery state."""

    table_arn: str
    table_name: str
    key_names: tuple[str, ...]
    table_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    pitr_enabled_micros: int | None = None
    recovery_period_days: int = 35
    _versions: dict[str, list[ItemVersion]] = field(default_factory=dict)
    _keys: dict[str, Image] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def key_of(self, item: Image) -> Image:
        return {name: item[name] for name in self.key_names}

    def record(self, key: Image, image: Image | None, written_micros: int) -> bool:
        """Add a version unless it changes nothing (AWS writes no change record for no-ops)."""
        identity = key_identity(key)
        with self._lock:
            versions = self._versions.get(identity)
            if versions is None:
                if image is None:
                    return False
                versions = self._versions[identity] = []
                self._keys[identity] = dict(key)
            elif versions[-1].image == image:
                return False
            version = ItemVersion(written_micros, image)
            if versions and versions[-1].written_micros > written_micros:
                # The clock was moved backwards: keep versions ordered by write time.
                times = [v.written_micros for v in versions]
                versions.insert(bisect.bisect_right(times, written_micros), version)
            else:
                versions.append(version)
            return True

    def current_images(self) -> dict[str, Image]:
        """Latest recorded image per key, for comparing with moto's table."""
        with self._lock:
            return {
                identity: versions[-1].image
                for identity, versions in self._versions.items()
                if versions[-1].image is not None
            }

    def key_for_identity(self, identity: str) -> Image:
        return self._keys[identity]

    def state_at(self, at_micros: int) -> Iterator[Image]:
        """Items as they were at `at_micros`, writes at exactly that instant included."""
        with self._lock:
            snapshot = [list(versions) for versions in self._versions.values()]
        for versions in snapshot:
            index = bisect.bisect_right(versions, at_micros, key=_written) - 1
            if index >= 0 and versions[index].image is not None:
                image = versions[index].image
                assert image is not None
                yield image

    def changes_between(self, from_micros: int, to_micros: int) -> Iterator[ItemChange]:
        """Per item written in [from, to): its state before `from` and its last state before `to`.

        Items created and deleted inside the window give nothing, as in AWS.
        """
        with self._lock:
            snapshot = [
                (self._keys[identity], list(versions))
                for identity, versions in self._versions.items()
            ]
        for keys, versions in snapshot:
            first_in_window = bisect.bisect_left(versions, from_micros, key=_written)
            end = bisect.bisect_left(versions, to_micros, key=_written)
            if end <= first_in_window:
                continue
            old = versions[first_in_window - 1].image if first_in_window > 0 else None
            new = versions[end - 1].image
            if old is None and new is None:
                continue
            yield ItemChange(keys, old, new, versions[end - 1].written_micros)


def _written(version: ItemVersion) -> int:
    return version.written_micros
