"""Constants of the lake contract that light modules (config, DAG files) need.

Kept free of heavy imports so that DAG parsing can use them without pulling in pyarrow.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

Compression = Literal["zstd", "gzip", "snappy"]
COMPRESSIONS: tuple[Compression, ...] = ("zstd", "gzip", "snappy")
DEFAULT_LAKE_PREFIX = "dynamo-cdc"
MICROS_PER_DAY = 86_400_000_000

#: The times a change can have, in µs since the epoch, half-open: from 2012-01-01T00:00:00Z
#: (DynamoDB's launch: nothing was written to a table before) to 2100-01-01T00:00:00Z (the
#: end of the Glue table's year projection). Times outside are a wrong unit or a typo, and
#: are refused rather than written to 1970 or to the year 50,000.
FIRST_YEAR, END_YEAR = 2012, 2100
TIME_RANGE_START_MICROS = 1_325_376_000_000_000  # 2012-01-01T00:00:00Z
TIME_RANGE_END_MICROS = 4_102_444_800_000_000  # 2100-01-01T00:00:00Z


def partition_values(time_stamp: int) -> tuple[str, str, str]:
    """``("YYYY", "MM", "DD")`` (UTC, zero-padded) of a time stamp in µs since the epoch."""
    day = datetime.fromtimestamp((time_stamp // MICROS_PER_DAY) * 86_400, tz=UTC)
    return f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}"


def partition_of(time_stamp: int) -> str:
    """``year=YYYY/month=MM/day=DD`` of a time stamp in µs: the lake's partition folder."""
    year, month, day = partition_values(time_stamp)
    return f"year={year}/month={month}/day={day}"


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def valid_bucket_name(name: str) -> bool:
    """S3's rules for a general purpose bucket name (3-63 characters, no ``..``, no IP)."""
    return bool(_BUCKET.match(name)) and ".." not in name and not _IP_ADDRESS.match(name)
