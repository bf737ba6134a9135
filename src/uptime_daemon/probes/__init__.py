"""Probes: one module per protocol, one ``ProbeFn`` signature, one ``PROBERS`` registry.

A probe returns a ``ProbeResult`` when the target fails and raises only for our own bugs. It owns no
timeout (the caller wraps it in ``asyncio.timeout``), no metrics and no logging.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from uptime_daemon.config.model import (
    DatabaseService,
    DnsService,
    GrpcService,
    HttpService,
    Service,
    TcpService,
    WebSocketService,
)
from uptime_daemon.probes.base import ProbeContext, ProbeFn, Prober
from uptime_daemon.probes.http import probe_http
from uptime_daemon.probes.tcp import probe_tcp
from uptime_daemon.probes.websocket import probe_websocket
from uptime_daemon.results import CheckKind, FailureReason, Phase, ProbeResult

__all__ = [
    "PROBERS",
    "CheckKind",
    "FailureReason",
    "Phase",
    "ProbeContext",
    "ProbeFn",
    "ProbeResult",
    "Prober",
    "probe_for",
]

# The database, DNS and gRPC probes load their drivers (asyncpg, aiomysql, redis, the KurrentDB
# client, dnspython, grpcio: tens of megabytes of modules) on their first check, not at start: a
# daemon that watches only HTTP services never pays for them. Each stand-in has its probe's own
# signature, so the registry's pairing of kind and settings stays checked by the type checker.


async def probe_database(service: DatabaseService, ctx: ProbeContext) -> ProbeResult:
    """``probes.database.probe_database``, imported on first use."""
    from uptime_daemon.probes.database import probe_database as probe  # noqa: PLC0415

    return await probe(service, ctx)


async def probe_dns(service: DnsService, ctx: ProbeContext) -> ProbeResult:
    """``probes.dns.probe_dns``, imported on first use."""
    from uptime_daemon.probes.dns import probe_dns as probe  # noqa: PLC0415

    return await probe(service, ctx)


async def probe_grpc(service: GrpcService, ctx: ProbeContext) -> ProbeResult:
    """``probes.grpc_health.probe_grpc``, imported on first use."""
    from uptime_daemon.probes.grpc_health import probe_grpc as probe  # noqa: PLC0415

    return await probe(service, ctx)


PROBERS: Final[Mapping[CheckKind, Prober[Any]]] = {
    CheckKind.HTTP: Prober(HttpService, probe_http),
    CheckKind.WEBSOCKET: Prober(WebSocketService, probe_websocket),
    CheckKind.DATABASE: Prober(DatabaseService, probe_database),
    CheckKind.TCP: Prober(TcpService, probe_tcp),
    CheckKind.DNS: Prober(DnsService, probe_dns),
    CheckKind.GRPC: Prober(GrpcService, probe_grpc),
}
"""Kind → (its service settings type, its probe); ``tests/probes/test_registry.py`` holds every
kind of the config's ``Service`` union to exactly one entry of its own type."""


def probe_for(service: Service) -> ProbeFn[Any]:
    """The probe of ``service``'s kind (the config's discriminated union guarantees the type)."""
    return PROBERS[service.kind].probe
