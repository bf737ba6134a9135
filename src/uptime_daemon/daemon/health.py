"""The one component health check: the store under a deadline, the projector, the scheduler.

Readiness, ``/health/comprehensive``, ``/health/kurrentdb``, the live feed and the status page all ask
this one object, so they can never disagree about whether the daemon is healthy.
"""

from __future__ import annotations

import asyncio
from typing import Final

from uptime_daemon.api.keys import ObservedStore, StorePing
from uptime_daemon.api.models import Component, Member
from uptime_daemon.clock import Clock
from uptime_daemon.cluster import Membership
from uptime_daemon.config.live import LiveSettings
from uptime_daemon.daemon.sharing import shared_owned_by
from uptime_daemon.errors import EventStoreError
from uptime_daemon.projector.runner import Projector
from uptime_daemon.scheduler import CheckScheduler

STORE_PING_TIMEOUT_SECONDS: Final = 2.0


class ComponentHealth:
    """Asks each part of the daemon how it is; parts not started yet report as not ready."""

    def __init__(
        self,
        settings: LiveSettings,
        clock: Clock,
        *,
        timeout_seconds: float = STORE_PING_TIMEOUT_SECONDS,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._timeout = timeout_seconds
        self.store: ObservedStore | None = None
        self.projector: Projector | None = None
        self.scheduler: CheckScheduler | None = None
        self.membership: Membership | None = None

    async def ping(self) -> StorePing:
        """Round-trip the store once within the deadline."""
        if self.store is None:
            return StorePing(None, "not opened yet")
        try:
            async with asyncio.timeout(self._timeout):
                return StorePing(await self.store.ping(), None)
        except TimeoutError:
            return StorePing(None, f"no answer within {self._timeout:g} s")
        except EventStoreError as exc:
            return StorePing(None, f"{type(exc).__name__}: {exc}")

    def members(self) -> list[Member]:
        """Every member the heartbeat stream knows, alive or not.

        Those of this daemon's location carry how many of its shared services each probes now.
        """
        membership = self.membership
        if membership is None:
            return []
        settings = self._settings.current
        alive_here = membership.members
        now = self._clock.now()
        found = []
        for name, member in sorted(membership.table.members.items()):
            heartbeat, left = member.heartbeat, member.left
            location = heartbeat.location if heartbeat else left.location if left else ""
            owned = None
            if location == settings.location and name in alive_here:
                owned = len(shared_owned_by(settings, name, alive_here))
            found.append(
                Member(
                    instance=name,
                    location=location,
                    alive=name in alive_here
                    if location == settings.location
                    else member.alive_at(now),
                    this=name == settings.instance,
                    started_at=None if heartbeat is None else heartbeat.started_at,
                    last_heartbeat=None if heartbeat is None else heartbeat.at,
                    left_at=None if left is None else left.at,
                    services_owned=owned,
                )
            )
        return found

    async def ready(self) -> bool:
        """Whether every component is healthy (what ``/health/ready`` answers 200 for)."""
        return all(component.ok for component in await self.components())

    async def components(self) -> list[Component]:
        """Store, projector and scheduler, each healthy or not, with a reason."""
        return [await self._store(), self._projector(), self._scheduler()]

    async def _store(self) -> Component:
        ping = await self.ping()
        if ping.error is not None or ping.round_trip_seconds is None or self.store is None:
            return Component(name="store", ok=False, detail=f"unreachable: {ping.error}")
        failing = self.store.last_append_error
        if failing is not None:  # answers reads but refuses writes: a full or read-only disk
            return Component(name="store", ok=False, detail=f"appends failing: {failing}")
        detail = f"{self.store.backend}, {ping.round_trip_seconds * 1000:.1f} ms"
        return Component(name="store", ok=True, detail=detail)

    def _projector(self) -> Component:
        if self.projector is not None and self.projector.caught_up.is_set():
            detail = f"caught up at position {self.projector.position}"
            return Component(name="projector", ok=True, detail=detail)
        return Component(name="projector", ok=False, detail="catching up")

    def _scheduler(self) -> Component:
        if not self._settings.current.scheduler.enabled:
            return Component(name="scheduler", ok=True, detail="disabled by configuration")
        if self.scheduler is not None and self.scheduler.running:
            detail = f"{self.scheduler.inflight} checks in flight"
            return Component(name="scheduler", ok=True, detail=detail)
        return Component(name="scheduler", ok=False, detail="not running")
