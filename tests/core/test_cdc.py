"""CDC row builders: every source gives the lake contract's op, time_stamp, data and uuid."""

from __future__ import annotations

import base64
import copy
import json
import uuid as uuid_module
from decimal import Decimal

import pytest

from dynamo_lake.cdc import (
    TIME_RANGE_END_MICROS,
    TIME_RANGE_START_MICROS,
    micros_to_datetime,
    parse_aws_time,
    row_from_full_export_line,
    row_from_incremental_export_line,
    row_from_stream_record,
    row_uuid,
    stream_time_micros,
)
from dynamo_lake.errors import InvalidItemError, InvalidRecordError

# Every test here runs on the pure codec and on the compiled one (skipped if not built).
pytestmark = pytest.mark.usefixtures("codec_path")

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


# --- stream times: epoch ms or µs between 2012 and 2100, nothing else ----------------------

START_2012_MS = 1_325_376_000_000
END_2100_MS = 4_102_444_800_000


@pytest.mark.parametrize(
    ("when", "micros"),
    [
        (START_2012_MS, 1_325_376_000_000_000),  # 2012-01-01, in ms
        (END_2100_MS - 1, 4_102_444_799_999_000),  # the last ms before 2100
        (1_717_243_200_000, 1_717_243_200_000_000),
        (1_717_243_200_123.4567, 1_717_243_200_123_457),  # a float in ms: rounded to the µs
        (START_2012_MS * 1000, 1_325_376_000_000_000),  # 2012-01-01, in µs
        (END_2100_MS * 1000 - 1, 4_102_444_799_999_999),
        (1_717_243_200_123_456, 1_717_243_200_123_456),
        (1_717_243_200_123_456.0, 1_717_243_200_123_456),
    ],
)
def test_stream_time_accepts_ms_and_us_from_2012_to_2100(when: float, micros: int) -> None:
    assert stream_time_micros(when) == micros
    assert row_from_stream_record(_stream("INSERT", when, NewImage=NEW)).time_stamp == micros


@pytest.mark.parametrize(
    ("when", "message"),
    [
        (1_717_243_200, "1717243200 looks like epoch seconds"),  # DynamoDB Streams' unit
        (1_717_243_200.5, "looks like epoch seconds"),
        (1_717_243_200_000_000_000, "1717243200000000000 looks like epoch nanoseconds"),
        (0, "0 is not a time in either unit"),
        (-1, "-1 is not a time in either unit"),
        (-1_717_243_200_000, "is not a time in either unit"),
        (START_2012_MS - 1, "is not a time in either unit"),  # 2011 in ms
        (END_2100_MS, "is not a time in either unit"),  # 2100 in ms: between the ranges
        (END_2100_MS * 1000, "is not a time in either unit"),  # 2100 in µs
        (10**20, "100000000000000000000 is not a time in either unit"),
        (1e20, "1e+20 is not a time in either unit"),
        (1e300, "1e+300 is not a time in either unit"),
        (10**400, "is not a time in either unit"),
        (float("nan"), "nan is not a finite number"),
        (float("inf"), "inf is not a finite number"),
        (float("-inf"), "-inf is not a finite number"),
        (True, "must be a JSON number, got bool"),
        (False, "must be a JSON number, got bool"),
        ("1717243200000", "must be a JSON number, got str"),
        (None, "must be a JSON number, got null"),
        ([1_717_243_200_000], "must be a JSON number, got list"),
    ],
)
def test_stream_time_outside_the_ranges_is_refused_naming_field_and_units(
    when: object, message: str
) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        stream_time_micros(when)
    text = str(caught.value)
    assert text.startswith("dynamodb.ApproximateCreationDateTime ")
    assert message in text
    assert "Kinesis Data Streams for DynamoDB sends epoch milliseconds, or microseconds" in text
    with pytest.raises(InvalidRecordError, match="ApproximateCreationDateTime"):
        row_from_stream_record(_stream("INSERT", when, NewImage=NEW))


def test_epoch_seconds_message_names_the_fix() -> None:
    with pytest.raises(InvalidRecordError) as caught:
        stream_time_micros(1_717_243_200)
    assert str(caught.value) == (
        "dynamodb.ApproximateCreationDateTime 1717243200 looks like epoch seconds (as DynamoDB "
        "Streams sends); Kinesis Data Streams for DynamoDB sends epoch milliseconds, or "
        "microseconds with ApproximateCreationDateTimePrecision=MICROSECOND: feed this Lambda "
        "from the table's Kinesis streaming destination"
    )


def test_time_range_constants_are_2012_and_2100_utc() -> None:
    assert micros_to_datetime(TIME_RANGE_START_MICROS).isoformat() == "2012-01-01T00:00:00+00:00"
    assert micros_to_datetime(TIME_RANGE_END_MICROS).isoformat() == "2100-01-01T00:00:00+00:00"


# --- incremental write times: plain digits, inside the export window ----------------------

WINDOW = (
    parse_aws_time("2024-06-01T00:00:00Z"),
    parse_aws_time("2024-06-02T00:00:00Z"),
)


def _written(text: object) -> dict[str, object]:
    return {"Metadata": {"WriteTimestampMicros": {"N": text}}, "Keys": KEYS, "NewImage": NEW}


@pytest.mark.parametrize("micros", [WINDOW[0], WINDOW[0] + 1, 1_717_243_200_123_456, WINDOW[1] - 1])
def test_write_time_inside_the_window_is_kept(micros: int) -> None:
    row = row_from_incremental_export_line(_written(str(micros)), window=WINDOW)
    assert row.time_stamp == micros
    # The window only checks: the row is the one built without it.
    assert row == row_from_incremental_export_line(_written(str(micros)))


@pytest.mark.parametrize(
    ("micros", "message"),
    [
        (
            1_717_243_200_000,
            "Metadata.WriteTimestampMicros 1717243200000 is outside the export window "
            "[2024-06-01T00:00:00.000000Z, 2024-06-02T00:00:00.000000Z): is it in "
            "milliseconds? incremental exports give microseconds since the epoch",
        ),
        (1_717_243_200, "is outside the export window [2024-06-01T00:00:00.000000Z, "),
        (1_717_243_200_000_000_000, "is it in nanoseconds?"),
        (WINDOW[1], "this export's window"),  # the end is exclusive
        (WINDOW[0] - 1, "this export's window"),
        (0, "outside the export window"),
    ],
)
def test_write_time_outside_the_window_is_refused(micros: int, message: str) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        row_from_incremental_export_line(_written(str(micros)), window=WINDOW)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1717243200000", "is it in milliseconds?"),
        ("1717243200", "is it in seconds?"),
        ("0", "0 is not a time from 2012-01-01 to 2100-01-01 UTC in microseconds"),
        ("1325375999999999", "is not a time from 2012-01-01"),  # the last µs of 2011
        ("4102444800000000", "is not a time from 2012-01-01"),  # 2100-01-01: end exclusive
        ("9999999999999999999", "is not a time from 2012-01-01"),  # 19 digits, no overflow
    ],
)
def test_write_time_outside_2012_to_2100_is_refused_without_a_window(
    text: str, message: str
) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        row_from_incremental_export_line(_written(text))
    assert message in str(caught.value)
    assert "Metadata.WriteTimestampMicros" in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        " 1717243200000000",  # int() takes blanks
        "1717243200000000 ",
        "1_717_243_200_000_000",  # and underscores
        "١٧١٧٢٤٣٢٠٠٠٠٠٠٠٠",  # and other scripts' digits
        "+1717243200000000",
        "-1717243200000000",
        "1.7172432E+15",
        "1717243200000000.0",
        "",
        "99999999999999999999999999999999",  # OverflowError further on, before
        1_717_243_200_000_000,
        None,
        ["1717243200000000"],
    ],
)
def test_write_time_must_be_plain_decimal_digits(text: object) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        row_from_incremental_export_line(_written(text))
    assert str(caught.value).startswith("Metadata.WriteTimestampMicros.N must be 1 to 19 plain")


def test_leading_zeros_in_write_time_are_digits_like_any_other() -> None:
    row = row_from_incremental_export_line(_written("01717243200000000"))
    assert row.time_stamp == 1_717_243_200_000_000


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"Keys": KEYS}, "it has no Metadata"),
        ({"Metadata": [1], "Keys": KEYS}, "its Metadata is list"),
        ({"Metadata": "x", "Keys": KEYS}, "its Metadata is str"),
        ({"Metadata": {}, "Keys": KEYS}, "its WriteTimestampMicros is null"),
        ({"Metadata": {"WriteTimestampMicros": 5}, "Keys": KEYS}, "WriteTimestampMicros is int"),
        ({"Metadata": {"WriteTimestampMicros": {"S": "1"}}}, 'WriteTimestampMicros has no "N"'),
    ],
)
def test_metadata_of_the_wrong_shape_is_a_record_error(
    line: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        row_from_incremental_export_line(line)
    assert message in str(caught.value)


# --- lines and images that are JSON but not objects ---------------------------------------

NOT_OBJECTS = [([1, 2, 3], "list"), ("hello", "str"), (None, "null"), (5, "int"), (True, "bool")]


@pytest.mark.parametrize(("line", "kind"), NOT_OBJECTS)
def test_a_data_line_that_is_not_an_object_is_a_record_error(line: object, kind: str) -> None:
    builders = {
        "a full-export data line": lambda: row_from_full_export_line(line, STAMP_MICROS),
        "an incremental-export data line": lambda: row_from_incremental_export_line(line),
        "a stream record": lambda: row_from_stream_record(line),
    }
    for what, build in builders.items():
        with pytest.raises(InvalidRecordError) as caught:
            build()
        assert str(caught.value) == f"{what} must be a JSON object, got {kind}"


STAMP_MICROS = 1_700_002_000_000_001
WHEN = 1_649_719_712_473


@pytest.mark.parametrize(("image", "kind"), [v for v in NOT_OBJECTS if v[0] is not None])
def test_images_that_are_not_objects_are_record_errors(image: object, kind: str) -> None:
    cases = [
        (lambda: row_from_full_export_line({"Item": image}, STAMP_MICROS), "Item"),
        (
            lambda: row_from_incremental_export_line({**STAMP, "Keys": KEYS, "NewImage": image}),
            "NewImage",
        ),
        (
            lambda: row_from_incremental_export_line({**STAMP, "Keys": KEYS, "OldImage": image}),
            "OldImage",
        ),
        (lambda: row_from_incremental_export_line({**STAMP, "Keys": image}), "Keys"),
        (lambda: row_from_stream_record(_stream("INSERT", WHEN, NewImage=image)), "NewImage"),
        (lambda: row_from_stream_record(_stream("REMOVE", WHEN, OldImage=image)), "OldImage"),
        (
            lambda: row_from_stream_record({"eventName": "REMOVE", "dynamodb": image}),
            '"dynamodb"',
        ),
    ]
    for build, name in cases:
        with pytest.raises(InvalidRecordError) as caught:
            build()
        assert name in str(caught.value)
        assert str(caught.value).endswith(f"got {kind}")


# --- privacy: no builder's message carries item content ----------------------------------

SECRET = "S3CR3T-4111-1111-1111"
SECRET_IMAGES = {
    "$.total": {**KEYS, "total": {"N": SECRET}},
    "$.pic": {**KEYS, "pic": {"B": SECRET}},
    "$.ok": {**KEYS, "ok": {"BOOL": SECRET}},
    "$.name": {**KEYS, "name": {"S": {"first": SECRET}}},
    "$.tag": {**KEYS, "tag": {SECRET: "x"}},
    "$.both": {**KEYS, "both": {"S": SECRET, SECRET: SECRET}},
    "$.lines.L[2].M.price": {
        **KEYS,
        "lines": {"L": [{"M": {}}, {"M": {}}, {"M": {"sku": {"S": "a"}, "price": {"N": SECRET}}}]},
    },
    "$.tags.SS[1]": {**KEYS, "tags": {"SS": ["a", [SECRET]]}},
    "$.ns.NS[0]": {**KEYS, "ns": {"NS": [SECRET]}},
}


def _build(slot: str, image: dict[str, object], consume: bool) -> object:
    """Put ``image`` where ``slot`` says and build the row (a fresh copy every time)."""
    image = copy.deepcopy(image)
    stamp = {"Metadata": {"WriteTimestampMicros": {"N": str(STAMP_MICROS)}}}
    if slot == "Item":
        return row_from_full_export_line({"Item": image}, STAMP_MICROS, consume=consume)
    if slot in ("NewImage", "OldImage"):
        line = {**stamp, "Keys": KEYS, slot: image}
        return row_from_incremental_export_line(line, consume=consume)
    if slot == "Keys":
        line = {**stamp, "Keys": image}
        return row_from_incremental_export_line(line, "NEW_IMAGE", consume=consume)
    if slot == "stream NewImage":
        return row_from_stream_record(_stream("MODIFY", WHEN, NewImage=image))
    if slot == "stream OldImage":
        return row_from_stream_record(_stream("REMOVE", WHEN, OldImage=image))
    change = {"ApproximateCreationDateTime": WHEN, "Keys": image}
    return row_from_stream_record({"eventName": "REMOVE", "dynamodb": change})


SLOTS = [
    "Item",
    "NewImage",
    "OldImage",
    "Keys",
    "stream NewImage",
    "stream OldImage",
    "stream Keys",
]


@pytest.mark.parametrize("path", sorted(SECRET_IMAGES))
@pytest.mark.parametrize("slot", SLOTS)
def test_no_builder_error_carries_item_content(slot: str, path: str) -> None:
    root = slot.split()[-1]
    for consume in (False, True):
        with pytest.raises(InvalidItemError) as caught:
            _build(slot, SECRET_IMAGES[path], consume)
        assert SECRET not in str(caught.value)
        if not consume:  # decoding in place loses the path (the reader decodes again)
            assert caught.value.path == root + path[1:]
            assert f"invalid DynamoDB attribute at {root}{path[1:]}: " in str(caught.value)


@pytest.mark.parametrize(
    ("event_name", "shown"),
    [
        ("UPSERT", "got 'UPSERT'"),  # metadata that looks like a name is quoted
        (f"card {SECRET}", "got str"),  # anything else is described by its type
        ({"S": SECRET}, "got dict"),
        (None, "got null"),
    ],
)
def test_event_name_is_quoted_only_when_it_looks_like_a_name(
    event_name: object, shown: str
) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        row_from_stream_record({"eventName": event_name, "dynamodb": {}})
    assert str(caught.value) == f"eventName must be INSERT, MODIFY or REMOVE, {shown}"


# --- inputs at and beyond DynamoDB's limits, on the export and stream paths alike ----------

WHEN_MILLIS = 1_700_000_000_123


def _rows_on_every_path(item: dict[str, object]) -> list[str]:
    """The data of one item converted as a full-export line (plain and in place) and as a
    stream INSERT: the lake contract says these are byte-identical."""
    return [
        row_from_full_export_line({"Item": copy.deepcopy(item)}, WHEN_MILLIS * 1000).data,
        row_from_full_export_line(
            {"Item": copy.deepcopy(item)}, WHEN_MILLIS * 1000, consume=True
        ).data,
        row_from_stream_record(_stream("INSERT", WHEN_MILLIS, NewImage=copy.deepcopy(item))).data,
    ]


@pytest.mark.parametrize(
    "number",
    [
        "1E+126",  # DynamoDB's largest is 9.99...E+125
        "-9.9E+200",
        "1E-131",  # its smallest positive is 1E-130
        "1.23456789012345678901234567890123456789012",  # 42 significant digits (limit 38)
        "123456789012345678901234567890123456789012345678901234567890",
    ],
)
def test_numbers_beyond_dynamodb_range_are_kept_verbatim_on_every_path(number: str) -> None:
    # Only a forged export or record can hold them. The codec does not judge DynamoDB's
    # range: it writes the digits it was given (never through a float), so nothing is lost.
    item = {**KEYS, "n": {"N": number}, "ns": {"NS": [number, "0"]}}

    rows = _rows_on_every_path(item)

    assert rows[0] == rows[1] == rows[2]
    assert f'"n":{number}' in rows[0]
    decoded = json.loads(rows[0], parse_float=Decimal, parse_int=Decimal)
    assert decoded["n"] == Decimal(number)
    assert sorted(decoded["ns"]) == sorted([Decimal(number), Decimal(0)])


def test_an_item_of_400_kb_converts_whole_on_every_path() -> None:
    # DynamoDB's item limit is 400 KB (names and values in UTF-8).
    text = "ü☕" * 60_000 + "x" * 19_000  # 319,000 bytes of UTF-8
    blob = bytes(range(256)) * 300  # 76,800 bytes
    item = {**KEYS, "text": {"S": text}, "blob": {"B": base64.b64encode(blob).decode()}}

    rows = _rows_on_every_path(item)

    assert rows[0] == rows[1] == rows[2]
    assert len(rows[0].encode()) > 400_000  # base64 makes the row bigger than the item
    decoded = json.loads(rows[0])
    assert decoded["text"] == text
    assert base64.b64decode(decoded["blob"]) == blob


def test_empty_sets_are_written_as_empty_arrays_on_every_path() -> None:
    # DynamoDB refuses empty sets; a forged export or record can hold them. Like every set,
    # an empty one is a JSON array: nothing is dropped, nothing refused.
    item = {**KEYS, "ss": {"SS": []}, "ns": {"NS": []}, "bs": {"BS": []}}

    rows = _rows_on_every_path(item)

    assert rows[0] == rows[1] == rows[2]
    assert json.loads(rows[0])["ss"] == json.loads(rows[0])["ns"] == json.loads(rows[0])["bs"] == []
