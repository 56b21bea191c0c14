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
        reconcile:                 # optional; how the reconciliation DAG checks the table
          method: changes          # also allowed under 'defaults:', merged key by key
    reconciliation:                # optional
      schedule: "@daily"           # a preset, a 5-field cron expression, or null (manual only)

The only top-level keys are :data:`TOP_LEVEL_KEYS`. A key may appear once per mapping
(YAML would silently keep the last one). A table's name follows DynamoDB's table-name
rule (3-255 letters, digits, underscores, dots and hyphens) and is not :data:`ALL_TABLES`,
the reconciliation form's choice for every table. Prefixes are S3 key prefixes: segments of
``A-Z a-z 0-9 ! _ . * ' ( ) -`` separated by single slashes (a leading or trailing slash is
ignored). Two tables may not share a lake location or a Glue table, nor nest one lake inside
another.

A table's ``reconcile:`` settings are a :class:`ReconcileConfig` (every key optional, the
dataclass holds the defaults). ``reconcile:`` under ``defaults:`` is merged key by key with
the table's own, the table's keys winning. ``epsilon_ms`` is at most :data:`MAX_EPSILON_MS`.
``repair: true`` needs the ``export`` or ``changes`` method (``count`` and ``scan`` compare
totals only), and the ``athena`` engine needs ``athena_output_location``. The
``reconciliation:`` section holds the DAG's ``schedule``: one of :data:`SCHEDULE_PRESETS`, a
5-field cron expression, or null for manual runs only (``@daily`` when left out).

Errors read ``<file>:<line>: table 'x': field 'y' ...``: they name the file, the line, the
table and the field, and say what is expected. Reading the file is cheap (no AWS calls,
nothing heavier than PyYAML), so DAG files may do it at parse time.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
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
from dynamo_lake.state.columns import TypedColumn, typed_columns

__all__ = [
    "ALL_TABLES",
    "ENGINES",
    "MAX_EPSILON_MS",
    "RECONCILE_METHODS",
    "ReconcileConfig",
    "TableConfig",
    "TablesConfig",
    "default_tables_file",
    "load_tables",
]

TABLES_FILE_VARIABLE = "DYNAMO_LAKE_TABLES_FILE"
# The sections a tables file may have; anything else is a typo. A new section is added here.
TOP_LEVEL_KEYS: tuple[str, ...] = ("defaults", "tables", "reconciliation")
# How a table is reconciled, and what runs the lake-side queries.
RECONCILE_METHODS: tuple[str, ...] = ("count", "scan", "export", "changes")
ENGINES: tuple[str, ...] = ("duckdb", "athena")
# The Airflow presets the reconciliation DAG accepts (@once would run it a single time).
SCHEDULE_PRESETS: tuple[str, ...] = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly")
DEFAULT_SCHEDULE = "@daily"
# The reconciliation form's choice for every configured table, so never a table's name: a
# table called that could not be reconciled alone. The Airflow params re-export it.
ALL_TABLES = "all tables"
# The largest reconcile.epsilon_ms (5 minutes). ε is the tolerance for stream times
# (ApproximateCreationDateTime) around the cut time T: a key is drift only if the lake
# differs from the table both at T - ε and at T + ε, so a large ε hides real drift and an
# hours-long one would switch the check off. Stream times are accurate to well under a
# second, so minutes are already generous.
MAX_EPSILON_MS = 300_000
_RECONCILIATION_KEYS: tuple[str, ...] = ("schedule",)
_GLUE_NAME = re.compile(r"^[a-z0-9_]{1,255}$")
# DynamoDB's table-name rule; the names under 'tables:' follow it too. Use fullmatch: '$'
# alone also matches before a final newline.
_DYNAMODB_TABLE_CHARACTERS = "A-Za-z0-9_.-"
_DYNAMODB_TABLE = re.compile(rf"^[{_DYNAMODB_TABLE_CHARACTERS}]{{3,255}}$")
_NOT_DYNAMODB_TABLE_CHARACTER = re.compile(rf"[^{_DYNAMODB_TABLE_CHARACTERS}]")
# S3's "safe characters" for object keys.
_PREFIX_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!_.*'()-/"
)
_SNS_TOPIC_ARN = re.compile(
    r"^arn:aws(-[a-z]+)*:sns:[a-z]{2}(-[a-z]+)+-[0-9]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"
)
_ATHENA_WORKGROUP = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# One item of a cron field: '*', a value or a range, then an optional '/step'.
_CRON_ITEM = re.compile(r"^(?:\*|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?$", re.IGNORECASE)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_WEEKDAYS = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
# (name, lowest, highest, names allowed instead of numbers) for the five cron fields.
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _WEEKDAYS),
)
_PREFIX_HINT = (
    "a prefix is one or more segments of letters, digits and ! _ . * ' ( ) - "
    "separated by single slashes, e.g. 'dynamo-cdc' or 'warehouse/cdc'"
)


@dataclass(frozen=True)
class ReconcileConfig:
    """How the reconciliation DAG checks one table. Field names are the ``reconcile:`` keys."""

    method: str = "count"  # one of RECONCILE_METHODS
    settle_margin_minutes: int = 30  # how long after a change it is compared
    epsilon_ms: int = 1000  # stream-time tolerance around T; at most MAX_EPSILON_MS
    count_staleness_hours: int = 6  # how stale DescribeTable.ItemCount may be
    count_slack: int = 0  # extra difference allowed by the count and scan methods
    repair: bool = False  # write missing or stale items back (export and changes only)
    sns_topic_arn: str | None = None  # where a difference is announced
    engine: str = "duckdb"  # one of ENGINES: what queries the lake
    duckdb_memory_limit_mb: int = 1024
    scan_segments: int = 4  # parallel Scan segments
    scan_pages_per_second: float = 0  # Scan pages per second across segments; 0 = no limit
    athena_workgroup: str = "primary"
    athena_output_location: str | None = None  # s3://bucket/prefix; required for athena


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
    #: Buckets of the current-state table (a power of two; None: chosen from the table's
    #: size when the state is first built, then kept).
    state_buckets: int | None = None
    #: Attributes the current state carries as typed columns (``state_columns:`` in the
    #: tables file, attribute -> string, bigint or decimal(p,s)).
    state_columns: tuple[TypedColumn, ...] = ()
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)

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
    # The reconciliation DAG's schedule; None: it runs only when triggered.
    reconciliation_schedule: str | None = DEFAULT_SCHEDULE

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
_RECONCILE_KNOWN = tuple(f.name for f in fields(ReconcileConfig))
_RECONCILE_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(ReconcileConfig)}
# Whole-number reconcile keys: (lowest, highest or None, what the number counts).
_RECONCILE_WHOLE: dict[str, tuple[int, int | None, str]] = {
    "settle_margin_minutes": (0, None, "minutes"),
    "epsilon_ms": (0, MAX_EPSILON_MS, "milliseconds"),
    "count_staleness_hours": (0, None, "hours"),
    "count_slack": (0, None, "items"),
    "duckdb_memory_limit_mb": (64, None, "MiB"),
    "scan_segments": (1, 1_000_000, "segments"),
}


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
    if isinstance(exc, yaml.constructor.ConstructorError) and exc.problem_mark is not None:
        # A tag the safe loader does not know: !!python/..., !custom. Never constructed.
        tag = (exc.problem or "").rpartition("tag ")[2].strip("'")
        tag = tag.replace("tag:yaml.org,2002:", "!!")
        return ConfigError(
            f"{path}:{exc.problem_mark.line + 1}: the YAML tag {tag!r} is not allowed (column "
            f"{exc.problem_mark.column + 1}): the tables file takes plain values (text, "
            "numbers, true/false, lists and mappings); remove the tag"
        )
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = f"{exc.problem or exc.context} (column {mark.column + 1})"
        if exc.problem and exc.context and exc.context_mark is not None:
            problem += f", {exc.context} that starts at line {exc.context_mark.line + 1}"
        if exc.problem and "'@'" in exc.problem:
            problem += "; a value that starts with '@' must be quoted, e.g. schedule: \"@daily\""
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
    defaults = _value_node(root, "defaults")
    if mapping is root:
        what = f"top-level key {key!r} appears twice"
    elif mapping is tables:
        what = f"table {key!r} is defined twice under 'tables:'"
    elif mapping is defaults:
        what = f"defaults: field {key!r} appears twice"
    elif mapping is _value_node(root, "reconciliation"):
        what = f"reconciliation: field {key!r} appears twice"
    elif any(node is mapping for node in _value_nodes(defaults, "reconcile")):
        what = f"defaults: field 'reconcile.{key}' appears twice"
    else:
        what = f"key {key!r} appears twice in one mapping"
        for name_node, value_node in tables.value if isinstance(tables, yaml.MappingNode) else []:
            if value_node is mapping:
                what = f"table {str(name_node.value)!r}: field {key!r} appears twice"
                break
            if any(node is mapping for node in _value_nodes(value_node, "reconcile")):
                what = f"table {str(name_node.value)!r}: field 'reconcile.{key}' appears twice"
                break
    return (
        f"{what} (first at line {error.first_line}); YAML would silently keep only the last "
        "one: remove or rename one of them"
    )


def _value_nodes(mapping: yaml.Node | None, key: str) -> Iterator[yaml.Node]:
    """Every value written under ``key`` in ``mapping`` (a '<<' merge may add a second)."""
    if isinstance(mapping, yaml.MappingNode):
        for key_node, value_node in mapping.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                yield value_node


def _value_node(root: yaml.Node | None, key: str) -> yaml.Node | None:
    return next(_value_nodes(root, key), None)


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
            f"{path}: not valid YAML: nested too deeply; a tables file is at most four levels "
            "of mappings"
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


def _table_name_problem(name: str) -> str | None:
    """Why ``name`` may not name a table under ``tables:``, or None if it may.

    Characters are shown as repr, so a newline or a NUL is written escaped, never raw.
    """
    if name == ALL_TABLES:
        return (
            "is reserved: the reconciliation form offers it as the choice for every table, so "
            "a table of that name could never be reconciled alone; rename it, e.g. 'orders'"
        )
    if _DYNAMODB_TABLE.fullmatch(name):
        return None
    problems = []
    if not name:
        problems.append("is empty")
    elif len(name) < 3:
        problems.append(
            f"is {len(name)} character{'s' if len(name) != 1 else ''} long (at least 3)"
        )
    elif len(name) > 255:
        problems.append(f"is {len(name)} characters long (at most 255)")
    odd = sorted(set(_NOT_DYNAMODB_TABLE_CHARACTER.findall(name)))
    if odd:
        problems.append(f"contains {', '.join(repr(character) for character in odd)}")
    return (
        f"{' and '.join(problems)}: table names follow DynamoDB's rule (3-255 letters, digits, "
        "underscores, dots and hyphens); rename it, e.g. 'orders'"
    )


def _shown(name: str) -> str:
    """``name`` as repr, cut short when long: an error message is one readable line."""
    return repr(name) if len(name) <= 64 else f"{name[:32]!r}..."


def _cron_problem(expression: str) -> str | None:
    """Why ``expression`` is not a 5-field cron expression, or None if it looks like one.

    Each field is a comma-separated list of ``*``, a value or a range ``a-b``, each with an
    optional ``/step``; months and days of the week may be named (``jan``, ``mon``). Values
    are checked against the field's range; nothing more of cron is checked.
    """
    parts = expression.split()
    if len(parts) != 5:
        return (
            f"has {len(parts)} field{'s' if len(parts) != 1 else ''}; a cron expression has 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    for text, (label, lowest, highest, names) in zip(parts, _CRON_FIELDS, strict=True):
        allowed = f"{lowest}-{highest}" + (
            f" or {next(iter(names))}..{next(reversed(names))}" if names else ""
        )
        for item in text.split(","):
            match = _CRON_ITEM.match(item)
            if match is None:
                return (
                    f"has {label} field {text!r}: each item is '*', a value or a range a-b, "
                    f"optionally followed by /step, with values {allowed}"
                )
            start, end, step = match.groups()
            for value in (start, end):
                if value is None:
                    continue
                number = int(value) if value.isdigit() else names.get(value.lower())
                if number is None or not lowest <= number <= highest:
                    return f"has {label} value {value!r} (allowed: {allowed})"
            if step is not None and int(step) == 0:
                return f"has a step of 0 in {label} field {text!r}"
    return None


def _check_schedule(path: Path, section: Any, line: int) -> str | None:
    """The reconciliation DAG's schedule from the ``reconciliation:`` section."""
    if section is None:  # no section, or `reconciliation:` with nothing under it
        return DEFAULT_SCHEDULE
    if not isinstance(section, dict):
        raise ConfigError(
            f"{path}:{line}: 'reconciliation' must be a mapping (e.g. 'schedule: \"@daily\"' "
            f"indented under it), not {_kind(section)}"
        )
    lines = _lines(section)
    for key in section:
        if key not in _RECONCILIATION_KEYS:
            raise ConfigError(
                f"{path}:{lines.get(key, line)}: reconciliation: unknown field {key!r}"
                f"{_did_you_mean(key, _RECONCILIATION_KEYS)} "
                f"(known: {', '.join(_RECONCILIATION_KEYS)})"
            )
    if "schedule" not in section:
        return DEFAULT_SCHEDULE
    schedule = section["schedule"]
    if schedule is None:
        return None  # manual runs only
    where = f"{path}:{lines.get('schedule', line)}: reconciliation: field 'schedule'"
    expected = (
        f"use one of {', '.join(SCHEDULE_PRESETS)}, a 5-field cron expression such as "
        "'30 2 * * *' (quoted), or null for manual runs only"
    )
    if not isinstance(schedule, str):
        raise ConfigError(f"{where} must be a string or null, not {_kind(schedule)}: {expected}")
    if schedule in SCHEDULE_PRESETS:
        return schedule
    if schedule.startswith("@"):
        if schedule == "@once":
            why = "would run the DAG a single time"
        else:
            close = _did_you_mean(schedule, SCHEDULE_PRESETS).removeprefix("; ")
            why = "is not an Airflow preset this DAG accepts" + (f" ({close})" if close else "")
        raise ConfigError(f"{where} = {schedule!r} {why}; {expected}")
    problem = _cron_problem(schedule)
    if problem:
        raise ConfigError(
            f"{where} = {schedule!r} is not a cron expression: it {problem}; {expected}"
        )
    return schedule


def _s3_location_problem(value: str) -> str | None:
    """Why ``value`` is not ``s3://bucket[/prefix]``, or None if it is."""
    if not value.startswith("s3://"):
        return "does not start with 's3://'"
    bucket, _, prefix = value.removeprefix("s3://").partition("/")
    if not valid_bucket_name(bucket):
        return f"names {bucket!r}, which is not an S3 bucket name"
    if prefix.strip("/"):
        problem = _prefix_problem(prefix)
        if problem:
            return f"has a prefix that {problem}"
    return None


def _sns_topic_arn_problem(value: str) -> str | None:
    if _SNS_TOPIC_ARN.fullmatch(value):
        return None
    return (
        "is not an SNS topic ARN (arn:aws:sns:<region>:<12-digit account>:<topic>, e.g. "
        "'arn:aws:sns:us-east-1:123456789012:lake-alerts'); or leave the field out (null)"
    )


def _athena_workgroup_problem(value: str) -> str | None:
    if _ATHENA_WORKGROUP.fullmatch(value):
        return None
    return (
        "is not an Athena workgroup name (1-128 letters, digits, dots, underscores and "
        "hyphens); or leave the field out to use 'primary'"
    )


def _athena_output_location_problem(value: str) -> str | None:
    problem = _s3_location_problem(value)
    if problem is None:
        return None
    return (
        f"is not an S3 location: it {problem}; write s3://bucket/prefix, e.g. "
        "'s3://acme-athena-results/reconcile/'"
    )


_RECONCILE_STRING_CHECKS: dict[str, Callable[[str], str | None]] = {
    "sns_topic_arn": _sns_topic_arn_problem,
    "athena_workgroup": _athena_workgroup_problem,
    "athena_output_location": _athena_output_location_problem,
}


def _check_reconcile(
    path: Path,
    name: str,
    values: dict[str, Any],
    lines: dict[Any, int],
    table_line: int,
    from_defaults: set[str],
) -> ReconcileConfig:
    """A table's ``reconcile:`` settings, already merged with those under ``defaults:``."""

    def where(key: str) -> str:
        return f"{path}:{lines.get(key, table_line)}: table {name!r}"

    def error(key: str, problem: str) -> ConfigError:
        origin = " (set under 'defaults:')" if key in from_defaults else ""
        return ConfigError(f"{where(key)}: field 'reconcile.{key}'{origin} {problem}")

    unknown = sorted(
        set(values) - set(_RECONCILE_KNOWN), key=lambda key: (lines.get(key, 0), str(key))
    )
    if unknown:
        first = unknown[0]
        origin = " under 'defaults:'" if first in from_defaults else ""
        close = _did_you_mean(first, _RECONCILE_KNOWN).replace(" '", " 'reconcile.", 1)
        raise ConfigError(
            f"{where(first)}: unknown field 'reconcile.{first}'{origin}{close} "
            f"(known: {', '.join(_RECONCILE_KNOWN)})"
        )
    for key, value in values.items():
        default = _RECONCILE_DEFAULTS[key]
        if value is None and default is not None:
            raise error(key, f"is empty (null); give a value, or leave it out to use {default!r}")
        if key in ("method", "engine"):
            choices = RECONCILE_METHODS if key == "method" else ENGINES
            if value not in choices:
                raise error(
                    key,
                    f"= {value!r} is not one of {', '.join(choices)}"
                    f"{_did_you_mean(value, choices) if isinstance(value, str) else ''}",
                )
        elif key in _RECONCILE_WHOLE:
            lowest, highest, unit = _RECONCILE_WHOLE[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise error(key, f"must be a whole number of {unit}, not {_kind(value)}")
            if value < lowest or (highest is not None and value > highest):
                bounds = (
                    f"between {lowest} and {highest}" if highest is not None else f">= {lowest}"
                )
                raise error(key, f"= {value!r} is out of range: it must be {bounds} ({unit})")
        elif key == "repair":
            if not isinstance(value, bool):
                raise error(
                    key,
                    f"must be true or false, not {_kind(value)} ({value!r}); write true or false "
                    "without quotes",
                )
        elif key == "scan_pages_per_second":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise error(key, f"must be a number, not {_kind(value)}")
            if not math.isfinite(value) or value < 0:
                raise error(key, f"= {value!r} is out of range: it must be >= 0 (0 means no limit)")
        elif value is not None:  # the string settings; two of them may be null
            if not isinstance(value, str):
                raise error(key, f"must be a string, not {_kind(value)} (quote it)")
            problem = _RECONCILE_STRING_CHECKS[key](value)
            if problem:
                raise error(key, f"= {value!r} {problem}")
    config = ReconcileConfig(**values)
    if config.repair and config.method not in ("export", "changes"):
        method = f"{config.method!r}" + ("" if "method" in values else " (the default)")
        raise error(
            "repair",
            f"= true needs the export or changes method, but method is {method}: count and "
            "scan compare totals only and cannot name the items to repair; set method to "
            "export or changes, or repair to false",
        )
    if config.engine == "athena" and config.athena_output_location is None:
        needs = (
            "where Athena writes query results (s3://bucket/prefix); set it, or use engine duckdb"
        )
        if "athena_output_location" in values:
            raise error("athena_output_location", f"is empty (null) but engine is athena: {needs}")
        raise error("engine", f"= 'athena' needs field 'reconcile.athena_output_location', {needs}")
    return config


def _reconcile_layers(
    path: Path, name: str, defaults: dict[Any, Any], own: dict[Any, Any], table_line: int
) -> tuple[dict[str, Any], dict[Any, int], set[str]]:
    """A table's ``reconcile:`` merged key by key over the one under ``defaults:``.

    Returns the settings, the line of each and the keys that came from ``defaults:``.
    ``reconcile:`` with nothing under it sets nothing.
    """
    settings: dict[str, Any] = {}
    lines: dict[Any, int] = {}
    for layer, origin in ((defaults, " (set under 'defaults:')"), (own, "")):
        layer_settings = layer.get("reconcile")
        if layer_settings is None:
            continue
        if not isinstance(layer_settings, dict):
            raise ConfigError(
                f"{path}:{_lines(layer).get('reconcile', table_line)}: table {name!r}: field "
                f"'reconcile'{origin} must be a mapping of reconciliation settings (method, "
                f"repair, ... indented under it), not {_kind(layer_settings)}"
            )
        settings.update(layer_settings)
        lines.update(_lines(layer_settings))
    own_settings = own.get("reconcile") or {}
    return settings, lines, set(settings) - set(own_settings)


def _check_table(
    path: Path,
    name: str,
    values: dict[str, Any],
    lines: dict[Any, int],
    table_line: int,
    from_defaults: set[str],
    reconcile: tuple[dict[str, Any], dict[Any, int], set[str]],
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
    values = {key: value for key, value in values.items() if key != "reconcile"}
    if "state_columns" in values:
        try:
            values["state_columns"] = typed_columns(values["state_columns"])
        except ConfigError as exc:
            raise error("state_columns", f"is wrong: {exc}") from None
    for field_name in _REQUIRED:
        if not values.get(field_name):
            raise error(
                field_name, "is required; set it in the table's entry (or under 'defaults:')"
            )
    for field_name, value in values.items():
        if field_name == "state_columns":
            continue  # checked above
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
    if not _DYNAMODB_TABLE.fullmatch(table):
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
        if not _GLUE_NAME.fullmatch(values[field_name]):
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
    buckets = values.get("state_buckets")
    if buckets is not None and (buckets < 1 or buckets > 4096 or buckets & (buckets - 1)):
        raise error(
            "state_buckets",
            f"= {buckets!r} is not a power of two from 1 to 4096 (every engine computes a "
            "key's bucket as md5 bits masked by buckets - 1); leave it out to choose from "
            "the table's size",
        )
    settings, settings_lines, settings_from_defaults = reconcile
    return TableConfig(
        name=name,
        reconcile=_check_reconcile(
            path, name, settings, settings_lines, table_line, settings_from_defaults
        ),
        **values,
    )


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
    schedule = _check_schedule(
        path, raw.get("reconciliation"), top.get("reconciliation", document_line)
    )
    table_lines = _lines(raw["tables"])
    tables_line = top.get("tables", document_line)
    tables: dict[str, TableConfig] = {}
    lines: dict[str, int] = {}
    for name, values in raw["tables"].items():
        line = table_lines.get(name, tables_line)
        if not isinstance(name, str):
            raise ConfigError(
                f"{path}:{line}: table name {name!r} must be a string, not {_kind(name)}; quote it"
            )
        problem = _table_name_problem(name)
        if problem:
            raise ConfigError(f"{path}:{line}: table name {_shown(name)} {problem}")
        if not isinstance(values, dict):
            raise ConfigError(
                f"{path}:{line}: table {name!r} must be a mapping of fields, not {_kind(values)}"
            )
        from_defaults = set(defaults) - set(values)
        field_lines = {**_lines(defaults), **_lines(values)}
        tables[name] = _check_table(
            path,
            name,
            {**defaults, **values},
            field_lines,
            line,
            from_defaults,
            _reconcile_layers(path, name, defaults, values, line),
        )
        lines[name] = line
    if not tables:
        raise ConfigError(f"{path}:{tables_line}: no tables configured under 'tables:'")
    _check_locations(path, tables, lines)
    return TablesConfig(path, tables, reconciliation_schedule=schedule)
