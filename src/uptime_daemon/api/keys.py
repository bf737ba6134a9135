"""Every application key, each typed by what the HTTP layer needs of it (a port); the daemon fills them.

The keys live here, at the floor of their readers, so the API never imports the composition root
that sets them (``uptime_daemon.daemon``). What the API needs of the daemon's parts is stated as
protocols; the parts themselves (runner, scheduler, spool, supervisor) stay the daemon's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from uptime_daemon.api.models import Component, Member
from uptime_daemon.api.summary_cache import SummaryCache
from uptime_daemon.clock import Clock
from uptime_daemon.config.live import LiveSettings
from uptime_daemon.projector.runner import Projector
from uptime_daemon.store import EventStore


class ObservedStore(EventStore, Protocol):
    """The event store, with what health output reports about its appends."""

    appends: int
    append_failures: int
    last_append_at: datetime | None
    last_append_position: int | None
    last_append_error: str | None


class SpoolGauge(Protocol):
    """The outage spool as health output sees it."""

    @property
    def depth(self) -> int:
        """Events waiting for the store."""
        ...

    @property
    def dropped(self) -> int:
        """Events dropped since start (spool full or unwritable)."""
        ...


@dataclass(frozen=True, slots=True)
class StorePing:
    """One round trip to the store under the health deadline."""

    round_trip_seconds: float | None
    error: str | None
    """Why the store did not answer in time; ``None`` when it did."""


class Health(Protocol):
    """The one component health check (readiness, ``/health/*``, the live feed, the status page)."""

    async def ping(self) -> StorePing:
        """Round-trip the store once, under the deadline."""
        ...

    async def components(self) -> list[Component]:
        """Each of the daemon's parts (store, projector, scheduler) and whether it is healthy."""
        ...

    def members(self) -> list[Member]:
        """The daemons sharing the store, this one included; empty without ``[cluster]``."""
        ...


class CheckOutcome(Protocol):
    """What one on-demand check produced, as ``POST /uptime/check`` reports it."""

    @property
    def service(self) -> str:
        """The service checked."""
        ...

    @property
    def position(self) -> int | None:
        """Commit position of the stored event; ``None`` when spooled, dropped or refused."""
        ...

    @property
    def store_error(self) -> str | None:
        """Why the event was not stored, when it was not."""
        ...

    @property
    def spooled(self) -> bool:
        """The event waits in the outage spool."""
        ...

    @property
    def payload(self) -> Mapping[str, Any]:
        """The event data exactly as stored."""
        ...

    @property
    def event_type(self) -> str:
        """``ServiceStatusChanged``, or ``ServiceCheckPending`` (no verdict yet)."""
        ...


CheckTrigger = Callable[[str | None], Awaitable[Sequence[CheckOutcome]]]
"""Run checks now (one service, or all for ``None``); raises ``LookupError`` for an unknown service."""


@dataclass(frozen=True, slots=True)
class Started:
    """When and as what this process started (for ``/health``)."""

    monotonic: float
    version: str


SETTINGS = web.AppKey("settings", LiveSettings)
CLOCK = web.AppKey("clock", Clock)
STORE: web.AppKey[ObservedStore] = web.AppKey("store")
SPOOL: web.AppKey[SpoolGauge] = web.AppKey("spool")
PROJECTOR = web.AppKey("projector", Projector)
HEALTH: web.AppKey[Health] = web.AppKey("health")
RUN_CHECKS: web.AppKey[CheckTrigger] = web.AppKey("run_checks")
STARTED = web.AppKey("started", Started)
SUMMARY_CACHE = web.AppKey("summary_cache", SummaryCache)
