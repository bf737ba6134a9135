"""How late the daemon's own event loop runs, and whether that lateness explains a lapsed deadline.

A probe's deadline is measured in wall time, but the probe only makes progress while the loop runs
it. When the daemon itself is late (its CPU taken by another process, a burst of its own work), an
answer can sit unread in a socket while the deadline runs out: the daemon's lateness, not the
target's, then decides the outcome. ``LoopLag`` measures that lateness cheaply — one task that
asks to wake every ``period_seconds`` and adds up how late it woke — as one non-decreasing
counter, so the lateness inside any interval is the difference of two readings.
``overrun_explained`` is the rule that turns it into a verdict on one probe; it is pure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, Protocol

PERIOD_SECONDS: Final = 0.05
"""How often the monitor asks to wake: 20 wake-ups a second cost 0.3 % of one core (AMD EPYC,
``bench/per_check.py``), and a stall longer than this shows in the counter as it happens
(``cumulative_seconds`` reads the current one)."""
LAG_FLOOR_SECONDS: Final = 0.05
"""Lateness below this never makes a probe inconclusive: timer granularity and ordinary scheduling
noise add a millisecond or two per wake-up, never tens of them."""
LAG_SHARE: Final = 0.1
"""…nor lateness below this share of the probe's timeout: a 10 s deadline is not spoiled by 60 ms."""


class LagSource(Protocol):
    """A reading of the loop's accumulated lateness; the runner's only view of ``LoopLag``."""

    def cumulative_seconds(self) -> float:
        """Seconds the loop has been late since an arbitrary origin; never decreases."""
        ...


def overrun_explained(*, timeout_seconds: float, lag_seconds: float) -> bool:
    """Whether a probe that ran out of its deadline may have done so only because the daemon was late.

    ``lag_seconds`` is the loop's lateness between the probe's start and its end. The target got
    at most ``timeout - lag`` seconds of a loop that was on time; once that shortfall is at least
    ``max(LAG_FLOOR_SECONDS, LAG_SHARE × timeout)``, the missed deadline says nothing about the
    target. Below it, the timeout is the target's.
    """
    return lag_seconds >= max(LAG_FLOOR_SECONDS, LAG_SHARE * timeout_seconds)


class LoopLag:
    """Accumulates the event loop's lateness; ``run`` is its monitor task (one per daemon)."""

    __slots__ = ("_due", "_late", "_monotonic", "_period", "_wakes")

    def __init__(
        self, monotonic: Callable[[], float], *, period_seconds: float = PERIOD_SECONDS
    ) -> None:
        """Nothing is measured until ``run`` starts; ``monotonic`` must be the loop's own clock."""
        self._monotonic = monotonic
        self._period = period_seconds
        self._late = 0.0
        self._due: float | None = None
        self._wakes = 0

    @property
    def wakes(self) -> int:
        """Wake-ups recorded so far (a monitor that never runs measures nothing)."""
        return self._wakes

    def cumulative_seconds(self) -> float:
        """Lateness so far, including the stall going on now (the monitor overdue but not yet run).

        The current stall counts at once, so a probe whose deadline handler runs before the
        monitor in the same loop iteration still sees the stall that delayed them both. When the
        monitor wakes it books exactly what this already reported: the counter is continuous.
        """
        overdue = 0.0 if self._due is None else max(0.0, self._monotonic() - self._due)
        return self._late + overdue

    def woke(self, now: float) -> None:
        """The monitor woke at ``now``: book its lateness and expect it one period later."""
        if self._due is not None:
            self._late += max(0.0, now - self._due)
            self._wakes += 1
        self._due = now + self._period

    async def run(self) -> None:
        """Wake every period and record how late; runs until cancelled."""
        self.woke(self._monotonic())
        while True:
            await asyncio.sleep(self._period)
            self.woke(self._monotonic())
