"""CDC rows: one change event per row, built the same way from every source.

A :class:`CdcRow` is what the lake stores: ``uuid``, ``op`` (``I``/``U``/``D``),
``time_stamp`` (microseconds since the epoch, UTC) and ``data`` (canonical JSON from
:mod:`dynamo_lake.codec`). Builders here turn a full-export line, an incremental-export
line and a Kinesis-for-DynamoDB stream record into rows; the backfill, the Firehose Lambda
and the repair all use them, so the same event always yields the same row.

The uuid is a pure function of ``(op, time_stamp, data)``::

    digest = sha256(op + "\\x1f" + str(time_stamp_micros) + "\\x1f" + data)   # UTF-8
    uuid   = UUID(bytes=digest[:16]) with version 8 and the RFC 9562 variant

so a re-delivered stream record or a re-run backfill gets the same uuid, and different
events (differing in any of the three) get different ones except with probability 2^-122.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from dynamo_lake.codec import item_to_data_bytes
from dynamo_lake.errors import InvalidItemError, InvalidRecordError

__all__ = [
    "CdcRow",
    "Op",
    "datetime_to_micros",
    "micros_to_datetime",
    "parse_aws_time",
    "row_from_full_export_line",
    "row_from_incremental_export_line",
    "row_from_stream_record",
    "row_uuid",
]

Op = Literal["I", "U", "D"]

_STREAM_OPS: dict[str, Op] = {"INSERT": "I", "MODIFY": "U", "REMOVE": "D"}
# Epoch milliseconds stay below 1e14 until the year 5138; epoch microseconds for any date
# after 1973 are above it. Kinesis-for-DynamoDB sends one or the other per table setting.
_MICROS_THRESHOLD = 10**14


class CdcRow(NamedTuple):
    """One lake row. ``time_stamp`` is integer microseconds since the epoch, UTC."""

    uuid: str
    op: Op
    time_stamp: int
    data: str


def row_uuid(op: str, time_stamp: int, data: str) -> str:
    """The deterministic event id of the lake contract (see the module docstring)."""
    return _uuid_text(_sha256(f"{op}\x1f{time_stamp}\x1f{data}".encode()).hexdigest())


def _uuid_text(hexdigest: str) -> str:
    # Version 8 (custom, hash-based) and the RFC 9562 variant, set on the hex digits.
    variant = _VARIANT_DIGITS[int(hexdigest[16], 16) & 3]
    return (
        f"{hexdigest[:8]}-{hexdigest[8:12]}-8{hexdigest[13:16]}-"
        f"{variant}{hexdigest[17:20]}-{hexdigest[20:32]}"
    )


_sha256 = hashlib.sha256
_VARIANT_DIGITS = "89ab"


def make_row(op: Op, time_stamp: int, data: str) -> CdcRow:
    """A row for ``data`` that is already canonical JSON (as from the codec)."""
    return CdcRow(row_uuid(op, time_stamp, data), op, time_stamp, data)


def _row(op: Op, time_stamp: int, data: bytes) -> CdcRow:
    """:func:`make_row` from the codec's bytes: hashes them without another encode."""
    text = _sha256(f"{op}\x1f{time_stamp}\x1f".encode() + data).hexdigest()
    uuid = (
        f"{text[:8]}-{text[8:12]}-8{text[13:16]}-{_VARIANT_OF[text[16]]}{text[17:20]}-{text[20:32]}"
    )
    return CdcRow(uuid, op, time_stamp, data.decode("utf-8"))


# The RFC 9562 variant bits (10xx) set on the 17th hex digit, by table for speed.
_VARIANT_OF = {digit: _VARIANT_DIGITS[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def parse_aws_time(text: str) -> int:
    """Parse an ISO-8601 time as AWS writes it (``2020-11-04T07:28:34.028Z``) to µs."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise InvalidRecordError(f"not an ISO-8601 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return datetime_to_micros(moment)


def datetime_to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise InvalidRecordError(f"time {moment.isoformat()} has no time zone; give it in UTC")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def micros_to_datetime(micros: int) -> datetime:
    return datetime.fromtimestamp(micros // 1_000_000, tz=UTC).replace(
        microsecond=micros % 1_000_000
    )


def _image(record: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    image = record.get(name)
    if image is None:
        return None
    if not isinstance(image, dict):
        raise InvalidRecordError(f"{name} must be an object of attributes")
    return image


def _data(image: Mapping[str, Any], name: str, consume: bool = False) -> bytes:
    try:
        return item_to_data_bytes(image, consume=consume)
    except InvalidItemError as exc:
        # Re-root the path at the image so the message says where in the record it is.
        raise InvalidItemError(f"{name}{exc.path[1:]}", exc.reason) from None


def row_from_full_export_line(
    line: Mapping[str, Any], export_time: int, *, consume: bool = False
) -> CdcRow:
    """A full-export line ``{"Item": {...}}`` -> an ``I`` row at the export time (µs).

    ``consume``: the parsed line is nobody else's and may be decoded in place (faster; see
    :func:`~dynamo_lake.codec.item_to_data_bytes`).
    """
    item = _image(line, "Item")
    if item is None:
        raise InvalidRecordError('a full-export line needs an "Item" object')
    return _row("I", export_time, _data(item, "Item", consume))


def row_from_incremental_export_line(
    line: Mapping[str, Any], output_view: str = "NEW_AND_OLD_IMAGES", *, consume: bool = False
) -> CdcRow:
    """An incremental-export line -> a row at its ``WriteTimestampMicros``.

    ``output_view`` is manifest-summary.json's ``outputView`` (lines do not say it).
    NEW_AND_OLD_IMAGES: Keys+NewImage is an insert (``I``), Keys+OldImage+NewImage an update
    (``U``), Keys+OldImage a delete (``D``, data = the old image). NEW_IMAGE: Keys+NewImage
    cannot tell insert from update and becomes ``U`` (an upsert); Keys alone is a delete
    whose data is the key attributes.
    """
    time_stamp = _write_timestamp(line)
    new_image = _image(line, "NewImage")
    old_image = _image(line, "OldImage")
    if new_image is not None:
        op: Op = "I" if old_image is None and output_view == "NEW_AND_OLD_IMAGES" else "U"
        return _row(op, time_stamp, _data(new_image, "NewImage", consume))
    if old_image is not None:
        return _row("D", time_stamp, _data(old_image, "OldImage", consume))
    keys = _image(line, "Keys")
    if not keys:
        raise InvalidRecordError("an incremental-export line needs Keys, NewImage or OldImage")
    return _row("D", time_stamp, _data(keys, "Keys", consume))


def _write_timestamp(line: Mapping[str, Any]) -> int:
    try:
        text = line["Metadata"]["WriteTimestampMicros"]["N"]
        return int(text)
    except (KeyError, TypeError, ValueError):
        raise InvalidRecordError(
            'an incremental-export line needs Metadata.WriteTimestampMicros as {"N": "<µs>"}'
        ) from None


def stream_time_micros(value: object) -> int:
    """``ApproximateCreationDateTime`` of a Kinesis-for-DynamoDB record, in ms or µs, to µs."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecordError(
            f"dynamodb.ApproximateCreationDateTime must be epoch ms or µs, got {value!r}"
        )
    micros = int(value) if value >= _MICROS_THRESHOLD else round(value * 1000)
    return micros


def row_from_stream_record(record: Mapping[str, Any]) -> CdcRow:
    """A Kinesis-for-DynamoDB record (decoded JSON) -> a row.

    INSERT -> ``I`` and MODIFY -> ``U`` with the new image; REMOVE -> ``D`` with the old
    image (or the keys when the stream view carries no old image). TTL deletes are REMOVEs
    too; callers that care read ``userIdentity``.
    """
    op = _STREAM_OPS.get(str(record.get("eventName")))
    if op is None:
        raise InvalidRecordError(
            f"eventName must be INSERT, MODIFY or REMOVE, got {record.get('eventName')!r}"
        )
    change = record.get("dynamodb")
    if not isinstance(change, dict):
        raise InvalidRecordError('a stream record needs a "dynamodb" object')
    time_stamp = stream_time_micros(change.get("ApproximateCreationDateTime"))
    if op == "D":
        image = _image(change, "OldImage")
        name = "OldImage"
        if image is None:
            image, name = _image(change, "Keys"), "Keys"
    else:
        image, name = _image(change, "NewImage"), "NewImage"
    if not image:
        raise InvalidRecordError(
            f"a {record.get('eventName')} record needs dynamodb.{name} "
            "(is the stream view NEW_AND_OLD_IMAGES?)"
        )
    return _row(op, time_stamp, _data(image, name))
