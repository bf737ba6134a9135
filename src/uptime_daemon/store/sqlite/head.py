"""The end of the log as this process knows it: the writer moves it, subscribers wait on it."""

from __future__ import annotations

import asyncio
import functools

from uptime_daemon.errors import EventStoreUnavailable


class Head:
    """The highest position committed so far, and whether the store has closed."""

    def __init__(self) -> None:
        self.position = 0
        self.closed = False
        self._moved = asyncio.Condition()

    def ensure_open(self) -> None:
        """Raise ``EventStoreUnavailable("store is closed")`` once the store has closed."""
        if self.closed:
            raise EventStoreUnavailable("store is closed")

    async def announce(self) -> None:
        """Wake every waiter to look again: after each commit, and once when the store closes."""
        async with self._moved:
            self._moved.notify_all()

    async def wait_past(self, position: int) -> None:
        """Return once the head is beyond ``position`` or the store has closed."""
        async with self._moved:
            await self._moved.wait_for(functools.partial(self._moved_past, position))

    def _moved_past(self, position: int) -> bool:
        return self.position > position or self.closed
