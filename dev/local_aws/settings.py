"""Knobs of the emulator's model of DynamoDB exports, with the defaults used by `make local-aws`.

The defaults make the demo feel like AWS without its waiting: exports stay IN_PROGRESS for two
seconds instead of ten minutes, and the latest restorable time lags "now" by one second instead of
about five minutes. Tests shrink or stretch them through the control endpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class SettingsError(ValueError):
    """A settings update named an unknown setting or gave a value of the wrong kind."""


@dataclass
class EmulatorSettings:
    """How the emulated export service behaves; every field is settable at run time."""

    #: Real seconds an export stays IN_PROGRESS before it ends COMPLETED or FAILED.
    export_delay_seconds: float = 2.0
    #: A data file holds at most this many items; bigger exports spread over several files.
    items_per_export_file: int = 100
    #: Empty-partition data files (zero-byte gzip content) added to every export.
    empty_data_files: int = 1
    #: LatestRestorableDateTime is "now" minus this lag (AWS: about 300 s).
    pitr_lag_seconds: float = 1.0
    #: Shortest incremental export window (AWS: 15 minutes).
    incremental_min_window_seconds: float = 900.0
    #: Longest incremental export window (AWS: 24 hours).
    incremental_max_window_seconds: float = 86_400.0
    #: How long a ClientToken stays idempotent, in emulated seconds (AWS: 8 hours).
    client_token_ttl_seconds: float = 8 * 3600.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update, checking names and value kinds before changing anything."""
        fields = {field.name: field for field in dataclasses.fields(self)}
        validated: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in fields:
                raise SettingsError(f"unknown setting {name!r}; known: {sorted(fields)}")
            current = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SettingsError(f"setting {name!r} needs a number, got {value!r}")
            if isinstance(current, int) and not isinstance(current, bool):
                if value != int(value):
                    raise SettingsError(f"setting {name!r} needs an integer, got {value!r}")
                value = int(value)
            else:
                value = float(value)
            if value < 0:
                raise SettingsError(f"setting {name!r} cannot be negative, got {value!r}")
            validated[name] = value
        if validated.get("items_per_export_file", self.items_per_export_file) < 1:
            raise SettingsError("setting 'items_per_export_file' must be at least 1")
        for name, value in validated.items():
            setattr(self, name, value)

    def copy(self) -> EmulatorSettings:
        return dataclasses.replace(self)
