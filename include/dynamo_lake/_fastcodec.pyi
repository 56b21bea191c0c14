"""Types of the optional compiled codec (``_fastcodec.pyx``); see :mod:`dynamo_lake.codec`."""

from collections.abc import Callable
from typing import Any, TypeVar

_Row = TypeVar("_Row", bound=tuple[Any, ...])

MAX_DEPTH: int

def data_bytes(item: object) -> bytes | None: ...
def row(item: object, op: str, time_stamp: int, row_type: type[_Row]) -> _Row | None: ...
def export_rows(
    lines: list[bytes],
    start: int,
    rows: list[_Row],
    loads: Callable[[bytes], Any],
    row_type: type[_Row],
    export_time: int | None,
    new_and_old: bool,
    window_start: int,
    window_end: int,
) -> int: ...
