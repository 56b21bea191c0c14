"""Constants of the lake contract that light modules (config, DAG files) need.

Kept free of heavy imports so that DAG parsing can use them without pulling in pyarrow.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

Compression = Literal["zstd", "gzip", "snappy"]
COMPRESSIONS: tuple[Compression, ...] = ("zstd", "gzip", "snappy")
DEFAULT_LAKE_PREFIX = "dynamo-cdc"
MICROS_PER_DAY = 86_400_000_000


def partition_values(time_stamp: int) -> tuple[str, str, str]:
    """``("YYYY", "MM", "DD")`` (UTC, zero-padded) of a time stamp in µs since the epoch."""
    day = datetime.fromtimestamp((time_stamp // MICROS_PER_DAY) * 86_400, tz=UTC)
    return f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}"


def partition_of(time_stamp: int) -> str:
    """``year=YYYY/month=MM/day=DD`` of a time stamp in µs: the lake's partition folder."""
    year, month, day = partition_values(time_stamp)
    return f"year={year}/month={month}/day={day}"
