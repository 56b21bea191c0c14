"""Hand-written examples for the item codec: DynamoDB JSON in, canonical ``data`` JSON out.

Every expected value is the exact text the lake contract requires (keys sorted by code
point at every depth, no whitespace, UTF-8, DynamoDB's own number digits, sets in canonical
order), written out by hand rather than computed, so a change in the codec's output bytes
fails here. Invalid input must raise :class:`InvalidItemError` naming the attribute path.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from dynamo_lake.codec import (
    canonical_json,
    canonical_json_bytes,
    item_to_data,
    item_to_data_bytes,
    item_to_plain,
    number_text,
)
from dynamo_lake.errors import DynamoLakeError, InvalidItemError

# Every test here runs on the pure codec and on the compiled one (skipped if not built).
pytestmark = pytest.mark.usefixtures("codec_path")

# --- whole items ---------------------------------------------------------------------------


def test_export_line_example_from_aws_docs() -> None:
    # The "Item" of the full-export data line quoted in docs/aws-facts.md.
    line = (
        '{"Item":{"Id":{"N":"103"},"Authors":{"SS":["Author1","Author2"]},'
        '"InPublication":{"BOOL":false},"Pic":{"B":"YmFy"}}}'
    )
    item = json.loads(line)["Item"]
    assert item_to_data(item) == (
        '{"Authors":["Author1","Author2"],"Id":103,"InPublication":false,"Pic":"YmFy"}'
    )


def test_stream_new_image_with_every_type() -> None:
    new_image = {
        "pk": {"S": "order#1"},
        "sk": {"N": "42"},
        "blob": {"B": "AAEC/w=="},
        "paid": {"BOOL": True},
        "gone": {"BOOL": False},
        "note": {"NULL": True},
        "info": {
            "M": {
                "zeta": {"L": [{"N": "1.50"}, {"S": "x"}, {"NULL": True}]},
                "alpha": {"SS": ["b", "a"]},
            }
        },
        "tags": {"SS": ["red", "blue", "green"]},
        "scores": {"NS": ["10", "9", "-1"]},
        "keys": {"BS": ["/w==", "AA=="]},
    }
    assert item_to_data(new_image) == (
        '{"blob":"AAEC/w==","gone":false,'
        '"info":{"alpha":["a","b"],"zeta":[1.50,"x",null]},'
        '"keys":["AA==","/w=="],"note":null,"paid":true,"pk":"order#1",'
        '"scores":[-1,9,10],"sk":42,"tags":["blue","green","red"]}'
    )


def test_empty_item_is_an_empty_object() -> None:
    assert item_to_data({}) == "{}"


def test_empty_string_map_and_list() -> None:
    item = {"s": {"S": ""}, "m": {"M": {}}, "l": {"L": []}, "nested": {"L": [{"M": {}}]}}
    assert item_to_data(item) == '{"l":[],"m":{},"nested":[{}],"s":""}'


def test_str_and_bytes_forms_agree() -> None:
    item = {"b": {"N": "1E+125"}, "a": {"SS": ["y", "x"]}, "é": {"S": "😀"}}
    data = item_to_data(item)
    assert type(data) is str
    assert data == '{"a":["x","y"],"b":1E+125,"é":"😀"}'
    assert canonical_json(item_to_plain(item)) == data
    assert item_to_data_bytes(item) == data.encode("utf-8")
    assert canonical_json_bytes(item_to_plain(item)) == data.encode("utf-8")


def test_same_value_same_text_at_top_level_in_a_map_and_in_a_list() -> None:
    values = [
        ({"S": "x"}, '"x"'),
        ({"N": "1.50"}, "1.50"),
        ({"N": "+5"}, "5"),
        ({"B": "YmF="}, '"YmE="'),
        ({"BOOL": False}, "false"),
        ({"NULL": True}, "null"),
        ({"SS": ["b", "a"]}, '["a","b"]'),
        ({"NS": ["2", "1"]}, "[1,2]"),
        ({"BS": ["/w==", "AA=="]}, '["AA==","/w=="]'),
        ({"M": {"b": {"S": "1"}, "a": {"N": "2"}}}, '{"a":2,"b":"1"}'),
        ({"L": [{"N": "3"}, {"S": "y"}]}, '[3,"y"]'),
    ]
    for typed, text in values:
        item = {"top": typed, "map": {"M": {"v": typed}}, "list": {"L": [typed, typed]}}
        expected = (
            '{"list":[' + text + "," + text + '],"map":{"v":' + text + '},"top":' + text + "}"
        )
        assert item_to_data(item) == expected, typed


# --- numbers ------------------------------------------------------------------------------

NUMBERS_KEPT_VERBATIM = [
    "0",
    "-0",
    "7",
    "-7",
    "103",
    "1.50",  # trailing zero: DynamoDB's digits, not a float's
    "0.1",
    "0.000001",
    "1E+125",
    "1E-130",
    "-1E-130",
    "1e5",
    "1.5E+3",
    "-2.5e-7",
    "12345678901234567890123456789012345678",  # 38 digits, far above 2**64
    "-12345678901234567890123456789012345678",
    "3.1415926535897932384626433832795028842",  # 38 significant digits
    "9.9999999999999999999999999999999999999E+125",  # DynamoDB's largest
    "-9.9999999999999999999999999999999999999E+125",
    "0.00000000000000000000000000000000000001",
    "9007199254740993",  # 2**53 + 1: a float would print ...992
    "100000000000000000000000000000000000000",
]


@pytest.mark.parametrize("text", NUMBERS_KEPT_VERBATIM)
def test_number_digits_are_written_verbatim(text: str) -> None:
    assert item_to_data({"n": {"N": text}}) == '{"n":' + text + "}"
    assert number_text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [("+5", "5"), (".5", "0.5"), ("5.", "5"), ("-.25", "-0.25"), ("007", "7"), ("1.e3", "1E+3")],
)
def test_non_json_number_spellings_are_rewritten_with_the_same_value(
    text: str, expected: str
) -> None:
    assert item_to_data({"n": {"N": text}}) == '{"n":' + expected + "}"
    assert Decimal(expected) == Decimal(text)


def test_38_digit_number_survives_a_json_round_trip_exactly() -> None:
    text = "-0.12345678901234567890123456789012345678"
    data = item_to_data({"n": {"N": text}})
    parsed = json.loads(data, parse_float=Decimal, parse_int=Decimal)
    assert parsed == {"n": Decimal(text)}
    assert str(parsed["n"]) == text


# --- strings and Unicode ------------------------------------------------------------------


def test_unicode_written_as_utf8_not_ascii_escaped() -> None:
    text = "héllo wörld ✓ 日本語 😀 𝄞 \U0010fffd"
    data = item_to_data({"s": {"S": text}})
    assert data == '{"s":"' + text + '"}'
    assert "\\u" not in data
    assert data.encode("utf-8") == b'{"s":"' + text.encode("utf-8") + b'"}'


def test_quotes_backslashes_and_control_characters_escaped_as_json_requires() -> None:
    text = 'say "hi"\\ path\\to\n\t\r\b\f\x00\x01\x1f\x7f/\u2028\u2029'
    data = item_to_data({"s": {"S": text}})
    expected = (
        '{"s":"say \\"hi\\"\\\\ path\\\\to\\n\\t\\r\\b\\f\\u0000\\u0001\\u001f\x7f/\u2028\u2029"}'
    )
    assert data == expected
    assert json.loads(data) == {"s": text}


def test_every_c0_control_character_round_trips() -> None:
    text = "".join(chr(code) for code in range(0x20))
    data = item_to_data({"s": {"S": text}})
    assert json.loads(data) == {"s": text}
    # Raw control characters are invalid inside a JSON string.
    assert not any(ord(char) < 0x20 for char in data)


def test_datetime_shaped_string_stays_a_string() -> None:
    item = {"at": {"S": "2024-01-02T03:04:05.678901"}, "d": {"S": "2024-01-02"}}
    assert item_to_data(item) == '{"at":"2024-01-02T03:04:05.678901","d":"2024-01-02"}'


def test_strings_that_look_like_other_types_stay_strings() -> None:
    item = {
        "a": {"S": "1"},
        "b": {"S": "true"},
        "c": {"S": "null"},
        "d": {"S": "1E+125"},
        "e": {"S": '{"S":"x"}'},
    }
    assert item_to_data(item) == (
        '{"a":"1","b":"true","c":"null","d":"1E+125","e":"{\\"S\\":\\"x\\"}"}'
    )


# --- binary -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),  # empty binary
        ("YmFy", "YmFy"),
        ("AA==", "AA=="),
        ("/+8=", "/+8="),
        ("AAEC/w==", "AAEC/w=="),
        ("YmF=", "YmE="),  # non-zero padding bits: same bytes, canonical spelling
    ],
)
def test_binary_is_standard_padded_base64(text: str, expected: str) -> None:
    assert item_to_data({"b": {"B": text}}) == '{"b":"' + expected + '"}'


# --- sets: canonical order ----------------------------------------------------------------


def test_string_set_sorted_by_code_point_not_utf16() -> None:
    members = ["b", "a", "B", "é", "\U0001f600", "\uffff", "", "aa", "Z"]
    data = item_to_data({"ss": {"SS": members}})
    # U+FFFF sorts before U+1F600 by code point (and by UTF-8 bytes); UTF-16 would swap them.
    assert data == '{"ss":["","B","Z","a","aa","b","é","\uffff","\U0001f600"]}'


def test_number_set_sorted_by_numeric_value_not_text() -> None:
    members = ["10", "9", "-1", "1E+2", "0.5", "-0.5", "-1E-130", "1E-130", "100.5", "-10"]
    data = item_to_data({"ns": {"NS": members}})
    assert data == '{"ns":[-10,-1,-0.5,-1E-130,1E-130,0.5,9,10,1E+2,100.5]}'


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        # Equal as floats, different as DynamoDB numbers: only exact comparison orders them.
        (
            ["1.0000000000000000000000000000000000001", "1"],
            "[1,1.0000000000000000000000000000000000001]",
        ),
        (
            ["12345678901234567890123456789012345679", "12345678901234567890123456789012345678"],
            "[12345678901234567890123456789012345678,12345678901234567890123456789012345679]",
        ),
        (["1E-130", "0", "-1E-130"], "[-1E-130,0,1E-130]"),
    ],
)
def test_number_set_ordered_exactly_not_through_floats(members: list[str], expected: str) -> None:
    assert item_to_data({"ns": {"NS": members}}) == '{"ns":' + expected + "}"
    assert item_to_data({"ns": {"NS": members[::-1]}}) == '{"ns":' + expected + "}"


def test_number_set_keeps_every_members_digits() -> None:
    members = ["12345678901234567890123456789012345678", "1.50", "-0"]
    data = item_to_data({"ns": {"NS": members}})
    assert data == '{"ns":[-0,1.50,12345678901234567890123456789012345678]}'


def test_binary_set_sorted_by_decoded_bytes_not_base64_text() -> None:
    # b"\xff" -> "/w==", b"\x00" -> "AA==", b"a" -> "YQ==", b"\x00\x01" -> "AAE="
    # Text order would be "/w==" < "AA==" < "AAE=" < "YQ=="; byte order is below.
    data = item_to_data({"bs": {"BS": ["YQ==", "/w==", "AAE=", "AA=="]}})
    assert data == '{"bs":["AA==","AAE=","YQ==","/w=="]}'


def test_set_order_of_source_does_not_matter() -> None:
    one = {"ss": {"SS": ["x", "y", "z"]}, "ns": {"NS": ["3", "1", "2"]}}
    two = {"ns": {"NS": ["2", "3", "1"]}, "ss": {"SS": ["z", "x", "y"]}}
    assert item_to_data(one) == item_to_data(two) == '{"ns":[1,2,3],"ss":["x","y","z"]}'


# --- keys ---------------------------------------------------------------------------------


def test_keys_sorted_by_code_point_at_every_depth() -> None:
    item = {
        "b": {"M": {"z": {"N": "1"}, "a": {"M": {"y": {"N": "2"}, "x": {"N": "3"}}}}},
        "a": {"L": [{"M": {"d": {"S": "4"}, "c": {"S": "5"}}}]},
        "\U00010000": {"S": "astral"},
        "\uffff": {"S": "bmp"},
        "é": {"S": "latin"},
        "Z": {"S": "upper"},
        "aa": {"S": "double"},
    }
    assert item_to_data(item) == (
        '{"Z":"upper","a":[{"c":"5","d":"4"}],"aa":"double",'
        '"b":{"a":{"x":3,"y":2},"z":1},"é":"latin","\uffff":"bmp","\U00010000":"astral"}'
    )


def test_attribute_order_of_source_does_not_matter() -> None:
    one = {"a": {"N": "1"}, "b": {"M": {"c": {"S": "x"}, "d": {"S": "y"}}}}
    two = {"b": {"M": {"d": {"S": "y"}, "c": {"S": "x"}}}, "a": {"N": "1"}}
    assert item_to_data(one) == item_to_data(two) == '{"a":1,"b":{"c":"x","d":"y"}}'


def test_attribute_names_that_are_type_tags() -> None:
    item = {
        "S": {"N": "1"},
        "N": {"S": "x"},
        "M": {"L": [{"S": "in list"}]},
        "L": {"M": {"S": {"S": "s"}, "BOOL": {"BOOL": False}}},
        "BOOL": {"NULL": True},
        "NULL": {"BOOL": True},
        "B": {"SS": ["N"]},
        "SS": {"M": {"N": {"N": "5"}, "NS": {"NS": ["2", "1"]}}},
    }
    assert item_to_data(item) == (
        '{"B":["N"],"BOOL":null,"L":{"BOOL":false,"S":"s"},"M":["in list"],"N":"x",'
        '"NULL":true,"S":1,"SS":{"N":5,"NS":[1,2]}}'
    )


def test_map_holding_a_single_type_tag_key_stays_a_map() -> None:
    # The trap dynamodb-json falls into: {"M": {"S": {"S": "x"}}} is a map, not a string.
    assert item_to_data({"m": {"M": {"S": {"S": "x"}}}}) == '{"m":{"S":"x"}}'
    assert item_to_data({"m": {"M": {"N": {"S": "x"}}}}) == '{"m":{"N":"x"}}'


def test_attribute_names_with_unicode_quotes_and_control_characters() -> None:
    item = {
        'a"b': {"N": "1"},
        "c\\d": {"N": "2"},
        "e\nf": {"N": "3"},
        "😀": {"N": "4"},
        "": {"N": "5"},
    }
    assert item_to_data(item) == '{"":5,"a\\"b":1,"c\\\\d":2,"e\\nf":3,"😀":4}'


# --- nesting ------------------------------------------------------------------------------


def _nested_maps(depth: int, leaf: dict[str, Any]) -> dict[str, Any]:
    value = leaf
    for _ in range(depth):
        value = {"M": {"k": value}}
    return value


def test_32_levels_of_maps() -> None:
    item = {"top": _nested_maps(32, {"N": "1"})}
    assert item_to_data(item) == '{"top":' + '{"k":' * 32 + "1" + "}" * 32 + "}"


def test_32_levels_of_lists() -> None:
    value: dict[str, Any] = {"S": "deep"}
    for _ in range(32):
        value = {"L": [value]}
    assert item_to_data({"top": value}) == '{"top":' + "[" * 32 + '"deep"' + "]" * 32 + "}"


def test_32_levels_alternating_maps_and_lists_with_siblings() -> None:
    value: dict[str, Any] = {"NS": ["2", "1"]}
    expected = "[1,2]"
    for level in range(32):
        if level % 2:
            value = {"M": {"z": {"NULL": True}, "a": value}}
            expected = '{"a":' + expected + ',"z":null}'
        else:
            value = {"L": [{"BOOL": True}, value]}
            expected = "[true," + expected + "]"
    assert item_to_data({"x": value}) == '{"x":' + expected + "}"


# --- invalid input: narrow error naming the attribute path --------------------------------


def _error(item: Any) -> InvalidItemError:
    with pytest.raises(InvalidItemError) as caught:
        item_to_data(item)
    error = caught.value
    assert error.path in str(error)
    assert error.reason
    return error


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ({}, "no type"),
        ({"S": "a", "N": "1"}, "two types"),
        ({"S": "a", "BOOL": True, "NULL": True}, "three types"),
        ({"X": "a"}, "unknown tag"),
        ({"s": "a"}, "lowercase tag"),
        ({"NUMBER": "1"}, "long tag name"),
        ("a", "bare string"),
        (None, "bare null"),
        (1, "bare number"),
        ([{"S": "a"}], "bare list"),
        ({"N": "abc"}, "N not a number"),
        ({"N": "1.2.3"}, "N two points"),
        ({"N": "0x10"}, "N hex"),
        ({"N": "1e"}, "N bare exponent"),
        ({"N": ""}, "N empty"),
        ({"N": " 1"}, "N leading blank"),
        ({"N": "1 "}, "N trailing blank"),
        ({"N": "NaN"}, "N NaN"),
        ({"N": "-nan"}, "N -nan"),
        ({"N": "sNaN"}, "N sNaN"),
        ({"N": "Infinity"}, "N Infinity"),
        ({"N": "-Infinity"}, "N -Infinity"),
        ({"N": "inf"}, "N inf"),
        ({"N": 1}, "N as JSON number"),
        ({"N": 1.5}, "N as float"),
        ({"N": None}, "N null"),
        ({"B": "YmE"}, "B missing padding"),
        ({"B": "YmE=="}, "B excess padding"),
        ({"B": "Ym E="}, "B with a blank"),
        ({"B": "YmE=\n"}, "B with a newline"),
        ({"B": "Ym-_"}, "B url-safe alphabet"),
        ({"B": "Y"}, "B one character"),
        ({"B": "é"}, "B non-ASCII"),
        ({"B": "="}, "B padding only"),
        ({"B": "AB=C"}, "B padding in the middle"),
        ({"B": "AA==AA=="}, "B two padded chunks"),
        ({"B": b"bar"}, "B raw bytes"),
        ({"B": None}, "B null"),
        ({"S": 1}, "S number"),
        ({"S": None}, "S null"),
        ({"S": ["a"]}, "S list"),
        ({"S": True}, "S bool"),
        ({"S": {"S": "a"}}, "S object"),
        ({"BOOL": "true"}, "BOOL string"),
        ({"BOOL": 1}, "BOOL number"),
        ({"BOOL": None}, "BOOL null"),
        ({"NULL": False}, "NULL false"),
        ({"NULL": None}, "NULL null"),
        ({"NULL": "true"}, "NULL string"),
        ({"NULL": 1}, "NULL one"),
        ({"M": []}, "M list"),
        ({"M": "x"}, "M string"),
        ({"M": None}, "M null"),
        ({"M": True}, "M bool"),
        ({"L": True}, "L bool"),
        ({"SS": True}, "SS bool"),
        ({"BOOL": {}}, "BOOL object"),
        ({"NULL": []}, "NULL list"),
        ({"N": "−5"}, "N with a Unicode minus sign"),
        ({"L": {}}, "L object"),
        ({"L": "ab"}, "L string"),
        ({"SS": "ab"}, "SS string"),
        ({"NS": "12"}, "NS string"),
        ({"BS": "YmFy"}, "BS string"),
        ({"SS": {"a": 1}}, "SS object"),
    ],
)
def test_invalid_top_level_value_names_the_attribute(typed: Any, problem: str) -> None:
    error = _error({"ok": {"S": "fine"}, "attr": typed, "zz": {"N": "1"}})
    assert error.path == "$.attr", problem


@pytest.mark.parametrize(
    ("item", "path"),
    [
        ({"attr": {"M": {"inner": {"N": "x"}}}}, "$.attr.M.inner"),
        ({"attr": {"M": {"ok": {"S": "a"}, "inner": {}}}}, "$.attr.M.inner"),
        ({"attr": {"L": [{"S": "a"}, {"N": "1"}, {"NULL": False}]}}, "$.attr.L[2]"),
        ({"attr": {"L": [{"S": "a", "N": "1"}]}}, "$.attr.L[0]"),
        ({"attr": {"SS": ["a", 1]}}, "$.attr.SS[1]"),
        ({"attr": {"SS": ["a", "b", None]}}, "$.attr.SS[2]"),
        ({"attr": {"NS": ["1", "2", "Infinity"]}}, "$.attr.NS[2]"),
        ({"attr": {"NS": [1]}}, "$.attr.NS[0]"),
        ({"attr": {"BS": ["YmFy", "YmE"]}}, "$.attr.BS[1]"),
        (
            {"info": {"M": {"tags": {"L": [{"M": {"when": {"X": "1"}}}]}}}},
            "$.info.M.tags.L[0].M.when",
        ),
        (
            {"a": {"L": [{"L": [{"S": "x"}, {"L": [{"M": {"b": {"BS": ["AA==", "!"]}}}]}]}]}},
            "$.a.L[0].L[1].L[0].M.b.BS[1]",
        ),
        ({"S": {"M": {"N": {"N": "one"}}}}, "$.S.M.N"),
        ({"a.b": {"M": {"in ner": {"L": [{"Q": "1"}]}}}}, '$."a.b".M."in ner".L[0]'),
        ({"": {"BOOL": "no"}}, '$.""'),
        ({"x": {"M": {'q"uote': {"NULL": 0}}}}, '$.x.M."q\\"uote"'),
        ({"deep": _nested_maps(31, {"N": "NaN"})}, "$.deep" + ".M.k" * 31),
    ],
)
def test_invalid_nested_value_names_the_full_path(item: dict[str, Any], path: str) -> None:
    assert _error(item).path == path


@pytest.mark.parametrize("item", [[], [{"a": {"S": "x"}}], "item", None, 1, True])
def test_item_that_is_not_an_object(item: Any) -> None:
    assert _error(item).path == "$"


TAGS = "S, N, B, BOOL, NULL, M, L, SS, NS, BS"


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ({"N": "NaN"}, "N is not a finite number (NaN and infinities are not DynamoDB numbers)"),
        (
            {"N": "-Infinity"},
            "N is not a finite number (NaN and infinities are not DynamoDB numbers)",
        ),
        ({"N": "abc"}, "N is not a number (DynamoDB numbers are decimal digits like -12.5E+3)"),
        ({"N": " 1"}, "N is not a number (DynamoDB numbers are decimal digits like -12.5E+3)"),
        ({"N": 1}, "N must be a string of digits, got int"),
        ({"B": "YmE"}, "B is not valid base64 (Incorrect padding)"),
        ({"B": "Ym-_"}, "B is not valid base64 (Only base64 data is allowed)"),
        ({"B": 5}, "B must be a base64 string, got int"),
        ({"S": 1}, "S must be a string, got int"),
        ({"NULL": False}, "NULL must be true, got false"),
        ({"NULL": "true"}, "NULL must be true, got str"),
        ({"BOOL": "yes"}, "BOOL must be true or false, got str"),
        ({"BOOL": None}, "BOOL must be true or false, got null"),
        ({"X": "1"}, f"unknown type tag (expected one of {TAGS})"),
        ({"s": "a"}, f"type tag in the wrong case: did you mean 'S'? (tags are {TAGS})"),
        ({"S": "a", "N": "1"}, "2 keys (N, S); an attribute value has exactly one type tag"),
        (
            {"S": "a", "street": "x", "zip": "y"},
            "3 keys (S and 2 that are not type tags); an attribute value has exactly one type tag",
        ),
        ({"M": []}, "M must be an object, got list"),
        ({"SS": "ab"}, "SS must be an array, got str"),
    ],
)
def test_error_reason_names_the_problem_never_the_value(typed: Any, reason: str) -> None:
    # Reasons reach logs (CloudWatch, _errors/): the kind of problem, a type name or a known
    # tag, but never the value itself nor a key that is not a type tag.
    assert _error({"attr": typed}).reason == reason


def test_number_set_member_beyond_decimals_exponent_range_is_an_item_error() -> None:
    # Valid JSON, so the fast walk takes it; ordering the set needs its Decimal, which raised
    # decimal.InvalidOperation out of the codec before.
    huge = "1e999999999999999999999"
    error = _error({"ns": {"NS": ["1", huge]}})
    assert error.path == "$.ns.NS[1]"
    assert error.reason == "N exponent is too large to be a DynamoDB number"
    with pytest.raises(InvalidItemError):
        item_to_data_bytes({"ns": {"NS": [huge]}}, consume=True)


def test_consumed_decode_error_says_how_to_get_the_path_without_quoting_a_key() -> None:
    with pytest.raises(InvalidItemError) as caught:
        item_to_data_bytes({"a": {"M": {"b": {"card-4111": "x"}}}}, consume=True)
    assert caught.value.path == "$"
    assert caught.value.reason == (
        "invalid item (KeyError); decode a copy without consume for the attribute path"
    )


def test_invalid_item_error_is_narrow_and_a_value_error() -> None:
    error = _error({"n": {"N": "x"}})
    assert isinstance(error, DynamoLakeError)
    assert isinstance(error, ValueError)
    assert str(error).startswith("invalid DynamoDB attribute at $.n: ")


def test_lone_surrogate_is_refused_rather_than_written_as_invalid_utf8() -> None:
    with pytest.raises(InvalidItemError):
        item_to_data({"s": {"S": "\ud800"}})
    with pytest.raises(InvalidItemError):
        item_to_data({"m": {"M": {"\udfff": {"S": "x"}}}})


# --- spellings Python's Decimal reads but DynamoDB and JSON refuse ----------------------


@pytest.mark.parametrize(
    "text",
    [
        "1_000",  # Python's Decimal accepts digit-group underscores
        "١٢٣",  # Arabic-Indic digits: Decimal reads them as 123
        "１２",  # full-width digits
    ],
)
def test_number_spellings_dynamodb_never_accepts_are_refused(text: str) -> None:
    assert _error({"n": {"N": text}}).path == "$.n"


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"NULL": True}
    for _ in range(depth):
        value = {"L": [value]}
    return {"pk": {"S": "k"}, "deep": value}


def test_nesting_beyond_dynamodb_is_kept_whole_or_refused_clearly_never_a_crash() -> None:
    # DynamoDB allows 32 levels; only a forged record or export nests deeper.
    at_limit = _nested(32)
    assert item_to_data_bytes(_nested(32), consume=True) == item_to_data_bytes(at_limit)
    for consume in (False, True):
        with pytest.raises(InvalidItemError, match="cannot be written as UTF-8 JSON"):
            item_to_data_bytes(_nested(300), consume=consume)
