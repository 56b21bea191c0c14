"""Types of the optional compiled codec (``_fastcodec.pyx``); see :mod:`dynamo_lake.codec`."""

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

_Row = TypeVar("_Row", bound=tuple[Any, ...])

MAX_DEPTH: int

def set_number_key(key: Callable[[str], tuple[Decimal, str]]) -> None: ...
def data_bytes(item: object) -> bytes | None: ...
def row(item: object, op: str, time_stamp: int, row_type: type[_Row]) -> _Row | None: ...
