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

Errors are :class:`~dynamo_lake.errors.InvalidRecordError` (the line or record lacks what a
row needs) or :class:`~dynamo_lake.errors.InvalidItemError` (an attribute, by path). Their
messages never quote item content, since they end up in logs: times, units and the names of
fields may appear, attribute values may not (see :mod:`dynamo_lake.codec`).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from dynamo_lake.codec import compiled_codec, item_to_data_bytes
from dynamo_lake.contract import TIME_RANGE_END_MICROS, TIME_RANGE_START_MICROS
from dynamo_lake.errors import InvalidItemError, InvalidRecordError

__all__ = [
    "TIME_RANGE_END_MICROS",
    "TIME_RANGE_START_MICROS",
    "CdcRow",
    "Op",
    "datetime_to_micros",
    "metadata_text",
    "micros_text",
    "micros_to_datetime",
    "parse_aws_time",
    "row_from_canonical",
    "row_from_full_export_line",
    "row_from_incremental_export_line",
    "row_from_stream_record",
    "row_uuid",
    "stream_time_micros",
]

Op = Literal["I", "U", "D"]

_STREAM_OPS: dict[str, Op] = {"INSERT": "I", "MODIFY": "U", "REMOVE": "D"}

# TIME_RANGE_*_MICROS (the contract): the same span in other units does not overlap it
# (each unit is 1000x the last), so the unit of a number is decided by the range it falls
# in, and a wrong one can be named.
_RANGE_TEXT = "2012-01-01 to 2100-01-01 UTC"
# (unit, start, end) of that span in each unit a timestamp is commonly written in.
_UNIT_RANGES = tuple(
    (unit, TIME_RANGE_START_MICROS * 1000 // per, TIME_RANGE_END_MICROS * 1000 // per)
    for unit, per in (
        ("seconds", 1_000_000_000),
        ("milliseconds", 1_000_000),
        ("microseconds", 1_000),
        ("nanoseconds", 1),
    )
)
_MILLIS_START, _MILLIS_END = _UNIT_RANGES[1][1:]
# A metadata value (eventName, tableName, ...) is quoted in a message only when it looks like
# a name or code: a malformed record may carry anything there, item content included.
_NAME_LIKE = re.compile(r"[A-Za-z0-9_.:/-]{1,64}").fullmatch


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


def row_from_canonical(op: Op, time_stamp: int, data: str) -> CdcRow:
    """A row for ``data`` that is already canonical JSON (read back from the lake, as the
    repair does): the same uuid the codec's path gives."""
    return CdcRow(row_uuid(op, time_stamp, data), op, time_stamp, data)


def _row(op: Op, time_stamp: int, data: bytes) -> CdcRow:
    """A row from the codec's canonical bytes: :func:`row_uuid` without another encode."""
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


def metadata_text(value: object) -> str:
    """A metadata value for an error message: quoted if it looks like a name, else its type."""
    if type(value) is str and _NAME_LIKE(value):
        return repr(value)
    return _type_name(value)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _check_object(line: object, what: str) -> None:
    # type() first: a dict (every parsed line) costs one comparison.
    if type(line) is not dict and not isinstance(line, Mapping):
        raise InvalidRecordError(f"{what} must be a JSON object, got {_type_name(line)}")


def _image(record: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    image = record.get(name)
    if image is None:
        return None
    if not isinstance(image, dict):
        raise InvalidRecordError(f"{name} must be an object of attributes, got {_type_name(image)}")
    return image


def _image_row(
    op: Op, time_stamp: int, image: Mapping[str, Any], name: str, consume: bool = False
) -> CdcRow:
    """The row of one image: the compiled codec's when it takes the image (it only reads
    it), else the pure codec's, which also raises the errors."""
    compiled = compiled_codec()
    if compiled is not None:
        row: CdcRow | None = compiled.row(image, op, time_stamp, CdcRow)
        if row is not None:
            return row
    return _row(op, time_stamp, _data(image, name, consume))


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
    _check_object(line, "a full-export data line")
    item = _image(line, "Item")
    if item is None:
        raise InvalidRecordError('a full-export line needs an "Item" object')
    return _image_row("I", export_time, item, "Item", consume)


def row_from_incremental_export_line(
    line: Mapping[str, Any],
    output_view: str = "NEW_AND_OLD_IMAGES",
    *,
    consume: bool = False,
    window: tuple[int, int] | None = None,
) -> CdcRow:
    """An incremental-export line -> a row at its ``WriteTimestampMicros``.

    ``output_view`` is manifest-summary.json's ``outputView`` (lines do not say it).
    NEW_AND_OLD_IMAGES: Keys+NewImage is an insert (``I``), Keys+OldImage+NewImage an update
    (``U``), Keys+OldImage a delete (``D``, data = the old image). NEW_IMAGE: Keys+NewImage
    cannot tell insert from update and becomes ``U`` (an upsert); Keys alone is a delete
    whose data is the key attributes.

    ``Metadata.WriteTimestampMicros.N`` must be plain decimal digits (microseconds since the
    epoch). ``window`` is the export's ``[exportFromTime, exportToTime)`` in µs (from
    manifest-summary.json): the time must lie in it, which catches a time in another unit.
    Without a window the time must lie in 2012-01-01..2100-01-01 UTC
    (:data:`TIME_RANGE_START_MICROS`, :data:`TIME_RANGE_END_MICROS`).
    """
    _check_object(line, "an incremental-export data line")
    time_stamp = _write_timestamp(line, window)
    new_image = _image(line, "NewImage")
    old_image = _image(line, "OldImage")
    if new_image is not None:
        op: Op = "I" if old_image is None and output_view == "NEW_AND_OLD_IMAGES" else "U"
        return _image_row(op, time_stamp, new_image, "NewImage", consume)
    if old_image is not None:
        return _image_row("D", time_stamp, old_image, "OldImage", consume)
    keys = _image(line, "Keys")
    if not keys:
        raise InvalidRecordError("an incremental-export line needs Keys, NewImage or OldImage")
    return _image_row("D", time_stamp, keys, "Keys", consume)


_WRITE_TIME = "Metadata.WriteTimestampMicros"


def _write_timestamp(line: Mapping[str, Any], window: tuple[int, int] | None) -> int:
    """The line's write time in µs, checked (once per line, so kept to a few operations)."""
    try:
        text = line["Metadata"]["WriteTimestampMicros"]["N"]
    except (KeyError, TypeError):
        raise _missing_write_time(line) from None
    # The regex [0-9]{1,19}, spelled with str methods (about twice as fast). int() alone
    # would take " 12", "1_000", "+5" and other scripts' digits ("١٢"), which isdigit and
    # isascii rule out; at most 19 digits keeps int() cheap (the range check does the rest).
    if type(text) is str and text.isdigit() and text.isascii() and len(text) < 20:
        micros = int(text)
        if window is None:
            if TIME_RANGE_START_MICROS <= micros < TIME_RANGE_END_MICROS:
                return micros
        elif window[0] <= micros < window[1]:
            return micros
        raise _write_time_outside(micros, window)
    raise _write_time_not_digits(text)


def _missing_write_time(line: Mapping[str, Any]) -> InvalidRecordError:
    expected = f'an incremental-export line needs {_WRITE_TIME} as {{"N": "<µs>"}}'
    metadata = line.get("Metadata")
    if metadata is None:
        return InvalidRecordError(f"{expected}; it has no Metadata")
    if not isinstance(metadata, Mapping):
        return InvalidRecordError(f"{expected}; its Metadata is {_type_name(metadata)}")
    stamp = metadata.get("WriteTimestampMicros")
    if not isinstance(stamp, Mapping):
        return InvalidRecordError(f"{expected}; its WriteTimestampMicros is {_type_name(stamp)}")
    return InvalidRecordError(f'{expected}; WriteTimestampMicros has no "N"')


def _write_time_not_digits(text: object) -> InvalidRecordError:
    if text == "":
        shown = "an empty string"
    elif type(text) is str and not _NAME_LIKE(text):
        shown = "text with blanks or other characters"
    else:
        shown = metadata_text(text)
    return InvalidRecordError(
        f"{_WRITE_TIME}.N must be 1 to 19 plain decimal digits (no sign, blank, '_', exponent "
        f"or non-ASCII digit), got {shown}: incremental exports write microseconds since the epoch"
    )


def _write_time_outside(micros: int, window: tuple[int, int] | None) -> InvalidRecordError:
    unit = _unit_of(micros)
    if window is None:
        where = f"is not a time from {_RANGE_TEXT} in microseconds"
    else:
        where = f"is outside the export window [{micros_text(window[0])}, {micros_text(window[1])})"
    if unit not in (None, "microseconds"):
        fix = f"is it in {unit}? incremental exports give microseconds since the epoch"
    elif unit is None:
        fix = "incremental exports give microseconds since the epoch"
    else:
        fix = (
            "the line does not belong to this export's window: is the window the one in "
            "the export's manifest-summary.json?"
        )
    return InvalidRecordError(f"{_WRITE_TIME} {micros} {where}: {fix}")


def _unit_of(value: float) -> str | None:
    """The unit in which ``value`` is a time from 2012 to 2100, if any (ranges are disjoint)."""
    for unit, start, end in _UNIT_RANGES:
        if start <= value < end:
            return unit
    return None


def micros_text(micros: int) -> str:
    """µs since the epoch -> ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (or the number, beyond datetime)."""
    try:
        return f"{micros_to_datetime(micros):%Y-%m-%dT%H:%M:%S.%fZ}"
    except (OverflowError, ValueError, OSError):
        return f"{micros} µs"  # a window bound beyond datetime's years: say it as it is


def stream_time_micros(value: object) -> int:
    """``dynamodb.ApproximateCreationDateTime`` of a Kinesis-for-DynamoDB record -> µs.

    Kinesis Data Streams for DynamoDB sends epoch milliseconds, or epoch microseconds when
    the table sets ``ApproximateCreationDateTimePrecision=MICROSECOND``. The unit is told by
    range, accepting only times from 2012-01-01 (DynamoDB's launch) to 2100-01-01 UTC:

    * milliseconds: ``1_325_376_000_000 <= value < 4_102_444_800_000`` (times 1000);
    * microseconds: ``1_325_376_000_000_000 <= value < 4_102_444_800_000_000`` (as is).

    The two ranges are disjoint. A JSON integer or float is accepted (a float in ms is
    rounded to the µs, one in µs truncated). Anything else (epoch seconds as DynamoDB
    Streams sends them, nanoseconds, zero, negatives, NaN, infinities, booleans, strings)
    raises :class:`InvalidRecordError` naming the unit the value looks like.
    """
    # type() is, not isinstance: bool is an int subclass and must not pass as 0 or 1.
    if type(value) is int or type(value) is float:
        if _MILLIS_START <= value < _MILLIS_END:
            return round(value * 1000)
        if TIME_RANGE_START_MICROS <= value < TIME_RANGE_END_MICROS:
            return int(value)
    raise _stream_time_problem(value)


def _stream_time_problem(value: object) -> InvalidRecordError:
    field = "dynamodb.ApproximateCreationDateTime"
    sends = (
        "Kinesis Data Streams for DynamoDB sends epoch milliseconds, or microseconds with "
        "ApproximateCreationDateTimePrecision=MICROSECOND"
    )
    accepted = f"accepted: a time from {_RANGE_TEXT} in either unit"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return InvalidRecordError(
            f"{field} must be a JSON number, got {_type_name(value)}; {sends}"
        )
    if type(value) is float and not math.isfinite(value):
        return InvalidRecordError(f"{field} {value!r} is not a finite number; {sends}")
    unit = _unit_of(value)
    shown = _number_repr(value)
    if unit == "seconds":
        return InvalidRecordError(
            f"{field} {shown} looks like epoch seconds (as DynamoDB Streams sends); {sends}: "
            "feed this Lambda from the table's Kinesis streaming destination"
        )
    if unit == "nanoseconds":
        return InvalidRecordError(f"{field} {shown} looks like epoch nanoseconds; {sends}")
    return InvalidRecordError(f"{field} {shown} is not a time in either unit; {sends} ({accepted})")


def _number_repr(value: int | float) -> str:
    # An int from Python (never from JSON) may have thousands of digits: say its size.
    if type(value) is int and value.bit_length() > 80:
        return f"(an integer of {value.bit_length()} bits)"
    return repr(value)


def row_from_stream_record(record: Mapping[str, Any]) -> CdcRow:
    """A Kinesis-for-DynamoDB record (decoded JSON) -> a row.

    INSERT -> ``I`` and MODIFY -> ``U`` with the new image; REMOVE -> ``D`` with the old
    image (or the keys when the stream view carries no old image). TTL deletes are REMOVEs
    too; callers that care read ``userIdentity``.
    """
    _check_object(record, "a stream record")
    event_name = record.get("eventName")
    op = _STREAM_OPS.get(event_name) if type(event_name) is str else None
    if op is None:
        raise InvalidRecordError(
            f"eventName must be INSERT, MODIFY or REMOVE, got {metadata_text(event_name)}"
        )
    change = record.get("dynamodb")
    if not isinstance(change, dict):
        raise InvalidRecordError(
            f'a stream record needs a "dynamodb" object, got {_type_name(change)}'
        )
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
            f"a {event_name} record needs dynamodb.{name} (is the stream view NEW_AND_OLD_IMAGES?)"
        )
    return _image_row(op, time_stamp, image, name)
