"""``/uptime/*``: summaries, one service, its timeline, and checks on demand."""

from __future__ import annotations

from aiohttp import web

from uptime_daemon.api import models, views
from uptime_daemon.api.endpoint import JSON, Api, not_found
from uptime_daemon.api.keys import CLOCK, PROJECTOR, RUN_CHECKS, SETTINGS, SUMMARY_CACHE

api = Api()


def _hours(request: web.Request, query: models.WindowQuery) -> int:
    """The window, clamped to what the projection retains (``window.hours`` says what was used)."""
    return min(query.hours, views.max_hours(request.app[PROJECTOR].state))


def _known(request: web.Request) -> str:
    name = request.match_info["name"]
    projector, settings = request.app[PROJECTOR], request.app[SETTINGS].current
    if name not in settings.services and name not in projector.state.services:
        raise not_found("unknown_service", f"no service named {name!r}", "name")
    return name


@api.route(
    "GET",
    "/uptime/summary",
    query=models.WindowQuery,
    response=models.UptimeSummary,
    tag="uptime",
    summary="Uptime of every service over the last N hours",
)
async def summary(request: web.Request, query: models.WindowQuery) -> web.Response:
    """Time-weighted uptime (exact), check counts, response times and incidents per service.

    A service's new check or status change shows at once; for a service with no new check, the
    figures may lag the clock by up to ``server.summary_max_age_seconds`` (1 s by default; its
    ``window.end`` says when they were computed). That keeps the answer cheap when it is polled
    often for many services.
    """
    hours = _hours(request, query)
    body = request.app[SUMMARY_CACHE].render(
        request.app[SETTINGS].current,
        request.app[PROJECTOR].state,
        hours=hours,
        now=request.app[CLOCK].now(),
    )
    return web.Response(body=body, content_type=JSON)


@api.route(
    "GET",
    "/uptime/service/{name}",
    query=models.WindowQuery,
    response=models.ServiceUptime,
    tag="uptime",
    summary="Uptime of one service",
    errors=(404,),
)
async def service(request: web.Request, query: models.WindowQuery) -> models.ServiceUptime:
    """Every figure of one service over the window."""
    hours = _hours(request, query)
    name = _known(request)
    return views.service_uptime(
        request.app[SETTINGS].current,
        request.app[PROJECTOR].state,
        name,
        hours=hours,
        now=request.app[CLOCK].now(),
    )


@api.route(
    "GET",
    "/uptime/timeline/{name}",
    query=models.TimelineQuery,
    response=models.Timeline,
    tag="uptime",
    summary="Status periods of one service",
    errors=(404,),
)
async def timeline(request: web.Request, query: models.TimelineQuery) -> models.Timeline:
    """Contiguous periods of up, degraded, down and unknown (no check for 2 × interval + timeout).

    By default the service's k-of-n quorum verdict; ``?location=`` gives one location's own.
    """
    hours = _hours(request, query)
    name = _known(request)
    state, settings = request.app[PROJECTOR].state, request.app[SETTINGS].current
    location = query.location
    if location is not None and not views.has_location(settings, state, name, location):
        raise not_found(
            "unknown_location", f"service {name!r} has no location {location!r}", "location"
        )
    return views.timeline(state, name, hours=hours, now=request.app[CLOCK].now(), location=location)


@api.route(
    "POST",
    "/uptime/check",
    query=models.CheckQuery,
    response=models.CheckResults,
    tag="uptime",
    summary="Run checks now",
    errors=(404,),
)
async def check(request: web.Request, query: models.CheckQuery) -> models.CheckResults:
    """Probe now (one service or all), store the events, return them."""
    if query.service is not None and query.service not in request.app[SETTINGS].current.services:
        raise not_found("unknown_service", f"no service named {query.service!r}", "service")
    outcomes = await request.app[RUN_CHECKS](query.service)
    return models.CheckResults(
        checks=[
            models.CheckResult(
                service=outcome.service,
                stored=outcome.position is not None,
                position=outcome.position,
                store_error=outcome.store_error,
                spooled=outcome.spooled,
                event_type=outcome.event_type,
                event=dict(outcome.payload),
            )
            for outcome in outcomes
        ]
    )
