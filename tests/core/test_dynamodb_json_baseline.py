"""Regression tests: how the seed's dynamodb-json conversion corrupts items, and ours does not.

The seed Lambda writes ``data`` as ``json.dumps(json_util.loads(new_image))``. Each test
runs that exact expression on a real DynamoDB JSON image, asserts the wrong output (or the
exception) it gives today, and asserts the codec's canonical output for the same image. If
a new dynamodb-json release stops corrupting one of these, its assertion here fails and the
benchmark baseline must be looked at again.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from dynamodb_json import json_util

from dynamo_lake.codec import item_to_data


def seed_data(new_image: dict[str, Any]) -> str:
    """What the seed Lambda puts in the ``data`` column."""
    return json.dumps(json_util.loads(new_image))


def exact(data: str) -> Any:
    return json.loads(data, parse_float=Decimal, parse_int=Decimal)


# --- numbers: float rounding, lost digits, lost sign, type tags left in the data ----------


def test_38_digit_fraction_is_rounded_to_a_float() -> None:
    image = {"pi": {"N": "3.1415926535897932384626433832795028842"}}
    assert seed_data(image) == '{"pi": 3.141592653589793}'
    assert item_to_data(image) == '{"pi":3.1415926535897932384626433832795028842}'


def test_large_number_with_a_fraction_loses_its_integer_digits() -> None:
    image = {"amount": {"N": "12345678901234567890.5"}}
    assert seed_data(image) == '{"amount": 1.2345678901234567e+19}'
    assert exact(seed_data(image))["amount"] != Decimal("12345678901234567890.5")
    assert item_to_data(image) == '{"amount":12345678901234567890.5}'


def test_money_amount_loses_its_trailing_zero() -> None:
    image = {"price": {"N": "19.90"}}
    assert seed_data(image) == '{"price": 19.9}'
    assert item_to_data(image) == '{"price":19.90}'


def test_negative_zero_loses_its_sign() -> None:
    image = {"delta": {"N": "-0"}}
    assert seed_data(image) == '{"delta": 0}'
    assert item_to_data(image) == '{"delta":-0}'


@pytest.mark.parametrize("text", ["1E+125", "1E-130", "-2.5E+7", "1e5"])
def test_exponent_numbers_keep_their_dynamodb_type_tag(text: str) -> None:
    # json_util only recognises plain digits, so the typed value leaks into the data.
    image = {"n": {"N": text}}
    assert json.loads(seed_data(image)) == {"n": {"N": text}}
    assert item_to_data(image) == '{"n":' + text + "}"
    assert exact(item_to_data(image)) == {"n": Decimal(text)}


# --- strings shaped like timestamps become datetimes --------------------------------------


def test_timestamp_shaped_string_becomes_a_datetime_that_json_dumps_refuses() -> None:
    image = {"pk": {"S": "order#1"}, "created": {"S": "2024-01-02T03:04:05.678901"}}
    loaded = json_util.loads(image)
    assert loaded["created"] == datetime(2024, 1, 2, 3, 4, 5, 678901)
    with pytest.raises(TypeError, match="datetime is not JSON serializable"):
        seed_data(image)
    assert item_to_data(image) == '{"created":"2024-01-02T03:04:05.678901","pk":"order#1"}'


def test_timestamp_shaped_string_is_rewritten_when_the_datetime_is_stringified() -> None:
    # The obvious patch, default=str, silently changes the string instead.
    image = {"created": {"S": "2024-01-02T03:04:05.000000"}}
    patched = json.dumps(json_util.loads(image), default=str)
    assert patched == '{"created": "2024-01-02 03:04:05"}'
    assert item_to_data(image) == '{"created":"2024-01-02T03:04:05.000000"}'


def test_timestamp_shaped_string_in_a_list_also_becomes_a_datetime() -> None:
    image = {"log": {"L": [{"S": "2030-12-31T23:59:59.999999"}]}}
    assert json_util.loads(image)["log"] == [datetime(2030, 12, 31, 23, 59, 59, 999999)]
    with pytest.raises(TypeError):
        seed_data(image)
    assert item_to_data(image) == '{"log":["2030-12-31T23:59:59.999999"]}'


# --- maps with a key named like a type tag collapse ---------------------------------------


@pytest.mark.parametrize(
    ("image", "seed_output", "ours"),
    [
        (
            {"addr": {"M": {"S": {"S": "south"}, "city": {"S": "Oslo"}}}},
            '{"addr": "south"}',
            '{"addr":{"S":"south","city":"Oslo"}}',
        ),
        (
            {"flags": {"M": {"BOOL": {"BOOL": False}, "name": {"S": "x"}}}},
            '{"flags": false}',
            '{"flags":{"BOOL":false,"name":"x"}}',
        ),
        (
            {"size": {"M": {"N": {"S": "42"}, "unit": {"S": "cm"}}}},
            '{"size": 42}',
            '{"size":{"N":"42","unit":"cm"}}',
        ),
        (
            {"shape": {"M": {"L": {"L": [{"N": "1"}]}, "kind": {"S": "line"}}}},
            '{"shape": [1]}',
            '{"shape":{"L":[1],"kind":"line"}}',
        ),
        (
            {"doc": {"M": {"M": {"M": {}}, "title": {"S": "t"}}}},
            '{"doc": {}}',
            '{"doc":{"M":{},"title":"t"}}',
        ),
    ],
)
def test_map_with_a_type_named_key_collapses(
    image: dict[str, Any], seed_output: str, ours: str
) -> None:
    assert seed_data(image) == seed_output
    assert item_to_data(image) == ours


def test_item_with_an_attribute_named_s_collapses_to_one_string() -> None:
    image = {"S": {"S": "size-small"}, "id": {"N": "7"}, "price": {"N": "3"}}
    assert seed_data(image) == '"size-small"'
    assert item_to_data(image) == '{"S":"size-small","id":7,"price":3}'


# --- sets json.dumps refuses, and sets in no canonical order ------------------------------


@pytest.mark.parametrize(
    ("image", "ours"),
    [
        ({"scores": {"NS": ["10", "9", "-1"]}}, '{"scores":[-1,9,10]}'),
        ({"keys": {"BS": ["/w==", "AA=="]}}, '{"keys":["AA==","/w=="]}'),
    ],
)
def test_number_and_binary_sets_are_sets_json_dumps_refuses(
    image: dict[str, Any], ours: str
) -> None:
    assert isinstance(next(iter(json_util.loads(image).values())), set)
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        seed_data(image)
    assert item_to_data(image) == ours


def test_number_set_members_stay_strings_even_when_stringified() -> None:
    image = {"scores": {"NS": ["1.50"]}}
    assert json.dumps(json_util.loads(image), default=list) == '{"scores": ["1.50"]}'
    assert item_to_data(image) == '{"scores":[1.50]}'


def test_same_item_in_another_order_gives_different_seed_data() -> None:
    one = {"id": {"N": "1"}, "tags": {"SS": ["a", "b"]}}
    two = {"tags": {"SS": ["b", "a"]}, "id": {"N": "1"}}
    assert seed_data(one) == '{"id": 1, "tags": ["a", "b"]}'
    assert seed_data(two) == '{"tags": ["b", "a"], "id": 1}'
    assert item_to_data(one) == item_to_data(two) == '{"id":1,"tags":["a","b"]}'


def test_seed_data_is_ascii_escaped_and_has_whitespace() -> None:
    image = {"name": {"S": "Zoë 😀"}, "n": {"N": "1"}}
    assert seed_data(image) == '{"name": "Zo\\u00eb \\ud83d\\ude00", "n": 1}'
    assert item_to_data(image) == '{"n":1,"name":"Zoë 😀"}'
