"""The emulator's notion of "now", which tests can pin, move and release.

Every write the emulator records, every PITR window and every export timestamp reads this clock,
so a test can put writes minutes or hours apart in milliseconds of real time. The clock is
either real time plus an offset (it ticks) or frozen at one instant (it does not).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

MICROS_PER_SECOND = 1_000_000


def micros_from_datetime(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime (naive ones are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


def datetime_from_micros(micros: int) -> datetime:
    """Aware UTC datetime of epoch microseconds, exact to the microsecond."""
    seconds, fraction = divmod(micros, MICROS_PER_SECOND)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=fraction)


def iso_from_micros(micros: int) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as AWS writes manifest times."""
    moment = datetime_from_micros(micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _real_micros() -> int:
    return time.time_ns() // 1000


class EmulatorClock:
    """Thread-safe controllable clock with microsecond resolution."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset_micros = 0
        self._frozen_at: int | None = None

    def now_micros(self) -> int:
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return _real_micros() + self._offset_micros

    def now(self) -> datetime:
        return datetime_from_micros(self.now_micros())

    @property
    def frozen(self) -> bool:
        with self._lock:
            return self._frozen_at is not None

    def set(self, moment_micros: int, *, frozen: bool = True) -> None:
        """Make "now" the given instant; frozen stays there, otherwise ticks on from it."""
        with self._lock:
            if frozen:
                self._frozen_at = moment_micros
                self._offset_micros = 0
            else:
                self._frozen_at = None
                self._offset_micros = moment_micros - _real_micros()

    def advance(self, seconds: float) -> None:
        """Move "now" forward (or back, for a negative value) without changing the mode."""
        step = round(seconds * MICROS_PER_SECOND)
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += step
            else:
                self._offset_micros += step

    def release(self) -> None:
        """Back to real time."""
        with self._lock:
            self._frozen_at = None
            self._offset_micros = 0
