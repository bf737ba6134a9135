"""The probe seam: the ``ProbeFn`` signature, the ``ProbeContext`` every probe receives, ``Prober``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    import aiohttp

    from uptime_daemon.clock import Clock
    from uptime_daemon.results import ProbeResult
    from uptime_daemon.store import EventStore

ServiceT = TypeVar("ServiceT")
ServiceT_contra = TypeVar("ServiceT_contra", contravariant=True)


@dataclass(frozen=True, slots=True)
class ProbeContext:
    """What a probe may use: the shared HTTP session, the clock, the event store, our own base URL."""

    session: aiohttp.ClientSession
    clock: Clock
    store: EventStore
    self_base_url: str
    """``http://127.0.0.1:PORT`` of this daemon; relative target URLs are resolved against it."""


class ProbeFn(Protocol[ServiceT_contra]):
    """The one probe signature; each probe takes the settings of its own kind of service."""

    async def __call__(self, service: ServiceT_contra, ctx: ProbeContext) -> ProbeResult:
        """Probe the target once."""
        ...


@dataclass(frozen=True, slots=True)
class Prober(Generic[ServiceT]):
    """A kind's service settings type and its probe: ``Prober(HttpService, probe_http)``.

    Both name the same type, so pairing a probe with another kind's settings is a type error.
    """

    service_type: type[ServiceT]
    probe: ProbeFn[ServiceT]
