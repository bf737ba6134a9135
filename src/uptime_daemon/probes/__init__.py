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
from uptime_daemon.probes.database import probe_database
from uptime_daemon.probes.dns import probe_dns
from uptime_daemon.probes.grpc_health import probe_grpc
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
