"""``GET /``: the status page (static HTML/CSS/JS from this package) and the data behind it.

``GET /status/data`` is the first paint: every configured service in a few dozen bytes (name,
group, status, since, flags), so it stays under 1 MB for 10,000 services. A service's figures (90
daily bars, 24 h response times, incidents, locations) are ``GET /status/service/{name}``, fetched
when a row is opened. Live changes come over ``/ws/health``.

The page fetches nothing from anywhere but this daemon: the response carries a Content-Security-Policy
of ``default-src 'self'``, so even a mistake could not make the browser reach a CDN — it works on an
isolated network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import orjson
from aiohttp import web

from uptime_daemon.api import models, views
from uptime_daemon.api.endpoint import JSON, Api, not_found
from uptime_daemon.api.keys import CLOCK, HEALTH, PROJECTOR, SETTINGS
from uptime_daemon.clock import to_iso_millis

STATIC: Final = Path(__file__).with_name("static")
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
COMPRESS_FROM_BYTES: Final = 16 * 1024
"""Answers at least this long are gzipped for a client that accepts it (a large configuration's)."""

api = Api()


@api.route(
    "GET",
    "/status/data",
    response=models.StatusPage,
    tag="status page",
    summary="Every service's status in a few dozen bytes (the page's first paint)",
)
async def status_data(request: web.Request, _query: None) -> web.Response:
    """Every configured service's status, since when, group and flags; the daemon's health.

    No figures: those are per service in ``/status/service/{name}``. Gzipped when the client
    accepts it and the answer is long.
    """
    settings, projector = request.app[SETTINGS].current, request.app[PROJECTOR]
    now = request.app[CLOCK].now()
    rows = views.page_rows(settings, projector.state, projector.last_probe, now=now)
    components = await request.app[HEALTH].components()
    page = {
        "generatedAt": to_iso_millis(now),
        "status": views.overall([str(row["status"]) for row in rows]),
        "position": projector.position,
        "projectorLagSeconds": projector.lag_seconds(),
        "components": [c.model_dump(mode="json", by_alias=True) for c in components],
        "services": rows,
    }
    body = orjson.dumps(page)
    response = web.Response(body=body, content_type=JSON)
    if len(body) >= COMPRESS_FROM_BYTES:
        response.enable_compression()
    return response


@api.route(
    "GET",
    "/status/service/{name}",
    response=models.PageService,
    tag="status page",
    summary="One service's figures on the status page (opened row)",
    errors=(404,),
)
async def status_service(request: web.Request, _query: None) -> models.PageService:
    """Uptimes, 90 daily bars, 24 h response times, recent incidents, locations, the last check."""
    name = request.match_info["name"]
    settings, projector = request.app[SETTINGS].current, request.app[PROJECTOR]
    if name not in settings.services and name not in projector.state.services:
        raise not_found("unknown_service", f"no service named {name!r}", "name")
    return views.page_service(
        settings,
        projector.state,
        name,
        now=request.app[CLOCK].now(),
        last=projector.last_probe.get(name),
    )


async def index(_request: web.Request) -> web.FileResponse:
    """The status page."""
    return web.FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)


def setup(app: web.Application) -> None:
    """Register the page and its assets."""
    app.router.add_get("/", index)
    app.router.add_static("/static", STATIC, show_index=False, append_version=False)
