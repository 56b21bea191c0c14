"""Constants of the lake contract that light modules (config, DAG files) need.

Kept free of heavy imports so that DAG parsing can use them without pulling in pyarrow.
"""

from __future__ import annotations

from typing import Literal

Compression = Literal["zstd", "gzip", "snappy"]
COMPRESSIONS: tuple[Compression, ...] = ("zstd", "gzip", "snappy")
DEFAULT_LAKE_PREFIX = "dynamo-cdc"
