"""CDC row builders: every source gives the lake contract's op, time_stamp, data and uuid."""

from __future__ import annotations

import uuid as uuid_module

import pytest

from dynamo_lake.cdc import (
    micros_to_datetime,
    parse_aws_time,
    row_from_full_export_line,
    row_from_incremental_export_line,
    row_from_stream_record,
    row_uuid,
)
from dynamo_lake.errors import InvalidItemError, InvalidRecordError

KEYS = {"pk": {"S": "customer#1"}, "sk": {"N": "7"}}
OLD = {**KEYS, "city": {"S": "Bengaluru"}}
NEW = {**KEYS, "city": {"S": "Kolkata"}}
STAMP = {"Metadata": {"WriteTimestampMicros": {"N": "1700002000000001"}}}


def test_uuid_is_a_version_8_uuid_and_a_pure_function_of_op_time_and_data() -> None:
    first = row_uuid("I", 1, '{"a":1}')
    assert first == row_uuid("I", 1, '{"a":1}')
    parsed = uuid_module.UUID(first)
    assert parsed.version == 8
    assert parsed.variant == uuid_module.RFC_4122
    others = {row_uuid("U", 1, '{"a":1}'), row_uuid("I", 2, '{"a":1}'), row_uuid("I", 1, '{"a":2}')}
    assert first not in others
    assert len(others) == 3


def test_uuid_pinned_value() -> None:
    # Pinned so that a change of the documented formula cannot slip through unnoticed:
    # UUIDv8 over sha256("I\x1f1604474914028000\x1f{"id":-0}")[:16].
    assert row_uuid("I", 1604474914028000, '{"id":-0}') == "95408afb-41f8-8da8-8858-a94e341490b0"


def test_full_export_line_is_an_insert_at_the_export_time() -> None:
    export_time = parse_aws_time("2020-11-04T07:28:34.028Z")
    row = row_from_full_export_line({"Item": NEW}, export_time)
    assert row.op == "I"
    assert row.time_stamp == 1604474914028000
    assert row.data == '{"city":"Kolkata","pk":"customer#1","sk":7}'
    assert row.uuid == row_uuid("I", export_time, row.data)


def test_incremental_new_and_old_images_shapes() -> None:
    insert = row_from_incremental_export_line({**STAMP, "Keys": KEYS, "NewImage": NEW})
    update = row_from_incremental_export_line(
        {**STAMP, "Keys": KEYS, "OldImage": OLD, "NewImage": NEW}
    )
    delete = row_from_incremental_export_line({**STAMP, "Keys": KEYS, "OldImage": OLD})
    assert [insert.op, update.op, delete.op] == ["I", "U", "D"]
    assert insert.time_stamp == update.time_stamp == delete.time_stamp == 1700002000000001
    assert update.data == insert.data == '{"city":"Kolkata","pk":"customer#1","sk":7}'
    assert delete.data == '{"city":"Bengaluru","pk":"customer#1","sk":7}'


def test_incremental_new_image_shapes() -> None:
    upsert = row_from_incremental_export_line(
        {**STAMP, "Keys": KEYS, "NewImage": NEW}, output_view="NEW_IMAGE"
    )
    delete = row_from_incremental_export_line({**STAMP, "Keys": KEYS}, output_view="NEW_IMAGE")
    assert upsert.op == "U"
    assert delete.op == "D"
    assert delete.data == '{"pk":"customer#1","sk":7}'


def test_incremental_line_without_timestamp_is_refused() -> None:
    with pytest.raises(InvalidRecordError, match="WriteTimestampMicros"):
        row_from_incremental_export_line({"Keys": KEYS, "NewImage": NEW})


def _stream(event: str, when: int, **images: object) -> dict[str, object]:
    return {
        "eventName": event,
        "dynamodb": {"ApproximateCreationDateTime": when, "Keys": KEYS, **images},
    }


def test_stream_records_in_milliseconds_and_microseconds() -> None:
    millis = row_from_stream_record(_stream("INSERT", 1649719712473, NewImage=NEW))
    micros = row_from_stream_record(_stream("MODIFY", 1649719712473123, NewImage=NEW))
    assert millis.op == "I"
    assert millis.time_stamp == 1649719712473000
    assert micros.op == "U"
    assert micros.time_stamp == 1649719712473123
    assert micros_to_datetime(micros.time_stamp).isoformat() == "2022-04-11T23:28:32.473123+00:00"


def test_stream_remove_uses_the_old_image_or_the_keys() -> None:
    with_old = row_from_stream_record(_stream("REMOVE", 1649719712473, OldImage=OLD))
    keys_only = row_from_stream_record(_stream("REMOVE", 1649719712473))
    assert (with_old.op, with_old.data) == ("D", '{"city":"Bengaluru","pk":"customer#1","sk":7}')
    assert (keys_only.op, keys_only.data) == ("D", '{"pk":"customer#1","sk":7}')


def test_duplicate_stream_records_share_a_uuid_and_differ_from_other_events() -> None:
    first = row_from_stream_record(_stream("MODIFY", 1649719712473, NewImage=NEW))
    again = row_from_stream_record(
        _stream("MODIFY", 1649719712473, NewImage=dict(reversed(NEW.items())))
    )
    later = row_from_stream_record(_stream("MODIFY", 1649719712474, NewImage=NEW))
    assert first == again
    assert first.uuid != later.uuid


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"eventName": "UPSERT", "dynamodb": {}}, "eventName"),
        ({"eventName": "INSERT"}, '"dynamodb"'),
        (_stream("INSERT", "soon", NewImage=NEW), "ApproximateCreationDateTime"),
        (_stream("MODIFY", 1649719712473), "NewImage"),
    ],
)
def test_bad_stream_records_are_refused_with_the_reason(
    record: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRecordError, match=message):
        row_from_stream_record(record)


def test_bad_attribute_in_a_stream_image_names_the_image_path() -> None:
    bad = {**NEW, "total": {"N": "12abc"}}
    with pytest.raises(InvalidItemError) as caught:
        row_from_stream_record(_stream("INSERT", 1649719712473, NewImage=bad))
    assert caught.value.path == "NewImage.total"
