"""DynamoDB's JSON protocol as the emulator speaks it: errors and response bodies.

boto3 reads the error code from the part of `__type` after `#` and raises `ClientError`, so an
`ApiError` becomes exactly the exception a caller of real DynamoDB would handle.
"""

from __future__ import annotations

import json
from typing import Any

JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
ERROR_NAMESPACE = "com.amazonaws.dynamodb.v20120810#"


class ApiError(Exception):
    """An error DynamoDB returns to the caller (HTTP 400 unless said otherwise)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> bytes:
        return json.dumps({"__type": ERROR_NAMESPACE + self.code, "message": self.message}).encode()


def validation_error(message: str) -> ApiError:
    return ApiError("ValidationException", message)


def epoch_seconds(micros: int) -> float:
    """JSON protocol timestamps are epoch seconds as a number."""
    return micros / 1_000_000


def micros_from_epoch(value: Any, field_name: str) -> int:
    """Read a JSON-protocol timestamp (epoch seconds, possibly fractional)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise validation_error(f"{field_name} must be a timestamp, got {value!r}")
    return round(value * 1_000_000)
