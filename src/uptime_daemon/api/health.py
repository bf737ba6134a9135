"""``/health*``: liveness, readiness, the event store, and everything at once."""

from __future__ import annotations

import time

from aiohttp import web

from uptime_daemon.api import models, views
from uptime_daemon.api.endpoint import Api, json_response
from uptime_daemon.api.keys import CLOCK, HEALTH, PROJECTOR, SETTINGS, SPOOL, STARTED, STORE
from uptime_daemon.redact import redact

api = Api()


@api.route("GET", "/health", response=models.Liveness, tag="health", summary="Liveness")
async def health(request: web.Request, _query: None) -> models.Liveness:
    """The process answers. Cheap: touches nothing else."""
    app = request.app
    settings = app[SETTINGS].current
    return models.Liveness(
        status="ok",
        service="uptime-daemon",
        version=app[STARTED].version,
        environment=settings.environment,
        instance=settings.instance,
        location=settings.location,
        timestamp=app[CLOCK].now(),
        uptime_seconds=round(time.monotonic() - app[STARTED].monotonic, 3),
    )


@api.route(
    "GET",
    "/health/ready",
    response=models.Readiness,
    tag="health",
    summary="Readiness: store reachable, projector caught up, scheduler running",
    errors=(503,),
    description="200 when ready; 503 with the same body and a reason otherwise.",
)
async def ready(request: web.Request, _query: None) -> web.Response:
    """Ready only when every component is healthy."""
    components = await request.app[HEALTH].components()
    failing = [c for c in components if not c.ok]
    body = models.Readiness(
        ready=not failing,
        reason="; ".join(f"{c.name}: {c.detail}" for c in failing) or None,
        components=components,
    )
    return json_response(body, status=503 if failing else 200)


@api.route(
    "GET",
    "/health/kurrentdb",
    response=models.StoreHealth,
    tag="health",
    summary="Event store health",
)
async def store_health(request: web.Request, _query: None) -> models.StoreHealth:
    """Backend, reachability and round trip now, and the last append."""
    store, spool = request.app[STORE], request.app[SPOOL]
    ping = await request.app[HEALTH].ping()
    return models.StoreHealth(
        backend=store.backend,
        url=redact(request.app[SETTINGS].current.store.url),
        connected=ping.error is None,
        round_trip_ms=None
        if ping.round_trip_seconds is None
        else round(ping.round_trip_seconds * 1000, 3),
        error=ping.error,
        last_append_at=store.last_append_at,
        last_append_position=store.last_append_position,
        appends=store.appends,
        append_failures=store.append_failures,
        last_append_error=store.last_append_error,
        spooled_events=spool.depth,
        spool_dropped_events=spool.dropped,
    )


@api.route(
    "GET",
    "/health/comprehensive",
    response=models.ComprehensiveHealth,
    tag="health",
    summary="Every service's current status and the daemon's components",
)
async def comprehensive(request: web.Request, _query: None) -> models.ComprehensiveHealth:
    """One answer to "is everything fine?"."""
    settings, state = request.app[SETTINGS].current, request.app[PROJECTOR].state
    now = request.app[CLOCK].now()
    components = await request.app[HEALTH].components()
    services = [
        views.brief(settings, state, name, now) for name in views.service_names(settings, state)
    ]
    status = views.overall([s.status for s in services if s.configured])
    if not all(c.ok for c in components) and status == "ok":
        status = "degraded"
    return models.ComprehensiveHealth(
        status=status,
        timestamp=now,
        components=components,
        services=services,
        members=request.app[HEALTH].members(),
    )
