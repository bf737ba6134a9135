"""What the daemon would answer, offline: probe once (``check``), the uptime summary (``summary``).

Built with ``build`` exactly as the running daemon builds them (same store, same projector, same
probes), so they say what the daemon would. Apart from ``offline`` because they need the probes
(aiohttp's client) and the API's views, which the other offline commands never import.
"""

from __future__ import annotations

from collections.abc import Iterable

from uptime_daemon.api import views
from uptime_daemon.api.models import UptimeSummary
from uptime_daemon.clock import Clock, SystemClock
from uptime_daemon.config.model import Settings
from uptime_daemon.daemon.offline import fold_log, opened_store
from uptime_daemon.daemon.serving import base_url
from uptime_daemon.errors import ConfigError
from uptime_daemon.probes import probe_for
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.session import make_client_session
from uptime_daemon.results import ProbeResult
from uptime_daemon.runner import probe_with_deadline


async def check(
    settings: Settings, names: Iterable[str], clock: Clock | None = None
) -> list[tuple[str, ProbeResult]]:
    """Probe each service once from this machine (relative targets: the running daemon's URL)."""
    clock = clock or SystemClock()
    found: list[tuple[str, ProbeResult]] = []
    async with opened_store(settings) as store, make_client_session() as session:
        context = ProbeContext(
            session=session,
            clock=clock,
            store=store,
            self_base_url=base_url(settings.server.host, settings.server.port),
        )
        for name in names:
            service = settings.services[name]
            found.append(
                (name, await probe_with_deadline(probe_for(service), service, context, clock))
            )
    return found


async def summary(settings: Settings, hours: int) -> UptimeSummary:
    """Every service's figures over ``hours``, read-only (the snapshot is not rewritten)."""
    if not 1 <= hours <= settings.projector.retention_days * 24:
        raise ConfigError(f"--hours must be 1..{settings.projector.retention_days * 24}")
    projector, _ = await fold_log(settings, from_snapshot=True)
    now = SystemClock().now()
    services = [
        views.service_uptime(settings, projector.state, name, hours=hours, now=now)
        for name in views.service_names(settings, projector.state)
    ]
    return UptimeSummary(
        generated_at=now,
        hours=hours,
        status=views.overall([s.status for s in services if s.configured]),
        services=services,
    )
