"""The end of the log as this process knows it: the writer moves it, subscribers wait on it.

It also holds the last few commits as they were made (``Tail``): a subscriber that has read the
file up to where they begin takes what followed from memory instead of reading it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from uptime_daemon.errors import EventStoreUnavailable
from uptime_daemon.store import RecordedEvent

TAIL_COMMITS: Final = 64
"""Commits held in memory at most: about a second's at 10,000 services every minute (2–13 checks a
commit); a subscriber further behind reads the file, as in catch-up."""
TAIL_EVENTS: Final = 4096
"""Events held in memory at most, whatever the commits: an import or a spool's flush commits
hundreds at a time, and nobody follows an import live."""


@dataclass(frozen=True, slots=True)
class Commit:
    """One committed transaction: every position in ``(before, after]`` is one of its ``events``.

    ``before`` is the file's sequence read inside the transaction before its first insert and
    ``after`` the sequence at its end, both under the write lock, so no other writer (not even
    another process) can have a position in between.
    """

    before: int
    after: int
    events: tuple[RecordedEvent, ...]


class Tail:
    """The newest commits, consecutive: each begins where the one before it ended.

    Only while someone follows the log (``following``): without a subscriber the writer builds
    nothing and holds nothing (``clear``), so the offline commands pay for none of it.
    """

    def __init__(self, size: int = TAIL_COMMITS, most_events: int = TAIL_EVENTS) -> None:
        self._commits: deque[Commit] = deque()
        self._size = size
        self._most_events = most_events
        self._events = 0
        self._followers = 0

    @property
    def followed(self) -> bool:
        """Whether a subscription is following the log, so commits are worth holding."""
        return self._followers > 0

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        """A subscription's lifetime: commits are held while at least one is inside."""
        self._followers += 1
        try:
            yield
        finally:
            self._followers -= 1

    def add(self, commit: Commit) -> None:
        """Hold ``commit``; forget those held first if it does not follow the newest of them.

        They would no longer reach it without a gap. The oldest go first past ``size`` commits or
        ``most_events`` events; a commit with more events than that is not held at all.
        """
        if self._commits and self._commits[-1].after != commit.before:
            self.clear()
        if len(commit.events) > self._most_events:
            self.clear()  # the next commit starts a new run
            return
        self._commits.append(commit)
        self._events += len(commit.events)
        while len(self._commits) > self._size or self._events > self._most_events:
            self._events -= len(self._commits.popleft().events)

    def clear(self) -> None:
        """Forget every commit (the next one starts a new run)."""
        self._commits.clear()
        self._events = 0

    def since(
        self, position: int, prefixes: tuple[str, ...]
    ) -> tuple[list[RecordedEvent], int] | None:
        """The events after ``position`` and the position they reach; ``None`` if not held.

        Only events of streams starting with ``prefixes`` (all if empty). ``None`` when the
        commits held do not reach back to ``position``. Equal to what a read of the file after ``position`` gives up to the newest commit held.
        """
        commits = self._commits
        if not commits or commits[0].before > position:
            return None
        reached = commits[-1].after
        if position >= reached:
            return [], position
        return [
            event
            for commit in commits
            if commit.after > position
            for event in commit.events
            if event.position > position and (not prefixes or event.stream.startswith(prefixes))
        ], reached


class Head:
    """The highest position committed so far, the commits just made, and whether it has closed."""

    def __init__(self) -> None:
        self.position = 0
        self.closed = False
        self.tail = Tail()
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
