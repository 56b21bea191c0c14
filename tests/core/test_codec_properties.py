"""Property tests of the item codec against an oracle we did not write: boto3's types.

Plain Python items are generated, marshalled to DynamoDB JSON with boto3's
``TypeSerializer`` (binary then turned into base64 text, as exports and stream records carry
it), run through :func:`item_to_data`, and the output is parsed back with ``Decimal``
numbers and compared exactly: value for value, type for type, and digit for digit with the
number text boto3 produced. ``TypeDeserializer`` gives a second, independent expectation.
Canonical stability: shuffling attribute and set order never changes a byte of ``data``.
And one broken value put anywhere in a valid item is reported with exactly its path.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from random import Random
from typing import Any

import pytest
from boto3.dynamodb.types import DYNAMODB_CONTEXT, Binary, TypeDeserializer, TypeSerializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamo_lake.codec import item_to_data, item_to_data_bytes
from dynamo_lake.errors import InvalidItemError

# Every test here runs on the pure codec and on the compiled one (skipped if not built).
pytestmark = pytest.mark.usefixtures("codec_path")

SERIALIZER = TypeSerializer()
DESERIALIZER = TypeDeserializer()
TYPE_TAGS = ["S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"]

# --- strategies ---------------------------------------------------------------------------

# Any code point but lone surrogates (DynamoDB strings are valid UTF-8): astral planes,
# control characters, quotes and backslashes all included.
characters = st.characters(exclude_categories=("Cs",))
special_strings = st.sampled_from(
    [
        "",
        '"',
        "\\",
        '\\"',
        "\x00",
        "\x1f\x7f",
        "\n\r\t\b\f",
        "\u2028\u2029",
        "😀",
        "\U0010ffff",
        "\uffff\U00010000",
        "2024-01-02T03:04:05.678901",
        "1E+125",
        '{"S":"x"}',
        "null",
        *TYPE_TAGS,
    ]
)
strings = st.one_of(st.text(characters, max_size=12), special_strings)
names = st.one_of(st.sampled_from(TYPE_TAGS), st.text(characters, max_size=6))

# DynamoDB numbers: up to 38 significant digits, magnitude 1E-130 .. 9.99...E+125.
# boto3's context (Emin=-128, prec=38) also bounds the exponent below at Emin - prec + 1.
_ETINY = DYNAMODB_CONTEXT.Emin - DYNAMODB_CONTEXT.prec + 1
EDGE_NUMBERS = [
    "0",
    "-0",
    "1E+125",
    "-1E+125",
    "1E-130",
    "-1E-130",
    "9.9999999999999999999999999999999999999E+125",
    "-9.9999999999999999999999999999999999999E+125",
    "12345678901234567890123456789012345678",
    "0.12345678901234567890123456789012345678",
    "9007199254740993",
    "1.50",
    "0.000001",
]


@st.composite
def nonzero_decimals(draw: st.DrawFn) -> Decimal:
    width = draw(st.integers(1, 38))
    coefficient = draw(st.integers(10 ** (width - 1), 10**width - 1))
    # adjusted exponent = exponent + width - 1 must lie in [-130, 125]
    low = max(-130 - (width - 1), _ETINY)
    high = 125 - (width - 1)
    exponent = draw(
        st.one_of(
            st.integers(-width - 3, 3).filter(lambda e: low <= e <= high),
            st.integers(low, high),
            st.sampled_from([low, high]),
        )
    )
    sign = draw(st.sampled_from([0, 1]))
    return Decimal((sign, tuple(int(d) for d in str(coefficient)), exponent))


zero_decimals = st.builds(
    lambda sign, exponent: Decimal((sign, (0,), exponent)),
    st.sampled_from([0, 1]),
    st.one_of(st.just(0), st.integers(-130, 125)),
)
decimals = st.one_of(
    nonzero_decimals(), zero_decimals, st.sampled_from([Decimal(text) for text in EDGE_NUMBERS])
)
numbers = st.one_of(decimals, st.integers(-(10**38) + 1, 10**38 - 1))

scalars = st.one_of(
    strings,
    numbers,
    st.binary(max_size=24),
    st.booleans(),
    st.none(),
    st.sets(strings, min_size=1, max_size=6),
    st.sets(decimals, min_size=1, max_size=6),
    st.sets(st.binary(max_size=8), min_size=1, max_size=6),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(names, children, max_size=4)
    ),
    max_leaves=16,
)
items = st.dictionaries(names, values, max_size=8)

# --- marshalling: boto3's DynamoDB JSON, with binary as base64 text as exports carry it ---


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def as_export(typed: dict[str, Any]) -> dict[str, Any]:
    """boto3 gives ``{"B": bytes}``; exports and stream records carry base64 text."""
    ((tag, value),) = typed.items()
    if tag == "B":
        return {"B": b64(bytes(value))}
    if tag == "BS":
        return {"BS": [b64(bytes(member)) for member in value]}
    if tag == "M":
        return {"M": {name: as_export(member) for name, member in value.items()}}
    if tag == "L":
        return {"L": [as_export(member) for member in value]}
    return {tag: value}


def marshal(item: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (boto3's typed item, the same item as export DynamoDB JSON)."""
    typed = {name: SERIALIZER.serialize(value) for name, value in item.items()}
    return typed, {name: as_export(value) for name, value in typed.items()}


# --- expectations -------------------------------------------------------------------------


class NumberText(str):
    """A number's literal text, kept apart from strings when comparing types."""


def expected_value(value: Any) -> Any:
    """The plain value the lake contract says a Python (or boto3-deserialized) value becomes."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, bytes | bytearray | Binary):
        return b64(bytes(value))
    if isinstance(value, dict):
        return {name: expected_value(member) for name, member in value.items()}
    if isinstance(value, list):
        return [expected_value(member) for member in value]
    if isinstance(value, set | frozenset):
        members = list(value)
        if all(isinstance(member, str) for member in members):
            return sorted(members)  # code point order
        if all(isinstance(member, int | Decimal) for member in members):
            return sorted(Decimal(member) for member in members)
        return [b64(raw) for raw in sorted(bytes(member) for member in members)]
    raise AssertionError(f"unexpected generated value {value!r}")


def expected_texts(export: dict[str, Any]) -> Any:
    """The plain value with every number as the exact text boto3 wrote into the N."""
    ((tag, value),) = export.items()
    if tag == "N":
        return NumberText(value)
    if tag == "NS":
        return [NumberText(text) for text in sorted(value, key=Decimal)]
    if tag == "SS":
        return sorted(value)
    if tag == "BS":
        return sorted(value, key=base64.b64decode)
    if tag == "NULL":
        return None
    if tag == "M":
        return {name: expected_texts(member) for name, member in value.items()}
    if tag == "L":
        return [expected_texts(member) for member in value]
    return value  # S, B (already base64 text), BOOL


def assert_same(actual: Any, expected: Any, path: str = "$") -> None:
    """Exact equality that never confuses True with 1 or a list with a tuple."""
    assert type(actual) is type(expected), f"{path}: {actual!r} != {expected!r}"
    if isinstance(expected, dict):
        assert list(actual) == sorted(actual), f"{path}: keys not sorted"
        assert set(actual) == set(expected), f"{path}: keys {list(actual)} != {list(expected)}"
        for name in expected:
            assert_same(actual[name], expected[name], f"{path}.{name}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        for index, (one, other) in enumerate(zip(actual, expected, strict=True)):
            assert_same(one, other, f"{path}[{index}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def _sorted_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [name for name, _ in pairs]
    assert keys == sorted(set(keys)), f"object keys not sorted by code point: {keys}"
    return dict(pairs)


def reserialize_with_stdlib(data: str) -> str:
    """Parse ``data`` and write it again with the stdlib's sorted, compact, UTF-8 settings.

    Numbers go out as placeholders and come back as their original text, so the result is
    what a canonical writer must produce, computed without orjson.
    """
    marker = uuid.uuid4().hex
    assert marker not in data
    texts: list[str] = []

    def hold(text: str) -> str:
        texts.append(text)
        return f"{marker}:{len(texts) - 1}"

    parsed = json.loads(data, parse_float=hold, parse_int=hold)
    rendered = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for index in reversed(range(len(texts))):
        rendered = rendered.replace(f'"{marker}:{index}"', texts[index])
    return rendered


def check_against_oracle(item: dict[str, Any]) -> str:
    typed, export = marshal(item)
    data = item_to_data(export)

    # Valid UTF-8, and exactly the stdlib's sorted compact rendering of its own content.
    assert data.encode("utf-8").decode("utf-8") == data
    assert item_to_data_bytes(export) == data.encode("utf-8")
    assert reserialize_with_stdlib(data) == data

    # Values, exactly: against the generated item and against boto3's deserializer.
    parsed = json.loads(
        data, parse_float=Decimal, parse_int=Decimal, object_pairs_hook=_sorted_pairs
    )
    assert_same(parsed, expected_value(item))
    round_tripped = {name: DESERIALIZER.deserialize(value) for name, value in typed.items()}
    assert_same(parsed, expected_value(round_tripped))

    # Digits, exactly: every number is the text boto3 put in the DynamoDB JSON.
    as_text = json.loads(data, parse_float=NumberText, parse_int=NumberText)
    assert_same(as_text, {name: expected_texts(value) for name, value in export.items()})
    return data


# --- the properties -----------------------------------------------------------------------

ORACLE_EXAMPLES = 1500
STABILITY_EXAMPLES = 600
NUMBER_EXAMPLES = 3000
STRING_EXAMPLES = 1500
SET_EXAMPLES = 800
BROKEN_EXAMPLES = 500


@settings(
    max_examples=ORACLE_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(items)
def test_items_match_boto3_oracle(item: dict[str, Any]) -> None:
    check_against_oracle(item)


@settings(max_examples=NUMBER_EXAMPLES, deadline=None)
@given(numbers)
def test_every_dynamodb_number_keeps_its_digits(number: int | Decimal) -> None:
    typed = SERIALIZER.serialize(number)
    text = typed["N"]
    # At the top, inside a map and inside a list: the codec decodes each place its own way.
    data = item_to_data({"n": typed, "m": {"M": {"n": typed}}, "l": {"L": [typed]}})
    assert data == '{"l":[' + text + '],"m":{"n":' + text + '},"n":' + text + "}"
    parsed = json.loads(data, parse_float=Decimal, parse_int=Decimal)["n"]
    assert parsed == Decimal(number) == DESERIALIZER.deserialize(typed)
    assert parsed.as_tuple() == DYNAMODB_CONTEXT.create_decimal(text).as_tuple()


@settings(max_examples=STRING_EXAMPLES, deadline=None)
@given(name=names, text=strings)
def test_every_string_round_trips_as_utf8(name: str, text: str) -> None:
    _, export = marshal({name: text})
    data = item_to_data(export)
    assert json.loads(data) == {name: text}
    assert data == json.dumps({name: text}, separators=(",", ":"), ensure_ascii=False)
    assert data.encode("utf-8")


@settings(max_examples=SET_EXAMPLES, deadline=None)
@given(
    st.one_of(
        st.sets(strings, min_size=1, max_size=20),
        st.sets(decimals, min_size=1, max_size=20),
        st.sets(st.binary(max_size=6), min_size=1, max_size=20),
    ),
    st.randoms(use_true_random=False),
)
def test_sets_come_out_in_canonical_order(members: set[Any], random: Random) -> None:
    _, export = marshal({"s": members})
    ((tag, listed),) = export["s"].items()
    shuffled = list(listed)
    random.shuffle(shuffled)
    data = item_to_data({"s": {tag: shuffled}})
    assert data == item_to_data(export)
    as_text = json.loads(data, parse_float=NumberText, parse_int=NumberText)["s"]
    if tag == "SS":
        assert as_text == sorted(members)
    elif tag == "NS":
        assert [Decimal(text) for text in as_text] == sorted(members)
        assert sorted(as_text) == sorted(listed)  # the same texts, only reordered
    else:
        assert [base64.b64decode(text) for text in as_text] == sorted(members)


def shuffled(export: dict[str, Any], random: Random) -> dict[str, Any]:
    """The same attribute value with map keys and set members in a random order."""
    ((tag, value),) = export.items()
    if tag == "M":
        return {"M": shuffle_map(value, random, shuffled)}
    if tag == "L":
        return {"L": [shuffled(member, random) for member in value]}  # list order is data
    if tag in ("SS", "NS", "BS"):
        members = list(value)
        random.shuffle(members)
        return {tag: members}
    return {tag: value}


def shuffle_map(
    mapping: dict[str, Any],
    random: Random,
    each: Callable[[dict[str, Any], Random], dict[str, Any]],
) -> dict[str, Any]:
    names = list(mapping)
    random.shuffle(names)
    return {name: each(mapping[name], random) for name in names}


@settings(
    max_examples=STABILITY_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(items, st.randoms(use_true_random=False))
def test_shuffled_attribute_and_set_order_gives_identical_bytes(
    item: dict[str, Any], random: Random
) -> None:
    _, export = marshal(item)
    other = shuffle_map(export, random, shuffled)
    # The source also arrives as text (an export line, a stream record): parse it again.
    reparsed = json.loads(json.dumps(other, ensure_ascii=True))
    data = item_to_data(export)
    assert item_to_data(other).encode("utf-8") == data.encode("utf-8")
    assert item_to_data(reparsed) == data


# --- invalid input: one broken value anywhere, and the error names exactly its path -------

BROKEN_VALUES: list[Any] = [
    {},
    {"S": "a", "N": "1"},
    {"X": "1"},
    {"s": "a"},
    {"N": "abc"},
    {"N": "NaN"},
    {"N": "-Infinity"},
    {"N": "1_000"},
    {"N": ""},
    {"N": 1},
    {"B": "YmE"},
    {"B": "Ym-_"},
    {"B": "YmE=="},
    {"NULL": False},
    {"BOOL": "true"},
    {"BOOL": 0},
    {"S": None},
    {"S": True},
    {"M": []},
    {"M": "x"},
    {"L": {}},
    {"L": "ab"},
    {"SS": "ab"},
    {"NS": True},
    {"BS": {}},
    "x",
    None,
    7,
    [{"S": "a"}],
]
BROKEN_MEMBERS: dict[str, list[Any]] = {
    "SS": [1, None, True, ["a"]],
    "NS": ["x", "NaN", "Infinity", "1_0", "", " 1", 1, None],
    "BS": ["YmE", "!!!!", "Ym E=", None, 1],
}


def segment(name: str) -> str:
    return name if name.isidentifier() else json.dumps(name, ensure_ascii=False)


Step = tuple[str, Any]


def sites(typed: Any, path: str, steps: list[Step]) -> list[tuple[str, list[Step], str | None]]:
    """Every place a value can be broken: (its path, how to reach it, set tag if a member)."""
    found: list[tuple[str, list[Step], str | None]] = [(path, steps, None)]
    ((tag, value),) = typed.items()
    if tag == "M":
        for name, member in value.items():
            found += sites(member, f"{path}.M.{segment(name)}", [*steps, ("M", name)])
    elif tag == "L":
        for index, member in enumerate(value):
            found += sites(member, f"{path}.L[{index}]", [*steps, ("L", index)])
    elif tag in BROKEN_MEMBERS:
        found += [(f"{path}.{tag}[{i}]", [*steps, (tag, i)], tag) for i in range(len(value))]
    return found


def replaced(typed: Any, steps: list[Step], broken: Any) -> Any:
    if not steps:
        return broken
    (_, key), rest = steps[0], steps[1:]
    ((tag, value),) = typed.items()
    if tag == "M":
        return {"M": {**value, key: replaced(value[key], rest, broken)}}
    copy = list(value)
    copy[key] = broken if tag in BROKEN_MEMBERS else replaced(value[key], rest, broken)
    return {tag: copy}


def break_one_value(item: dict[str, Any], data: st.DataObject) -> tuple[dict[str, Any], str]:
    """The item in DynamoDB JSON with one value, drawn anywhere, broken; and its path."""
    _, export = marshal(item)
    candidates = [
        (name, path, steps, tag)
        for name, typed in export.items()
        for path, steps, tag in sites(typed, f"$.{segment(name)}", [])
    ]
    name, where, steps, tag = data.draw(st.sampled_from(candidates))
    broken = data.draw(st.sampled_from(BROKEN_MEMBERS[tag] if tag else BROKEN_VALUES))
    return {**export, name: replaced(export[name], steps, broken)}, where


@settings(max_examples=BROKEN_EXAMPLES, deadline=None)
@given(items.filter(bool), st.data())
def test_one_broken_value_anywhere_is_named_by_its_path(
    item: dict[str, Any], data: st.DataObject
) -> None:
    bad_item, where = break_one_value(item, data)
    _, export = marshal(item)
    with pytest.raises(InvalidItemError) as caught:
        item_to_data(bad_item)
    assert caught.value.path == where
    item_to_data(export)  # the item as it was is fine: the broken value alone is the fault


# --- privacy: an error names the path and the problem, never the value -------------------

# Longer than any generated name (at most 6 characters), so it can only reach a message
# through a value. Put where values, tags and members go, valid base64 and invalid alike.
SECRET = "S3CR3T-4111-1111-1111"
SECRET_VALUES: list[Any] = [
    {"N": SECRET},
    {"N": "1e" + SECRET},
    {"N": "NaN" + SECRET},
    {"B": SECRET},
    {"B": SECRET + "=="},
    {"S": [SECRET]},
    {"S": {"S": SECRET}},
    {"BOOL": SECRET},
    {"NULL": SECRET},
    {"M": SECRET},
    {"M": [SECRET]},
    {"L": SECRET},
    {"SS": SECRET},
    {"NS": SECRET},
    {"BS": SECRET},
    {SECRET: "x"},  # a key where a type tag belongs
    {SECRET.lower(): SECRET},
    {"S": "x", SECRET: SECRET},
    {"street": SECRET, "card": SECRET},  # a plain object where a typed value belongs
    SECRET,
    [SECRET],
]
SECRET_MEMBERS: dict[str, list[Any]] = {
    "SS": [[SECRET], {"S": SECRET}],
    "NS": [SECRET, " " + SECRET, "1e999999999999999999999"],
    "BS": [SECRET, SECRET + "==", [SECRET]],
}


@settings(max_examples=BROKEN_EXAMPLES, deadline=None)
@given(items.filter(bool), st.data())
def test_a_broken_value_never_appears_in_the_error(
    item: dict[str, Any], data: st.DataObject
) -> None:
    _, export = marshal(item)
    candidates = [
        (name, path, steps, tag)
        for name, typed in export.items()
        for path, steps, tag in sites(typed, f"$.{segment(name)}", [])
    ]
    name, where, steps, tag = data.draw(st.sampled_from(candidates))
    broken = data.draw(st.sampled_from(SECRET_MEMBERS[tag] if tag else SECRET_VALUES))
    bad_item = {**export, name: replaced(export[name], steps, broken)}
    with pytest.raises(InvalidItemError) as caught:
        item_to_data(bad_item)
    assert caught.value.path == where
    assert where in str(caught.value)
    assert SECRET not in str(caught.value)
    # Decoding in place (the backfill's fast path) reports without the path, and as cleanly.
    with pytest.raises(InvalidItemError) as consumed:
        item_to_data_bytes(json.loads(json.dumps(bad_item)), consume=True)
    assert SECRET not in str(consumed.value)
