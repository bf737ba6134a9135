"""Typed application keys: what the HTTP layer may read, set once by the composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from uptime_daemon.api.models import Component
from uptime_daemon.api.summary_cache import SummaryCache
from uptime_daemon.clock import Clock
from uptime_daemon.config.live import LiveSettings
from uptime_daemon.projector.runner import Projector
from uptime_daemon.store.instrumented import InstrumentedStore
from uptime_daemon.store.spool import OutageBuffer

CheckTrigger = Callable[[str | None], Awaitable[list[Mapping[str, Any]]]]
"""Run checks now (one service, or all for ``None``); raises ``LookupError`` for an unknown service."""

ComponentProbe = Callable[[], Awaitable[list[Component]]]
"""The daemon's own parts (store, projector, scheduler) and whether each is healthy."""


@dataclass(frozen=True, slots=True)
class Started:
    """When and as what this process started (for ``/health``)."""

    monotonic: float
    version: str


SETTINGS = web.AppKey("settings", LiveSettings)
CLOCK = web.AppKey("clock", Clock)
STORE = web.AppKey("store", InstrumentedStore)
PROJECTOR = web.AppKey("projector", Projector)
BUFFER = web.AppKey("outage_buffer", OutageBuffer)
RUN_CHECKS: web.AppKey[CheckTrigger] = web.AppKey("run_checks")
COMPONENTS: web.AppKey[ComponentProbe] = web.AppKey("components")
STARTED = web.AppKey("started", Started)
SUMMARY_CACHE = web.AppKey("summary_cache", SummaryCache)
