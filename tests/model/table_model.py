"""A plain in-memory model of a DynamoDB table and a random history of changes to it.

The model is the oracle of the scenarios: what the table held at any moment. From the same
history come what AWS would send: stream records (Kinesis-for-DynamoDB form, one per
change), a full export's lines at a moment, and an incremental export's compacted lines for a
window (AWS_FORMATS: the final state in the window, OldImage as it was just before the window;
inserted and deleted inside the window: nothing).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dynamo_lake.codec import item_to_data

#: A key: its attributes' values as text (an N value's digits), in the key schema's order.
Key = tuple[str, ...]
Image = dict[str, Any]
#: Numbers stay text: a decoder that hands a number's digits through (never a double).
_TEXT_JSON = json.JSONDecoder(parse_float=str, parse_int=str)

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

    keys: Image | None = None  # the key attributes, typed (None: the default schema's)

    def stream_record(self) -> dict[str, Any]:
        """The DynamoDB Streams record (wire form, as the relay reads it)."""
        keys = self.keys if self.keys is not None else key_image(self.key)
        dynamodb: dict[str, Any] = {"Keys": keys, "SizeBytes": 100}
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


@dataclass(frozen=True)
class KeySchema:
    """A table's key attributes (partition key first), their types, and the keys to use."""

    names: tuple[str, ...]
    types: tuple[str, ...]
    values: tuple[Key, ...]

    def image(self, key: Key) -> Image:
        return {
            name: {kind: value}
            for name, kind, value in zip(self.names, self.types, key, strict=True)
        }

    def key_of(self, data: str) -> Key:
        """The key of a canonical ``data`` (or a canonical key JSON), read exactly."""
        item = _TEXT_JSON.decode(data)
        return tuple(str(item[name]) for name in self.names)

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(zip(self.names, self.types, strict=True))


def orders_schema(keys: int = 200) -> KeySchema:
    """The default: ``pk`` S (37 customers), ``sk`` N."""
    values = tuple((f"customer#{n % 37:03d}", str(n)) for n in range(keys))
    return KeySchema(("pk", "sk"), ("S", "N"), values)


def colliding_schema(rng: random.Random, keys: int = 200) -> KeySchema:
    """S and S, values from separators, control characters, quotes and backslashes, built
    so that many keys join to the same text with any one separator (``("a\x1fb", "c")``
    and ``("a", "b\x1fc")``)."""
    alphabet = ["a", "b", "\x1f", "\x00", "\n", '"', "\\", "é", "\u2028", ","]
    found: set[Key] = {("a\x1fb", "c"), ("a", "b\x1fc"), ("a\x1f", "b"), ("a", "\x1fb")}
    while len(found) < keys:
        pk = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
        sk = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
        found.add((pk, sk))
    return KeySchema(("pk", "sk"), ("S", "S"), tuple(sorted(found)))


def decimal_schema(keys: int = 200) -> KeySchema:
    """N and B: numbers of 38 significant digits that differ only in the last one (one
    double apart from their neighbours), beside binary values."""
    numbers = [f"0.1{'0' * 36}{digit}" for digit in range(1, 10)]
    numbers += [f"1234567890123456789012345678901234567{digit}" for digit in range(10)]
    numbers += [f"-9.999999999999999999999999999999999999{digit}E+125" for digit in range(1, 10)]
    blobs = ["AA==", "AAE=", "AAI=", "/w==", "AAAA"]
    values = tuple((number, blob) for number in numbers for blob in blobs)[:keys]
    return KeySchema(("pk", "sk"), ("N", "B"), values)


def quoted_names_schema(keys: int = 200) -> KeySchema:
    """Key attribute names with quotes and backslashes, one ending in a backslash (S, N)."""
    values = tuple((f"c{n % 23}", str(n)) for n in range(keys))
    return KeySchema(('p\\"k', "s\\"), ("S", "N"), values)


DEFAULT_SCHEMA = orders_schema()


def key_image(key: Key, schema: KeySchema = DEFAULT_SCHEMA) -> Image:
    return schema.image(key)


def data_of(image: Image) -> str:
    return item_to_data(image)


class History:
    """A seeded random history: puts (inserts and updates), updates, deletes, TTL deletes."""

    def __init__(
        self,
        rng: random.Random,
        keys: int = 200,
        changes: int = 300,
        max_gap_ms: int = 30_000,
        schema: KeySchema | None = None,
    ) -> None:
        self.schema = schema or orders_schema(keys)
        self.keys: list[Key] = list(self.schema.values)
        self.changes: list[Change] = []
        state: dict[Key, Image] = {}
        moment = T0
        for sequence in range(changes):
            moment += rng.randint(1, max_gap_ms) * MS  # strictly increasing: no two writes tie
            key = rng.choice(self.keys)
            old = state.get(key)
            roll = rng.random()
            typed = self.schema.image(key)
            if old is None:
                new = self._image(rng, key, sequence)
                change = Change(sequence, moment, key, "INSERT", new, None, keys=typed)
            elif roll < 0.6:
                new = self._image(rng, key, sequence)
                change = Change(sequence, moment, key, "MODIFY", new, old, keys=typed)
            elif roll < 0.85:
                change = Change(sequence, moment, key, "REMOVE", None, old, keys=typed)
            else:
                change = Change(sequence, moment, key, "REMOVE", None, old, ttl=True, keys=typed)
            if change.new is None:
                state.pop(key, None)
            else:
                state[key] = change.new
            self.changes.append(change)
        self.end = moment

    def _image(self, rng: random.Random, key: Key, version: int) -> Image:
        image = {**self.schema.image(key), "version": {"N": str(version)}}
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
                "Keys": self.schema.image(key),
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
