"""The WebSocket probe against real loopback servers."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trustme
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer
from cryptography import x509

from tests.probes.fakes import FakeStore, ManualClock
from uptime_daemon.config.model import WebSocketService
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.websocket import probe_websocket
from uptime_daemon.results import FailureReason, Phase

ServerFactory = Callable[..., Awaitable[TestServer]]


def ws(url: str, **options: Any) -> WebSocketService:
    return WebSocketService.model_validate({"kind": "websocket", "url": url, **options})


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
            await socket.send_json({"type": "pong", "ok": True, "n": 1})
    return socket


async def rude(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    await socket.receive()
    await socket.close(code=1011, message=b"internal error")
    return socket


async def big(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    await socket.receive()
    await socket.send_str("x" * 10_000)
    await socket.receive()
    return socket


def _app(stalled: asyncio.Event) -> web.Application:
    async def mute(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.receive()
        stalled.set()
        await socket.receive()  # never replies; returns when the client goes away
        return socket

    async def forbidden(_: web.Request) -> web.Response:
        return web.Response(status=403, text="no sockets here")

    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/chatty", chatty)
    app.router.add_get("/rude", rude)
    app.router.add_get("/big", big)
    app.router.add_get("/mute", mute)
    app.router.add_get("/forbidden", forbidden)
    return app


@pytest.fixture
def stalled() -> asyncio.Event:
    """Set when the mute endpoint has read the probe's message and will never answer."""
    return asyncio.Event()


@pytest.fixture
async def target(aiohttp_server: ServerFactory, stalled: asyncio.Event) -> TestServer:
    """Echo, a feed that talks first, one that hangs up mid-script, one that never answers, a page."""
    return await aiohttp_server(_app(stalled))


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path)).replace("http://", "ws://")


@pytest.mark.parametrize(
    ("path", "options", "reason", "detail", "close_code"),
    [
        pytest.param(
            "/echo", {}, None, "101 Switching Protocols, 0 steps, closed 1000", 1000, id="connect"
        ),
        pytest.param(
            "/echo",
            {"script": [{"send": "hi"}, {"expect": "hi"}, {"send": "yo"}, {"expect": "yo"}]},
            None,
            "4 steps, closed 1000",
            1000,
            id="script-ok",
        ),
        pytest.param(
            "/echo",
            {"script": [{"send_json": {"op": "ping"}}, {"expect_json": {"op": "ping"}}]},
            None,
            "2 steps, closed 1000",
            1000,
            id="json-script-ok",
        ),
        pytest.param(
            "/echo",
            {"script": [{"send": "hi there"}, {"expect_contains": "there"}]},
            None,
            "2 steps",
            1000,
            id="contains-ok",
        ),
        pytest.param(
            "/echo",
            {"script": [{"send": "hi"}, {"expect": "bye"}]},
            FailureReason.ASSERTION,
            "step 1: expected 'bye', got 'hi'",
            None,
            id="wrong-reply",
        ),
        pytest.param(
            "/echo",
            {"script": [{"send": "hi"}, {"expect_json": {"op": "ping"}}]},
            FailureReason.ASSERTION,
            "step 1: expected JSON, got 'hi'",
            None,
            id="text-where-json-expected",
        ),
        pytest.param(
            "/rude",
            {"script": [{"send": "hi"}, {"expect": "hi"}]},
            FailureReason.CLOSED,
            "step 1: closed by peer with code 1011",
            1011,
            id="closed-mid-script",
        ),
        pytest.param(
            "/forbidden",
            {},
            FailureReason.HANDSHAKE,
            "upgrade refused: 403",
            None,
            id="handshake-refused-403",
        ),
        pytest.param(
            "/missing",
            {},
            FailureReason.HANDSHAKE,
            "upgrade refused: 404",
            None,
            id="handshake-refused-404",
        ),
        pytest.param(
            "/echo",
            {"subprotocols": ["v2.other"], "require_subprotocol": "v2.other"},
            FailureReason.HANDSHAKE,
            "server chose subprotocol none, not 'v2.other'",
            None,
            id="wrong-subprotocol",
        ),
        pytest.param(
            "/echo",
            {"require_subprotocol": "v1.echo"},
            None,
            "101",
            1000,
            id="required-subprotocol-is-offered",
        ),
        pytest.param(
            "/chatty",
            {"script": [{"send": "ping"}, {"expect_json": {"type": "pong"}}]},
            FailureReason.ASSERTION,
            "step 1: type: expected 'pong', got 'hello'",
            None,
            id="unsolicited-message-fails-strict-expect",
        ),
        pytest.param(
            "/chatty",
            {
                "script": [
                    {"send": "ping"},
                    {"expect_json": {"type": "pong", "ok": True}, "skip_unmatched": True},
                ]
            },
            None,
            "2 steps",
            1000,
            id="skip-unsolicited",
        ),
        pytest.param(
            "/echo",
            {"script": [{"send_json": {"n": 1}}, {"expect_json": {"n": True}}]},
            FailureReason.ASSERTION,
            "step 1: n: expected True, got 1",
            None,
            id="json-1-is-not-true",
        ),
        pytest.param(
            "/big",
            {"max_message_bytes": 1000, "script": [{"send": "go"}, {"expect_contains": "x"}]},
            FailureReason.BODY_TOO_LARGE,
            "step 1: WebSocketError",
            1009,
            id="message-too-big",
        ),
    ],
)
async def test_websocket_outcomes(
    target: TestServer,
    ctx: ProbeContext,
    path: str,
    options: dict[str, Any],
    reason: FailureReason | None,
    detail: str,
    close_code: int | None,
) -> None:
    """Each behaviour maps to its result, reason, detail and close code."""
    result = await probe_websocket(ws(url(target, path), **options), ctx)
    assert (result.ok, result.failure) == (reason is None, reason), result.detail
    assert detail in result.detail
    assert result.close_code == close_code


async def test_good_script_records_its_phases(target: TestServer, ctx: ProbeContext) -> None:
    """A good probe records the upgrade and the script round trip, and the 101 status."""
    result = await probe_websocket(
        ws(url(target, "/echo"), script=[{"send": "x"}, {"expect": "x"}]), ctx
    )
    assert result.ok, result.detail
    assert {Phase.HANDSHAKE, Phase.SCRIPT} <= set(result.phases)
    assert Phase.TLS not in result.phases
    assert result.http_status == 101


async def test_stalled_script_is_cut_by_the_callers_deadline(
    target: TestServer, ctx: ProbeContext, stalled: asyncio.Event
) -> None:
    """A peer that never answers is ended by the caller's asyncio.timeout, which the probe lets through."""
    service = ws(url(target, "/mute"), script=[{"send": "hi"}, {"expect": "hi"}])
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await probe_websocket(service, ctx)
    assert stalled.is_set()


async def test_relative_url_targets_this_daemons_websocket(
    target: TestServer, ctx: ProbeContext
) -> None:
    """A URL starting with / becomes ws:// on the daemon's own server."""
    own = ProbeContext(
        session=ctx.session,
        clock=ctx.clock,
        store=ctx.store,
        self_base_url=str(target.make_url("")),
    )
    result = await probe_websocket(ws("/echo", script=[{"send": "a"}, {"expect": "a"}]), own)
    assert result.ok, result.detail


async def test_connection_refused(ctx: ProbeContext) -> None:
    """Nobody listening is connection_refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await probe_websocket(ws(f"ws://127.0.0.1:{port}/"), ctx)
    assert result.failure is FailureReason.CONNECTION_REFUSED


StartServer = Callable[..., Awaitable[int]]


@pytest.fixture
async def mid_handshake() -> AsyncIterator[StartServer]:
    """Loopback TCP servers that read the upgrade request, send ``answer`` (maybe nothing), hang up.

    With ``reset`` the hang-up is a TCP reset instead of an orderly close.
    """
    servers: list[asyncio.Server] = []

    async def start(answer: bytes, *, reset: bool = False) -> int:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")  # the whole upgrade request
            writer.write(answer)
            await writer.drain()
            if reset:  # SO_LINGER 0: close() sends RST
                linger = struct.pack("ii", 1, 0)
                writer.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, linger
                )
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("answer", "reset", "detail"),
    [
        pytest.param(
            b"",
            False,
            "upgrade failed: the server closed the connection before answering",
            id="closes-after-reading-the-request",
        ),
        pytest.param(
            b"HTTP/1.1 101 Swi",
            False,
            "upgrade failed: the server closed the connection in the middle of its answer",
            id="half-a-status-line",
        ),
        pytest.param(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n",
            False,
            "upgrade failed: the server closed the connection in the middle of its answer",
            id="headers-cut-short",
        ),
        pytest.param(
            b"", True, "upgrade failed: Connection reset by peer", id="reset-after-the-request"
        ),
    ],
)
async def test_a_target_that_hangs_up_mid_handshake_is_a_handshake_failure(
    mid_handshake: StartServer, ctx: ProbeContext, answer: bytes, reset: bool, detail: str
) -> None:
    """The TCP connection worked and the upgrade did not: ``handshake``, said in words, not a repr."""
    port = await mid_handshake(answer, reset=reset)
    result = await probe_websocket(ws(f"ws://127.0.0.1:{port}/live"), ctx)
    assert result.failure is FailureReason.HANDSHAKE, result.detail
    assert result.detail == detail
    assert result.http_status is None


@pytest.mark.parametrize(
    ("verify", "reason"),
    [
        pytest.param(True, FailureReason.TLS, id="verified-rejects"),
        pytest.param(False, None, id="unverified-accepts"),
    ],
)
async def test_wss_with_an_untrusted_certificate(
    aiohttp_server: ServerFactory,
    ctx: ProbeContext,
    stalled: asyncio.Event,
    verify: bool,
    reason: FailureReason | None,
) -> None:
    """A wss target is verified like https; days to expiry are recorded either way, the TLS time when it succeeds."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    expires = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).not_valid_after_utc
    server = await aiohttp_server(_app(stalled), ssl=context)
    clock = ManualClock()
    local = ProbeContext(
        session=ctx.session, clock=clock, store=FakeStore(), self_base_url=ctx.self_base_url
    )
    service = ws(f"wss://127.0.0.1:{server.port}/echo", verify_tls=verify)
    result = await probe_websocket(service, local)
    assert result.failure is reason, result.detail
    assert result.tls_days_left == (expires - clock.now()).total_seconds() / 86_400
    if reason is None:
        assert result.phases[Phase.TLS] > 0
        assert result.close_code == 1000
