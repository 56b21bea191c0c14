"""The Firehose transformation Lambda: every record answered, rows identical to the backfill's."""

from __future__ import annotations

import base64
import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from dynamo_lake import firehose_lambda
from dynamo_lake.cdc import (
    row_from_full_export_line,
    row_from_incremental_export_line,
    row_uuid,
)
from dynamo_lake.firehose_lambda import (
    MAX_CLOCK_SKEW_MICROS,
    RESPONSE_LIMIT_BYTES,
    handler,
    time_stamp_text,
    transform_event,
)

# The seed article's own example event, verbatim (a MODIFY of the item name="Abhisek Roy").
SEED_EVENT: dict[str, Any] = {
    "invocationId": "ae298f43-e471-4098-b665-0c13af6ccc2a",
    "sourceKinesisStreamArn": (
        "arn:aws:kinesis:ap-south-1:42339:stream/repo-name-kinesisstream-1UF-KinesisStream-uhcEC2"
    ),
    "deliveryStreamArn": (
        "arn:aws:firehose:ap-south-1:42339:deliverystream/repo-name-firehosedeliverys"
        "tream-LYUHPS-FGai-NkoasdJ"
    ),
    "region": "ap-south-1",
    "records": [
        {
            "recordId": "496200",
            "approximateArrivalTimestamp": 1649719712500,
            "data": (
                "eyJhd3NSZWdpb24iOiAiYXAtc291dGgtMSIsICJldmVudElEIjogIjdkNWFzZDEtZGFzZGFzZDVl"
                "LTRkYXNkYXNkZDQtYTFhc2QyZi05YXNkMTk4MDIiLCAiZXZlbnROYW1lIjogIk1PRElGWSIsICJ1"
                "c2VySWRlbnRpdHkiOiBudWxsLCAicmVjb3JkRm9ybWF0IjogImFwcGxpY2F0aW9uL2pzb24iLCAi"
                "dGFibGVOYW1lIjogInRhYmxlX25hbWUiLCAiZHluYW1vZGIiOiB7IkFwcHJveGltYXRlQ3JlYXRp"
                "b25EYXRlVGltZSI6IDE2NDk3MTk3MTI0NzMsICJLZXlzIjogeyJuYW1lIjogeyJTIjogIjk4ZGZl"
                "My0xYzgtNGRiMy1iZjJlLTMyYTc5YWMifX0sICJOZXdJbWFnZSI6IHsibmFtZSI6IHsiUyI6ICJB"
                "Ymhpc2VrIFJveSJ9LCAiY2l0eSI6IHsiUyI6ICJLb2xrYXRhIn19LCAiT2xkSW1hZ2UiOiB7Im5h"
                "bWUiOiB7IlMiOiAiQWJoaXNlayBSb3kifSwgImNpdHkiOiB7IlMiOiAiQmVuZ2FsdXJ1In19LCAi"
                "U2l6ZUJ5dGVzIjogMTIzfSwgImV2ZW50U291cmNlIjogImF3czpkeW5hbW9kYiJ9"
            ),
            "kinesisRecordMetadata": {
                "sequenceNumber": "41230",
                "subsequenceNumber": 0,
                "partitionKey": "D3A9",
                "shardId": "shardId-000000000001",
                "approximateArrivalTimestamp": 1649719712500,
            },
        }
    ],
}

KEYS = {"pk": {"S": "customer#1"}, "sk": {"N": "7"}}
EVERY_TYPE = {
    **KEYS,
    "s": {"S": "café ☕ 2024-01-01T00:00:00Z"},
    "n": {"N": "12345678901234567890123456789012345678"},
    "tiny": {"N": "1E-130"},
    "b": {"B": base64.b64encode(b"\x00\xff").decode()},
    "t": {"BOOL": True},
    "nil": {"NULL": True},
    "m": {"M": {"S": {"S": "a map key named S"}, "z": {"N": "-0"}}},
    "l": {"L": [{"S": "x"}, {"N": "1.50"}, {"L": [{"BOOL": False}]}]},
    "ss": {"SS": ["b", "a"]},
    "ns": {"NS": ["10", "-1", "2.5"]},
    "bs": {"BS": [base64.b64encode(b"\x02").decode(), base64.b64encode(b"\x01").decode()]},
}
EVERY_TYPE_DATA = (
    '{"b":"AP8=","bs":["AQ==","Ag=="],"l":["x",1.50,[false]],"m":{"S":"a map key named S","z":-0},'
    '"n":12345678901234567890123456789012345678,"nil":null,"ns":[-1,2.5,10],"pk":"customer#1",'
    '"s":"café ☕ 2024-01-01T00:00:00Z","sk":7,"ss":["a","b"],"t":true,"tiny":1E-130}'
)
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


def stream_record(
    event_name: str,
    *,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    when: int = 1_700_000_000_123_456,
    table: str = "orders",
    identity: dict[str, str] | None = None,
) -> dict[str, Any]:
    change: dict[str, Any] = {"ApproximateCreationDateTime": when, "Keys": KEYS, "SizeBytes": 99}
    if new is not None:
        change["NewImage"] = new
    if old is not None:
        change["OldImage"] = old
    return {
        "awsRegion": "us-east-1",
        "eventID": "e1",
        "eventName": event_name,
        "userIdentity": identity,
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": change,
        "eventSource": "aws:dynamodb",
    }


def firehose_event(*payloads: bytes | dict[str, Any]) -> dict[str, Any]:
    records = []
    for index, payload in enumerate(payloads):
        raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        records.append(
            {
                "recordId": f"r{index:05d}",
                "approximateArrivalTimestamp": 1_700_000_001_000,
                "data": base64.b64encode(raw).decode(),
            }
        )
    return {"invocationId": "inv-1", "deliveryStreamArn": "arn:firehose", "records": records}


def rows_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        orjson.loads(base64.b64decode(answer["data"]))
        for answer in response["records"]
        if answer["result"] == "Ok"
    ]


def test_the_seed_articles_event_becomes_one_update_row_at_the_change_time() -> None:
    response = handler(SEED_EVENT, None)
    (answer,) = response["records"]
    assert answer["recordId"] == "496200"
    assert answer["result"] == "Ok"
    assert answer["metadata"] == {"partitionKeys": {"year": "2022", "month": "04", "day": "11"}}
    (row,) = rows_of(response)
    # ApproximateCreationDateTime 1649719712473 ms, not the seed's approximateArrivalTimestamp.
    assert row == {
        "uuid": row_uuid("U", 1_649_719_712_473_000, '{"city":"Kolkata","name":"Abhisek Roy"}'),
        "op": "U",
        "time_stamp": "2022-04-11T23:28:32.473000Z",
        "data": '{"city":"Kolkata","name":"Abhisek Roy"}',
    }
    assert base64.b64decode(answer["data"]).endswith(b"}\n")


def test_insert_update_remove_map_to_i_u_d_and_remove_keeps_the_old_image() -> None:
    old = {**KEYS, "city": {"S": "Bengaluru"}}
    new = {**KEYS, "city": {"S": "Kolkata"}}
    response = transform_event(
        firehose_event(
            stream_record("INSERT", new=old),
            stream_record("MODIFY", new=new, old=old),
            stream_record("REMOVE", old=new),
        )
    )
    assert [answer["result"] for answer in response["records"]] == ["Ok"] * 3
    rows = rows_of(response)
    assert [row["op"] for row in rows] == ["I", "U", "D"]
    assert rows[2]["data"] == '{"city":"Kolkata","pk":"customer#1","sk":7}'


def test_a_remove_without_old_image_keeps_the_keys() -> None:
    record = stream_record("REMOVE")
    (row,) = rows_of(transform_event(firehose_event(record)))
    assert row["op"] == "D"
    assert row["data"] == '{"pk":"customer#1","sk":7}'


def test_a_ttl_delete_is_a_delete_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    old = {**KEYS, "expires": {"N": "1700000000"}}
    event = firehose_event(stream_record("REMOVE", old=old, identity=TTL_IDENTITY))
    with caplog.at_level(logging.INFO, logger="dynamo_lake.firehose_lambda"):
        (row,) = rows_of(transform_event(event))
    assert row["op"] == "D"
    assert row["data"] == '{"expires":1700000000,"pk":"customer#1","sk":7}'
    summary = orjson.loads(caplog.records[-1].getMessage())
    assert summary["event"] == "batch_transformed"
    assert (summary["ttl_deletes"], summary["deletes"]) == (1, 1)


def test_every_attribute_type_gives_the_canonical_data_of_the_backfill() -> None:
    when = 1_700_000_000_123_456
    (row,) = rows_of(transform_event(firehose_event(stream_record("INSERT", new=EVERY_TYPE))))
    assert row["data"] == EVERY_TYPE_DATA
    # The backfill's builders give byte-identical data, and the same uuid for the same event.
    full = row_from_full_export_line({"Item": EVERY_TYPE}, export_time=when)
    assert full.data == row["data"]
    incremental = row_from_incremental_export_line(
        {
            "Metadata": {"WriteTimestampMicros": {"N": str(when)}},
            "Keys": KEYS,
            "NewImage": EVERY_TYPE,
        }
    )
    assert (incremental.uuid, incremental.op, incremental.data) == (
        row["uuid"],
        row["op"],
        row["data"],
    )


@pytest.mark.parametrize(
    ("when", "text", "micros"),
    [
        (1_649_719_712_473, "2022-04-11T23:28:32.473000Z", 1_649_719_712_473_000),  # ms
        (1_649_719_712_473_219, "2022-04-11T23:28:32.473219Z", 1_649_719_712_473_219),  # µs
        (1_704_067_199_999_999, "2023-12-31T23:59:59.999999Z", 1_704_067_199_999_999),
    ],
)
def test_time_stamp_is_iso_utc_with_microseconds(when: int, text: str, micros: int) -> None:
    (row,) = rows_of(transform_event(firehose_event(stream_record("INSERT", new=KEYS, when=when))))
    assert row["time_stamp"] == text
    assert time_stamp_text(micros) == text
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo == UTC
    assert int(parsed.timestamp()) * 1_000_000 + parsed.microsecond == micros


def test_a_duplicated_kinesis_record_gets_the_same_uuid() -> None:
    record = stream_record("MODIFY", new={**KEYS, "x": {"N": "1"}}, old=KEYS)
    first, second = rows_of(transform_event(firehose_event(record, record)))
    assert first == second


def test_records_of_another_table_are_dropped_when_a_table_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event = firehose_event(
        stream_record("INSERT", new=KEYS, table="orders"),
        stream_record("INSERT", new=KEYS, table="customers"),
    )
    monkeypatch.setenv("SOURCE_TABLE_NAME", "orders")
    answers = handler(event, None)["records"]
    assert [a["result"] for a in answers] == ["Ok", "Dropped"]
    assert "data" not in answers[1]
    monkeypatch.delenv("SOURCE_TABLE_NAME")
    assert [a["result"] for a in handler(event, None)["records"]] == ["Ok", "Ok"]


BAD_PAYLOADS = {
    "bad base64": None,
    "bad json": b'{"eventName": "INSERT", ',
    "bad utf-8": b'{"eventName": "\xff"}',
    "json array": b"[1, 2]",
    "not dynamodb": orjson.dumps({"eventSource": "aws:s3", "eventName": "INSERT"}),
    "unknown event": orjson.dumps({**stream_record("INSERT", new=KEYS), "eventName": "TRUNCATE"}),
    "bad attribute": orjson.dumps(stream_record("INSERT", new={**KEYS, "n": {"N": "NaN"}})),
    "no image": orjson.dumps(stream_record("MODIFY")),
    "no time": orjson.dumps(
        {**stream_record("INSERT", new=KEYS), "dynamodb": {"Keys": KEYS, "NewImage": KEYS}}
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_PAYLOADS))
def test_an_unreadable_record_fails_alone_and_keeps_its_original_data(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = stream_record("INSERT", new=KEYS)
    event = firehose_event(good, good, good)
    payload = BAD_PAYLOADS[name]
    event["records"][1]["data"] = (
        "eyJub3QiOiAiYmFzZTY0I!!" if payload is None else base64.b64encode(payload).decode()
    )
    with caplog.at_level(logging.INFO, logger="dynamo_lake.firehose_lambda"):
        answers = transform_event(event)["records"]
    assert [a["recordId"] for a in answers] == ["r00000", "r00001", "r00002"]
    assert [a["result"] for a in answers] == ["Ok", "ProcessingFailed", "Ok"]
    assert answers[1]["data"] == event["records"][1]["data"]
    warning = orjson.loads(next(r for r in caplog.records if r.levelname == "WARNING").getMessage())
    assert warning["event"] == "record_failed"
    assert warning["record_id"] == "r00001"
    assert warning["reason"]


def test_logs_never_carry_item_content(caplog: pytest.LogCaptureFixture) -> None:
    secret = {**KEYS, "card": {"S": "4111-1111-1111-1111"}}
    event = firehose_event(stream_record("INSERT", new=secret))
    with caplog.at_level(logging.DEBUG, logger="dynamo_lake.firehose_lambda"):
        handler(event, None)
    assert caplog.records
    assert all("4111" not in record.getMessage() for record in caplog.records)


def test_a_500_record_batch_is_answered_in_order_within_the_response_limit() -> None:
    payloads: list[bytes | dict[str, Any]] = []
    for index in range(500):
        item = {**EVERY_TYPE, "sk": {"N": str(index)}}
        if index % 50 == 7:
            payloads.append(b"not json")
        elif index % 3 == 0:
            payloads.append(stream_record("INSERT", new=item, when=1_700_000_000_000_000 + index))
        elif index % 3 == 1:
            payloads.append(
                stream_record("MODIFY", new=item, old=EVERY_TYPE, when=1_700_000_000_000 + index)
            )
        else:
            payloads.append(stream_record("REMOVE", old=item, when=1_700_000_000_000_000 + index))
    event = firehose_event(*payloads)
    started = time.perf_counter()
    response = transform_event(event)
    elapsed = time.perf_counter() - started
    answers = response["records"]
    assert [a["recordId"] for a in answers] == [r["recordId"] for r in event["records"]]
    failed = [a for a in answers if a["result"] == "ProcessingFailed"]
    assert len(failed) == 10
    rows = rows_of(response)
    assert len(rows) == 490
    assert len({row["uuid"] for row in rows}) == 490
    assert len(orjson.dumps(response)) < RESPONSE_LIMIT_BYTES
    assert elapsed < 2.0


def test_an_oversized_response_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    big = {**KEYS, "blob": {"S": "x" * 400_000}}
    event = firehose_event(
        *[stream_record("INSERT", new=big, when=1_700_000_000_000 + i) for i in range(17)]
    )
    with caplog.at_level(logging.INFO, logger="dynamo_lake.firehose_lambda"):
        response = transform_event(event)
    assert len(orjson.dumps(response)) > RESPONSE_LIMIT_BYTES
    error = orjson.loads(next(r for r in caplog.records if r.levelname == "ERROR").getMessage())
    assert error["event"] == "response_too_large"
    assert "BufferSizeInMBs" in error["fix"]


# --- every record answered on its own; nothing in the logs but ids, paths and kinds -------

SECRET = "S3CR3T-4111-1111-1111"


def test_each_record_is_answered_on_its_own_whatever_it_holds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = stream_record("INSERT", new=KEYS)
    event = firehose_event(
        good,
        stream_record("INSERT", new=KEYS, when=1e300),  # type: ignore[arg-type]
        stream_record("INSERT", new=KEYS, when=1_717_243_200),  # epoch seconds
        stream_record("INSERT", new=KEYS, when=1_717_243_200_000_000_000),  # nanoseconds
        b'{"eventSource": "aws:dynamodb", "dynamodb": {"ApproximateCreationDateTime": NaN}}',
        stream_record("INSERT", new=KEYS, when=-1),
        good,
    )
    records = event["records"]
    records.insert(1, None)  # a null record
    records.insert(3, "not a record")  # a record that is not an object
    records.insert(5, {"data": records[0]["data"]})  # no recordId
    records.insert(6, {"recordId": 7, "data": records[0]["data"]})  # recordId not a string
    with caplog.at_level(logging.DEBUG, logger="dynamo_lake.firehose_lambda"):
        answers = transform_event(event)["records"]
    assert [(a["recordId"], a["result"]) for a in answers] == [
        ("r00000", "Ok"),
        ("r00001", "ProcessingFailed"),  # 1e300
        ("r00002", "ProcessingFailed"),  # seconds
        ("r00003", "ProcessingFailed"),  # nanoseconds
        ("r00004", "ProcessingFailed"),  # NaN: not JSON
        ("r00005", "ProcessingFailed"),  # negative
        ("r00006", "Ok"),
    ]
    by_id = {
        record["recordId"]: record
        for record in records
        if isinstance(record, dict) and isinstance(record.get("recordId"), str)
    }
    for answer in answers[1:-1]:
        assert answer["data"] == by_id[answer["recordId"]]["data"]  # the original, unchanged
    logged = [orjson.loads(record.getMessage()) for record in caplog.records]
    skipped = [entry for entry in logged if entry["event"] == "record_without_id"]
    assert [entry["index"] for entry in skipped] == [1, 3, 5, 6]
    assert all(set(entry) == {"event", "invocation_id", "index"} for entry in skipped)
    reasons = {e["record_id"]: e["reason"] for e in logged if e["event"] == "record_failed"}
    assert "looks like epoch seconds" in reasons["r00002"]
    assert "looks like epoch nanoseconds" in reasons["r00003"]
    assert "1e+300 is not a time in either unit" in reasons["r00001"]
    assert "not UTF-8 JSON" in reasons["r00004"]
    summary = logged[-1]
    assert (summary["records"], summary["ok"], summary["failed"], summary["without_id"]) == (
        11,
        2,
        5,
        4,
    )


def test_an_unexpected_exception_fails_only_its_record_and_logs_only_its_class(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(change: dict[str, Any]) -> Any:
        if change["dynamodb"]["NewImage"].get("boom"):
            raise RuntimeError(f"cannot handle {SECRET}")
        return real(change)

    real = firehose_lambda.row_from_stream_record
    monkeypatch.setattr(firehose_lambda, "row_from_stream_record", explode)
    event = firehose_event(
        stream_record("INSERT", new=KEYS),
        stream_record("INSERT", new={**KEYS, "boom": {"S": SECRET}}),
        stream_record("INSERT", new=KEYS),
    )
    with caplog.at_level(logging.DEBUG, logger="dynamo_lake.firehose_lambda"):
        answers = transform_event(event)["records"]
    assert [a["result"] for a in answers] == ["Ok", "ProcessingFailed", "Ok"]
    assert answers[1]["data"] == event["records"][1]["data"]
    (error,) = [r for r in caplog.records if r.levelname == "ERROR"]
    entry = orjson.loads(error.getMessage())
    assert entry["event"] == "record_failed"
    assert entry["reason"] == "unexpected RuntimeError while transforming the record"
    assert all(SECRET not in record.getMessage() for record in caplog.records)


SECRET_NEW_IMAGES = {
    "NewImage.total": {**KEYS, "total": {"N": SECRET}},
    "NewImage.pic": {**KEYS, "pic": {"B": SECRET}},
    "NewImage.pic2": {**KEYS, "pic2": {"B": SECRET + "=="}},
    "NewImage.name": {**KEYS, "name": {"N": {"S": SECRET}}},
    "NewImage.flag": {**KEYS, "flag": {"BOOL": SECRET}},
    "NewImage.tag": {**KEYS, "tag": {SECRET: "x"}},
    "NewImage.two": {**KEYS, "two": {"S": "x", SECRET: SECRET}},
    "NewImage.plain": {**KEYS, "plain": {"street": SECRET, "city": SECRET}},
    "NewImage.lines.L[2].M.price": {
        **KEYS,
        "lines": {"L": [{"M": {}}, {"NULL": True}, {"M": {"price": {"N": "12" + SECRET}}}]},
    },
    "NewImage.info.M.tags.SS[1]": {**KEYS, "info": {"M": {"tags": {"SS": ["a", [SECRET]]}}}},
}


def test_no_log_record_carries_item_content_while_paths_are_named(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads: list[bytes | dict[str, Any]] = [
        stream_record("INSERT", new=image) for image in SECRET_NEW_IMAGES.values()
    ]
    bad_keys = {"pk": {"S": "customer#1"}, "sk": {"N": SECRET}}
    remove = stream_record("REMOVE")
    remove["dynamodb"]["Keys"] = bad_keys
    payloads += [
        remove,  # a REMOVE without OldImage: the keys are the data
        stream_record("INSERT", new=KEYS, table=f"other {SECRET}"),  # dropped: DEBUG log
        {"eventSource": f"aws:s3 {SECRET}", "eventName": "INSERT"},
        {"eventSource": "aws:dynamodb", "eventName": SECRET + " !", "dynamodb": {}},
        ('{"eventSource": "aws:dynamodb", "card": "' + SECRET).encode(),  # truncated JSON
        stream_record("INSERT", new={**KEYS, "when": {"S": SECRET}}, when=1_717_243_200),
    ]
    monkeypatch.setenv("SOURCE_TABLE_NAME", "orders")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    with caplog.at_level(logging.DEBUG, logger="dynamo_lake.firehose_lambda"):
        answers = handler(firehose_event(*payloads), None)["records"]
    assert len(answers) == len(payloads)
    assert [a["result"] for a in answers].count("Ok") == 0
    messages = [record.getMessage() for record in caplog.records]
    assert any('"event":"record_dropped"' in message for message in messages)
    assert all(SECRET not in message for message in messages)
    reasons = [orjson.loads(m)["reason"] for m in messages if '"record_failed"' in m]
    for path in [*SECRET_NEW_IMAGES, "Keys.sk"]:
        assert any(f"invalid DynamoDB attribute at {path}: " in r for r in reasons), path
    # Outside the original data handed back for the error prefix, the answers are clean too.
    assert all(SECRET not in orjson.dumps({**a, "data": ""}).decode() for a in answers)


# --- a record created in the future: refused against the Lambda's clock --------------------

NOW = 1_717_243_200_000_000  # 2024-06-01T12:00:00Z, the "now" the tests inject (µs)
HOUR = 3_600_000_000
SECOND = 1_000_000


def failed_reasons(caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    logged = [orjson.loads(record.getMessage()) for record in caplog.records]
    return {e["record_id"]: e["reason"] for e in logged if e["event"] == "record_failed"}


def test_a_record_from_the_future_fails_alone_and_the_log_names_problem_and_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = stream_record("INSERT", new=KEYS, when=NOW - HOUR)
    event = firehose_event(
        good,
        stream_record("INSERT", new=KEYS, when=NOW + HOUR),  # µs, one hour ahead
        stream_record("MODIFY", new=KEYS, old=KEYS, when=4_070_908_800_000),  # 2099, in ms
        good,
    )
    with caplog.at_level(logging.INFO, logger="dynamo_lake.firehose_lambda"):
        answers = transform_event(event, now_micros=NOW)["records"]
    assert [(a["recordId"], a["result"]) for a in answers] == [
        ("r00000", "Ok"),
        ("r00001", "ProcessingFailed"),
        ("r00002", "ProcessingFailed"),
        ("r00003", "Ok"),
    ]
    for answer, record in zip(answers[1:3], event["records"][1:3], strict=True):
        assert answer["data"] == record["data"]  # the original, for the error prefix
        assert "metadata" not in answer
    reasons = failed_reasons(caplog)
    assert reasons["r00001"] == (
        "dynamodb.ApproximateCreationDateTime 1717246800000000 (2024-06-01T13:00:00.000000Z) "
        "is 60.0 min ahead of this Lambda's clock (2024-06-01T12:00:00.000000Z), more than "
        "the 5 min of clock skew allowed; Kinesis Data Streams for DynamoDB stamps a change "
        "before it reaches this Lambda, so this time is not DynamoDB's: feed this Lambda from "
        "the table's Kinesis streaming destination, or fix the clock of whatever wrote the "
        "record"
    )
    assert reasons["r00002"].startswith(
        "dynamodb.ApproximateCreationDateTime 4070908800000 (2099-01-01T00:00:00.000000Z) "
        "is 74.6 years ahead of this Lambda's clock"
    )
    summary = orjson.loads(caplog.records[-1].getMessage())
    assert (summary["ok"], summary["failed"]) == (2, 2)


def test_the_handler_checks_against_the_wall_clock() -> None:
    wall = time.time_ns() // 1000
    event = firehose_event(
        stream_record("INSERT", new=KEYS, when=4_070_908_800_000),  # 2099
        stream_record("INSERT", new=KEYS, when=wall + HOUR),
        stream_record("INSERT", new=KEYS, when=wall - SECOND),
    )
    answers = handler(event, None)["records"]
    assert [a["result"] for a in answers] == ["ProcessingFailed", "ProcessingFailed", "Ok"]


@pytest.mark.parametrize(
    ("when", "result"),
    [
        (NOW + MAX_CLOCK_SKEW_MICROS - SECOND, "Ok"),  # within the skew
        (NOW + MAX_CLOCK_SKEW_MICROS, "Ok"),  # exactly at the limit: accepted
        ((NOW + MAX_CLOCK_SKEW_MICROS) // 1000, "Ok"),  # the same instant in ms
        (NOW + MAX_CLOCK_SKEW_MICROS + 1, "ProcessingFailed"),  # 1 µs past the limit
        ((NOW + MAX_CLOCK_SKEW_MICROS) // 1000 + 1, "ProcessingFailed"),  # 1 ms past it
    ],
)
def test_a_creation_time_up_to_now_plus_the_skew_is_accepted_and_later_is_not(
    when: int, result: str
) -> None:
    event = firehose_event(stream_record("INSERT", new=KEYS, when=when))
    (answer,) = transform_event(event, now_micros=NOW)["records"]
    assert answer["result"] == result
    if result == "Ok":
        (row,) = rows_of({"records": [answer]})
        assert row["time_stamp"] == time_stamp_text(when if when > 10**15 else when * 1000)
