"""``/maintenance``: list, declare (also after the fact), end early, cancel.

Each change is an event on ``system-maintenance`` appended straight to the store (not through the
outage spool: an operator must know whether it was recorded), and the answer waits until the
projection has folded it, so the next ``/uptime/*`` read already shows its effect. Writes need an
operator token once any is configured (``server.auth.operator_tokens``).
"""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Final

from aiohttp import web

from uptime_daemon import maintenance
from uptime_daemon.api import models, views
from uptime_daemon.api.endpoint import Api, bad_request, json_error_exception, not_found
from uptime_daemon.api.keys import CLOCK, PROJECTOR, SETTINGS, STORE
from uptime_daemon.errors import EventStoreError
from uptime_daemon.maintenance import Window
from uptime_daemon.store import NewEvent

api = Api()

FOLD_WAIT_SECONDS: Final = 5.0
"""How long a write waits for the projection to fold its event before answering anyway."""


async def _record(request: web.Request, event: NewEvent) -> None:
    """Append ``event`` and wait for the projection to fold it; a 503 when the store refuses."""
    try:
        position = await request.app[STORE].append(maintenance.STREAM, [event])
    except EventStoreError as exc:
        message = f"the maintenance event was not recorded: {exc}"
        raise json_error_exception(
            web.HTTPServiceUnavailable, "store_unavailable", message
        ) from exc
    await request.app[PROJECTOR].folded(position, FOLD_WAIT_SECONDS)


def _window(request: web.Request) -> Window:
    window_id = request.match_info["id"]
    window = request.app[PROJECTOR].state.maintenance.windows.get(window_id)
    if window is None:
        raise not_found("unknown_window", f"no maintenance window {window_id!r}", "id")
    return window


def _view(request: web.Request, window_id: str) -> models.MaintenanceWindowView:
    window = request.app[PROJECTOR].state.maintenance.windows[window_id]
    return views.window_view(window, request.app[CLOCK].now())


@api.route(
    "GET",
    "/maintenance",
    response=models.MaintenanceList,
    tag="maintenance",
    summary="Maintenance windows",
)
async def listed(request: web.Request, _query: None) -> models.MaintenanceList:
    """Every window the log declares (config and API), newest declaration first."""
    now = request.app[CLOCK].now()
    windows = request.app[PROJECTOR].state.maintenance.listed()
    return models.MaintenanceList(windows=[views.window_view(w, now) for w in windows])


@api.route(
    "POST",
    "/maintenance",
    body=models.MaintenanceRequest,
    response=models.MaintenanceWindowView,
    status=201,
    tag="maintenance",
    summary="Declare a maintenance window (also one in the past)",
    errors=(503,),
)
async def declare(
    request: web.Request, body: models.MaintenanceRequest
) -> models.MaintenanceWindowView:
    """A one-off window for some services (or all).

    Its time is reported as ``maintenance`` and left out of every uptime ratio, also for a window
    already past: the figures are re-derived from the log. Notifications are suppressed while it
    lasts.
    """
    settings, state = request.app[SETTINGS].current, request.app[PROJECTOR].state
    for name in body.services:
        if name not in settings.services and name not in state.services:
            raise bad_request("services", f"no service named {name!r}")
    window = Window(
        id=f"mw-{uuid.uuid4().hex[:12]}",
        services=frozenset(body.services),
        start=body.start.astimezone(UTC),
        end=body.end.astimezone(UTC),
        cron=None,
        duration=None,
        timezone="UTC",
        reason=body.reason,
        source="api",
        declared_at=request.app[CLOCK].now(),
        declared_by=settings.instance,
    )
    await _record(request, maintenance.scheduled(window))
    if window.id not in request.app[PROJECTOR].state.maintenance.windows:
        return views.window_view(window, request.app[CLOCK].now())  # recorded, not yet folded
    return _view(request, window.id)


@api.route(
    "POST",
    "/maintenance/{id}/end",
    body=models.MaintenanceAction,
    response=models.MaintenanceWindowView,
    tag="maintenance",
    summary="End a maintenance window now",
    errors=(404, 409, 503),
)
async def end(request: web.Request, body: models.MaintenanceAction) -> models.MaintenanceWindowView:
    """The window stops now (a recurring one stops recurring); what passed stays maintenance."""
    window = _window(request)
    now = request.app[CLOCK].now()
    if window.cancelled:
        raise json_error_exception(web.HTTPConflict, "conflict", "the window was cancelled")
    stops = window.stops
    if stops is not None and stops <= now:
        return views.window_view(window, now)  # already over: nothing to record
    await _record(request, maintenance.ended(window.id, now, body.reason))
    return _view(request, window.id)


@api.route(
    "DELETE",
    "/maintenance/{id}",
    body=models.MaintenanceAction,
    response=models.MaintenanceWindowView,
    tag="maintenance",
    summary="Cancel a maintenance window (its time counts as observed again)",
    errors=(404, 503),
)
async def cancel(
    request: web.Request, body: models.MaintenanceAction
) -> models.MaintenanceWindowView:
    """The window never counts, also for what already passed; cancelling twice changes nothing."""
    window = _window(request)
    if not window.cancelled:
        await _record(request, maintenance.cancelled(window.id, body.reason))
    return _view(request, window.id)
