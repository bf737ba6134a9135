"""The injected clock: wall time for event timestamps, monotonic time for durations.

Pure code takes ``now`` as a parameter; shells take a ``Clock`` so tests can drive time by hand.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND: Final = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (an aware datetime)."""
    return (moment - EPOCH) // MICROSECOND


def from_micros(micros: int) -> datetime:
    """``to_micros``'s inverse, in UTC; ``OverflowError`` outside ``datetime``'s years."""
    return EPOCH + timedelta(0, 0, micros)  # positional: a third cheaper than keywords


class Clock(Protocol):
    """Where the daemon reads time from."""

    def now(self) -> datetime:
        """Current wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards."""
        ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def now(self) -> datetime:
        """Current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()


def to_iso_millis(moment: datetime) -> str:
    """Format as the seeds do: ``2024-01-15T10:30:00.000Z`` (UTC, millisecond precision)."""
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    # isoformat is C code and truncates to milliseconds as strftime did; only the zone suffix differs.
    return utc.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def to_iso_micros(moment: datetime) -> str:
    """``2024-01-15T10:30:00.123456Z``: UTC with every microsecond a datetime holds (exact)."""
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp (``Z`` accepted) into an aware UTC datetime."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is UTC:  # ours and the seeds' ("Z"): astimezone would return it as it is
        return parsed
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
