"""The lake contract as plain data: what every writer obeys and every reader relies on.

Columns, the path layout, the reserved folders, the op ranks and the tie rule of latest
state, the range of times a change can have. The Arrow schema (``lake.writer``), the Glue
columns (``lake.catalog``), the Firehose Lambda's rows and the latest-state SQL
(``lake.query``) are derived from these values; no module restates them.

Kept free of heavy imports so that DAG parsing, the Lambda and the triggerer can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

# --- columns -------------------------------------------------------------------------------

ColumnKind = Literal["string", "timestamp"]


@dataclass(frozen=True)
class Column:
    """One column of a lake table. ``timestamp`` is microseconds, UTC, never null."""

    name: str
    kind: ColumnKind
    meaning: str


COLUMNS: tuple[Column, ...] = (
    Column("uuid", "string", "deterministic id of one change event: f(op, time_stamp, data)"),
    Column("op", "string", "I insert (also every full-export row), U update, D delete"),
    Column("time_stamp", "timestamp", "when the change happened in DynamoDB (µs, UTC)"),
    Column("data", "string", "the item as canonical JSON; for D the last image or the keys"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(column.name for column in COLUMNS)
#: Partition keys, all strings, zero-padded, UTC, from ``time_stamp``.
PARTITION_KEYS: tuple[str, ...] = ("year", "month", "day")

# --- layout --------------------------------------------------------------------------------

DEFAULT_LAKE_PREFIX = "dynamo-cdc"
#: Folders beside the partitions of a lake table. Readers (Athena, Hive, Spark, DuckDB here)
#: skip ``_``-prefixed folders, so nothing in them is ever counted as a row.
STAGING = "_staging"  # work in progress of the lake writer
PUBLISHED = "_published"  # what each group published (and its lease while it publishes)
ERRORS = "_errors"  # lines that could not become rows
BACKFILLS = "_backfills"  # one record per backfill run
RECONCILIATION = "_reconciliation"  # reconciliation reports and work
CURRENT = "_current"  # the current-state Iceberg table's files and its merge records
RESERVED_FOLDERS: tuple[str, ...] = (
    STAGING,
    PUBLISHED,
    ERRORS,
    BACKFILLS,
    RECONCILIATION,
    CURRENT,
)

MICROS_PER_DAY = 86_400_000_000

#: An export's id as AWS writes it: "0" + epoch milliseconds (13 digits) + "-" + 8 hex digits.
EXPORT_ID = re.compile(r"^[0-9]{14}-[0-9a-f]{8}$")
#: Files the lake writer publishes are named ``<group>-<source>-<part>.parquet``, where the
#: group is the export's id (a backfill) or ``repair-<digest>[-<n>]`` (a repair). Any other
#: file in a partition was written by the stream (Firehose names its own files).
#: The pattern as text (a regular expression that Python, DuckDB and Trino read alike).
WRITER_FILE_PATTERN = rf"^(?:{EXPORT_ID.pattern[1:-1]}|repair-[0-9a-f]{{16}}(?:-[0-9]+)?)-"
_WRITER_FILE = re.compile(WRITER_FILE_PATTERN)


def written_by_writer(file_name: str) -> bool:
    """Whether a data file was published by this project's lake writer (a backfill or a
    repair): its rows restate the table's state, they are not changes the stream saw."""
    return bool(_WRITER_FILE.match(file_name))


def written_by_stream(file_name: str) -> bool:
    """Whether a data file in a partition was written by the stream (not a backfill or a
    repair)."""
    return file_name.endswith(".parquet") and not written_by_writer(file_name)


def lake_table_uri(bucket: str, prefix: str, database: str, table: str) -> str:
    """``s3://<bucket>/<prefix>/<database>/<table>``: where a table's rows live."""
    return f"s3://{bucket}/{prefix.strip('/')}/{database}/{table}"


def partition_values(time_stamp: int) -> tuple[str, str, str]:
    """``("YYYY", "MM", "DD")`` (UTC, zero-padded) of a time stamp in µs since the epoch."""
    day = datetime.fromtimestamp((time_stamp // MICROS_PER_DAY) * 86_400, tz=UTC)
    return f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}"


def partition_of(time_stamp: int) -> str:
    """``year=YYYY/month=MM/day=DD`` of a time stamp in µs: the lake's partition folder."""
    return "/".join(
        f"{key}={value}"
        for key, value in zip(PARTITION_KEYS, partition_values(time_stamp), strict=True)
    )


# --- latest state --------------------------------------------------------------------------

#: Latest state as of T: per primary key, the row with the greatest ``time_stamp`` <= T;
#: ties (two events in one microsecond) go to the greater op rank (a delete wins), then to
#: the greater ``uuid``. The item exists iff that row's op is not ``D``.
OP_RANK: dict[str, int] = {"I": 1, "U": 2, "D": 3}
TIE_RULE = ("time_stamp", "op rank", "uuid")  # each compared greatest first

# --- times ---------------------------------------------------------------------------------

#: The times a change can have, in µs since the epoch, half-open: from 2012-01-01T00:00:00Z
#: (DynamoDB's launch: nothing was written to a table before) to 2100-01-01T00:00:00Z (the
#: end of the Glue table's year projection). Times outside are a wrong unit or a typo, and
#: are refused rather than written to 1970 or to the year 50,000.
FIRST_YEAR, END_YEAR = 2012, 2100
TIME_RANGE_START_MICROS = 1_325_376_000_000_000  # 2012-01-01T00:00:00Z
TIME_RANGE_END_MICROS = 4_102_444_800_000_000  # 2100-01-01T00:00:00Z

# --- files ---------------------------------------------------------------------------------

Compression = Literal["zstd", "gzip", "snappy"]
COMPRESSIONS: tuple[Compression, ...] = ("zstd", "gzip", "snappy")

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def valid_bucket_name(name: str) -> bool:
    """S3's rules for a general purpose bucket name (3-63 characters, no ``..``, no IP)."""
    return bool(_BUCKET.fullmatch(name)) and ".." not in name and not _IP_ADDRESS.fullmatch(name)
