"""A local stand-in for Kinesis and Firehose: the table's DynamoDB Stream into the lake.

Development tooling (the emulator has neither Kinesis-for-DynamoDB nor Firehose Lambda
processing). :class:`StreamRelay` reads the table's DynamoDB Stream from the local stack,
reshapes each record into the Kinesis-for-DynamoDB form (:func:`kinesis_record`), buffers
them as Firehose buffers for its Lambda processor (a size and an interval), calls the real
handler (:mod:`dynamo_lake.firehose_lambda`) on each batch, and writes the ``Ok`` rows
through the one lake writer into the table's lake folder. It can inject the faults Kinesis
and Firehose cause: duplicated records, reordering, and drops.

Choices, so the lake behaves as the AWS pipeline's would:

* **Times.** DynamoDB Streams give ``ApproximateCreationDateTime`` in epoch seconds (AWS:
  whole seconds; moto: seconds with milliseconds). The relay reads the wire value without
  boto3's datetime parsing, keeps every digit it has, and emits microseconds (as a table with
  ``ApproximateCreationDateTimePrecision=MICROSECOND`` does). Where the source is coarser and
  consecutive records of one shard tie, it adds 1 µs per record in shard order, so the lake
  orders a key's changes as the stream did (real Kinesis-for-DynamoDB at µs has no ties to
  break; the shift is at most the number of records sharing one source tick, in µs).
* **Clocks.** Those times come from moto's wall clock in the emulator's process (not the
  emulator clock that ``set_clock`` moves, which only exports and PITR follow), and a stack
  reached by ``--endpoint-url`` may run on a host whose clock differs from this one. The
  Lambda refuses a record created later than its "now" plus a few minutes of skew, so each
  record keeps when it was read on the emulator's clock (the ``Date`` of the GetRecords
  answer, as Kinesis stamps ``approximateArrivalTimestamp`` on its own clock), and the relay
  calls the Lambda with "now" = the later of this host's clock and the batch's latest
  arrival. A record read from the stream was created before it was read, so no genuine
  record is refused, while the Lambda's check itself stays as in production.
* **Batches.** A batch is published as one lake-writer group named
  ``stream-<shard>-<first sequence number>-<digest of its record ids>``, so delivering the
  same batch again replaces its files instead of adding rows, and a different batch that
  starts with the same (duplicated) record never replaces another's. Rows go to the
  ``year/month/day`` of their ``time_stamp`` (Firehose dynamic partitioning from the Lambda's
  partition keys).
* **Failures.** ``ProcessingFailed`` records go to ``_errors/<group>/processing-failed.jsonl``
  (Firehose's error-record shape), ``Dropped`` ones nowhere.

:func:`latest_state` reads the lake with DuckDB: for each primary key the row with the
greatest ``time_stamp`` (ties: ``D`` over ``U`` over ``I``, then the greater ``uuid``), the
item present unless that row is ``D``. :func:`table_state` reads the table the same way, so
the two compare as sets of canonical ``data`` strings.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from dynamo_lake.cdc import CdcRow, datetime_to_micros
from dynamo_lake.codec import item_to_data
from dynamo_lake.contract import partition_of
from dynamo_lake.firehose_lambda import transform_event
from dynamo_lake.lake.query import latest_state
from dynamo_lake.lake.writer import (
    LakeTable,
    Stage,
    StagedWriter,
    WriterSettings,
    publish,
)
from dynamo_lake.storage import S3Options, resolve

__all__ = [
    "BatchResult",
    "Faults",
    "FirehoseBuffering",
    "FirehoseDelivery",
    "KinesisRecord",
    "StreamRelay",
    "kinesis_record",
    "lambda_now_micros",
    "latest_state",
    "raw_client",
    "source_clock_micros",
    "table_state",
]

log = logging.getLogger(__name__)

REGION = "us-east-1"
SOURCE = "firehose"
#: Lambda's request limit: Firehose never sends more than this in one invocation.
INVOCATION_LIMIT_BYTES = 6 * 1024 * 1024


def raw_client(service: str, endpoint_url: str, region: str = REGION) -> Any:
    """A boto3 client that leaves timestamps and binary as on the wire (numbers, base64).

    DynamoDB Streams records then carry ``ApproximateCreationDateTime`` as the epoch-seconds
    number AWS sends and ``B`` values as base64 text, i.e. already the Kinesis form.
    """
    import boto3
    import botocore.session

    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=lambda value: value, blob_parser=lambda value: value
    )
    return boto3.Session(botocore_session=session).client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _seconds_to_micros(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"ApproximateCreationDateTime must be epoch seconds, got {value!r}")
    # repr() of a float is the shortest text that round-trips: the digits the server sent.
    return int(Decimal(repr(value) if isinstance(value, float) else str(value)) * 1_000_000)


@dataclass(frozen=True)
class KinesisRecord:
    """One stream record as Kinesis-for-DynamoDB would carry it, with its position."""

    shard_id: str
    sequence_number: str
    payload: bytes  # the Kinesis-for-DynamoDB JSON
    partition_key: str
    #: When it was read, µs on the source's clock (None: unknown, this host's clock is used).
    arrival_micros: int | None = None

    @property
    def record_id(self) -> str:
        return f"{self.shard_id}:{self.sequence_number}"

    @property
    def size(self) -> int:
        return (len(self.payload) + 2) // 3 * 4  # Firehose counts base64 bytes


def kinesis_record(stream_record: Mapping[str, Any], table_name: str, micros: int) -> bytes:
    """A DynamoDB Streams record (wire form) -> Kinesis-for-DynamoDB JSON at ``micros``."""
    change = stream_record["dynamodb"]
    dynamodb: dict[str, Any] = {"ApproximateCreationDateTime": micros, "Keys": change["Keys"]}
    for image in ("NewImage", "OldImage"):
        if image in change:
            dynamodb[image] = change[image]
    dynamodb["SizeBytes"] = change.get("SizeBytes", 0)
    return orjson.dumps(
        {
            "awsRegion": stream_record.get("awsRegion", REGION),
            "eventID": stream_record.get("eventID"),
            "eventName": stream_record["eventName"],
            "userIdentity": stream_record.get("userIdentity"),
            "recordFormat": "application/json",
            "tableName": table_name,
            "dynamodb": dynamodb,
            "eventSource": "aws:dynamodb",
        }
    )


@dataclass(frozen=True)
class FirehoseBuffering:
    """The Lambda processor's buffer hints: a batch goes when either is reached."""

    size_bytes: int = 1024 * 1024  # BufferSizeInMBs 1, as the template sets
    interval_seconds: float = 60.0


@dataclass(frozen=True)
class Faults:
    """Kinesis/Firehose misbehaviour to inject, as probabilities per record (seeded)."""

    duplicate: float = 0.0  # the record is delivered twice (a new recordId each time)
    drop: float = 0.0  # the record never reaches the Lambda
    reorder: bool = False  # records shuffled within a batch, batches delivered out of order
    seed: int = 0


@dataclass
class BatchResult:
    """What one delivered batch became."""

    group: str
    records: int
    ok: int
    dropped: int
    failed: int
    files: list[str] = field(default_factory=list)


class FirehoseDelivery:
    """Firehose's half: a batch of Kinesis records -> the Lambda -> one lake-writer group.

    Used by :class:`StreamRelay` and, with records built from a model history instead of the
    emulator's stream, by the model-based scenarios. ``faults.reorder`` shuffles records
    within a batch.
    """

    def __init__(
        self,
        table: LakeTable,
        table_name: str,
        *,
        faults: Faults | None = None,
        settings: WriterSettings | None = None,
    ) -> None:
        self.table = table
        self.table_name = table_name
        self.faults = faults or Faults()
        self.settings = settings or WriterSettings()
        self._random = random.Random(self.faults.seed)

    def firehose_event(self, batch: Iterable[KinesisRecord]) -> dict[str, Any]:
        records = list(batch)
        if self.faults.reorder:
            records = self._random.sample(records, len(records))
        now_ms = int(time.time() * 1000)
        seen: dict[str, int] = {}
        event_records = []
        for record in records:
            copy = seen.get(record.record_id, 0)
            seen[record.record_id] = copy + 1
            arrival_ms = now_ms if record.arrival_micros is None else record.arrival_micros // 1000
            event_records.append(
                {
                    "recordId": record.record_id + (f"#{copy}" if copy else ""),
                    "approximateArrivalTimestamp": arrival_ms,
                    "data": base64.b64encode(record.payload).decode("ascii"),
                    "kinesisRecordMetadata": {
                        "shardId": record.shard_id,
                        "sequenceNumber": record.sequence_number,
                        "subsequenceNumber": 0,
                        "partitionKey": record.partition_key,
                        "approximateArrivalTimestamp": arrival_ms,
                    },
                }
            )
        return {
            "invocationId": f"relay-{now_ms}",
            "deliveryStreamArn": f"arn:aws:firehose:{REGION}:123456789012:deliverystream/relay",
            "sourceKinesisStreamArn": f"arn:aws:kinesis:{REGION}:123456789012:stream/relay",
            "region": REGION,
            "records": event_records,
        }

    def deliver(self, batch: list[KinesisRecord]) -> BatchResult:
        """Call the Lambda handler on one batch and publish its rows as one lake group."""
        first = min(batch, key=lambda r: (r.shard_id, int(r.sequence_number)))
        # The same batch delivered again has the same name (and replaces its files); another
        # batch that happens to start with the same record (a duplicate) does not.
        members = "\n".join(sorted(record.record_id for record in batch)).encode()
        digest = hashlib.sha256(members).hexdigest()[:12]
        group = f"stream-{first.shard_id}-{first.sequence_number}-{digest}"
        event = self.firehose_event(batch)
        response = transform_event(event, self.table_name, now_micros=lambda_now_micros(batch))
        answers = {answer["recordId"]: answer for answer in response["records"]}
        if set(answers) != {record["recordId"] for record in event["records"]}:
            raise RuntimeError(f"the Lambda did not answer every record of {group}")
        rows: list[CdcRow] = []
        failures: list[bytes] = []
        counts = {"Ok": 0, "Dropped": 0, "ProcessingFailed": 0}
        for record in event["records"]:
            answer = answers[record["recordId"]]
            counts[answer["result"]] += 1
            if answer["result"] == "Ok":
                rows.append(_row_from_output(answer))
            elif answer["result"] == "ProcessingFailed":
                failures.append(_error_record(record, answer))
        stage = Stage(group, "relay")
        with StagedWriter(self.table, stage, SOURCE, self.settings) as writer:
            writer.write(sorted(rows, key=lambda row: row.time_stamp))
        errors = self.table.errors(group, "processing-failed")
        if failures:
            errors.write_bytes(b"\n".join(failures) + b"\n")
        files = publish(self.table, stage, writer.staged, about={"kind": "stream"})
        return BatchResult(
            group, len(batch), counts["Ok"], counts["Dropped"], counts["ProcessingFailed"], files
        )


class StreamRelay:
    """DynamoDB Stream -> Kinesis form -> Firehose-like batches -> Lambda -> lake writer."""

    def __init__(
        self,
        endpoint_url: str,
        table_name: str,
        lake_uri: str,
        *,
        buffering: FirehoseBuffering | None = None,
        faults: Faults | None = None,
        s3: S3Options | None = None,
        settings: WriterSettings | None = None,
        start: str = "TRIM_HORIZON",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table_name = table_name
        self.buffering = buffering or FirehoseBuffering()
        s3 = s3 or S3Options(endpoint_url, REGION, "testing", "testing")
        self.table = LakeTable(resolve(lake_uri, s3))
        self.delivery = FirehoseDelivery(self.table, table_name, faults=faults, settings=settings)
        self._streams = raw_client("dynamodbstreams", endpoint_url)
        self._clock = clock
        self._random = random.Random(self.faults.seed)
        self._buffer: list[KinesisRecord] = []
        self._buffer_started: float | None = None
        self._last_micros: dict[str, int] = {}
        self._iterators: dict[str, str | None] = {}
        dynamodb = raw_client("dynamodb", endpoint_url)
        self.stream_arn = dynamodb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
        self._start = start
        self._discover_shards()

    def _discover_shards(self) -> None:
        description = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in description["Shards"]:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=self._start
                )["ShardIterator"]

    # -- reading -------------------------------------------------------------------------

    def poll(self) -> list[KinesisRecord]:
        """Read every shard up to its end; return the new records in Kinesis form."""
        self._discover_shards()
        fresh: list[KinesisRecord] = []
        for shard_id, iterator in sorted(self._iterators.items()):
            while iterator:
                page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                records = page.get("Records", [])
                arrival = source_clock_micros(page)
                fresh.extend(self._reshape(shard_id, record, arrival) for record in records)
                iterator = page.get("NextShardIterator")
                if not records:
                    break
            self._iterators[shard_id] = iterator
        return fresh

    def _reshape(
        self, shard_id: str, record: Mapping[str, Any], arrival_micros: int | None
    ) -> KinesisRecord:
        micros = _seconds_to_micros(record["dynamodb"]["ApproximateCreationDateTime"])
        micros = max(micros, self._last_micros.get(shard_id, -1) + 1)
        self._last_micros[shard_id] = micros
        keys = orjson.dumps(record["dynamodb"]["Keys"], option=orjson.OPT_SORT_KEYS)
        return KinesisRecord(
            shard_id,
            record["dynamodb"]["SequenceNumber"],
            kinesis_record(record, self.table_name, micros),
            base64.b64encode(keys).decode("ascii")[:256],
            arrival_micros,
        )

    # -- batching and delivery -----------------------------------------------------------

    def _due_batches(self, flush: bool) -> list[list[KinesisRecord]]:
        batches: list[list[KinesisRecord]] = []
        limit = min(self.buffering.size_bytes, INVOCATION_LIMIT_BYTES)
        while self._buffer:
            taken, size = 0, 0
            while taken < len(self._buffer) and (
                taken == 0 or size + self._buffer[taken].size <= limit
            ):
                size += self._buffer[taken].size
                taken += 1
            full = size >= limit or taken < len(self._buffer)
            waited = self._buffer_started is not None and (
                self._clock() - self._buffer_started >= self.buffering.interval_seconds
            )
            if not (full or waited or flush):
                break
            batches.append(self._buffer[:taken])
            del self._buffer[:taken]
            self._buffer_started = self._clock() if self._buffer else None
        return batches

    def run_once(self, flush: bool = False) -> list[BatchResult]:
        """Poll, buffer, and deliver the batches that are due (all of them with ``flush``)."""
        for record in self.poll():
            if self._random.random() < self.faults.drop:
                log.info("fault: dropped %s", record.record_id)
                continue
            self._buffer.append(record)
            if self._random.random() < self.faults.duplicate:
                self._buffer.append(record)
            if self._buffer_started is None:
                self._buffer_started = self._clock()
        batches = self._due_batches(flush)
        if self.faults.reorder:
            self._random.shuffle(batches)
        return [self.deliver(batch) for batch in batches]

    def drain(self) -> list[BatchResult]:
        """Deliver everything the stream holds now."""
        return self.run_once(flush=True)

    @property
    def faults(self) -> Faults:
        return self.delivery.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.delivery.faults = faults

    def firehose_event(self, batch: Iterable[KinesisRecord]) -> dict[str, Any]:
        return self.delivery.firehose_event(batch)

    def deliver(self, batch: list[KinesisRecord]) -> BatchResult:
        return self.delivery.deliver(batch)


def source_clock_micros(response: Mapping[str, Any]) -> int | None:
    """The answering server's clock from a boto3 response's ``Date`` header, as µs since the
    epoch: ``Date`` has whole seconds, so this is its end (the server's clock read less than
    that when it answered). None without a readable ``Date``."""
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    try:
        moment = email.utils.parsedate_to_datetime(headers["date"])
    except (KeyError, TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None  # "-0000": no zone stated
    return datetime_to_micros(moment) + 1_000_000


def lambda_now_micros(batch: Iterable[KinesisRecord]) -> int:
    """The "now" the relay gives the Lambda for a batch: the later of this host's clock and
    the batch's latest arrival on the source's clock (see the module's "Clocks")."""
    arrivals = [record.arrival_micros for record in batch if record.arrival_micros is not None]
    return max([time.time_ns() // 1000, *arrivals])


def _row_from_output(answer: Mapping[str, Any]) -> CdcRow:
    """Read a Lambda output row as Firehose's SerDe would, and check its partition keys."""
    row = orjson.loads(base64.b64decode(answer["data"]))
    micros = datetime_to_micros(datetime.fromisoformat(row["time_stamp"]))
    keys = answer["metadata"]["partitionKeys"]
    expected = f"year={keys['year']}/month={keys['month']}/day={keys['day']}"
    if partition_of(micros) != expected:
        raise RuntimeError(f"partition keys {expected} do not match time_stamp {row['time_stamp']}")
    return CdcRow(row["uuid"], row["op"], micros, row["data"])


def _error_record(record: Mapping[str, Any], answer: Mapping[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "attemptsMade": 1,
            "arrivalTimestamp": record["approximateArrivalTimestamp"],
            "errorCode": "Lambda.ProcessingFailedStatus",
            "errorMessage": "The Lambda answered ProcessingFailed for this record.",
            "rawData": record["data"],
            "recordId": answer["recordId"],
        }
    )


# -- comparing the lake with the table -------------------------------------------------------


def table_state(endpoint_url: str, table_name: str) -> set[str]:
    """The canonical ``data`` of every item in the table (a consistent scan)."""
    client = raw_client("dynamodb", endpoint_url)
    items: set[str] = set()
    for page in client.get_paginator("scan").paginate(TableName=table_name, ConsistentRead=True):
        items.update(item_to_data(item) for item in page["Items"])
    return items


# -- backfill and stream stitched (the demo, and its test) -----------------------------------


@dataclass(frozen=True)
class StitchedDemo:
    """What :func:`stitched_demo` did and found."""

    table_name: str
    lake_uri: str
    backfill_rows: int
    stream_batches: list[BatchResult]
    table_items: int
    lake_items: int
    missing_from_lake: int
    extra_in_lake: int

    @property
    def equal(self) -> bool:
        return self.missing_from_lake == 0 and self.extra_in_lake == 0


def stitched_demo(
    endpoint_url: str,
    *,
    bucket: str = "lake",
    items: int = 200,
    churn: int = 100,
    faults: Faults | None = None,
    buffering: FirehoseBuffering | None = None,
    table_name: str | None = None,
) -> StitchedDemo:
    """Items exist before streaming starts; a full export backfills them; then streamed churn.

    Order of events, as in production: the table has ``items`` items; the stream relay starts
    reading at LATEST (streaming switched on); a PITR full export at "now" is converted into
    the lake (the backfill); ``churn`` updates, deletes and inserts happen; the relay delivers
    them. The lake's latest state must then equal the table. Needs the emulator's S3 in the
    environment (``AWS_ENDPOINT_URL`` etc.) for the export reader, and ``pitr_lag_seconds=0``
    so the export's time is after the relay's start.
    """
    import uuid as uuid_module

    from dynamo_lake.lake.conversion import convert_export
    from local_aws.seed import PARTITION_KEY, SORT_KEY, apply_churn, create_sample_table, load_items

    name = table_name or f"orders-{uuid_module.uuid4().hex[:8]}"
    dynamodb = raw_client("dynamodb", endpoint_url)
    s3 = raw_client("s3", endpoint_url)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    import boto3

    writer = boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    table_arn, _ = create_sample_table(writer, name)
    load_items(writer, name, items)
    lake_uri = f"s3://{bucket}/dynamo-cdc/shop/{name.replace('-', '_')}"
    options = S3Options(endpoint_url, REGION, "testing", "testing")
    relay = StreamRelay(
        endpoint_url, name, lake_uri, s3=options, start="LATEST", faults=faults, buffering=buffering
    )
    export = dynamodb.export_table_to_point_in_time(
        TableArn=table_arn,
        S3Bucket=bucket,
        S3Prefix=f"exports/{name}",
        ExportFormat="DYNAMODB_JSON",
    )["ExportDescription"]
    deadline = time.monotonic() + 60
    while export["ExportStatus"] == "IN_PROGRESS" and time.monotonic() < deadline:
        time.sleep(0.1)
        export = dynamodb.describe_export(ExportArn=export["ExportArn"])["ExportDescription"]
    if export["ExportStatus"] != "COMPLETED":
        raise RuntimeError(f"export {export['ExportArn']} ended {export['ExportStatus']}")
    backfill = convert_export(f"s3://{bucket}/{export['ExportManifest']}", lake_uri, s3=options)
    apply_churn(writer, name, churn)
    batches = relay.drain()
    in_table = table_state(endpoint_url, name)
    in_lake = latest_state(lake_uri, [PARTITION_KEY, SORT_KEY], s3=options)
    return StitchedDemo(
        name,
        lake_uri,
        backfill.rows,
        batches,
        len(in_table),
        len(in_lake),
        len(in_table - in_lake),
        len(in_lake - in_table),
    )


def main(argv: list[str] | None = None) -> int:
    """`python dev/stream_relay.py`: the stitched demo on a local stack of its own."""
    import argparse

    from local_aws.server import LocalAwsProcess
    from local_aws.settings import EmulatorSettings

    parser = argparse.ArgumentParser(description=stitched_demo.__doc__)
    parser.add_argument("--endpoint-url", help="a running local stack (default: start one)")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--churn", type=int, default=500)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = EmulatorSettings(export_delay_seconds=0.0, pitr_lag_seconds=0.0)
    stack = None
    endpoint = options.endpoint_url
    if endpoint is None:
        stack = LocalAwsProcess(settings=settings).start()
        endpoint = stack.endpoint_url
    try:
        result = stitched_demo(endpoint, items=options.items, churn=options.churn)
    finally:
        if stack is not None:
            stack.stop()
    ok = sum(batch.ok for batch in result.stream_batches)
    print(f"table {result.table_name}: backfill {result.backfill_rows} rows from a full export")
    print(f"stream: {len(result.stream_batches)} Firehose batches, {ok} rows through the Lambda")
    print(f"table items {result.table_items}, lake latest-state items {result.lake_items}")
    print("lake latest state equals the table" if result.equal else "MISMATCH", flush=True)
    return 0 if result.equal else 1


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
