"""The WebSocket probe against real loopback servers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from uptime_daemon.config.model import WebSocketService
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.websocket import probe_websocket
from uptime_daemon.results import FailureReason, Phase

ServerFactory = Callable[..., Awaitable[TestServer]]


def ws(url: str, **options: Any) -> WebSocketService:
    return WebSocketService.model_validate({"kind": "websocket", "url": url, **options})


@pytest.fixture
async def target(aiohttp_server: ServerFactory) -> TestServer:
    """Echo, a feed that talks first, one that hangs up mid-script, and a plain HTTP page."""

    async def echo(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(protocols=("v1.echo",))
        await socket.prepare(request)
        async for message in socket:
            if message.type is WSMsgType.TEXT:
                await socket.send_str(message.data)
        return socket

    async def chatty(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_json({"type": "hello"})
        await socket.send_json({"type": "noise"})
        async for message in socket:
            if message.data == "ping":
                await socket.send_str("pong")
        return socket

    async def rude(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.receive()
        await socket.close(code=1011, message=b"internal error")
        return socket

    async def page(_: web.Request) -> web.Response:
        return web.Response(status=403, text="no sockets here")

    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/chatty", chatty)
    app.router.add_get("/rude", rude)
    app.router.add_get("/page", page)
    return await aiohttp_server(app)


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path)).replace("http://", "ws://")


@pytest.mark.parametrize(
    ("path", "options", "ok", "reason", "detail"),
    [
        pytest.param("/echo", {}, True, None, "closed 1000", id="connect-and-close"),
        pytest.param(
            "/echo",
            {"script": [{"send": "hi"}, {"expect": "hi"}]},
            True,
            None,
            "2 steps",
            id="script-ok",
        ),
        pytest.param(
            "/echo",
            {"script": [{"send_json": {"op": "ping"}}, {"expect_json": {"op": "ping"}}]},
            True,
            None,
            "2 steps",
            id="json-script-ok",
        ),
        pytest.param(
            "/echo",
            {"script": [{"send": "hi"}, {"expect": "bye"}]},
            False,
            FailureReason.ASSERTION,
            "step 1: expected 'bye', got 'hi'",
            id="wrong-reply",
        ),
        pytest.param(
            "/rude",
            {"script": [{"send": "hi"}, {"expect": "hi"}]},
            False,
            FailureReason.CLOSED,
            "code 1011",
            id="closed-mid-script",
        ),
        pytest.param("/page", {}, False, FailureReason.HANDSHAKE, "403", id="handshake-refused"),
        pytest.param(
            "/echo",
            {"subprotocols": ["v2.other"], "require_subprotocol": "v2.other"},
            False,
            FailureReason.HANDSHAKE,
            "subprotocol",
            id="wrong-subprotocol",
        ),
        pytest.param(
            "/echo",
            {"subprotocols": ["v1.echo"], "require_subprotocol": "v1.echo"},
            True,
            None,
            "101",
            id="subprotocol",
        ),
        pytest.param(
            "/chatty",
            {"script": [{"send": "ping"}, {"expect": "pong"}]},
            False,
            FailureReason.ASSERTION,
            "step 1",
            id="unsolicited-message-fails-strict-expect",
        ),
        pytest.param(
            "/chatty",
            {"script": [{"send": "ping"}, {"expect": "pong", "skip_unmatched": True}]},
            True,
            None,
            "2 steps",
            id="skip-unsolicited",
        ),
    ],
)
async def test_websocket_outcomes(
    target: TestServer,
    ctx: ProbeContext,
    path: str,
    options: dict[str, Any],
    ok: bool,
    reason: FailureReason | None,
    detail: str,
) -> None:
    """Each behaviour maps to its result, reason and detail."""
    result = await probe_websocket(ws(url(target, path), **options), ctx)
    assert (result.ok, result.failure) == (ok, reason), result.detail
    assert detail in result.detail


async def test_clean_close_and_timings(target: TestServer, ctx: ProbeContext) -> None:
    """A good probe closes with 1000 and records handshake and script times."""
    result = await probe_websocket(
        ws(url(target, "/echo"), script=[{"send": "x"}, {"expect": "x"}]), ctx
    )
    assert result.close_code == 1000
    assert {Phase.HANDSHAKE, Phase.SCRIPT} <= set(result.phases)


async def test_closed_code_recorded_on_failure(target: TestServer, ctx: ProbeContext) -> None:
    """The peer's close code is kept when it hangs up mid-script."""
    result = await probe_websocket(
        ws(url(target, "/rude"), script=[{"send": "x"}, {"expect": "x"}]), ctx
    )
    assert result.close_code == 1011
