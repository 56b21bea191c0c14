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

Errors name the file, the table and the field, and say what is expected. Reading the file
is cheap (no AWS calls), so DAG files may do it at parse time.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from dynamo_lake.contract import COMPRESSIONS, DEFAULT_LAKE_PREFIX
from dynamo_lake.errors import DynamoLakeError

__all__ = ["ConfigError", "TableConfig", "TablesConfig", "default_tables_file", "load_tables"]

TABLES_FILE_VARIABLE = "DYNAMO_LAKE_TABLES_FILE"
_GLUE_NAME = re.compile(r"^[a-z0-9_]{1,255}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


class ConfigError(DynamoLakeError):
    """The tables file is missing, malformed, or names something impossible."""


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
        prefix = self.lake_prefix.strip("/")
        return f"s3://{self.lake_bucket}/{prefix}/{self.glue_database}/{self.glue_table}"


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


def _check_table(path: Path, name: str, values: dict[str, Any]) -> TableConfig:
    where = f"{path}: table {name!r}"
    unknown = sorted(set(values) - _KNOWN)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(_KNOWN))})"
        )
    for field_name in _REQUIRED:
        if not values.get(field_name):
            raise ConfigError(f"{where}: field {field_name!r} is required")
    for field_name, value in values.items():
        expected = TableConfig.__dataclass_fields__[field_name].type
        if "int" in str(expected) and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{where}: field {field_name!r} must be a whole number")
        if "str" in str(expected) and value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}: field {field_name!r} must be a string")
    for field_name in ("export_bucket", "lake_bucket"):
        bucket = values[field_name]
        if not _BUCKET.match(bucket) or ".." in bucket or _IP_ADDRESS.match(bucket):
            raise ConfigError(
                f"{where}: field {field_name!r} = {values[field_name]!r} is not an S3 bucket "
                "name (3-63 lowercase letters, digits, dots, hyphens)"
            )
    for field_name in ("glue_database", "glue_table"):
        if not _GLUE_NAME.match(values[field_name]):
            raise ConfigError(
                f"{where}: field {field_name!r} = {values[field_name]!r} must be lowercase "
                "letters, digits and underscores (Athena cannot query hyphens reliably)"
            )
    if values.get("compression", "zstd") not in COMPRESSIONS:
        raise ConfigError(f"{where}: field 'compression' must be one of {', '.join(COMPRESSIONS)}")
    if values.get("max_bad_lines", 0) < 0 or values.get("batch_size_mb", 1) < 1:
        raise ConfigError(f"{where}: max_bad_lines must be >= 0 and batch_size_mb >= 1")
    return TableConfig(name=name, **values)


def load_tables(path: Path | str | None = None) -> TablesConfig:
    """Read and check the tables file; raise :class:`ConfigError` naming what is wrong."""
    path = Path(path) if path else default_tables_file()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: tables file not found; create it or set {TABLES_FILE_VARIABLE}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tables"), dict):
        raise ConfigError(f"{path}: expected a mapping with a 'tables:' mapping inside")
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: 'defaults' must be a mapping of table fields")
    tables: dict[str, TableConfig] = {}
    for name, values in raw["tables"].items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: table {name!r} must be a mapping of fields")
        tables[str(name)] = _check_table(path, str(name), {**defaults, **values})
    if not tables:
        raise ConfigError(f"{path}: no tables configured under 'tables:'")
    return TablesConfig(path, tables)
