"""Scavenging: deleting for real the events retention and soft deletes already hide."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from typing import Final

import structlog

from uptime_daemon.errors import EventStoreError
from uptime_daemon.store.sqlite.connection import Connections, transaction
from uptime_daemon.store.sqlite.streams import StreamRow

# The package's name, as before it was split into modules: log lines keep their logger name.
log = structlog.get_logger(__package__)

SCAVENGE_EVERY_APPENDS: Final = 1000
SCAVENGE_INTERVAL_SECONDS: Final = 600.0


class Scavenger:
    """Runs a scavenge when asked, and every ``every_appends`` appends or ``interval_seconds``."""

    def __init__(
        self,
        connections: Connections,
        *,
        clock_now: Callable[[], datetime],
        every_appends: int,
        interval_seconds: float,
    ) -> None:
        self._connections = connections
        self._now = clock_now
        self._every = every_appends
        self._interval = interval_seconds
        self._appends_since = 0
        self._last = 0.0

    def start(self) -> None:
        """Count the interval from now: the store has just opened."""
        self._last = self._now().timestamp()

    def count_appends(self, appends: int) -> None:
        """Appends committed since the last scavenge bring the next one closer."""
        self._appends_since += appends

    async def run(self) -> int:
        """Scavenge now, on the writer thread; return how many events were deleted."""
        now = self._now().timestamp()
        started = time.perf_counter()
        self._appends_since = 0
        self._last = now
        removed = await self._connections.write(functools.partial(_delete_hidden, now=now))
        if removed:
            log.info(
                "store_scavenged", removed=removed, duration_seconds=time.perf_counter() - started
            )
        return removed

    async def run_if_due(self) -> None:
        """Called by the writer loop between batches, so it never races an append."""
        elapsed = abs(self._now().timestamp() - self._last)
        if self._appends_since < self._every and elapsed < self._interval:
            return
        try:
            await self.run()
        except EventStoreError as exc:
            log.warning("store_scavenge_failed", error=str(exc))


def _delete_hidden(conn: sqlite3.Connection, *, now: float) -> int:
    """Only streams with retention or a soft delete are visited, each through its index.

    Expiry by age is deleted as a prefix in revision order (up to the first event still young),
    so the work is proportional to what is removed, not to the stream's length.
    """
    removed = 0
    with transaction(conn, "BEGIN IMMEDIATE"):
        rows = conn.execute(
            "SELECT name, last_revision, truncate_before, deleted, max_age_seconds, max_count "
            "FROM streams WHERE truncate_before > 0 OR max_age_seconds IS NOT NULL "
            "OR max_count IS NOT NULL"
        ).fetchall()
        for name, *fields in rows:
            stream = StreamRow(fields[0], fields[1], bool(fields[2]), fields[3], fields[4])
            floor = stream.floor()
            if stream.max_age_seconds is not None:
                young = conn.execute(
                    "SELECT revision FROM events WHERE stream_id = (SELECT id FROM names "
                    "WHERE name = ?) AND revision >= ? AND recorded_at >= ? "
                    "ORDER BY revision LIMIT 1",
                    (name, floor, now - stream.max_age_seconds),
                ).fetchone()
                floor = stream.last_revision + 1 if young is None else int(young[0])
            if floor > 0:
                removed += conn.execute(
                    "DELETE FROM events WHERE stream_id = (SELECT id FROM names WHERE name = ?) "
                    "AND revision < ?",
                    (name, floor),
                ).rowcount
    return removed
