"""Typed columns of the current state, extracted exactly from each item's ``data`` (pure).

A table's ``state_columns`` in the tables file names attributes to carry as columns of
their own beside ``data``, each with a type:

* ``string``: a DynamoDB ``S`` (or ``B``: its base64 text);
* ``bigint``: an ``N`` that is a whole number within 64 bits;
* ``decimal(p,s)``: an ``N`` with at most ``s`` digits after the point and ``p - s``
  before it (``decimal(38,9)`` holds every DynamoDB number of that shape; 38 is Iceberg's
  limit).

Numbers are read from the canonical ``data``'s text (never through a double), and a value
is never rounded or cut: one that does not fit its column (a number in a ``string``
column, a fraction in a ``bigint``, a 40-digit number in a ``decimal(38,9)``, a map) is an
error naming the key, the attribute, the value and the fix. An item without the attribute
(or with a NULL) has NULL there; a tombstone has NULL everywhere.
"""

from __future__ import annotations

import decimal
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dynamo_lake.errors import ConfigError, StateError

if TYPE_CHECKING:  # the tables file's reader imports this module at DAG parse: no pyarrow
    import pyarrow as pa

__all__ = ["TypedColumn", "typed_columns", "with_typed_columns"]

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,127}")
_DECIMAL = re.compile(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)")
#: The state's own columns: a typed column may not take their names.
RESERVED = frozenset({"key", "bucket", "op", "time_stamp", "time_stamp_us", "uuid", "data"})
_INT64 = (-(2**63), 2**63 - 1)
_CONTEXT = decimal.Context(prec=200, Emax=999, Emin=-999)


class _Number(str):
    """A JSON number's text, kept apart from a string's."""


_DECODER = json.JSONDecoder(parse_float=_Number, parse_int=_Number)


@dataclass(frozen=True)
class TypedColumn:
    """An attribute carried as a column: its name (the attribute's) and type."""

    name: str
    type: str  # "string", "bigint" or "decimal(p,s)"

    @property
    def arrow_type(self) -> pa.DataType:
        import pyarrow as pa

        if self.type == "string":
            return pa.string()
        if self.type == "bigint":
            return pa.int64()
        precision, scale = _decimal_shape(self.type)
        return pa.decimal128(precision, scale)

    @property
    def text(self) -> str:
        return f"{self.name}:{self.type}"


def _decimal_shape(kind: str) -> tuple[int, int]:
    match = _DECIMAL.fullmatch(kind)
    if match is None:
        raise ValueError(kind)
    return int(match.group(1)), int(match.group(2))


def typed_columns(
    spec: Mapping[str, Any] | None, where: str = "state_columns"
) -> tuple[TypedColumn, ...]:
    """The tables file's ``state_columns`` (attribute -> type), checked; sorted by name."""
    if spec is None:
        return ()
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where} must map attribute names to types (e.g. `status: string`, "
            f"`total: decimal(38,9)`), not {type(spec).__name__}"
        )
    columns = []
    for name, kind in spec.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in RESERVED:
            raise ConfigError(
                f"{where}: {name!r} cannot be a column: use a lowercase attribute name "
                f"(letters, digits, _) other than {', '.join(sorted(RESERVED))}"
            )
        text = " ".join(str(kind).split()).lower() if isinstance(kind, str) else None
        if text in ("string", "bigint"):
            columns.append(TypedColumn(name, text))
            continue
        try:
            precision, scale = _decimal_shape(text or "")
        except ValueError:
            raise ConfigError(
                f"{where}: {name}: type {kind!r} is not one of string, bigint, decimal(p,s)"
            ) from None
        if not 1 <= precision <= 38 or scale > precision:
            raise ConfigError(
                f"{where}: {name}: decimal({precision},{scale}) needs 1 <= p <= 38 and "
                "s <= p (Iceberg's decimals hold 38 digits)"
            )
        columns.append(TypedColumn(name, f"decimal({precision},{scale})"))
    return tuple(sorted(columns, key=lambda column: column.name))


def _value(column: TypedColumn, value: Any) -> Any:
    """The column's value of one attribute value; ValueError(why) when it does not fit."""
    if value is None:
        return None
    if column.type == "string":
        if isinstance(value, str) and not isinstance(value, _Number):
            return str(value)
        raise ValueError(f"is {_kind(value)}, not a string")
    if not isinstance(value, _Number):
        raise ValueError(f"is {_kind(value)}, not a number")
    number = _CONTEXT.create_decimal(str(value))
    if column.type == "bigint":
        if number != number.to_integral_value(context=_CONTEXT):
            raise ValueError("has a fraction; a bigint holds whole numbers")
        whole = int(number)
        if not _INT64[0] <= whole <= _INT64[1]:
            raise ValueError("is beyond 64 bits")
        return whole
    precision, scale = _decimal_shape(column.type)
    exact = number.quantize(decimal.Decimal(1).scaleb(-scale), context=_CONTEXT)
    if exact != number:
        raise ValueError(f"has more than {scale} digits after the point")
    if exact != 0 and exact.adjusted() >= precision - scale:
        raise ValueError(f"has more than {precision - scale} digits before the point")
    return exact


def _kind(value: Any) -> str:
    if isinstance(value, _Number):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list or set"
    return type(value).__name__


def with_typed_columns(
    rows: pa.Table, columns: Sequence[TypedColumn], table_name: str = "current state"
) -> pa.Table:
    """``rows`` (the state's columns) with the typed columns appended, from ``data``."""
    import pyarrow as pa

    if not columns:
        return rows
    values: list[list[Any]] = [[] for _ in columns]
    keys = rows.column("key").to_pylist()
    for key, op, data in zip(
        keys, rows.column("op").to_pylist(), rows.column("data").to_pylist(), strict=True
    ):
        item = _DECODER.decode(data) if op != "D" and data is not None else {}
        if not isinstance(item, dict):
            item = {}
        for index, column in enumerate(columns):
            raw = item.get(column.name)
            try:
                values[index].append(_value(column, raw))
            except (ValueError, decimal.InvalidOperation) as exc:
                shown = str(raw) if isinstance(raw, str) else json.dumps(raw)[:80]
                raise StateError(
                    f"{table_name}: key {key}: attribute {column.name!r} = {shown[:80]} "
                    f"{exc if isinstance(exc, ValueError) else 'is not a number'}: it does not "
                    f"fit the column {column.text} of state_columns; widen the type in the "
                    "tables file, or remove the column"
                ) from None
    for column, array in zip(columns, values, strict=True):
        rows = rows.append_column(
            pa.field(column.name, column.arrow_type), pa.array(array, column.arrow_type)
        )
    return rows
