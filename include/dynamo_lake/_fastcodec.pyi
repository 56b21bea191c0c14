"""Types of the optional compiled codec (``_fastcodec.pyx``); see :mod:`dynamo_lake.codec`."""

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

_Row = TypeVar("_Row", bound=tuple[Any, ...])

MAX_DEPTH: int

def data_bytes(item: object) -> bytes | None: ...
def row(item: object, op: str, time_stamp: int, row_type: type[_Row]) -> _Row | None: ...

class RowColumns(Generic[_Row]):
    min_stamp: int
    max_stamp: int
    def __init__(self, row_type: type[_Row]) -> None: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> _Row: ...
    def __iter__(self) -> Iterator[_Row]: ...
    def append(self, row: _Row) -> None: ...
    def arrow_buffers(self) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes]: ...
    def take_export_lines(
        self,
        lines: list[bytes],
        start: int,
        loads: Callable[[bytes], Any],
        export_time: int | None,
        new_and_old: bool,
        window_start: int,
        window_end: int,
    ) -> int: ...

def key_column(
    offsets_buffer: Any, data_buffer: Any, offset: int, count: int, names: list[bytes]
) -> tuple[bytes | None, bytes, bytes, list[int]]: ...
