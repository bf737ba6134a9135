"""The outgoing heartbeat: a dead-man's switch that fires when every daemon is gone.

While this daemon is ready (store reachable, projection caught up, scheduler running) it fetches
``[alerting] heartbeat_url`` every ``heartbeat_seconds`` — a Healthchecks-style check, or any URL
that alerts when the pings stop. A daemon that is not ready stays silent, so the switch also fires
when the daemons run but cannot do their job. With several daemons each one pings: the switch
fires only when all of them have stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

import aiohttp
import structlog

from uptime_daemon.config.live import LiveSettings
from uptime_daemon.config.model import shown_url
from uptime_daemon.redact import redact

log = structlog.get_logger(__name__)

TIMEOUT_SECONDS: Final = 10.0


class Heartbeat:
    """Pings the heartbeat URL while ready."""

    def __init__(
        self,
        settings: LiveSettings,
        session: aiohttp.ClientSession,
        ready: Callable[[], Awaitable[bool]],
        on_beat: Callable[[bool], None] = lambda _ok: None,
    ) -> None:
        self._settings = settings
        self._session = session
        self._ready = ready
        self._on_beat = on_beat

    async def run(self) -> None:
        """Forever; re-reads the settings each round, so a reload turns it on, off or retimes it."""
        while True:
            alerting = self._settings.current.alerting
            if alerting.heartbeat_url is not None and await self._ready():
                await self.beat(alerting.heartbeat_url.get_secret_value())
            await asyncio.sleep(alerting.heartbeat_seconds)

    async def beat(self, url: str) -> bool:
        """One ping; whether the receiver answered 2xx. Never raises for the receiver's sake."""
        try:
            async with (
                asyncio.timeout(TIMEOUT_SECONDS),
                self._session.get(url, allow_redirects=True) as response,
            ):
                await response.read()
                ok = 200 <= response.status < 300  # noqa: PLR2004
                detail = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            ok, detail = False, redact(f"{type(exc).__name__}: {exc}".replace(url, shown_url(url)))
        self._on_beat(ok)
        if not ok:
            log.warning("heartbeat_failed", url=shown_url(url), detail=detail)
        return ok
