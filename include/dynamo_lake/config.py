"""The tables file: which DynamoDB tables the project backfills, and where their lakes are.

One YAML file, versioned with the DAGs (``include/config/tables.yaml`` unless
``DYNAMO_LAKE_TABLES_FILE`` names another). Adding a table is adding an entry::

    defaults:                      # optional; every table field may appear here
      aws_conn_id: aws_default
      region: us-east-1
    tables:
      orders:                      # the name users pick in the trigger form
        dynamodb_table: orders
        export_bucket: acme-ddb-exports
        export_prefix: exports/orders
        lake_bucket: acme-lake
        glue_database: shop
        glue_table: orders

The only top-level keys are :data:`TOP_LEVEL_KEYS`. A key may appear once per mapping
(YAML would silently keep the last one). Prefixes are S3 key prefixes: segments of
``A-Z a-z 0-9 ! _ . * ' ( ) -`` separated by single slashes (a leading or trailing slash is
ignored). Two tables may not share a lake location or a Glue table, nor nest one lake inside
another.

Errors read ``<file>:<line>: table 'x': field 'y' ...``: they name the file, the line, the
table and the field, and say what is expected. Reading the file is cheap (no AWS calls,
nothing heavier than PyYAML), so DAG files may do it at parse time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from dynamo_lake.contract import (
    COMPRESSIONS,
    DEFAULT_LAKE_PREFIX,
    lake_table_uri,
    valid_bucket_name,
)
from dynamo_lake.errors import ConfigError

__all__ = ["TableConfig", "TablesConfig", "default_tables_file", "load_tables"]

TABLES_FILE_VARIABLE = "DYNAMO_LAKE_TABLES_FILE"
# The sections a tables file may have; anything else is a typo. A new section is added here.
TOP_LEVEL_KEYS: tuple[str, ...] = ("defaults", "tables")
_GLUE_NAME = re.compile(r"^[a-z0-9_]{1,255}$")
_DYNAMODB_TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
# S3's "safe characters" for object keys.
_PREFIX_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!_.*'()-/"
)
_PREFIX_HINT = (
    "a prefix is one or more segments of letters, digits and ! _ . * ' ( ) - "
    "separated by single slashes, e.g. 'dynamo-cdc' or 'warehouse/cdc'"
)


@dataclass(frozen=True)
class TableConfig:
    """One configured table. Field names are the YAML keys."""

    name: str
    dynamodb_table: str
    export_bucket: str
    lake_bucket: str
    glue_database: str
    glue_table: str
    export_prefix: str = "dynamodb-exports"
    lake_prefix: str = DEFAULT_LAKE_PREFIX
    aws_conn_id: str = "aws_default"
    region: str | None = None
    kms_key_id: str | None = None
    compression: str = "zstd"
    max_bad_lines: int = 0
    batch_size_mb: int = 1024
    description: str = ""

    @property
    def lake_uri(self) -> str:
        """``s3://<lake_bucket>/<lake_prefix>/<glue_database>/<glue_table>`` (the contract)."""
        return lake_table_uri(
            self.lake_bucket, self.lake_prefix, self.glue_database, self.glue_table
        )


@dataclass(frozen=True)
class TablesConfig:
    path: Path
    tables: dict[str, TableConfig]

    def table(self, name: str) -> TableConfig:
        try:
            return self.tables[name]
        except KeyError:
            known = ", ".join(sorted(self.tables)) or "none"
            raise ConfigError(
                f"{self.path}: no table {name!r} is configured (configured: {known})"
            ) from None


_REQUIRED = ("dynamodb_table", "export_bucket", "lake_bucket", "glue_database", "glue_table")
_KNOWN = {f.name for f in fields(TableConfig)} - {"name"}


def default_tables_file() -> Path:
    configured = os.environ.get(TABLES_FILE_VARIABLE)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "config" / "tables.yaml"


# -- Reading the YAML, with the line of every mapping and key -----------------------------


class _Mapping(dict[Any, Any]):
    """A YAML mapping that remembers its own line and the line of each of its keys."""

    key_lines: dict[Any, int]

    def __init__(self) -> None:
        super().__init__()
        self.key_lines = {}


class _DuplicateKeyError(Exception):
    def __init__(self, key: Any, first_line: int, line: int, mapping: yaml.MappingNode) -> None:
        super().__init__(key, first_line, line)
        self.key = key
        self.first_line = first_line
        self.line = line
        self.mapping = mapping


_NOT_PLAIN_KEY_TAGS = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")


class _TablesLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping and records lines (1-based)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._checked: set[int] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # Every mapping passes here before its '<<' merges are spliced in (also a mapping
        # that is only merged into another), so only the keys written in it are compared:
        # a key that overrides a merged one is not a duplicate.
        if id(node) not in self._checked:
            self._checked.add(id(node))
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag in (
                    _NOT_PLAIN_KEY_TAGS
                ):
                    continue  # merge keys, and complex keys PyYAML itself refuses
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise _DuplicateKeyError(key, seen[key], line, node)
                seen[key] = line
        super().flatten_mapping(node)

    def construct_lined_mapping(self, node: yaml.MappingNode) -> Iterator[_Mapping]:
        data = _Mapping()
        yield data
        data.update(self.construct_mapping(node))
        # After flattening, merged keys come first and keys written here override them.
        for key_node, _ in node.value:
            data.key_lines[self.construct_object(key_node)] = key_node.start_mark.line + 1


_TablesLoader.add_constructor("tag:yaml.org,2002:map", _TablesLoader.construct_lined_mapping)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(
            f"{path}: tables file not found; create it or set {TABLES_FILE_VARIABLE}"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"{path}: is a directory, not a tables file; point {TABLES_FILE_VARIABLE} at the "
            "YAML file itself (e.g. include/config/tables.yaml)"
        ) from None
    except PermissionError:
        raise ConfigError(
            f"{path}: cannot read the tables file (permission denied); make it readable by "
            "the user that runs Airflow"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the tables file ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}:{line}: the tables file is not UTF-8 text (byte 0x{data[exc.start]:02x} "
            f"at offset {exc.start} cannot be decoded); save it as UTF-8"
        ) from None


def _yaml_error(path: Path, text: str, exc: yaml.YAMLError) -> ConfigError:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = f"{exc.problem or exc.context} (column {mark.column + 1})"
        if exc.problem and exc.context and exc.context_mark is not None:
            problem += f", {exc.context} that starts at line {exc.context_mark.line + 1}"
        return ConfigError(
            f"{path}:{mark.line + 1}: not valid YAML: {problem}; check the indentation, "
            "brackets and quotes there"
        )
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return ConfigError(
            f"{path}:{line}: not valid YAML: control character U+{exc.character:04X} is not "
            "allowed in YAML; remove it"
        )
    return ConfigError(f"{path}: not valid YAML ({exc})")


def _duplicate_problem(root: yaml.Node, error: _DuplicateKeyError) -> str:
    key, mapping = error.key, error.mapping
    tables = _value_node(root, "tables")
    if mapping is root:
        what = f"top-level key {key!r} appears twice"
    elif mapping is tables:
        what = f"table {key!r} is defined twice under 'tables:'"
    elif mapping is _value_node(root, "defaults"):
        what = f"defaults: field {key!r} appears twice"
    else:
        owners = [
            str(name_node.value)
            for name_node, value_node in (
                tables.value if isinstance(tables, yaml.MappingNode) else []
            )
            if value_node is mapping
        ]
        what = (
            f"table {owners[0]!r}: field {key!r} appears twice"
            if owners
            else f"key {key!r} appears twice in one mapping"
        )
    return (
        f"{what} (first at line {error.first_line}); YAML would silently keep only the last "
        "one: remove or rename one of them"
    )


def _value_node(root: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(root, yaml.MappingNode):
        for key_node, value_node in root.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                found: yaml.Node = value_node
                return found
    return None


def _parse(path: Path, text: str) -> tuple[Any, int]:
    """The document and the line it starts on; every mapping in it is a :class:`_Mapping`."""
    try:
        loader = _TablesLoader(text)
    except yaml.YAMLError as exc:  # control characters are refused before parsing
        raise _yaml_error(path, text, exc) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return None, 1
        try:
            return loader.construct_document(root), root.start_mark.line + 1
        except _DuplicateKeyError as error:
            raise ConfigError(f"{path}:{error.line}: {_duplicate_problem(root, error)}") from None
    except yaml.YAMLError as exc:
        raise _yaml_error(path, text, exc) from None
    except RecursionError:
        raise ConfigError(
            f"{path}: not valid YAML: nested too deeply; a tables file is two levels of mappings"
        ) from None
    finally:
        loader.dispose()


# -- Checking the content ------------------------------------------------------------------


def _lines(mapping: Any) -> dict[Any, int]:
    return mapping.key_lines if isinstance(mapping, _Mapping) else {}


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _did_you_mean(word: Any, choices: Iterable[str]) -> str:
    import difflib  # only on the error path

    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _prefix_problem(value: str) -> str | None:
    """Why ``value`` is not a usable S3 prefix, or None if it is."""
    inner = value.removeprefix("/").removesuffix("/")
    if not inner:
        return "is empty"
    odd = sorted({character for character in inner if character not in _PREFIX_CHARACTERS})
    if odd:
        return f"contains {', '.join(repr(character) for character in odd)}"
    for segment in inner.split("/"):
        if not segment:
            return "has an empty path segment ('//')"
        if segment in (".", ".."):
            return f"has a {segment!r} path segment"
    return None


def _check_table(
    path: Path,
    name: str,
    values: dict[str, Any],
    lines: dict[Any, int],
    table_line: int,
    from_defaults: set[str],
) -> TableConfig:
    def error(field_name: str | None, problem: str) -> ConfigError:
        line = lines.get(field_name, table_line)
        if field_name is None:
            return ConfigError(f"{path}:{line}: table {name!r}: {problem}")
        origin = " (set under 'defaults:')" if field_name in from_defaults else ""
        return ConfigError(f"{path}:{line}: table {name!r}: field {field_name!r}{origin} {problem}")

    unknown = sorted(set(values) - _KNOWN, key=lambda key: (lines.get(key, 0), str(key)))
    if unknown:
        first = unknown[0]
        origin = " under 'defaults:'" if first in from_defaults else ""
        raise ConfigError(
            f"{path}:{lines.get(first, table_line)}: table {name!r}: unknown field {first!r}"
            f"{origin}{_did_you_mean(first, _KNOWN)} (known: {', '.join(sorted(_KNOWN))})"
        )
    for field_name in _REQUIRED:
        if not values.get(field_name):
            raise error(
                field_name, "is required; set it in the table's entry (or under 'defaults:')"
            )
    for field_name, value in values.items():
        expected = str(TableConfig.__dataclass_fields__[field_name].type)
        default = TableConfig.__dataclass_fields__[field_name].default
        if field_name == "aws_conn_id" and (value is None or not str(value).strip()):
            raise error(
                field_name,
                f"is empty; name an Airflow AWS connection, or leave the field out to use "
                f"{default!r}",
            )
        if "int" in expected and (isinstance(value, bool) or not isinstance(value, int)):
            raise error(field_name, f"must be a whole number, not {_kind(value)}")
        if value is None and "None" not in expected:
            raise error(
                field_name,
                f"is empty (null); give a value, or leave the field out to use {default!r}",
            )
        if "str" in expected and value is not None and not isinstance(value, str):
            raise error(field_name, f"must be a string, not {_kind(value)} (quote it)")
    table = values["dynamodb_table"]
    if not _DYNAMODB_TABLE.match(table):
        raise error(
            "dynamodb_table",
            f"= {table!r} is not a DynamoDB table name (3-255 letters, digits, underscores, "
            "dots and hyphens, e.g. 'orders-prod')",
        )
    for field_name in ("export_bucket", "lake_bucket"):
        bucket = values[field_name]
        if not valid_bucket_name(bucket):
            raise error(
                field_name,
                f"= {bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, "
                "dots, hyphens)",
            )
    for field_name in ("export_prefix", "lake_prefix"):
        if field_name in values:
            problem = _prefix_problem(values[field_name])
            if problem:
                default = TableConfig.__dataclass_fields__[field_name].default
                raise error(
                    field_name,
                    f"= {values[field_name]!r} is not a valid S3 prefix: it {problem}; "
                    f"{_PREFIX_HINT} (leave the field out to use {default!r})",
                )
    for field_name in ("glue_database", "glue_table"):
        if not _GLUE_NAME.match(values[field_name]):
            raise error(
                field_name,
                f"= {values[field_name]!r} must be lowercase letters, digits and underscores "
                "(Athena cannot query hyphens reliably)",
            )
    if values.get("compression", "zstd") not in COMPRESSIONS:
        raise error(
            "compression",
            f"= {values['compression']!r} is not a compression this project writes; "
            f"field 'compression' must be one of {', '.join(COMPRESSIONS)}",
        )
    for field_name, minimum in (("max_bad_lines", 0), ("batch_size_mb", 1)):
        if values.get(field_name, minimum) < minimum:
            raise error(
                field_name,
                f"= {values[field_name]!r} is out of range: max_bad_lines must be >= 0 and "
                "batch_size_mb >= 1",
            )
    return TableConfig(name=name, **values)


def _check_locations(path: Path, tables: dict[str, TableConfig], lines: dict[str, int]) -> None:
    """Refuse two tables sharing a lake location or Glue table, or one lake inside another."""
    lakes: dict[str, str] = {}  # lake URI -> table
    around: dict[str, str] = {}  # every proper parent of a lake URI -> table
    glue: dict[str, str] = {}  # database.table -> table
    fix = "give each table its own glue_database/glue_table (or lake_bucket/lake_prefix)"
    for name, table in tables.items():
        uri, glue_name = table.lake_uri, f"{table.glue_database}.{table.glue_table}"
        where = f"{path}:{lines[name]}: table {name!r}"
        parts = uri.removeprefix("s3://").split("/")
        parents = ["s3://" + "/".join(parts[:end]) for end in range(1, len(parts))]
        other = lakes.get(uri)
        if other is not None:
            raise ConfigError(
                f"{where}: same lake location {uri} as table {other!r} (line {lines[other]}); "
                f"one table's events would land in the other's lake: {fix}"
            )
        other = glue.get(glue_name)
        if other is not None:
            raise ConfigError(
                f"{where}: same Glue table {glue_name} as table {other!r} "
                f"(line {lines[other]}); each table needs its own Glue table: {fix}"
            )
        inside = around.get(uri) or next((lakes[p] for p in parents if p in lakes), None)
        if inside is not None:
            raise ConfigError(
                f"{where}: lake location {uri} and that of table {inside!r} "
                f"(line {lines[inside]}), {tables[inside].lake_uri}, lie one inside the other; "
                f"reading one lake would read the other's files too: {fix}"
            )
        lakes[uri] = glue[glue_name] = name
        for parent in parents:
            around.setdefault(parent, name)


def load_tables(path: Path | str | None = None) -> TablesConfig:
    """Read and check the tables file; raise :class:`ConfigError` naming what is wrong."""
    path = Path(path) if path else default_tables_file()
    raw, document_line = _parse(path, _read_text(path))
    if not isinstance(raw, dict) or not isinstance(raw.get("tables"), dict):
        top = _lines(raw)
        if isinstance(raw, dict) and "tables" in raw:
            found = f"'tables:' holds {_kind(raw['tables'])}"
            line = top.get("tables", document_line)
        elif isinstance(raw, dict):
            unknown = [key for key in raw if key not in TOP_LEVEL_KEYS]
            found = "no 'tables:' key" + (
                f" (unknown top-level key {unknown[0]!r}{_did_you_mean(unknown[0], ['tables'])})"
                if unknown
                else ""
            )
            line = top.get(unknown[0], document_line) if unknown else document_line
        else:
            found, line = f"{_kind(raw)} as the whole document", document_line
        raise ConfigError(
            f"{path}:{line}: expected a mapping with a 'tables:' mapping inside (table name -> "
            f"fields); found {found}"
        )
    top = _lines(raw)
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"{path}:{top.get(key, document_line)}: unknown top-level key {key!r}"
                f"{_did_you_mean(key, TOP_LEVEL_KEYS)} (known: {', '.join(TOP_LEVEL_KEYS)})"
            )
    defaults = raw.get("defaults")
    if defaults is None:  # `defaults:` with nothing under it
        defaults = {}
    if not isinstance(defaults, dict):
        raise ConfigError(
            f"{path}:{top.get('defaults', document_line)}: 'defaults' must be a mapping of "
            f"table fields, not {_kind(defaults)}"
        )
    table_lines = _lines(raw["tables"])
    tables_line = top.get("tables", document_line)
    tables: dict[str, TableConfig] = {}
    lines: dict[str, int] = {}
    for name, values in raw["tables"].items():
        line = table_lines.get(name, tables_line)
        if not isinstance(name, str) or not name:
            raise ConfigError(
                f"{path}:{line}: table name {name!r} must be a non-empty string, not "
                f"{_kind(name)}; quote it"
            )
        if not isinstance(values, dict):
            raise ConfigError(
                f"{path}:{line}: table {name!r} must be a mapping of fields, not {_kind(values)}"
            )
        from_defaults = set(defaults) - set(values)
        field_lines = {**_lines(defaults), **_lines(values)}
        tables[name] = _check_table(
            path, name, {**defaults, **values}, field_lines, line, from_defaults
        )
        lines[name] = line
    if not tables:
        raise ConfigError(f"{path}:{tables_line}: no tables configured under 'tables:'")
    _check_locations(path, tables, lines)
    return TablesConfig(path, tables)
