"""Differential tests: the compiled codec against the pure one, byte for byte.

The compiled fast path (``dynamo_lake._fastcodec``) either writes exactly the bytes the pure
codec writes, or declines (returns ``None``) and leaves the item untouched for the pure
codec. Checked here on the codec's own hypothesis strategies (every valid item must be
*accepted* and identical), on adversarial input aimed at the fallback cases (odd number
spellings, non-canonical base64, surrogates, wrong types, deep nesting, broken values
anywhere: all must be *declined*, and the public API must then give the pure codec's error,
path and reason), and on rows (uuid, op, time, data) through ``dynamo_lake.cdc``.

``DYNAMO_LAKE_DIFF_EXAMPLES`` sets the examples per property (default 1000).
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from codec_paths import NOT_BUILT, compiled_codec_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec_properties import (
    break_one_value,
    characters,
    decimals,
    items,
    marshal,
)
from test_hostile_exports import _edit_file_list, _entries, _replace_data

from dynamo_lake import codec
from dynamo_lake.cdc import (
    CdcRow,
    _row,
    row_from_full_export_line,
    row_from_incremental_export_line,
    row_from_stream_record,
)
from dynamo_lake.codec import item_to_data, item_to_data_bytes
from dynamo_lake.errors import InvalidItemError, InvalidRecordError
from dynamo_lake.exports.manifest import BadLine, read_manifest, read_rows
from dynamo_lake.lake.conversion import convert_export
from dynamo_lake.lake.writer import LakeTable, Stage, StagedWriter, WriterSettings
from dynamo_lake.storage import resolve

fast = compiled_codec_module()
pytestmark = pytest.mark.skipif(fast is None, reason=NOT_BUILT)

EXAMPLES = int(os.environ.get("DYNAMO_LAKE_DIFF_EXAMPLES", "1000"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TIME = 1_700_000_000_123_456


def copied(item: Any) -> Any:
    """A deep copy; the nesting tests go deeper than deepcopy's default recursion allows."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        return copy.deepcopy(item)
    finally:
        sys.setrecursionlimit(limit)


@contextmanager
def codec_path(name: str) -> Iterator[None]:
    saved = codec._COMPILED
    codec._COMPILED = fast if name == "compiled" else None
    try:
        yield
    finally:
        codec._COMPILED = saved


def pure_outcome(item: Any) -> bytes | tuple[str, str]:
    """The pure codec's bytes, or its error as (path, reason)."""
    return public_outcome(item, "pure")


def public_outcome(item: Any, path: str) -> bytes | tuple[str, str]:
    """item_to_data_bytes on one path: bytes, (path, reason), or (type, message) of an
    error that is not an InvalidItemError (a non-str key, which JSON cannot give)."""
    with codec_path(path):
        try:
            return item_to_data_bytes(copied(item))
        except InvalidItemError as error:
            return error.path, error.reason
        except Exception as error:
            return type(error).__name__, str(error)


def differential(item: Any, *, op: str = "I", time_stamp: int = TIME) -> bytes | None:
    """Check the fast path against the pure one on ``item``; return what the fast path wrote.

    Whatever it returns: the item is unchanged, the public API gives the same bytes or the
    same error (path and reason) on both paths, an accepted item has the pure bytes and the
    pure row, and nothing the pure codec refuses is accepted.
    """
    assert fast is not None
    before = copied(item)
    written = fast.data_bytes(item)
    row = fast.row(item, op, time_stamp, CdcRow)
    assert item == before, "the fast path changed its input"
    expected = pure_outcome(item)
    assert public_outcome(item, "compiled") == expected
    if written is None:
        assert row is None, "data declined but the row accepted"
        return None
    assert isinstance(expected, bytes), (
        f"fast path accepted what the pure codec refuses: {expected}"
    )
    assert written == expected
    assert row == _row(op, time_stamp, expected)  # type: ignore[arg-type]
    assert type(row) is CdcRow
    return written


# --- valid items: all accepted, all identical ------------------------------------------


@PROPERTY
@given(items)
def test_every_valid_item_is_accepted_and_identical(item: dict[str, Any]) -> None:
    _, export = marshal(item)
    # Exports and stream records arrive as text: parse it as the converter does.
    for candidate in (export, json.loads(json.dumps(export))):
        assert differential(candidate) is not None, "a valid item was declined"


@PROPERTY
@given(
    items,
    st.sampled_from(["I", "U", "D"]),
    st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.integers(1_325_376_000_000_000, 4_102_444_800_000_000),
        st.sampled_from([0, -1, 2**63 - 1, -(2**63)]),
    ),
)
def test_rows_have_the_pure_uuid_for_any_op_and_time(
    item: dict[str, Any], op: str, time_stamp: int
) -> None:
    _, export = marshal(item)
    assert differential(export, op=op, time_stamp=time_stamp) is not None


@pytest.mark.parametrize(
    ("op", "time_stamp"),
    [("I", 2**63), ("I", -(2**63) - 1), ("X", TIME), ("", TIME), ("II", TIME), ("I", True)],
)
def test_rows_outside_the_fast_paths_range_are_declined(op: Any, time_stamp: Any) -> None:
    assert fast is not None
    assert fast.row({"a": {"S": "x"}}, op, time_stamp, CdcRow) is None


# --- numbers, base64 and strings: verbatim when canonical, declined otherwise -----------

json_numbers = st.from_regex(
    r"-?(0|[1-9][0-9]{0,39})(\.[0-9]{1,39})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)
odd_numbers = st.one_of(
    st.from_regex(r"[+-]?[0-9]{0,4}(\.[0-9]{0,4})?([eE][+-]?[0-9]{0,4})?", fullmatch=True),
    st.from_regex(r"[ +\-0-9.eE_]{0,8}", fullmatch=True),
    st.sampled_from(
        [
            "+5",
            ".5",
            "5.",
            "-.5",
            "007",
            "-00",
            "1e5",
            "1E+05",
            "0.0e0",
            "1_000",
            " 5",
            "5 ",
            "NaN",
            "-Infinity",
            "inf",
            "١٢",
            "１２",
            "",
            "-",
            "1e",
            "1e+",
            "0x10",
            "1e999999999999",
            "1e999999999999999999999",
            "\u0665",
        ]
    ),
)
number_texts = st.one_of(json_numbers, odd_numbers, st.builds(str, decimals))


@PROPERTY
@given(number_texts, st.lists(number_texts, max_size=8))
def test_numbers_and_number_sets(text: str, members: list[str]) -> None:
    item = {"n": {"N": text}, "m": {"M": {"n": {"N": text}}}, "l": {"L": [{"N": text}]}}
    written = differential(item)
    if written is None:
        assert not codec._JSON_NUMBER.fullmatch(text), "a JSON number was declined"
    differential({"ns": {"NS": members}})


same_values = st.sampled_from(
    ["1", "1.0", "1.00", "10E-1", "0.1E1", "0.1e+1", "-0", "0", "0.0", "-0.0", "0E5", "-1", "-1.0"]
)
valid_number_texts = st.one_of(json_numbers, st.builds(str, decimals), same_values)


@PROPERTY
@given(st.lists(valid_number_texts, max_size=12))
def test_number_sets_of_json_numbers_are_accepted_in_the_pure_order(members: list[str]) -> None:
    assert differential({"ns": {"NS": members}}) is not None


BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
base64_texts = st.one_of(
    st.binary(max_size=12).map(lambda raw: __import__("base64").b64encode(raw).decode()),
    st.text(st.sampled_from(BASE64 + "=-_ \n"), max_size=12),
    st.text(st.sampled_from(BASE64), max_size=11).map(lambda text: text + "="),
    st.sampled_from(
        ["", "=", "==", "A===", "YmE", "YmF=", "YmE==", "Zg==", "Zh==", "Zm8=", "Zm9="]
    ),
)


@PROPERTY
@given(base64_texts, st.lists(base64_texts, max_size=6))
def test_binary_and_binary_sets(text: str, members: list[str]) -> None:
    differential({"b": {"B": text}, "l": {"L": [{"B": text}]}})
    differential({"bs": {"BS": members}})


any_text = st.one_of(
    st.text(st.characters(), max_size=10),  # surrogates included
    st.text(characters, max_size=10),
    st.sampled_from(["\ud800", "a\udfffb", "\udbff\udc00", "\x00\x1f\x7f\u2028", '"\\/']),
)


@PROPERTY
@given(any_text, any_text, st.lists(any_text, max_size=6))
def test_strings_names_and_string_sets(name: str, text: str, members: list[str]) -> None:
    differential({name: {"S": text}, "m": {"M": {name: {"SS": members}}}})
    differential({"ss": {"SS": members}})


# --- broken values anywhere: declined, and the same error on both paths -----------------


@PROPERTY
@given(items.filter(bool), st.data())
def test_a_broken_value_anywhere_is_declined_with_the_pure_error(
    item: dict[str, Any], data: st.DataObject
) -> None:
    bad_item, where = break_one_value(item, data)
    assert differential(bad_item) is None
    outcome = pure_outcome(bad_item)
    assert isinstance(outcome, tuple) and outcome[0] == where


class Text(str):
    """A str subclass: not what JSON parsing gives; the fast path leaves it to the pure one."""


class Mapping(dict):  # type: ignore[type-arg]
    """A dict subclass, likewise."""


def _nested(depth: int, leaf: Any, tag: str = "L") -> dict[str, Any]:
    value = leaf
    for _ in range(depth):
        value = {"L": [value]} if tag == "L" else {"M": {"k": value}}
    return {"pk": {"S": "k"}, "deep": value}


ADVERSARIAL_DECLINED: list[Any] = [
    {"n": {"N": "+5"}},
    {"n": {"N": ".5"}},
    {"n": {"N": "5."}},
    {"n": {"N": "1_000"}},
    {"n": {"N": " 5"}},
    {"n": {"N": "007"}},
    {"n": {"N": "NaN"}},
    {"n": {"N": 5}},
    {"ns": {"NS": ["1", "+2"]}},
    {"ns": {"NS": ["1", "1e999999999999999999999"]}},
    {"b": {"B": "YmF="}},  # stray bits: re-encodes to YmE=
    {"b": {"B": "YmE"}},
    {"b": {"B": "Ym-_"}},
    {"b": {"B": "Ym E="}},
    {"b": {"B": b"YmE="}},
    {"bs": {"BS": ["AA==", "YmF="]}},
    {"s": {"S": "\ud800"}},
    {"\udfff": {"S": "x"}},
    {"m": {"M": {"\ud83d": {"S": "x"}}}},
    {"ss": {"SS": ["a", "\ud800"]}},
    {"ss": {"SS": ["a", 1]}},
    {"s": {"S": Text("x")}},
    {Text("s"): {"S": "x"}},
    {"m": {"M": Mapping(a={"S": "x"})}},
    {"m": Mapping(S="x")},
    {"s": {"S": "x", "N": "1"}},
    {"s": {}},
    {"s": {"s": "x"}},
    {"s": {"STRING": "x"}},
    {"s": {1: "x"}},
    {"s": "x"},
    {"s": None},
    {"b": {"BOOL": 1}},
    {"b": {"BOOL": "true"}},
    {"n": {"NULL": False}},
    {"n": {"NULL": 1}},
    {"l": {"L": ({"S": "x"},)}},
    {"l": {"L": [{"S": "x"}, "y"]}},
    {"m": {"M": []}},
    {1: {"S": "x"}, "a": {"S": "y"}},
    _nested(65, {"NULL": True}),
    _nested(65, {"NULL": True}, "M"),
    _nested(300, {"NULL": True}),
    _nested(300, {"NULL": True}, "M"),
]

ADVERSARIAL_ACCEPTED: list[Any] = [
    {},
    {"n": {"N": "-0"}},
    {"n": {"N": "0E-130"}},
    {"n": {"N": "1E+125"}},
    {"n": {"N": "-9.9999999999999999999999999999999999999E+125"}},
    {"ns": {"NS": ["1.0", "1", "1.00", "-0", "0", "1E+0", "10E-1"]}},
    {"ns": {"NS": []}},
    {"b": {"B": ""}},
    {"bs": {"BS": ["", "AA==", "AAA=", "AAAA", "/w==", "+w=="]}},
    {"s": {"S": "".join(chr(code) for code in range(0x80)) + "\u2028\u2029\U0010ffff"}},
    {"".join(chr(code) for code in range(0x20)): {"S": '"\\'}},
    {"\uffff": {"S": "bmp"}, "\U00010000": {"S": "astral"}, "\ue000": {"S": "private"}},
    {"ss": {"SS": ["\U00010000", "\uffff", "b", "a", "a"]}},
    {"x": {"S": "x" * 300_000}},
    {"x": {"S": "é" * 50_000 + "😀" * 50_000}},
    {"L": {"L": [{"M": {"S": {"S": "tag names as names"}}}]}},
    _nested(32, {"NULL": True}),
    _nested(64, {"S": "at the limit"}),
    _nested(63, {"S": "at the limit"}, "M"),
]


@pytest.mark.parametrize("item", ADVERSARIAL_DECLINED)
def test_adversarial_input_is_declined_and_left_to_the_pure_codec(item: Any) -> None:
    assert differential(item) is None


@pytest.mark.parametrize("item", ADVERSARIAL_ACCEPTED)
def test_adversarial_but_valid_input_is_accepted_and_identical(item: Any) -> None:
    assert differential(item) is not None


@pytest.mark.parametrize("item", [None, [], "x", 1, [{"a": {"S": "x"}}], Mapping(a={"S": "x"})])
def test_an_item_that_is_not_a_plain_dict_is_declined(item: Any) -> None:
    assert fast is not None
    assert fast.data_bytes(item) is None
    assert fast.row(item, "I", TIME, CdcRow) is None
    assert public_outcome(item, "compiled") == pure_outcome(item)


# --- through the row builders: the same rows and errors on both paths ------------------

LINES: list[tuple[str, Any]] = [
    ("full", {"Item": {"pk": {"S": "a"}, "n": {"N": "1.50"}}}),
    ("full", {"Item": {"pk": {"S": "a"}, "n": {"N": "+1"}}}),
    ("full", {"Item": {"pk": {"S": "a"}, "n": {"N": "x"}}}),
    ("full", {"Item": []}),
    (
        "incremental",
        {
            "Metadata": {"WriteTimestampMicros": {"N": "1700000000123456"}},
            "Keys": {"pk": {"S": "a"}},
            "NewImage": {"pk": {"S": "a"}, "b": {"B": "YmE="}},
        },
    ),
    (
        "incremental",
        {
            "Metadata": {"WriteTimestampMicros": {"N": "1700000000123456"}},
            "Keys": {"pk": {"S": "a"}},
            "OldImage": {"pk": {"S": "a"}, "b": {"B": "YmF="}},
        },
    ),
    (
        "incremental",
        {"Metadata": {"WriteTimestampMicros": {"N": "1700000000123456"}}, "Keys": {"pk": {}}},
    ),
    (
        "stream",
        {
            "eventName": "MODIFY",
            "dynamodb": {
                "ApproximateCreationDateTime": 1700000000123,
                "NewImage": {"pk": {"S": "a"}, "ss": {"SS": ["b", "a"]}},
            },
        },
    ),
    (
        "stream",
        {
            "eventName": "REMOVE",
            "dynamodb": {"ApproximateCreationDateTime": 1700000000123, "Keys": {"pk": {"N": 1}}},
        },
    ),
]


def _build(kind: str, line: Any, consume: bool) -> CdcRow | tuple[str, str]:
    try:
        if kind == "full":
            return row_from_full_export_line(line, TIME, consume=consume)
        if kind == "incremental":
            return row_from_incremental_export_line(line, consume=consume)
        return row_from_stream_record(line)
    except (InvalidItemError, InvalidRecordError) as error:
        return type(error).__name__, str(error)


@pytest.mark.parametrize(("kind", "line"), LINES)
@pytest.mark.parametrize("consume", [False, True])
def test_row_builders_give_the_same_rows_and_errors_on_both_paths(
    kind: str, line: Any, consume: bool
) -> None:
    with codec_path("pure"):
        expected = _build(kind, copied(line), consume)
    with codec_path("compiled"):
        assert _build(kind, copied(line), consume) == expected
    assert item_to_data({"pk": {"S": "a"}}) == '{"pk":"a"}'


# --- whole export files: the compiled line loop against the pure one --------------------


def _data_lines(bucket_root: Path, entry: dict[str, Any]) -> list[bytes]:
    return gzip.decompress((bucket_root / entry["dataFileS3Key"]).read_bytes()).splitlines()


def _hostile_lines(kind: str, sample: dict[str, Any]) -> list[bytes]:
    """Lines aimed at every way out of the compiled loop, built on a valid line."""
    lines = [
        b"",
        b"   ",
        b" \t\x0b\x0c\r",
        b"\xa0",
        b"not json",
        b"[]",
        b"null",
        b'{"Item": []}',
        b"{}",
    ]
    item = {"pk": {"S": "hostile"}, "n": {"N": "+5"}, "b": {"B": "YmF="}}
    if kind == "full":
        lines += [
            orjson.dumps({"Item": item}),
            orjson.dumps({"Item": {"pk": {"S": "x"}, "n": {"N": "x"}}}),
            orjson.dumps({"Item": None}),
            b'{"Item": {"s": {"S": "\\ud800"}}}',
            orjson.dumps({"Item": {"pk": {"S": "ok"}}, "Other": 1}),
        ]
        return lines
    metadata = sample["Metadata"]
    keys = {"pk": {"S": "hostile"}}
    shapes: list[dict[str, Any]] = [
        {"Keys": keys, "NewImage": item},
        {"Keys": keys, "NewImage": {"pk": {"S": "ok"}}},
        {"Keys": keys, "NewImage": {"pk": {"S": "ok"}}, "OldImage": {"pk": {"S": "old"}}},
        {"Keys": keys, "OldImage": {"pk": {"S": "old"}}},
        {"Keys": keys, "NewImage": None, "OldImage": {"pk": {"S": "old"}}},
        {"Keys": keys, "NewImage": {"pk": {"S": "ok"}}, "OldImage": []},
        {"Keys": keys},
        {"Keys": {}},
        {"Keys": []},
        {"Keys": keys, "NewImage": {"pk": {"N": "1_0"}}},
    ]
    lines += [orjson.dumps({"Metadata": metadata, **shape}) for shape in shapes]
    for stamp in ("1", "99999999999999999999", "1700000000123456", " 1", "", 17):
        lines.append(
            orjson.dumps({"Metadata": {"WriteTimestampMicros": {"N": stamp}}, "Keys": keys})
        )
    lines += [
        orjson.dumps({"Metadata": None, "Keys": keys}),
        orjson.dumps({"Metadata": {"WriteTimestampMicros": "1"}, "Keys": keys}),
    ]
    return lines


def _mix_hostile_lines(summary: Path, bucket_root: Path, kind: str) -> list[bytes]:
    """Interleave hostile lines into the export's first data file (manifest updated);
    return that file's original lines."""
    entries = _entries(summary, bucket_root)
    original = [line for line in _data_lines(bucket_root, entries[0]) if line]
    hostile = _hostile_lines(kind, orjson.loads(original[0]))
    mixed = [line for pair in zip(original, hostile * 20, strict=False) for line in pair]
    mixed += original[len(hostile) * 20 :]

    def edit(listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        _replace_data(bucket_root, listed[0], mixed)
        return listed

    _edit_file_list(summary, bucket_root, edit)
    return original


@pytest.mark.parametrize(
    ("kind", "view"),
    [
        ("full", "NEW_AND_OLD_IMAGES"),
        ("incremental", "NEW_AND_OLD_IMAGES"),
        ("incremental", "NEW_IMAGE"),
    ],
)
def test_export_files_give_the_same_rows_and_bad_lines_on_both_paths(
    make_export: Any, bucket_root: Path, kind: str, view: str
) -> None:
    summary = make_export(items=300, files=2, kind=kind, output_view=view)
    original = _mix_hostile_lines(summary, bucket_root, kind)
    manifest = read_manifest(str(summary))

    def convert(path: str) -> tuple[list[CdcRow], list[BadLine]]:
        bad: list[BadLine] = []
        with codec_path(path):
            rows = [
                row
                for batch in read_rows(manifest, manifest.data_files[0], bad.append)
                for row in batch
            ]
        return rows, bad

    compiled_rows, compiled_bad = convert("compiled")
    pure_rows, pure_bad = convert("pure")
    assert compiled_rows == pure_rows
    assert compiled_bad == pure_bad
    assert len(pure_rows) >= len(original)
    assert pure_bad, "the hostile lines include bad ones"


@pytest.mark.parametrize("kind", ["full", "incremental"])
def test_the_lake_is_byte_identical_on_both_paths(
    make_export: Any, bucket_root: Path, tmp_path: Path, kind: str
) -> None:
    """convert_export writes the same Parquet bytes and records whichever codec runs: the
    compiled one's rows go to Arrow as columns, the pure one's as row tuples. Hostile lines
    are mixed in (declined lines are appended in order), and the incremental window spans
    four days, so a batch splits over partitions."""
    window = (datetime(2024, 5, 30, 23, tzinfo=UTC), datetime(2024, 6, 2, 1, tzinfo=UTC))
    summary = make_export(items=2000, files=2, kind=kind, window=window)
    _mix_hostile_lines(summary, bucket_root, kind)
    lakes = {}
    for path in ("pure", "compiled"):
        lakes[path] = tmp_path / path
        lakes[path].mkdir()
        with codec_path(path):
            convert_export(
                str(summary),
                str(lakes[path]),
                attempt="a1",
                max_bad_lines=10_000,
                settings=WriterSettings(row_group_rows=200, max_rows_per_file=500),
            )

    def files(lake: Path) -> dict[str, bytes]:
        return {
            str(found.relative_to(lake)): found.read_bytes()
            for found in sorted(lake.rglob("*"))
            if found.is_file() and not found.name.endswith(".lock")  # holder's pid and time
        }

    pure, compiled = files(lakes["pure"]), files(lakes["compiled"])
    parquet = [name for name in pure if name.endswith(".parquet")]
    assert len({name.rsplit("/", 1)[0] for name in parquet}) == (4 if kind == "incremental" else 1)
    assert len(parquet) > 2, "several files per partition: rolled at max_rows_per_file"
    assert compiled.keys() == pure.keys()
    assert [name for name in pure if compiled[name] != pure[name]] == []


# --- rows as columns (RowColumns) ----------------------------------------------------------


def _rows(count: int) -> list[CdcRow]:
    return [
        _row("IUD"[index % 3], TIME + index * 3_600_000_000, f'{{"k":"{index}é"}}'.encode())
        for index in range(count)
    ]


def test_row_columns_hold_appended_rows_in_order_as_a_sequence() -> None:
    assert fast is not None
    columns = fast.RowColumns(CdcRow)
    assert len(columns) == 0 and not columns and list(columns) == []
    rows = _rows(5)
    for row in rows:
        columns.append(row)
    assert list(columns) == rows
    assert columns[-1] == rows[-1] and type(columns[0]) is CdcRow
    assert (columns.min_stamp, columns.max_stamp) == (rows[0].time_stamp, rows[-1].time_stamp)
    with pytest.raises(IndexError):
        columns[5]
    with pytest.raises(IndexError):
        columns[-6]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (CdcRow("short", "I", TIME, "{}"), "not a CDC row"),
        (CdcRow("é" * 36, "I", TIME, "{}"), "not a CDC row"),
        (CdcRow("0" * 36, "ID", TIME, "{}"), "not a CDC row"),
        (CdcRow("0" * 36, "I", 2**63, "{}"), "beyond 64-bit"),
        (CdcRow("0" * 36, "I", TIME, "\ud800"), "surrogates not allowed"),
    ],
)
def test_row_columns_refuse_what_is_not_a_row_and_stay_unchanged(row: CdcRow, problem: str) -> None:
    assert fast is not None
    columns = fast.RowColumns(CdcRow)
    columns.append(_rows(1)[0])
    with pytest.raises((ValueError, OverflowError), match=problem):
        columns.append(row)
    assert list(columns) == _rows(1)
    data = len(_rows(1)[0].data.encode())
    assert [len(buffer) for buffer in columns.arrow_buffers()] == [8, 36, 8, 1, 8, 8, data]


def test_row_columns_make_the_same_arrow_batch_and_files_as_rows(tmp_path: Path) -> None:
    assert fast is not None
    rows = _rows(1000)
    columns = fast.RowColumns(CdcRow)
    for row in rows:
        columns.append(row)
    written = {}
    for name, batch in (("rows", rows), ("columns", columns)):
        table = LakeTable(resolve(str(tmp_path / name)))
        with StagedWriter(table, Stage("g1", "a1"), "s", WriterSettings(row_group_rows=10)) as w:
            w.write(batch)
        files = sorted((tmp_path / name).rglob("*.parquet"))
        written[name] = (
            w.staged,
            {str(found.relative_to(tmp_path / name)): found.read_bytes() for found in files},
        )
    days = {row.time_stamp // 86_400_000_000 for row in rows}
    assert len(written["rows"][0]) == len(written["rows"][1]) == len(days) > 40  # one per day
    assert written["columns"] == written["rows"]


# --- selection ---------------------------------------------------------------------------

SHOW_SELECTION = (
    "import logging; logging.basicConfig(level=logging.INFO, format='%(name)s %(message)s')\n"
    "from dynamo_lake import cdc, codec\n"
    "print(codec.active_codec())"
)


def _selection(environment: dict[str, str]) -> tuple[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if k != codec.PURE_CODEC_VARIABLE}
    env.update(environment)
    done = subprocess.run(
        [sys.executable, "-c", SHOW_SELECTION],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    logged = [line for line in done.stderr.splitlines() if "item codec" in line]
    return done.stdout.strip(), logged


def test_the_compiled_codec_is_selected_when_built_and_logged_once() -> None:
    chosen, logged = _selection({})
    assert chosen == "compiled"
    assert logged == [
        "dynamo_lake.codec item codec: compiled (DYNAMO_LAKE_PURE_CODEC=1 selects the pure one)"
    ]


def test_the_environment_variable_forces_the_pure_codec() -> None:
    chosen, logged = _selection({codec.PURE_CODEC_VARIABLE: "1"})
    assert chosen == "pure"
    assert logged == ["dynamo_lake.codec item codec: pure Python (DYNAMO_LAKE_PURE_CODEC is set)"]
