"""The exact key of a lake row, as every engine compares it.

A row's key is its key attributes' values as text, encoded as a JSON array of strings in
the order of the key schema (partition key first): ``["customer#1","5"]``. The text of an
``S`` value is the string itself, of an ``N`` value the number's digits exactly as the
canonical ``data`` holds them (DynamoDB's own text, never through a double), of a ``B``
value its base64. A table's key attributes have fixed types, so two keys are the same
item iff their texts are equal, and no value can break the encoding: each is a JSON
string inside an array, never text joined by a separator. A row whose ``data`` lacks a key
attribute (or holds one that is not a string or number) has no key (``None``/NULL).

* On this worker the key is computed while the lake is copied into DuckDB
  (:func:`key_array`): the compiled codec reads the values straight out of ``data``
  without parsing the rest; rows it declines, and everything when it is not built, go
  through :func:`key_of`, the pure reference, which gives the same text.
* In Athena the same values come from ``json_extract_scalar`` (which returns a number's
  text as written) and are encoded by Trino (:func:`athena_key_sql`); the encoding's
  escapes may differ between engines, never the values, and each engine compares its own.

:func:`render_key` turns a key back into canonical key JSON for people and reports
(``{"pk":"customer#1","sk":5}``), using the attributes' types.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from dynamo_lake.codec import compiled_codec

__all__ = ["KeyAttribute", "athena_key_sql", "key_array", "key_of", "render_key"]

#: Numbers stay text: the decoder hands a number's digits through unchanged.
_TEXT_DECODER = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=lambda _: None)
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")


@dataclass(frozen=True)
class KeyAttribute:
    """A primary key attribute: its name and DynamoDB type (S, N or B)."""

    name: str
    type: str


def key_of(data: str, names: Sequence[str]) -> str | None:
    """The key of one row's canonical ``data`` (the pure reference), or None without one."""
    if not isinstance(data, str):
        return None  # a NULL data (a file of other columns, or a broken writer)
    try:
        item = _TEXT_DECODER.decode(data)
    except ValueError:
        return None
    if not isinstance(item, dict):
        return None
    values = []
    for name in names:
        value = item.get(name)
        if not isinstance(value, str):
            return None
        values.append(value)
    try:
        return orjson.dumps(values).decode()
    except orjson.JSONEncodeError:  # a lone surrogate: no DynamoDB string holds one
        return None


def key_array(data: pa.Array, names: Sequence[str]) -> pa.Array:
    """The keys of a ``data`` column (a string array), as a string array."""
    compiled = compiled_codec()
    if compiled is None or data.type != pa.string() or data.null_count or not len(data):
        return pa.array([key_of(text, names) for text in data.to_pylist()], pa.string())
    _, offsets, values = data.buffers()
    validity, key_offsets, key_values, declined = compiled.key_column(
        offsets, values, data.offset, len(data), [name.encode() for name in names]
    )
    keys = pa.Array.from_buffers(
        pa.string(),
        len(data),
        [
            None if validity is None else pa.py_buffer(validity),
            pa.py_buffer(key_offsets),
            pa.py_buffer(key_values),
        ],
    )
    if not declined:
        return keys
    patched = keys.to_pylist()
    for row in declined:
        patched[row] = key_of(data[row].as_py(), names)
    return pa.array(patched, pa.string())


def render_key(key: str | None, attributes: Sequence[KeyAttribute]) -> str:
    """A key (see the module) as canonical JSON: attributes sorted by name, N as a number."""
    try:
        values: Any = orjson.loads(key or "null")
    except orjson.JSONDecodeError:
        values = None
    if not isinstance(values, list) or len(values) != len(attributes):
        return orjson.dumps({"key": key}).decode()  # not a key this module made
    parts = []
    for attribute, value in sorted(zip(attributes, values, strict=True), key=lambda p: p[0].name):
        text = str(value)
        rendered = text if attribute.type == "N" and _JSON_NUMBER.match(text) else None
        parts.append(
            f"{orjson.dumps(attribute.name).decode()}:{rendered or orjson.dumps(text).decode()}"
        )
    return "{" + ",".join(parts) + "}"


def _json_path(name: str) -> str:
    """Trino's JSON path to a top-level member: ``$["name"]`` (only ``"`` and ``\\`` are
    escaped there), as an SQL string literal."""
    path = '$["' + name.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return "'" + path.replace("'", "''") + "'"


def athena_key_sql(names: Sequence[str], data: str = "data") -> str:
    """Trino SQL for the key of a row (NULL when an attribute is absent or not a scalar):
    the values from ``json_extract_scalar`` (a number's text as written), encoded as a JSON
    array of strings."""
    values = [f"json_extract_scalar({data}, {_json_path(name)})" for name in names]
    missing = " OR ".join(f"{value} IS NULL" for value in values)
    return (
        f"CASE WHEN {missing} THEN NULL "
        f"ELSE json_format(CAST(ARRAY[{', '.join(values)}] AS JSON)) END"
    )
