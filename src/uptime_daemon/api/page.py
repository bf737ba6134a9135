"""``GET /``: the status page (static HTML/CSS/JS from this package) and ``GET /status/data`` behind it.

The page fetches nothing from anywhere but this daemon: the response carries a Content-Security-Policy
of ``default-src 'self'``, so even a mistake could not make the browser reach a CDN — it works on an
isolated network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

from uptime_daemon.api import models, views
from uptime_daemon.api.endpoint import Api
from uptime_daemon.api.keys import CLOCK, HEALTH, PROJECTOR, SETTINGS

STATIC: Final = Path(__file__).with_name("static")
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

api = Api()


@api.route(
    "GET",
    "/status/data",
    response=models.StatusPage,
    tag="status page",
    summary="Everything the status page shows",
)
async def status_data(request: web.Request, _query: None) -> models.StatusPage:
    """Services with uptimes, 90 daily bars, 24 h response times and recent incidents; daemon health."""
    settings, projector = request.app[SETTINGS].current, request.app[PROJECTOR]
    now = request.app[CLOCK].now()
    services = [
        views.page_service(
            settings, projector.state, name, now=now, last=projector.last_probe.get(name)
        )
        for name in views.service_names(settings, projector.state)
    ]
    return models.StatusPage(
        generated_at=now,
        status=views.overall([s.status for s in services if s.configured]),
        position=projector.position,
        projector_lag_seconds=projector.lag_seconds(),
        components=await request.app[HEALTH].components(),
        services=services,
    )


async def index(_request: web.Request) -> web.FileResponse:
    """The status page."""
    return web.FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)


def setup(app: web.Application) -> None:
    """Register the page and its assets."""
    app.router.add_get("/", index)
    app.router.add_static("/static", STATIC, show_index=False, append_version=False)
