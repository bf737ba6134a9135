"""The HTTP probe against real loopback servers."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import trustme
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer
from cryptography import x509

from uptime_daemon.config.model import HttpService
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.http import make_client_session, probe_http
from uptime_daemon.results import FailureReason, Phase
from uptime_daemon.runner import probe_with_deadline

ServerFactory = Callable[..., Awaitable[TestServer]]


def http(url: str, **options: Any) -> HttpService:
    return HttpService.model_validate({"kind": "http", "url": url, **options})


@pytest.fixture
async def target(aiohttp_server: ServerFactory) -> TestServer:
    """A server with one route per behaviour under test."""
    seen: dict[str, str] = {}

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "checks": [{"ok": True}]})

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=503, text="maintenance")

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(64):  # 4 MiB in 64 KiB chunks; the probe must stop early
            await response.write(b"x" * 65536)
        return response

    async def auth(request: web.Request) -> web.Response:
        seen["authorization"] = request.headers.get("Authorization", "")
        return web.Response(text="hello")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(location=str(request.url))

    async def hop(_: web.Request) -> web.Response:
        raise web.HTTPFound(location="/ok")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/broken", broken)
    app.router.add_get("/slow", slow)
    app.router.add_get("/big", big)
    app.router.add_get("/auth", auth)
    app.router.add_get("/loop", loop)
    app.router.add_get("/hop", hop)
    server = await aiohttp_server(app)
    server.seen = seen  # type: ignore[attr-defined]
    return server


@pytest.mark.parametrize(
    ("path", "options", "ok", "reason", "detail"),
    [
        pytest.param("/ok", {}, True, None, "200 OK", id="up"),
        pytest.param(
            "/broken",
            {},
            False,
            FailureReason.HTTP_STATUS,
            "503 Service Unavailable",
            id="wrong-status",
        ),
        pytest.param(
            "/broken", {"accepted_status": ["500-599"]}, True, None, "503", id="accepted-range"
        ),
        pytest.param(
            "/ok",
            {"body_contains": "maintenance"},
            False,
            FailureReason.ASSERTION,
            "does not contain",
            id="keyword",
        ),
        pytest.param(
            "/ok",
            {"json_assertions": [{"path": "checks.0.ok", "equals": False}]},
            False,
            FailureReason.ASSERTION,
            "checks.0.ok: expected False, got True",
            id="json-path",
        ),
        pytest.param(
            "/ok",
            {"json_assertions": [{"path": "status", "equals": "ok"}]},
            True,
            None,
            "200",
            id="json-path-ok",
        ),
        pytest.param(
            "/big",
            {"max_body_bytes": 100_000},
            False,
            FailureReason.BODY_TOO_LARGE,
            "100000",
            id="body-cap",
        ),
        pytest.param(
            "/loop",
            {"max_redirects": 3},
            False,
            FailureReason.HTTP_STATUS,
            "TooManyRedirects",
            id="redirect-loop",
        ),
        pytest.param("/hop", {}, True, None, "200", id="redirect-followed"),
        pytest.param(
            "/hop",
            {"follow_redirects": False},
            False,
            FailureReason.HTTP_STATUS,
            "302",
            id="redirect-not-followed",
        ),
        pytest.param("/missing", {}, False, FailureReason.HTTP_STATUS, "404", id="not-found"),
    ],
)
async def test_http_outcomes(
    target: TestServer,
    ctx: ProbeContext,
    path: str,
    options: dict[str, Any],
    ok: bool,
    reason: FailureReason | None,
    detail: str,
) -> None:
    """Each target behaviour maps to its result and reason."""
    result = await probe_http(http(str(target.make_url(path)), **options), ctx)
    assert result.ok is ok
    assert result.failure is reason
    assert detail in result.detail
    assert result.duration_seconds > 0


async def test_phases_and_status_are_recorded(target: TestServer, ctx: ProbeContext) -> None:
    """A good probe records its HTTP status and connect, first-byte and body timings."""
    result = await probe_http(http(str(target.make_url("/ok"))), ctx)
    assert result.http_status == 200
    assert {Phase.CONNECT, Phase.FIRST_BYTE, Phase.BODY} <= set(result.phases)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({"bearer_token": "tok-123"}, "Bearer tok-123", id="bearer"),
        pytest.param({"basic_auth": {"username": "u", "password": "p"}}, "Basic dTpw", id="basic"),
    ],
)
async def test_credentials_are_sent_but_never_echoed(
    target: TestServer, ctx: ProbeContext, options: dict[str, Any], expected: str
) -> None:
    """The server sees the credentials; the result's detail does not contain them."""
    result = await probe_http(http(str(target.make_url("/auth")), **options), ctx)
    assert result.ok
    assert target.seen["authorization"] == expected  # type: ignore[attr-defined]
    assert "tok-123" not in result.detail
    assert "dTpw" not in result.detail


async def test_slow_target_times_out_under_the_callers_deadline(
    target: TestServer, ctx: ProbeContext
) -> None:
    """The caller's deadline turns a slow answer into a timeout result, promptly."""
    service = http(str(target.make_url("/slow")), interval_seconds=1, timeout_seconds=0.2)
    result = await probe_with_deadline(probe_http, service, ctx, ctx.clock)
    assert result.failure is FailureReason.TIMEOUT
    assert 0.2 <= result.duration_seconds < 2


async def test_connection_refused(ctx: ProbeContext) -> None:
    """A port nobody listens on is connection_refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await probe_http(http(f"http://127.0.0.1:{port}/"), ctx)
    assert result.failure is FailureReason.CONNECTION_REFUSED


class _NoSuchHost(AbstractResolver):
    """A resolver that answers NXDOMAIN, as a real one does for an unknown name (stays on loopback)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise OSError(socket.EAI_NONAME, f"Name or service not known: {host}")

    async def close(self) -> None:
        return None


async def test_dns_failure(ctx: ProbeContext) -> None:
    """A name that does not resolve is dns."""
    async with make_client_session(resolver=_NoSuchHost()) as session:
        local = ProbeContext(
            session=session, clock=ctx.clock, store=ctx.store, self_base_url=ctx.self_base_url
        )
        result = await probe_http(http("http://no-such-host.invalid/"), local)
    assert result.failure is FailureReason.DNS


async def test_garbage_instead_of_http(ctx: ProbeContext) -> None:
    """A peer that answers with junk is a protocol failure, not a crash."""

    async def junk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"\x00\x01 certainly not HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(junk, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await probe_http(http(f"http://127.0.0.1:{port}/"), ctx)
    finally:
        server.close()
        await server.wait_closed()
    assert result.failure is FailureReason.PROTOCOL


async def _secure(_: web.Request) -> web.Response:
    return web.Response(text="secure")


@pytest.fixture
def tls_server_context() -> tuple[ssl.SSLContext, datetime]:
    """A server certificate for 127.0.0.1 signed by a throwaway CA, and when it expires."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    expires = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).not_valid_after_utc
    return context, expires


async def test_self_signed_tls_rejected_when_verifying(
    aiohttp_server: ServerFactory,
    ctx: ProbeContext,
    tls_server_context: tuple[ssl.SSLContext, datetime],
) -> None:
    """An untrusted certificate is a tls failure with verification on."""
    context, _ = tls_server_context
    app = web.Application()
    app.router.add_get("/", _secure)
    server = await aiohttp_server(app, ssl=context)
    result = await probe_http(http(f"https://127.0.0.1:{server.port}/"), ctx)
    assert result.failure is FailureReason.TLS


async def test_self_signed_tls_accepted_without_verification_records_expiry(
    aiohttp_server: ServerFactory,
    ctx: ProbeContext,
    tls_server_context: tuple[ssl.SSLContext, datetime],
) -> None:
    """With verification off the probe succeeds and records days to expiry."""
    context, expires = tls_server_context
    app = web.Application()
    app.router.add_get("/", _secure)
    server = await aiohttp_server(app, ssl=context)
    result = await probe_http(http(f"https://127.0.0.1:{server.port}/", verify_tls=False), ctx)
    assert result.ok, result.detail
    expected_days = (expires - datetime.now(UTC)).total_seconds() / 86_400
    assert result.tls_days_left == pytest.approx(expected_days, abs=0.01)


async def test_wrong_service_type_is_our_bug(ctx: ProbeContext) -> None:
    """Handing a probe the wrong kind of service raises: that is a programming error."""
    from uptime_daemon.config.model import DatabaseService  # noqa: PLC0415

    with pytest.raises(TypeError):
        await probe_http(DatabaseService(kind="database"), ctx)
