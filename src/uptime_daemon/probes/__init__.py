"""Probes: one module per protocol, one ``ProbeFn`` signature, one ``PROBERS`` map.

A probe returns a ``ProbeResult`` when the target fails and raises only for our own bugs. It owns no
timeout (the caller wraps it in ``asyncio.timeout``), no metrics and no logging.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from uptime_daemon.probes.base import ProbeContext, ProbeFn
from uptime_daemon.probes.database import probe_database
from uptime_daemon.probes.http import probe_http
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
]

PROBERS: Final[Mapping[CheckKind, ProbeFn]] = {
    CheckKind.HTTP: probe_http,
    CheckKind.WEBSOCKET: probe_websocket,
    CheckKind.DATABASE: probe_database,
}
