"""``WS /ws/health``: the live feed.

On connect: a ``health_status`` message (every service's current status and the daemon's
components), repeated every ``live_health_interval_seconds``; with ``?services=false`` it leaves
the per-service list out (the overall status, position and components stay). Then a ``service_status_change`` for
every stored transition (``changed: true``), each carrying its commit ``position``. A client that
reconnects with ``?from=POSITION`` first receives every transition after that position from the
store, in order, then the ``health_status``, then the live ones — with no gap and no duplicate
across the hand-over (live messages are buffered while the backlog is read, and deduplicated by
position). The backlog comes before the snapshot so that a client applying messages in the order
they arrive never sees a service step back to an older status; the snapshot waits (at most
``SNAPSHOT_FOLD_WAIT_SECONDS``) until the projection has folded the backlog's last event, so it is
never older than the backlog just sent.

A client that cannot keep up is disconnected with close code 1013 rather than buffered without
bound; it reconnects with ``?from=`` and loses nothing. ``ping`` (text) is answered with ``pong``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import orjson
import structlog
from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import ValidationError

from uptime_daemon import events
from uptime_daemon.api import models, views
from uptime_daemon.api.endpoint import bad_request
from uptime_daemon.api.keys import CLOCK, HEALTH, PROJECTOR, SETTINGS, STORE
from uptime_daemon.clock import to_iso_millis
from uptime_daemon.projector.runner import StatusChange
from uptime_daemon.store import UPTIME_STREAM_PREFIX

log = structlog.get_logger(__name__)

MAX_CLIENT_MESSAGE_BYTES: Final = 4096
LIVE_QUEUE_LIMIT: Final = 1000
BACKLOG_PAGE: Final = 500
SNAPSHOT_FOLD_WAIT_SECONDS: Final = 5.0
"""How long the snapshot after a backlog waits for the projection to catch up with it."""
LIVE_HEALTH_INTERVAL = web.AppKey("live_health_interval", float)
LIVE_SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("live_sockets")


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def change_message(change: StatusChange) -> dict[str, Any]:
    """A ``service_status_change`` message (this feed's and the socket.io feed's)."""
    return {
        "type": "service_status_change",
        "position": change.position,
        "service": change.service,
        "status": change.status,
        "previousStatus": change.previous_status,
        "timestamp": to_iso_millis(change.at),
        "event": change.payload,
    }


async def health_message(app: web.Application, *, with_services: bool = True) -> dict[str, Any]:
    """A ``health_status`` message: every service and component now (both feeds send it).

    ``with_services=False`` leaves the per-service list out (``?services=false``): at 10,000
    services it is about 1.8 MB every interval, for a client that follows the changes anyway.
    """
    settings, projector = app[SETTINGS].current, app[PROJECTOR]
    now = app[CLOCK].now()
    briefs = [
        views.brief(settings, projector.state, name, now)
        for name in views.service_names(settings, projector.state)
    ]
    components = [c.model_dump(mode="json", by_alias=True) for c in await app[HEALTH].components()]
    message: dict[str, Any] = {
        "type": "health_status",
        "timestamp": to_iso_millis(now),
        "position": projector.position,
        "status": views.overall([b.status for b in briefs if b.configured]),
    }
    if with_services:
        message["services"] = [b.model_dump(mode="json", by_alias=True) for b in briefs]
    message["components"] = components
    return message


async def ws_health(request: web.Request) -> web.WebSocketResponse:
    """The live feed (see the module docstring)."""
    try:
        query = models.LiveQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise bad_request(str(first["loc"][0]) if first["loc"] else None, first["msg"]) from None
    app = request.app
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_CLIENT_MESSAGE_BYTES)
    await ws.prepare(request)
    queue: asyncio.Queue[StatusChange] = asyncio.Queue(maxsize=LIVE_QUEUE_LIMIT)
    overflowed = asyncio.Event()

    def on_change(change: StatusChange) -> None:
        try:
            queue.put_nowait(change)
        except asyncio.QueueFull:
            overflowed.set()

    projector = app[PROJECTOR]
    projector.add_listener(on_change)  # before the backlog read: nothing falls between the two
    app[LIVE_SOCKETS].add(ws)
    sender = asyncio.create_task(
        _send_loop(app, ws, queue, overflowed, query.from_, with_services=query.services)
    )
    try:
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                if message.data == "ping":
                    await ws.send_str("pong")
                else:
                    await ws.send_str(
                        _dumps({"type": "error", "message": "unsupported message; send ping"})
                    )
            elif message.type is WSMsgType.ERROR:
                log.info("ws_client_error", error=str(ws.exception()))
    finally:
        projector.remove_listener(on_change)
        app[LIVE_SOCKETS].discard(ws)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return ws


async def _send_loop(
    app: web.Application,
    ws: web.WebSocketResponse,
    queue: asyncio.Queue[StatusChange],
    overflowed: asyncio.Event,
    after: int | None,
    *,
    with_services: bool,
) -> None:
    try:
        last_sent = after
        if after is not None:
            last_sent = await _send_backlog(app, ws, after)
            if last_sent > after:  # the snapshot must not be older than what was just sent
                await app[PROJECTOR].folded(last_sent, SNAPSHOT_FOLD_WAIT_SECONDS)
        await ws.send_str(_dumps(await health_message(app, with_services=with_services)))
        interval = app[LIVE_HEALTH_INTERVAL]
        next_health = asyncio.get_running_loop().time() + interval
        while not ws.closed:
            if overflowed.is_set():
                await ws.close(
                    code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow; reconnect with ?from="
                )
                return
            timeout = max(0.0, next_health - asyncio.get_running_loop().time())
            try:
                change = await asyncio.wait_for(queue.get(), timeout=timeout)
            except TimeoutError:
                await ws.send_str(_dumps(await health_message(app, with_services=with_services)))
                next_health = asyncio.get_running_loop().time() + interval
                continue
            if last_sent is not None and change.position <= last_sent:
                continue  # already sent from the backlog
            await ws.send_str(_dumps(change_message(change)))
            last_sent = change.position
    except ConnectionResetError:
        return


async def _send_backlog(app: web.Application, ws: web.WebSocketResponse, after: int) -> int:
    """Send stored transitions after ``after``; return the last position read.

    Only single-location services' transitions can be read off single events.
    """
    store = app[STORE]
    cursor = after
    while True:
        page = await store.read_all(
            after=cursor, stream_prefix=UPTIME_STREAM_PREFIX, limit=BACKLOG_PAGE
        )
        for event in page:
            cursor = event.position
            if event.type != events.EVENT_TYPE_STATUS_CHANGED:
                continue
            try:
                decoded = events.decode_status_changed(event.data)
            except events.EventDecodeError:
                continue  # the projector logs and counts it; a live client just never sees it
            # One location's transition is the service's only when it is the service's only
            # location; a quorum's missed transitions are not replayed: the snapshot that follows
            # the backlog carries its current verdict.
            if decoded.changed and len(decoded.quorum_of) == 1:
                await ws.send_str(_dumps(change_message(StatusChange.of(event.position, decoded))))
        if len(page) < BACKLOG_PAGE:
            return cursor


async def close_live_sockets(app: web.Application) -> None:
    """On shutdown: tell live clients we are going away, so they reconnect later."""
    sockets = app[LIVE_SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def setup(app: web.Application, *, health_interval_seconds: float) -> None:
    """Register the feed."""
    app[LIVE_HEALTH_INTERVAL] = health_interval_seconds
    sockets: set[web.WebSocketResponse] = set()
    app[LIVE_SOCKETS] = sockets
    app.router.add_get("/ws/health", ws_health)
    app.on_shutdown.append(close_live_sockets)
