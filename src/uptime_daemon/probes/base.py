"""The probe seam: the ``ProbeFn`` signature and the ``ProbeContext`` every probe receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import aiohttp

    from uptime_daemon.clock import Clock
    from uptime_daemon.config.model import DatabaseService, HttpService, WebSocketService
    from uptime_daemon.results import ProbeResult
    from uptime_daemon.store import EventStore


@dataclass(frozen=True, slots=True)
class ProbeContext:
    """What a probe may use: the shared HTTP session, the clock, the event store, our own base URL."""

    session: aiohttp.ClientSession
    clock: Clock
    store: EventStore
    self_base_url: str
    """``http://127.0.0.1:PORT`` of this daemon; relative target URLs are resolved against it."""


class ProbeFn(Protocol):
    """The one probe signature."""

    async def __call__(
        self, service: HttpService | WebSocketService | DatabaseService, ctx: ProbeContext
    ) -> ProbeResult:
        """Probe the target once."""
        ...
