"""The Firehose transformation Lambda: Kinesis-for-DynamoDB records in, lake CDC rows out.

Firehose calls :func:`handler` with a batch of base64 records read from the Kinesis data
stream that the DynamoDB table streams into. Each record becomes one JSON row of the lake
contract, built by :func:`dynamo_lake.cdc.row_from_stream_record`, the builder the backfill
uses, so a streamed change and an exported item give byte-identical ``uuid`` and ``data``:

    {"uuid": "...", "op": "I"|"U"|"D", "time_stamp": "2022-04-11T23:28:32.473000Z", "data": "..."}

Firehose then converts the rows to Parquet through the Glue table's schema (OpenX JSON
SerDe; ``time_stamp`` as ISO-8601 UTC with six fraction digits, one of the forms the Firehose
documentation lists for that SerDe) and, with dynamic partitioning, writes each row under
``year=/month=/day=`` of its own ``time_stamp`` (the ``metadata.partitionKeys`` below), not
of its arrival time.

Every input ``recordId`` is answered, one bad record never fails the batch:

* ``Ok``: the row, base64, with ``metadata.partitionKeys`` {year, month, day}.
* ``Dropped``: a readable DynamoDB record of another table than ``SOURCE_TABLE_NAME`` (when
  that variable is set): several tables may stream into one Kinesis stream, and each lake
  table takes only its own. Nothing is written for it; the S3 backup keeps the source record.
* ``ProcessingFailed``: a record that cannot be read (bad base64, bad UTF-8 or JSON, not a
  DynamoDB change, a time that is not epoch ms or µs from 2012 to 2100, an attribute the
  codec refuses), a record created in the future (its ``ApproximateCreationDateTime`` later
  than this Lambda's clock plus :data:`MAX_CLOCK_SKEW_MICROS`: such a row would sit in
  ``year=2099/...`` as the table's newest change forever), and a record whose handling failed
  in any unexpected way. Its original ``data`` is returned unchanged and Firehose writes it
  under the ``processing-failed`` error prefix.

Each record is answered on its own: nothing one record holds can fail the batch. A record
that has no ``recordId`` string (``null``, not an object) cannot be answered at all; it is
skipped and logged as ``record_without_id`` with its index (Firehose never sends one).

Logs are one JSON object per line, at every level free of item content: counts, record ids,
and reasons that name an attribute path and the kind of problem, never a value (the codec's
and :mod:`dynamo_lake.cdc`'s messages are written that way). An unexpected exception is
logged by its class name only, since its message could quote the record.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, TypedDict

import orjson

from dynamo_lake.cdc import CdcRow, metadata_text, micros_to_datetime, row_from_stream_record
from dynamo_lake.contract import COLUMNS, partition_values
from dynamo_lake.errors import InvalidItemError, InvalidRecordError

__all__ = [
    "MAX_CLOCK_SKEW_MICROS",
    "RESPONSE_LIMIT_BYTES",
    "Outcome",
    "Result",
    "handler",
    "is_ttl_delete",
    "partition_keys",
    "row_json",
    "time_stamp_text",
    "transform_event",
    "transform_record",
]

log = logging.getLogger(__name__)

Result = Literal["Ok", "Dropped", "ProcessingFailed"]

#: Lambda's limit on a synchronous response (6 MB); Firehose fails the invocation above it.
RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024
#: Per-record envelope of the response beyond the base64 data (ids, result, partition keys).
_ENVELOPE_BYTES = 160
#: How far a record's creation time may lie ahead of this Lambda's clock (5 minutes, in µs);
#: a record exactly at now + this is accepted, one later is ProcessingFailed. DynamoDB stamps
#: a change before it puts it on Kinesis, and Firehose buffers it before calling the Lambda,
#: so a genuine record is never ahead of now except by how far the two AWS clocks disagree:
#: both are NTP-synchronised (Amazon Time Sync), which keeps that to milliseconds. 5 minutes
#: is AWS's own tolerance for a request's clock (SigV4 refuses a signature more than 5
#: minutes off), far above that error and far below the harm: a row from the future is the
#: table's newest change until the real time catches up with it.
MAX_CLOCK_SKEW_MICROS = 5 * 60 * 1_000_000
_TIME_FIELD = "dynamodb.ApproximateCreationDateTime"
_DYNAMODB_SOURCE = "aws:dynamodb"
_TTL_PRINCIPAL = "dynamodb.amazonaws.com"


class PartitionKeys(TypedDict):
    year: str
    month: str
    day: str


class OutputRecord(TypedDict, total=False):
    recordId: str
    result: Result
    data: str
    metadata: dict[str, PartitionKeys]


def time_stamp_text(micros: int) -> str:
    """µs since the epoch -> ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, always six digits).

    The Firehose developer guide lists ``yyyy-MM-dd'T'HH:mm:ss[.S]'Z'`` with up to nine
    fraction digits among the OpenX JSON SerDe's timestamp forms, so the value keeps its
    microseconds and its zone is stated by the ``Z``.
    """
    moment = datetime.fromtimestamp(micros // 1_000_000, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{micros % 1_000_000:06d}Z"


def partition_keys(micros: int) -> PartitionKeys:
    """The lake's ``year``/``month``/``day`` (UTC, zero-padded) of a time stamp in µs."""
    year, month, day = partition_values(micros)
    return {"year": year, "month": month, "day": day}


def row_json(row: CdcRow) -> bytes:
    """One lake row as the JSON line Firehose's SerDe reads (UTF-8, newline-terminated):
    the contract's columns in order, time stamps as :func:`time_stamp_text`."""
    values = row._asdict()
    return (
        orjson.dumps(
            {
                column.name: (
                    time_stamp_text(values[column.name])
                    if column.kind == "timestamp"
                    else values[column.name]
                )
                for column in COLUMNS
            }
        )
        + b"\n"
    )


class Outcome(NamedTuple):
    """What became of one record, for counting and logging (never item content)."""

    result: Result
    op: str = ""  # I, U or D for Ok
    ttl_delete: bool = False
    reason: str = ""  # why Dropped or ProcessingFailed
    unexpected: bool = False  # failed by an exception nobody foresaw (a bug: logged at ERROR)


class _Unreadable(Exception):
    """Internal: a record that becomes ProcessingFailed; the message is safe to log."""


def _decode(record: Mapping[str, Any]) -> dict[str, Any]:
    payload = record.get("data")
    if not isinstance(payload, str):
        raise _Unreadable("data is missing or not a base64 string")
    try:
        raw = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise _Unreadable(f"data is not valid base64: {exc}") from None
    try:
        change = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Unreadable(f"data is not UTF-8 JSON: {exc}") from None
    if not isinstance(change, dict):
        raise _Unreadable(f"data is JSON {type(change).__name__}, not a stream record object")
    if change.get("eventSource") != _DYNAMODB_SOURCE:
        raise _Unreadable(
            f"eventSource is {metadata_text(change.get('eventSource'))}, not "
            f"{_DYNAMODB_SOURCE!r}: not a Kinesis-for-DynamoDB record"
        )
    return change


def is_ttl_delete(change: Mapping[str, Any]) -> bool:
    """True for a REMOVE done by DynamoDB's Time to Live (AWS documents this identity)."""
    identity = change.get("userIdentity")
    return (
        change.get("eventName") == "REMOVE"
        and isinstance(identity, dict)
        and identity.get("type") == "Service"
        and identity.get("principalId") == _TTL_PRINCIPAL
    )


def _now_micros() -> int:
    """This Lambda's wall clock, µs since the epoch (UTC)."""
    return time.time_ns() // 1000


def _check_not_from_the_future(row: CdcRow, change: Mapping[str, Any], now_micros: int) -> None:
    """Refuse a creation time later than ``now_micros`` + :data:`MAX_CLOCK_SKEW_MICROS`."""
    ahead = row.time_stamp - now_micros
    if ahead <= MAX_CLOCK_SKEW_MICROS:
        return
    # The time passed the contract's range check: a JSON number, safe and short to quote.
    shown = repr(change["dynamodb"]["ApproximateCreationDateTime"])
    raise InvalidRecordError(
        f"{_TIME_FIELD} {shown} ({time_stamp_text(row.time_stamp)}) is {_span_text(ahead)} "
        f"ahead of this Lambda's clock ({_clock_text(now_micros)}), more than the "
        f"{MAX_CLOCK_SKEW_MICROS / 60_000_000:g} min of clock skew allowed; Kinesis Data Streams "
        "for DynamoDB stamps a change before it reaches this Lambda, so this time is not "
        "DynamoDB's: feed this Lambda from the table's Kinesis streaming destination, or fix "
        "the clock of whatever wrote the record"
    )


def _span_text(micros: int) -> str:
    minutes = micros / 60_000_000
    if minutes < 120:
        return f"{minutes:.1f} min"
    if minutes < 2 * 24 * 60:
        return f"{minutes / 60:.1f} h"
    if minutes < 730 * 24 * 60:
        return f"{minutes / (24 * 60):.1f} days"
    return f"{minutes / (365.25 * 24 * 60):.1f} years"


def _clock_text(micros: int) -> str:
    try:
        return f"{micros_to_datetime(micros):%Y-%m-%dT%H:%M:%S.%fZ}"
    except (OverflowError, ValueError, OSError):
        return f"{micros} µs"  # an injected "now" beyond datetime's years


def transform_record(
    record: Mapping[str, Any], table_name: str | None = None, *, now_micros: int | None = None
) -> tuple[OutputRecord, Outcome]:
    """Answer one Firehose input record: the output record and what became of it.

    ``table_name``: when given, readable records of any other table are ``Dropped``.
    ``now_micros``: "now" in µs since the epoch for the future check (default: the wall
    clock); a record created later than now + :data:`MAX_CLOCK_SKEW_MICROS` is
    ``ProcessingFailed``.
    """
    record_id = record.get("recordId")
    if not isinstance(record_id, str):
        # Firehose always sends one; without it there is nothing to answer to.
        raise InvalidRecordError("a Firehose record has no recordId")
    try:
        change = _decode(record)
        if table_name is not None and change.get("tableName") != table_name:
            reason = f"record of table {metadata_text(change.get('tableName'))}, not {table_name!r}"
            return {"recordId": record_id, "result": "Dropped"}, Outcome("Dropped", reason=reason)
        row = row_from_stream_record(change)
        _check_not_from_the_future(row, change, _now_micros() if now_micros is None else now_micros)
    except (_Unreadable, InvalidRecordError, InvalidItemError) as exc:
        # These messages name paths and kinds of problems, never values: safe to log.
        return _failed(record, record_id), Outcome("ProcessingFailed", reason=str(exc))
    output: OutputRecord = {
        "recordId": record_id,
        "result": "Ok",
        "data": base64.b64encode(row_json(row)).decode("ascii"),
        "metadata": {"partitionKeys": partition_keys(row.time_stamp)},
    }
    return output, Outcome("Ok", row.op, is_ttl_delete(change))


def _failed(record: Mapping[str, Any], record_id: str) -> OutputRecord:
    """The ProcessingFailed answer: the original data back, for the error prefix."""
    original = record.get("data")
    return {
        "recordId": record_id,
        "result": "ProcessingFailed",
        "data": original if isinstance(original, str) else "",
    }


def _answer(
    record: Mapping[str, Any], record_id: str, table_name: str | None, now_micros: int
) -> tuple[OutputRecord, Outcome]:
    """:func:`transform_record`, with the per-record boundary that keeps the batch alive."""
    try:
        return transform_record(record, table_name, now_micros=now_micros)
    except Exception as exc:  # the per-record boundary: answer every record, never raise
        # A bug or a case nobody foresaw: this record fails alone. Only the class is logged,
        # the message of an unknown exception may quote the record.
        reason = f"unexpected {type(exc).__name__} while transforming the record"
        outcome = Outcome("ProcessingFailed", reason=reason, unexpected=True)
        return _failed(record, record_id), outcome


def _log(level: int, event: str, **fields: object) -> None:
    if log.isEnabledFor(level):
        log.log(level, "%s", orjson.dumps({"event": event, **fields}).decode("utf-8"))


def transform_event(
    event: Mapping[str, Any], table_name: str | None = None, *, now_micros: int | None = None
) -> dict[str, Any]:
    """The whole Firehose invocation: ``{"records": [...]}``, one answer per input record.

    ``now_micros``: this invocation's "now", µs since the epoch, against which every record's
    creation time is checked (see :data:`MAX_CLOCK_SKEW_MICROS`). Default: the wall clock,
    read once as the invocation starts (every record of the batch reached Kinesis before it).
    Tests pass a fixed instant; the local stream relay passes its source's clock.
    """
    if now_micros is None:
        now_micros = _now_micros()
    records = event.get("records")
    if not isinstance(records, list):
        raise InvalidRecordError('a Firehose event needs a "records" list')
    answers: list[OutputRecord] = []
    counts = {"Ok": 0, "Dropped": 0, "ProcessingFailed": 0, "ttl_deletes": 0, "without_id": 0}
    ops = {"I": 0, "U": 0, "D": 0}
    size = 16
    for index, record in enumerate(records):
        record_id = record.get("recordId") if isinstance(record, Mapping) else None
        if not isinstance(record_id, str):
            # Nothing to answer to (Firehose always sends an id): skip it, say where it was.
            counts["without_id"] += 1
            _log(
                logging.WARNING,
                "record_without_id",
                invocation_id=event.get("invocationId"),
                index=index,
            )
            continue
        answer, outcome = _answer(record, record_id, table_name, now_micros)
        answers.append(answer)
        counts[outcome.result] += 1
        size += len(answer.get("data", "")) + _ENVELOPE_BYTES
        if outcome.result == "Ok":
            ops[outcome.op] += 1
            counts["ttl_deletes"] += outcome.ttl_delete
        elif outcome.result == "ProcessingFailed":
            _log(
                logging.ERROR if outcome.unexpected else logging.WARNING,
                "record_failed",
                invocation_id=event.get("invocationId"),
                record_id=answer["recordId"],
                reason=outcome.reason,
            )
        else:
            _log(
                logging.DEBUG, "record_dropped", record_id=answer["recordId"], reason=outcome.reason
            )
    _log(
        logging.INFO,
        "batch_transformed",
        invocation_id=event.get("invocationId"),
        delivery_stream=event.get("deliveryStreamArn"),
        records=len(records),
        ok=counts["Ok"],
        dropped=counts["Dropped"],
        failed=counts["ProcessingFailed"],
        without_id=counts["without_id"],
        ttl_deletes=counts["ttl_deletes"],
        inserts=ops["I"],
        updates=ops["U"],
        deletes=ops["D"],
        response_bytes_estimate=size,
    )
    if size > RESPONSE_LIMIT_BYTES:
        # Firehose fails an invocation whose response is too big, retries it, then writes
        # the whole batch to the processing-failed prefix. Lower BufferSizeInMBs.
        _log(
            logging.ERROR,
            "response_too_large",
            invocation_id=event.get("invocationId"),
            response_bytes_estimate=size,
            limit_bytes=RESPONSE_LIMIT_BYTES,
            fix="lower the Lambda processor's BufferSizeInMBs",
        )
    return {"records": answers}


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    """Lambda entry point (``dynamo_lake.firehose_lambda.handler``).

    Environment: ``SOURCE_TABLE_NAME`` (optional: records of other tables are Dropped),
    ``LOG_LEVEL`` (default INFO). "Now" for the future check is the Lambda's wall clock.
    """
    _configure_logging()
    return transform_event(event, os.environ.get("SOURCE_TABLE_NAME") or None)


def _configure_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    log.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
