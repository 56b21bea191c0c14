"""The lossless item codec: DynamoDB JSON in, canonical ``data`` JSON out.

Every writer of the lake's ``data`` column (backfill, Firehose Lambda, repair) calls
:func:`item_to_data`, so a row from an export and a row from the stream are byte-identical
for the same item. Canonical form (the lake contract):

* object keys sorted by Unicode code point at every depth, no insignificant whitespace,
  UTF-8 (never ASCII-escaped; control characters escaped as JSON requires);
* ``N`` written as a JSON number with DynamoDB's own digits (never through a float);
* ``B`` as base64 (standard alphabet, padded); ``BOOL``; ``NULL`` as ``null``;
  ``M`` an object, ``L`` an array;
* ``SS`` sorted by code point, ``NS`` by numeric value, ``BS`` by the decoded bytes.

Input is DynamoDB JSON as exports and stream records carry it: each attribute value is a
one-key object ``{"<tag>": value}`` with binary values as base64 strings. The hot path does
no path bookkeeping; when it fails, a second, path-tracking walk names the attribute.

An optional compiled fast path (``dynamo_lake._fastcodec``, Cython, built where a C compiler
exists) writes the same bytes in one C walk; it declines (and this module's pure codec runs)
for anything unusual and for every error, so output and errors are the same either way
(tests/core/test_codec_compiled.py compares them). It is used when built unless
``DYNAMO_LAKE_PURE_CODEC=1``; which codec is in use is logged once, at import
(:func:`active_codec` says it too).

Error messages never quote item content (attribute values, or keys where a type tag should
be): they reach logs (CloudWatch for the Firehose Lambda, ``_errors/`` reasons, task logs)
that the item's readers may not be allowed to see. A message names the attribute path and
the kind of problem (``N is not a number``, ``S must be a string, got int``); a Python type
name, a known type tag or a count is fine, a value is not.
"""

from __future__ import annotations

import binascii
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from types import ModuleType
from typing import Any

import orjson

from dynamo_lake.errors import InvalidItemError

__all__ = [
    "PURE_CODEC_VARIABLE",
    "active_codec",
    "canonical_json",
    "canonical_json_bytes",
    "item_to_data",
    "item_to_data_bytes",
    "item_to_plain",
    "number_text",
]

# JSON's number grammar (RFC 8259). DynamoDB renders numbers in this form already.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_DUMPS_OPTIONS = orjson.OPT_SORT_KEYS
#: Set to 1 to use the pure codec even where the compiled one is built.
PURE_CODEC_VARIABLE = "DYNAMO_LAKE_PURE_CODEC"

log = logging.getLogger(__name__)


class _Invalid(Exception):
    """Internal: raised by the fast walk; the slow walk turns it into InvalidItemError."""


def number_text(text: object) -> str:
    """Return ``text`` as a JSON number literal with the same digits, or raise ``_Invalid``.

    DynamoDB's own renderings (``1E+125``, ``-0``, ``0.000001``) are valid JSON and pass
    unchanged. Other finite decimal spellings (``+5``, ``.5``, ``5.``) are rewritten by
    :class:`~decimal.Decimal` without changing the value; NaN, infinities, blanks and
    anything that is not a number are refused.
    """
    if type(text) is not str:
        raise _Invalid(f"N must be a string of digits, got {type(text).__name__}")
    if _JSON_NUMBER.fullmatch(text):
        return text
    # Decimal also takes "1_000", " 5" and non-ASCII digits; DynamoDB and JSON do not.
    if not text or not text.isascii() or "_" in text or text.strip() != text:
        raise _Invalid(_NOT_A_NUMBER)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _Invalid(_NOT_A_NUMBER) from None
    if not value.is_finite():
        raise _Invalid("N is not a finite number (NaN and infinities are not DynamoDB numbers)")
    rendered = str(value)
    if not _JSON_NUMBER.fullmatch(rendered):  # pragma: no cover - Decimal always conforms
        raise _Invalid("N cannot be written as a JSON number")
    return rendered


_NOT_A_NUMBER = "N is not a number (DynamoDB numbers are decimal digits like -12.5E+3)"


def _number_key(text: str) -> tuple[Decimal, str]:
    """The sort key of an ``NS`` member: its value, then its text (``1.0`` before ``1.00``)."""
    try:
        return Decimal(text), text
    except InvalidOperation:
        # Only an exponent beyond Decimal's reach (over 10**18) gets here: JSON allows it,
        # DynamoDB (1E-130 .. 1E+126) never writes it.
        raise _Invalid("N exponent is too large to be a DynamoDB number") from None


def _number_member(text: object) -> str:
    """An ``NS`` member as the slow walk checks it: a number that can also be ordered."""
    rendered = number_text(text)
    _number_key(rendered)
    return rendered


def _binary_text(text: object) -> tuple[bytes, str]:
    if type(text) is not str:
        raise _Invalid(f"B must be a base64 string, got {type(text).__name__}")
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        # binascii's messages are fixed texts ("Incorrect padding"), never the input.
        raise _Invalid(f"B is not valid base64 ({exc})") from None
    return raw, binascii.b2a_base64(raw, newline=False).decode("ascii")


def _kind(value: object) -> str:
    """What a wrong value is, without the value: JSON's constants by name, else the type."""
    if value is None:
        return "null"
    if type(value) is bool:
        return "true" if value else "false"
    return type(value).__name__


def _string(value: object) -> str:
    if type(value) is not str:
        raise _Invalid(f"S must be a string, got {type(value).__name__}")
    return value


def _bool(value: object) -> bool:
    if type(value) is not bool:
        raise _Invalid(f"BOOL must be true or false, got {_kind(value)}")
    return value


def _null(value: object) -> None:
    if value is not True:
        raise _Invalid(f"NULL must be true, got {_kind(value)}")
    return None


def _number(value: object) -> orjson.Fragment:
    return orjson.Fragment(number_text(value))


def _binary(value: object) -> str:
    return _binary_text(value)[1]


def _list_of(value: object, tag: str) -> list[Any]:
    if type(value) is not list:
        raise _Invalid(f"{tag} must be an array, got {type(value).__name__}")
    return value


def _string_set(value: object) -> list[str]:
    return sorted(_string(member) for member in _list_of(value, "SS"))


def _number_set(value: object) -> list[orjson.Fragment]:
    texts = [number_text(member) for member in _list_of(value, "NS")]
    texts.sort(key=_number_key)
    return [orjson.Fragment(text) for text in texts]


def _binary_set(value: object) -> list[str]:
    pairs = [_binary_text(member) for member in _list_of(value, "BS")]
    pairs.sort()
    return [text for _, text in pairs]


def _map(value: object) -> dict[str, Any]:
    if type(value) is not dict:
        raise _Invalid(f"M must be an object, got {type(value).__name__}")
    return _decode(value)


def _list(value: object) -> list[Any]:
    return [_member(member) for member in _list_of(value, "L")]


def _decode(typed_values: dict[str, Any]) -> dict[str, Any]:
    """Decode an object of typed values (an item or an ``M``) in place: the codec's hot loop.

    It reuses the parsed input instead of building new objects (no dicts to allocate and
    grow: about 40 % faster), so the input is destroyed, also when decoding fails. The common
    tags are decoded inline, since a function call per attribute costs more than the
    decoding; anything unusual (and every error) goes through ``_DECODERS``.
    """
    for name, typed in typed_values.items():
        tag, value = typed.popitem()  # AttributeError: not an object; KeyError: no tag
        if typed:
            raise _Invalid("two or more type tags")
        kind = type(value)
        if kind is str:
            if tag == "S":
                typed_values[name] = value
                continue
            if tag == "N" and _JSON_NUMBER_MATCH(value):
                typed_values[name] = _FRAGMENT(value)
                continue
        elif kind is dict:
            if tag == "M":
                typed_values[name] = _decode(value)
                continue
        elif kind is bool:
            if tag == "BOOL":
                typed_values[name] = value
                continue
        elif kind is list:
            if tag == "L":
                typed_values[name] = [_member(member) for member in value]
                continue
            if tag == "SS" and all(type(member) is str for member in value):
                typed_values[name] = sorted(value)
                continue
        typed_values[name] = _DECODERS[tag](value)  # KeyError: unknown tag
    return typed_values


def _member(typed: Any) -> Any:
    """One element of an ``L``, in place like :func:`_decode`."""
    tag, value = typed.popitem()
    if typed:
        raise _Invalid("two or more type tags")
    if tag == "M" and type(value) is dict:
        return _decode(value)
    if tag == "S" and type(value) is str:
        return value
    return _DECODERS[tag](value)


_JSON_NUMBER_MATCH = _JSON_NUMBER.fullmatch
_FRAGMENT = orjson.Fragment
_DECODE_ERRORS = (_Invalid, AttributeError, KeyError, TypeError, ValueError)


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "S": _string,
    "N": _number,
    "B": _binary,
    "BOOL": _bool,
    "NULL": _null,
    "M": _map,
    "L": _list,
    "SS": _string_set,
    "NS": _number_set,
    "BS": _binary_set,
}


def _shape_problem(typed: object) -> str:
    if type(typed) is not dict:
        return f'expected a typed value like {{"S": ...}}, got {type(typed).__name__}'
    if not typed:
        return 'no type tag (an attribute value needs exactly one, e.g. {"S": ...})'
    # Name only the keys that are type tags: any other key may be item content (a plain
    # JSON object where a typed value belongs holds the item's own names and values).
    tags = sorted(key for key in typed if key in _DECODERS)
    others = len(typed) - len(tags)
    keys = ", ".join(tags) if tags else ""
    if others:
        keys += f"{' and ' if tags else ''}{others} that are not type tags"
    return f"{len(typed)} keys ({keys}); an attribute value has exactly one type tag"


def _unknown_tag_problem(tag: object) -> str:
    expected = ", ".join(_DECODERS)
    if isinstance(tag, str) and tag.upper() in _DECODERS:
        # A known tag in the wrong case: naming the known tag quotes no item content.
        return f"type tag in the wrong case: did you mean {tag.upper()!r}? (tags are {expected})"
    # Not echoed: a key where a tag belongs may be the item's own data.
    return f"unknown type tag (expected one of {expected})"


def item_to_plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """Decode a DynamoDB JSON item to plain values ready for :func:`canonical_json`.

    Numbers come back as :class:`orjson.Fragment` (their digits, untouched), sets as sorted
    lists, binary as base64 strings. The item is not changed (a copy is decoded). Raises
    :class:`InvalidItemError` naming the path.
    """
    try:
        if not isinstance(item, Mapping):
            raise _Invalid("not an object")
        return _decode(orjson.loads(orjson.dumps(item)))
    except (*_DECODE_ERRORS, orjson.JSONEncodeError):
        _raise_with_path(item)
        raise  # pragma: no cover - _raise_with_path always raises


def canonical_json_bytes(plain: Mapping[str, Any]) -> bytes:
    """Serialize decoded values canonically (sorted keys, compact) as UTF-8 bytes."""
    try:
        return orjson.dumps(plain, option=_DUMPS_OPTIONS)
    except orjson.JSONEncodeError as exc:
        # Lone surrogates cannot occur in DynamoDB strings, but a hand-built record can
        # carry them; say so rather than writing invalid UTF-8.
        raise InvalidItemError("$", f"cannot be written as UTF-8 JSON: {exc}") from None


def canonical_json(plain: Mapping[str, Any]) -> str:
    """Serialize decoded values canonically (sorted keys, compact, UTF-8)."""
    return canonical_json_bytes(plain).decode("utf-8")


def item_to_data_bytes(item: Mapping[str, Any], *, consume: bool = False) -> bytes:
    """:func:`item_to_data` as UTF-8 bytes (what hashing and Parquet want anyway).

    With ``consume`` the item (a dict nobody else holds) is decoded in place, which is
    faster; it is destroyed, and an error then says only that the item is invalid: decode a
    fresh copy without ``consume`` to learn the attribute path.
    """
    compiled = _COMPILED
    if compiled is not None:
        data: bytes | None = compiled.data_bytes(item)
        if data is not None:
            return data
    if not consume or type(item) is not dict:
        return canonical_json_bytes(item_to_plain(item))
    try:
        plain = _decode(item)
    except _DECODE_ERRORS as exc:
        # A KeyError carries the unknown tag (possibly item content): give only its class.
        detail = str(exc) if isinstance(exc, _Invalid) else type(exc).__name__
        raise InvalidItemError(
            "$", f"invalid item ({detail}); decode a copy without consume for the attribute path"
        ) from None
    return canonical_json_bytes(plain)


def item_to_data(item: Mapping[str, Any]) -> str:
    """Return the canonical ``data`` JSON of one DynamoDB JSON item.

    >>> item_to_data({"b": {"N": "1E+125"}, "a": {"SS": ["y", "x"]}})
    '{"a":["x","y"],"b":1E+125}'
    """
    return item_to_data_bytes(item).decode("utf-8")


# --- the compiled fast path (optional) ------------------------------------------------


def _load_compiled() -> ModuleType | None:
    """The compiled codec if it is built and not switched off; says which, once."""
    if os.environ.get(PURE_CODEC_VARIABLE, "").strip() not in ("", "0"):
        log.info("item codec: pure Python (%s is set)", PURE_CODEC_VARIABLE)
        return None
    try:
        from dynamo_lake import _fastcodec
    except ImportError as exc:
        log.info("item codec: pure Python (the compiled codec is not built: %s)", exc)
        return None
    log.info("item codec: compiled (%s=1 selects the pure one)", PURE_CODEC_VARIABLE)
    return _fastcodec


_COMPILED = _load_compiled()


def compiled_codec() -> ModuleType | None:
    """The compiled fast path in use (:mod:`dynamo_lake.cdc` builds rows with it), or None."""
    return _COMPILED


def active_codec() -> str:
    """``"compiled"`` or ``"pure"``: which codec this process uses."""
    return "pure" if _COMPILED is None else "compiled"


# --- the slow walk: only runs after the fast one failed, to name the attribute --------


def _raise_with_path(item: object) -> None:
    if not isinstance(item, Mapping):
        raise InvalidItemError("$", f"an item must be an object, got {type(item).__name__}")
    for name, typed in item.items():
        _check(typed, f"$.{_segment(name)}")
    # Every value has a valid shape: what is left is text that is not valid Unicode.
    canonical_json_bytes(item)
    raise InvalidItemError("$", "item could not be decoded")  # pragma: no cover


def _segment(name: str) -> str:
    return name if name.isidentifier() else json.dumps(name, ensure_ascii=False)


def _check(typed: object, path: str) -> None:
    try:
        _attribute_shallow(typed)
    except _Invalid as exc:
        raise InvalidItemError(path, str(exc)) from None
    assert type(typed) is dict
    ((tag, value),) = typed.items()
    if tag == "M":
        for name, member in value.items():
            _check(member, f"{path}.M.{_segment(name)}")
    elif tag == "L":
        for index, member in enumerate(value):
            _check(member, f"{path}.L[{index}]")
    elif tag in ("SS", "NS", "BS"):
        member_decoder = {"SS": _string, "NS": _number_member, "BS": _binary_text}[tag]
        for index, member in enumerate(value):
            try:
                member_decoder(member)
            except _Invalid as exc:
                raise InvalidItemError(f"{path}.{tag}[{index}]", str(exc)) from None


def _attribute_shallow(typed: object) -> None:
    """Validate one level: the tag, and scalar values; containers only for their type."""
    if type(typed) is not dict or len(typed) != 1:
        raise _Invalid(_shape_problem(typed))
    ((tag, value),) = typed.items()
    if tag == "M":
        if type(value) is not dict:
            raise _Invalid(f"M must be an object, got {type(value).__name__}")
    elif tag in ("L", "SS", "NS", "BS"):
        _list_of(value, tag)
    elif tag in _DECODERS:
        _DECODERS[tag](value)
    else:
        raise _Invalid(_unknown_tag_problem(tag))
