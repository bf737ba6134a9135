"""``/uptime/*``: summaries, one service, its timeline, and checks on demand."""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import hdrs, web

from uptime_daemon.api import models, views
from uptime_daemon.api.body import send_body
from uptime_daemon.api.endpoint import JSON, Api, accepts_gzip, not_found
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
    conditional=True,
)
async def summary(request: web.Request, query: models.WindowQuery) -> web.StreamResponse:
    """Time-weighted uptime (exact), check counts, response times and incidents per service.

    Built to be polled: the answer is kept ready and rebuilt in the background, so it may be up to
    a quarter of ``server.summary_max_age_seconds`` old (``generatedAt`` says when it was built;
    a new check shows within that), and a quiet service's figures up to the whole max age (1 s by
    default; its ``window.end`` says when they were computed). Send the ``ETag`` back in
    ``If-None-Match`` to get a 304 while the answer has not changed; with ``Accept-Encoding: gzip``
    the body comes gzipped.
    """
    hours = _hours(request, query)
    answer = await request.app[SUMMARY_CACHE].answer(
        request.app[SETTINGS].current,
        request.app[PROJECTOR].state,
        hours=hours,
        now=request.app[CLOCK].now(),
    )
    gzipped = accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
    headers = {
        hdrs.ETAG: answer.etag(gzipped=gzipped),
        hdrs.CACHE_CONTROL: "no-cache",  # a cache may keep it, but must ask (cheaply: a 304)
        hdrs.VARY: hdrs.ACCEPT_ENCODING,
    }
    tags = request.if_none_match
    if tags is not None and answer.matches(tag.value for tag in tags):
        return web.Response(status=HTTPStatus.NOT_MODIFIED, headers=headers)
    if gzipped:
        headers[hdrs.CONTENT_ENCODING] = "gzip"
        return await send_body(request, answer.gzipped, headers=headers, content_type=JSON)
    return await send_body(request, answer.body, headers=headers, content_type=JSON)


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
