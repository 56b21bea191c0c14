"""A plain in-memory model of a DynamoDB table and a random history of changes to it.

The model is the oracle of the scenarios: what the table held at any moment. From the same
history come what AWS would send: stream records (Kinesis-for-DynamoDB form, one per
change), a full export's lines at a moment, and an incremental export's compacted lines for a
window (AWS_FORMATS: the final state in the window, OldImage as it was just before the window;
inserted and deleted inside the window: nothing).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dynamo_lake.codec import item_to_data

Key = tuple[str, int]
Image = dict[str, Any]

MS = 1_000
SECOND = 1_000_000
T0 = 1_717_200_000_000_000  # 2024-06-01T00:00:00Z
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


@dataclass(frozen=True)
class Change:
    """One write to the table, as its stream record tells it."""

    sequence: int
    time: int  # µs since the epoch, on a whole millisecond (a stream's precision)
    key: Key
    event: str  # INSERT, MODIFY or REMOVE
    new: Image | None
    old: Image | None
    ttl: bool = False

    def stream_record(self) -> dict[str, Any]:
        """The DynamoDB Streams record (wire form, as the relay reads it)."""
        dynamodb: dict[str, Any] = {"Keys": key_image(self.key), "SizeBytes": 100}
        if self.new is not None:
            dynamodb["NewImage"] = self.new
        if self.old is not None:
            dynamodb["OldImage"] = self.old
        record: dict[str, Any] = {
            "eventID": f"event-{self.sequence}",
            "eventName": self.event,
            "dynamodb": dynamodb,
        }
        if self.ttl:
            record["userIdentity"] = TTL_IDENTITY
        return record


def key_image(key: Key) -> Image:
    return {"pk": {"S": key[0]}, "sk": {"N": str(key[1])}}


def data_of(image: Image) -> str:
    return item_to_data(image)


class History:
    """A seeded random history: puts (inserts and updates), updates, deletes, TTL deletes."""

    def __init__(
        self, rng: random.Random, keys: int = 200, changes: int = 300, max_gap_ms: int = 30_000
    ) -> None:
        self.keys: list[Key] = [(f"customer#{n % 37:03d}", n) for n in range(keys)]
        self.changes: list[Change] = []
        state: dict[Key, Image] = {}
        moment = T0
        for sequence in range(changes):
            moment += rng.randint(1, max_gap_ms) * MS  # strictly increasing: no two writes tie
            key = rng.choice(self.keys)
            old = state.get(key)
            roll = rng.random()
            if old is None:
                new = self._image(rng, key, sequence)
                change = Change(sequence, moment, key, "INSERT", new, None)
            elif roll < 0.6:
                new = self._image(rng, key, sequence)
                change = Change(sequence, moment, key, "MODIFY", new, old)
            elif roll < 0.85:
                change = Change(sequence, moment, key, "REMOVE", None, old)
            else:
                change = Change(sequence, moment, key, "REMOVE", None, old, ttl=True)
            if change.new is None:
                state.pop(key, None)
            else:
                state[key] = change.new
            self.changes.append(change)
        self.end = moment

    @staticmethod
    def _image(rng: random.Random, key: Key, version: int) -> Image:
        image = {**key_image(key), "version": {"N": str(version)}}
        if rng.random() < 0.5:
            image["note"] = {"S": rng.choice(["", "ünïcödé", "a map key named S", "x" * 40])}
        if rng.random() < 0.3:
            image["tags"] = {"SS": sorted(rng.sample(["a", "b", "c", "d"], rng.randint(1, 3)))}
        if rng.random() < 0.2:
            image["nested"] = {"M": {"n": {"N": "1.50"}, "l": {"L": [{"NULL": True}]}}}
        return image

    def state_at(self, moment: int) -> dict[Key, Image]:
        """The table at ``moment`` (every change at or before it applied)."""
        state: dict[Key, Image] = {}
        for change in self.changes:
            if change.time > moment:
                break
            if change.new is None:
                state.pop(change.key, None)
            else:
                state[change.key] = change.new
        return state

    def data_at(self, moment: int) -> dict[Key, str]:
        return {key: data_of(image) for key, image in self.state_at(moment).items()}

    def full_export_lines(self, moment: int) -> Iterator[dict[str, Any]]:
        for image in self.state_at(moment).values():
            yield {"Item": image}

    def incremental_export_lines(self, start: int, end: int) -> Iterator[dict[str, Any]]:
        """NEW_AND_OLD_IMAGES lines of ``[start, end)``: each changed key's final state."""
        before = self.state_at(start - 1)
        last: dict[Key, Change] = {}
        for change in self.changes:
            if start <= change.time < end:
                last[change.key] = change
        for key, change in last.items():
            old, new = before.get(key), change.new
            if old is None and new is None:
                continue  # inserted and deleted inside the window: AWS writes nothing
            line: dict[str, Any] = {
                "Metadata": {"WriteTimestampMicros": {"N": str(change.time)}},
                "Keys": key_image(key),
            }
            if old is not None:
                line["OldImage"] = old
            if new is not None:
                line["NewImage"] = new
            yield line

    def quiet_moments(self, rng: random.Random, count: int, margin: int) -> list[int]:
        """Up to ``count`` moments at least ``margin`` µs from every change, in order."""
        gaps = [
            (earlier.time, later.time)
            for earlier, later in zip(self.changes, self.changes[1:], strict=False)
            if later.time - earlier.time > 2 * margin + 2 * MS
        ]
        chosen = sorted(rng.sample(gaps, min(count, len(gaps))))
        # A quarter millisecond past a whole one: never a stream time or a backfill time.
        return [((a + b) // 2 // MS) * MS + 250 for a, b in chosen]
