"""The exact key of a lake row (:mod:`dynamo_lake.lake.keys`): never text joined by a
separator, never a number through a double, the same text on the compiled and the pure path,
and the same values from the Athena expression (``json_extract_scalar``) as from Python.

Items come from the codec's property strategies (every code point, 38-digit numbers, binary),
go through the real codec into canonical ``data``, and their keys are read back.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pytest
import sqlglot
from codec_paths import NOT_BUILT, compiled_codec_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec_properties import EDGE_NUMBERS, decimals, names, strings, values

from dynamo_lake.codec import item_to_data
from dynamo_lake.lake import keys as keys_module
from dynamo_lake.lake.keys import KeyAttribute, athena_key_sql, key_array, key_of, render_key

EXAMPLES = int(os.environ.get("DYNAMO_LAKE_DIFF_EXAMPLES", "1000"))
COMPILED = compiled_codec_module()


def _number_text(value: Any) -> str:
    return str(value)


key_values = st.one_of(
    strings.map(lambda text: ("S", text)),
    decimals.map(lambda number: ("N", _number_text(number))),
    st.sampled_from(EDGE_NUMBERS).map(lambda text: ("N", text)),
    st.binary(max_size=12).map(lambda raw: ("B", base64.b64encode(raw).decode())),
)


@st.composite
def keyed_items(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str]], str]:
    """(key names, their (type, text), the item's canonical data)."""
    count = draw(st.integers(1, 2))
    key_names = draw(st.lists(names, min_size=count, max_size=count, unique=True))
    typed = [draw(key_values) for _ in key_names]
    others = draw(st.dictionaries(names, values, max_size=4))
    item: dict[str, Any] = {}
    for name, value in others.items():
        if name not in key_names:
            item[name] = _typed(value)
    for name, (kind, text) in zip(key_names, typed, strict=True):
        item[name] = {kind: text}
    return key_names, typed, item_to_data(item)


def _typed(value: Any) -> dict[str, Any]:
    from test_codec_properties import marshal

    return marshal({"v": value})[1]["v"]  # type: ignore[no-any-return]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keyed_items())
def test_the_key_is_each_values_exact_text(
    case: tuple[list[str], list[tuple[str, str]], str],
) -> None:
    key_names, typed, data = case
    expected = orjson.dumps([text for _, text in typed]).decode()
    assert key_of(data, key_names) == expected
    assert key_array(pa.array([data, data]), key_names).to_pylist() == [expected, expected]
    attributes = [
        KeyAttribute(name, kind) for name, (kind, _) in zip(key_names, typed, strict=True)
    ]
    rendered = _TEXT.decode(render_key(expected, attributes))  # canonical key JSON
    assert rendered == {name: text for name, (_, text) in zip(key_names, typed, strict=True)}


_TEXT = json.JSONDecoder(parse_float=str, parse_int=str)  # numbers as their text


@pytest.mark.skipif(COMPILED is None, reason=NOT_BUILT)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(keyed_items(), min_size=1, max_size=8), st.integers(0, 3))
def test_the_compiled_path_gives_the_pure_text(
    cases: list[tuple[list[str], list[tuple[str, str]], str]], offset: int
) -> None:
    """Whole columns, sliced (an Arrow offset), with rows the fast path declines mixed in."""
    key_names = cases[0][0]
    datas = [data for _, _, data in cases]
    column = pa.array(["padding"] * offset + datas).slice(offset)
    assert key_array(column, key_names).to_pylist() == [key_of(data, key_names) for data in datas]


HOSTILE = [
    '{"pk":"a","sk":1}',
    '{"pk": "a","sk":1}',  # whitespace (not canonical): declined, read by the pure path
    '{"pk":"a","pk":"b","sk":1}',  # a key twice: declined; the pure path keeps the last
    '{"p\\u006b":"a","sk":1}',  # an escaped key name that spells pk
    '{"pk":"a\\"b","sk":-0.5e-3}',
    '{"pk":"\\ud800","sk":1}',  # a lone surrogate: no key
    '{"pk":true,"sk":1}',
    '{"pk":null,"sk":1}',
    '{"pk":{"S":"a"},"sk":1}',
    '{"pk":["a"],"sk":1}',
    '{"pk":"a","sk":1.2.3}',
    '{"pk":"a","sk":01}',
    '{"pk":"a","sk":1',
    '{"pk":"a"}',
    '{"sk":1}',
    "{}",
    "[]",
    "",
    "not json",
    '{"m":{"pk":"inner","sk":2},"pk":"outer","sk":1}',
    '{"a":"}\\"{","pk":"x","sk":1,"z":[{"pk":"no"}]}',
    '{"pk":"x","sk":NaN}',
    '{"pk":"é\\u2028","sk":1E+125}',
]


@pytest.mark.parametrize("data", HOSTILE)
def test_hostile_data_gives_the_same_key_on_both_paths(data: str) -> None:
    assert key_array(pa.array([data]), ["pk", "sk"]).to_pylist() == [key_of(data, ["pk", "sk"])]


def test_nested_members_and_strings_never_pass_for_a_key() -> None:
    data = '{"a":"\\"pk\\":\\"fake\\"","m":{"pk":"inner"},"pk":"outer","sk":1}'
    assert key_of(data, ["pk", "sk"]) == '["outer","1"]'
    assert key_array(pa.array([data]), ["pk", "sk"]).to_pylist() == ['["outer","1"]']


def test_without_the_compiled_codec_the_pure_path_keys_every_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keys_module, "compiled_codec", lambda: None)
    datas = ['{"pk":"a","sk":1}', '{"pk":"b"}']
    assert key_array(pa.array(datas), ["pk", "sk"]).to_pylist() == ['["a","1"]', None]


@pytest.mark.parametrize(
    ("names_", "data", "values_"),
    [
        (["pk", "sk"], '{"pk":"a\\u001fb","sk":"c"}', ["a\x1fb", "c"]),
        (['a"b', "c\\d"], '{"a\\"b":"q","c\\\\d":2}', ["q", "2"]),
        (['x\\"y', "c\\"], '{"c\\\\":2,"x\\\\\\"y":"q"}', ["q", "2"]),
        (["it's"], '{"it\'s":"x"}', ["x"]),
        (["pk"], '{"pk":12345678901234567890}', ["12345678901234567890"]),
    ],
)
def test_the_athena_expression_reads_the_same_values(
    names_: list[str], data: str, values_: list[str]
) -> None:
    """The Trino SQL, transpiled to DuckDB by sqlglot and run there, extracts the same
    values (DuckDB stands in for Trino's parser, which reads a number's text as written:
    Trino's ``json_extract_scalar`` returns ``JsonParser.getText()``; DuckDB's own JSON
    reader would round a number of more than 17 digits, so none is used here)."""
    trino = f"SELECT {athena_key_sql(names_)} AS k FROM rows"
    sqlglot.parse_one(trino, read="trino")
    back = sqlglot.transpile(trino, read="trino", write="duckdb")[0]
    connection = duckdb.connect()
    try:
        connection.execute("CREATE TABLE rows AS SELECT ?::VARCHAR AS data", [data])
        ((k,),) = connection.execute(back).fetchall()
    finally:
        connection.close()
    assert orjson.loads(k) == values_ == orjson.loads(key_of(data, names_) or "null")


def test_a_missing_attribute_gives_no_key_in_athena_either() -> None:
    trino = f"SELECT {athena_key_sql(['pk', 'sk'])} AS k FROM rows"
    back = sqlglot.transpile(trino, read="trino", write="duckdb")[0]
    connection = duckdb.connect()
    try:
        connection.execute('CREATE TABLE rows AS SELECT \'{"pk":"a"}\' AS data')
        ((k,),) = connection.execute(back).fetchall()
    finally:
        connection.close()
    assert k is None and key_of('{"pk":"a"}', ["pk", "sk"]) is None


def test_render_key_of_something_not_a_key() -> None:
    attributes = [KeyAttribute("pk", "S")]
    assert render_key(None, attributes) == '{"key":null}'
    assert render_key('["a","b"]', attributes) == '{"key":"[\\"a\\",\\"b\\"]"}'
    assert render_key('["1e5"]', [KeyAttribute("pk", "N")]) == '{"pk":1e5}'
    assert render_key('["x"]', [KeyAttribute("pk", "N")]) == '{"pk":"x"}'
