"""The config's ``[maintenance.NAME]`` windows, kept in step with the log's.

Once the projection has caught up (so it knows the log's windows), and again after every reload,
the difference is appended to ``system-maintenance``: a new or edited table is scheduled, a removed
one ends now. Daemons sharing a store and a config write the same events (their ids depend on the
definition), so the log holds each declaration once.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog

from uptime_daemon import maintenance
from uptime_daemon.clock import Clock
from uptime_daemon.config.live import LiveSettings
from uptime_daemon.config.model import Settings
from uptime_daemon.errors import EventStoreError
from uptime_daemon.projector.runner import Projector
from uptime_daemon.store import EventStore

log = structlog.get_logger(__name__)

RETRY_SECONDS: Final = (1.0, 2.0, 5.0, 10.0, 30.0)


class DeclaredWindows:
    """Appends what the log lacks of the config's maintenance windows."""

    def __init__(
        self, live: LiveSettings, store: EventStore, projector: Projector, clock: Clock
    ) -> None:
        self._live = live
        self._store = store
        self._projector = projector
        self._clock = clock
        self._wanted = asyncio.Event()
        self._wanted.set()

    def reload(self, _settings: Settings) -> None:
        """Compare again with the reloaded tables."""
        self._wanted.set()

    async def run(self) -> None:
        """Forever: after catch-up and each reload, append the difference (retrying on failure)."""
        await self._projector.caught_up.wait()
        failures = 0
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                await self.sync()
                failures = 0
            except EventStoreError as exc:
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("maintenance_sync_failed", error=str(exc), retry_in_seconds=delay)
                await asyncio.sleep(delay)
                self._wanted.set()

    async def sync(self) -> int:
        """Append the difference once; return how many events that took."""
        settings = self._live.current
        changes = maintenance.config_changes(
            self._projector.state.maintenance,
            dict(settings.maintenance),
            at=self._clock.now(),
            instance=settings.instance,
        )
        position = None
        for event in changes:
            position = await self._store.append(maintenance.STREAM, [event])
        if position is not None:
            await self._projector.folded(position, 5.0)
            log.info("maintenance_windows_declared", events=len(changes))
        return len(changes)
