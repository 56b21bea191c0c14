"""The local stream relay over the emulator: real DynamoDB Streams, Parquet, DuckDB.

Fixtures (`emulator`, `sample_table_factory`) come from `local_aws.pytest_plugin`, which the
root conftest registers.
"""

from __future__ import annotations

import base64
from typing import Any

import duckdb
import orjson
import pyarrow.dataset as ds
import pytest

from dynamo_lake.lake.writer import CDC_SCHEMA
from dynamo_lake.storage import S3Options, resolve
from local_aws.server import LocalAwsControl
from stream_relay import (
    Faults,
    FirehoseBuffering,
    KinesisRecord,
    StreamRelay,
    latest_state,
    raw_client,
    stitched_demo,
    table_state,
)

SMALL = FirehoseBuffering(size_bytes=16 * 1024, interval_seconds=60)


@pytest.fixture
def stack(emulator: LocalAwsControl) -> LocalAwsControl:
    emulator.update_settings(pitr_lag_seconds=0.0)  # the export's time follows the relay start
    return emulator


@pytest.fixture
def lake_bucket(stack: LocalAwsControl) -> str:
    s3 = stack.client("s3")
    name = "relay-lake"
    if name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=name)
    return name


def options(stack: LocalAwsControl) -> S3Options:
    return S3Options(stack.endpoint_url, "us-east-1", "testing", "testing")


def lake_rows(stack: LocalAwsControl, lake_uri: str) -> list[tuple[str, str, int]]:
    location = resolve(lake_uri, options(stack))
    rows = ds.dataset(  # noqa: F841 - scanned by DuckDB by name
        location.path, filesystem=location.filesystem, format="parquet", schema=CDC_SCHEMA
    )
    return duckdb.sql("select uuid, op, epoch_us(time_stamp) from rows").fetchall()


def test_backfill_and_stream_stitched_give_the_tables_state(
    stack: LocalAwsControl, lake_bucket: str
) -> None:
    result = stitched_demo(
        stack.endpoint_url, bucket=lake_bucket, items=60, churn=40, buffering=SMALL
    )
    assert result.backfill_rows == 60
    assert len(result.stream_batches) > 1  # the size hint cut the stream into batches
    assert sum(batch.ok for batch in result.stream_batches) >= 40
    assert result.table_items > 0
    assert (result.missing_from_lake, result.extra_in_lake) == (0, 0)
    assert result.lake_items == result.table_items


def test_duplicates_and_reordering_do_not_change_the_latest_state(
    stack: LocalAwsControl, lake_bucket: str
) -> None:
    faults = Faults(duplicate=0.5, reorder=True, seed=3)
    result = stitched_demo(
        stack.endpoint_url, bucket=lake_bucket, items=40, churn=40, faults=faults, buffering=SMALL
    )
    assert result.equal
    rows = lake_rows(stack, result.lake_uri)
    uuids = [uuid for uuid, _, _ in rows]
    assert len(uuids) > len(set(uuids))  # duplicates landed, with the same uuid


def test_dropped_records_leave_a_difference_for_reconciliation_to_find(
    stack: LocalAwsControl, lake_bucket: str
) -> None:
    result = stitched_demo(
        stack.endpoint_url,
        bucket=lake_bucket,
        items=40,
        churn=40,
        faults=Faults(drop=0.3, seed=1),
        buffering=SMALL,
    )
    assert not result.equal
    assert result.missing_from_lake + result.extra_in_lake > 0


def test_stream_records_are_reshaped_to_kinesis_form_in_microseconds(
    stack: LocalAwsControl,
    lake_bucket: str,
    sample_table_factory: Any,
) -> None:
    table = sample_table_factory(items=30, churn=20)
    relay = StreamRelay(stack.endpoint_url, table.table_name, f"s3://{lake_bucket}/t/x")
    records = relay.poll()
    assert len(records) >= 50
    previous: dict[str, int] = {}
    for record in records:
        payload = orjson.loads(record.payload)
        assert payload["eventSource"] == "aws:dynamodb"
        assert payload["tableName"] == table.table_name
        assert payload["eventName"] in {"INSERT", "MODIFY", "REMOVE"}
        micros = payload["dynamodb"]["ApproximateCreationDateTime"]
        assert micros > 10**15  # µs since the epoch, not ms or s
        assert micros > previous.get(record.shard_id, 0)  # strictly ordered per shard
        previous[record.shard_id] = micros
        if payload["eventName"] == "REMOVE":
            assert "NewImage" not in payload["dynamodb"]
    binary = next(r for r in records if b'"signature":{"B":"' in r.payload)
    assert binary  # binary stays base64 text, as Kinesis carries it
    assert relay.poll() == []  # nothing new: the iterators moved on


def test_a_replayed_batch_replaces_its_rows_and_failures_go_to_errors(
    stack: LocalAwsControl,
    lake_bucket: str,
    sample_table_factory: Any,
) -> None:
    table = sample_table_factory(items=12)
    lake_uri = f"s3://{lake_bucket}/dynamo-cdc/replay/{table.table_name}"
    relay = StreamRelay(stack.endpoint_url, table.table_name, lake_uri)
    records = relay.poll()
    broken = KinesisRecord(records[0].shard_id, "99999999999999999999", b"{not json", "k")
    batch = [*records, broken]
    first = relay.deliver(batch)
    again = relay.deliver(list(reversed(batch)))  # same records, other order: same group
    assert first.group == again.group
    assert first.files == again.files
    assert (again.ok, again.failed, again.dropped) == (12, 1, 0)
    assert len(lake_rows(stack, lake_uri)) == 12
    errors = resolve(lake_uri, options(stack)).child(
        "_errors", first.group, "processing-failed.jsonl"
    )
    (failure,) = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert base64.b64decode(failure["rawData"]) == b"{not json"
    assert failure["errorCode"] == "Lambda.ProcessingFailedStatus"
    assert latest_state(lake_uri, ["pk", "sk"], s3=options(stack)) == table_state(
        stack.endpoint_url, table.table_name
    )


def test_batches_follow_the_size_and_interval_hints(
    stack: LocalAwsControl,
    lake_bucket: str,
    sample_table_factory: Any,
) -> None:
    table = sample_table_factory(items=4)
    now = [0.0]
    relay = StreamRelay(
        stack.endpoint_url,
        table.table_name,
        f"s3://{lake_bucket}/dynamo-cdc/hints/{table.table_name}",
        buffering=FirehoseBuffering(size_bytes=1024 * 1024, interval_seconds=60),
        clock=lambda: now[0],
    )
    assert relay.run_once() == []  # 4 small records: neither hint reached yet
    now[0] = 61.0
    (batch,) = relay.run_once()
    assert (batch.records, batch.ok) == (4, 4)
    dynamodb = stack.client("dynamodb")
    item = raw_client("dynamodb", stack.endpoint_url).scan(TableName=table.table_name)["Items"][0]
    for index in range(6):
        dynamodb.update_item(
            TableName=table.table_name,
            Key={"pk": item["pk"], "sk": item["sk"]},
            UpdateExpression="SET note = :n",
            ExpressionAttributeValues={":n": {"S": "x" * 1500 + str(index)}},
        )
    relay.buffering = FirehoseBuffering(size_bytes=20 * 1024, interval_seconds=60)
    batches = relay.run_once()  # size hint: full batches go, the remainder waits
    assert batches
    assert all(b.records >= 2 for b in batches)
    rest = relay.drain()
    assert sum(b.records for b in batches + rest) == 6
