"""socket.io at ``/socket.io/``, namespace ``/ws/health``: the live feed for the seeds' front end.

The seeds' front end connects with ``io('http://host:port/ws/health')``: in socket.io the URL's path
names a *namespace*, and the transport stays at ``/socket.io/``. On connect a client gets the plain
feed's ``health_status`` (the same body, ``type`` included), again every
``live_health_interval_seconds``, and a ``service_status_change`` for every transition. There is no
``?from=`` resume: a client that reconnects gets the current ``health_status`` (``WS /ws/health``
is the loss-free feed).

* Access: engine.io's HTTP requests pass the app's middlewares like any other, so with
  ``protect_reads`` each needs ``Authorization: Bearer`` (socket.io-client's ``extraHeaders``), as
  ``/ws/health`` does. A token in socket.io's ``auth`` payload is not read: that payload arrives
  after the handshake the token must open.
* Origins: a browser's ``Origin`` must be the daemon's own or in ``server.allowed_origins`` (read
  at each request; ``"*"``: any), or the request is refused (400); a listed origin is echoed in
  ``Access-Control-Allow-Origin``, never with credentials (the feed needs no cookie).
* Errors: engine.io's own (plain-text) error answers leave as the daemon's JSON error body, with
  their status and CORS headers; a request for a session that is gone is a 404.
* A client more than ``LIVE_QUEUE_LIMIT`` messages behind is closed at the engine.io level, which
  socket.io clients answer by reconnecting; on shutdown every client is closed the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

import orjson
import structlog
from aiohttp import hdrs, web

from uptime_daemon.api.cors import is_own_origin
from uptime_daemon.api.endpoint import bad_request
from uptime_daemon.api.errors import json_error
from uptime_daemon.api.keys import PROJECTOR, SETTINGS
from uptime_daemon.api.live import (
    LIVE_HEALTH_INTERVAL,
    LIVE_QUEUE_LIMIT,
    MAX_CLIENT_MESSAGE_BYTES,
    change_message,
    health_message,
)
from uptime_daemon.projector.runner import StatusChange

if TYPE_CHECKING:
    import socketio

log = structlog.get_logger(__name__)

PATH: Final = "/socket.io/"
NAMESPACE: Final = "/ws/health"


@dataclass(frozen=True, slots=True)
class _Client:
    on_change: Callable[[StatusChange], None]
    sender: asyncio.Task[None]


class SocketIOFeed:
    """The socket.io server on the app, and one sender per connected client."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._clients: dict[str, _Client] = {}
        self._server: socketio.AsyncServer | None = None

    @property
    def server(self) -> socketio.AsyncServer:
        """The socket.io server, made at the first request to the feed.

        ``socketio`` loads its clients, managers and their libraries (requests, redis, websocket
        clients: about 10 MiB of modules) whether used or not; a daemon nobody asks for the
        socket.io feed never loads them.
        """
        if self._server is None:
            import socketio  # noqa: PLC0415 - see above

            server = socketio.AsyncServer(
                async_mode="aiohttp",
                namespaces=[NAMESPACE],
                always_connect=True,  # the CONNECT ack goes out before the first health_status
                cors_allowed_origins=self._origin_allowed,
                cors_credentials=False,
                max_http_buffer_size=MAX_CLIENT_MESSAGE_BYTES,
            )
            server.on("connect", self._connect, namespace=NAMESPACE)
            server.on("disconnect", self._disconnect, namespace=NAMESPACE)
            self._server = server
        return self._server

    def _origin_allowed(self, origin: str | None, environ: Mapping[str, Any]) -> bool:
        allowed = self._app[SETTINGS].current.server.allowed_origins
        if origin is None or "*" in allowed or origin in allowed:
            return True
        request: web.Request = environ["aiohttp.request"]
        return is_own_origin(origin, request)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every engine.io request; its plain-text errors become the daemon's JSON ones."""
        if request.query.get("transport") == "":  # engine.io would take it for the default
            raise bad_request("transport", "transport is polling or websocket")
        sid = request.query.get("sid")
        if sid is not None and sid not in self.server.eio.sockets:
            return json_error(
                404, "not_found", "no such engine.io session (closed, or never opened)"
            )
        response: web.StreamResponse = await self.server.handle_request(request)
        if (
            not isinstance(response, web.Response)
            or response.status < HTTPStatus.BAD_REQUEST
            or response.content_type == "application/json"
        ):
            return response
        text = response.text or ""
        try:
            message = orjson.loads(text)  # engine.io sends its message as a JSON string
        except orjson.JSONDecodeError:
            message = text
        status = HTTPStatus(response.status)
        error = json_error(status, status.phrase.lower().replace(" ", "_"), str(message))
        for name, value in response.headers.items():
            if name.lower().startswith("access-control-"):
                error.headers[name] = value
        return error

    async def _connect(self, sid: str, _environ: Mapping[str, Any], _auth: object) -> None:
        eio_sid: str = self.server.manager.eio_sid_from_sid(sid, NAMESPACE)
        queue: asyncio.Queue[StatusChange] = asyncio.Queue(maxsize=LIVE_QUEUE_LIMIT)
        overflowed = asyncio.Event()

        def on_change(change: StatusChange) -> None:
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:
                overflowed.set()

        self._app[PROJECTOR].add_listener(on_change)
        sender = asyncio.create_task(self._send_loop(sid, eio_sid, queue, overflowed))
        self._clients[sid] = _Client(on_change, sender)

    async def _disconnect(self, sid: str, _reason: str) -> None:
        client = self._clients.pop(sid, None)
        if client is None:
            return
        self._app[PROJECTOR].remove_listener(client.on_change)
        if client.sender is not asyncio.current_task():  # else the sender is closing its client
            client.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client.sender

    def _behind(self, eio_sid: str) -> int:
        """Packets the transport holds for the client: emit only queues them, never waits."""
        socket = self.server.eio.sockets.get(eio_sid)
        return 0 if socket is None else int(socket.queue.qsize())

    async def _send_loop(
        self,
        sid: str,
        eio_sid: str,
        queue: asyncio.Queue[StatusChange],
        overflowed: asyncio.Event,
    ) -> None:
        loop = asyncio.get_running_loop()
        interval = self._app[LIVE_HEALTH_INTERVAL]
        try:
            await self._emit(sid, "health_status", await health_message(self._app))
            next_health = loop.time() + interval
            while not overflowed.is_set() and self._behind(eio_sid) <= LIVE_QUEUE_LIMIT:
                try:
                    change = await asyncio.wait_for(
                        queue.get(), timeout=max(0.0, next_health - loop.time())
                    )
                except TimeoutError:
                    await self._emit(sid, "health_status", await health_message(self._app))
                    next_health = loop.time() + interval
                    continue
                await self._emit(sid, "service_status_change", change_message(change))
            log.info("socketio_client_too_slow", sid=sid, limit=LIVE_QUEUE_LIMIT)
        except Exception:  # a feed that stopped must not look connected: the client reconnects
            log.exception("socketio_feed_failed", sid=sid)
        await self._close_transport(eio_sid)

    async def _emit(self, sid: str, event: str, message: dict[str, Any]) -> None:
        await self.server.emit(event, message, to=sid, namespace=NAMESPACE)

    async def _close_transport(self, eio_sid: str) -> None:
        """Close the client's engine.io session after what is queued for it; the client reconnects.

        Not socket.io's ``disconnect``: a client told to leave its namespace does not come back.
        Nor waiting for the queue to drain, which a stuck client never does.
        """
        socket = self.server.eio.sockets.get(eio_sid)
        if socket is not None:
            await socket.close(wait=False)  # queues the close packet, which ends a long poll
            # socket.io-client ignores that packet on a WebSocket and waits for the socket to
            # close, which engine.io's writer does only once it dequeues this (its own sentinel).
            socket.queue.put_nowait(None)

    async def close(self, _app: web.Application) -> None:
        """On shutdown: close every client's transport (clients reconnect later), then engine.io."""
        if self._server is None:
            return  # never asked for
        for eio_sid in list(self.server.eio.sockets):
            await self._close_transport(eio_sid)
        await self.server.shutdown()


SOCKETIO_FEED = web.AppKey("socketio_feed", SocketIOFeed)


def setup(app: web.Application) -> None:
    """Serve the feed on ``app`` (after ``live.setup``: it shares that feed's interval)."""
    feed = SocketIOFeed(app)
    app[SOCKETIO_FEED] = feed
    for method in (hdrs.METH_GET, hdrs.METH_POST, hdrs.METH_OPTIONS):
        app.router.add_route(method, PATH, feed.handle)
    app.on_shutdown.append(feed.close)
