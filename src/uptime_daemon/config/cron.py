"""Cron expressions of recurring maintenance windows: parsed once, expanded into occurrences.

APScheduler's ``CronTrigger`` does the parsing and the calendar arithmetic (time zones, daylight
saving): the five classic fields, minute hour day month weekday, in the window's time zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from uptime_daemon.errors import UptimeDaemonError

MAX_OCCURRENCES: Final = 100_000
"""Bound on the occurrences one expansion yields (a minutely cron over 90 days is 129,600: such a
window is better written as one long window)."""


class CronError(UptimeDaemonError, ValueError):
    """A cron expression that does not parse."""


def parse_cron(expression: str, timezone: str = "UTC") -> CronTrigger:
    """The trigger of a five-field cron expression in ``timezone``. Raises ``CronError``."""
    if len(expression.split()) != 5:  # noqa: PLR2004 - the five classic fields
        raise CronError(f"{expression!r}: five fields expected (minute hour day month weekday)")
    try:
        return CronTrigger.from_crontab(expression, timezone=ZoneInfo(timezone))
    except ValueError as exc:
        raise CronError(f"{expression!r}: {exc}") from None


def occurrences(
    trigger: CronTrigger,
    duration: timedelta,
    start: datetime,
    end: datetime,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Iterator[tuple[datetime, datetime]]:
    """Each occurrence ``[begin, begin + duration)`` that overlaps ``[start, end)``.

    ``not_before``/``not_after`` bound when occurrences may begin (a recurring window's own
    ``start``/``end``); an occurrence is clipped to ``not_after``.
    """
    cursor = start - duration
    if not_before is not None and cursor < not_before:
        cursor = not_before - timedelta(microseconds=1)
    previous: datetime | None = None
    for _ in range(MAX_OCCURRENCES):
        fired = trigger.get_next_fire_time(previous, cursor)
        if fired is None:
            return
        begin = fired.astimezone(UTC)  # durations are elapsed time, not wall-clock time
        if begin >= end or (not_after is not None and begin >= not_after):
            return
        finish = begin + duration
        if not_after is not None and finish > not_after:
            finish = not_after
        if finish > start:
            yield begin, finish
        previous = fired
        cursor = begin + timedelta(microseconds=1)
