"""The HTTP probe against real loopback servers, every test on both clients (aiohttp's and the lean one).

The ``session`` fixture here overrides the package's: it is made for the client under test, so each
test below runs once per client and must hold on both (the lean client's own cases are in
``test_http_lean.py``).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509

from tests.probes.fakes import FakeStore, LoopbackResolver, ManualClock
from uptime_daemon.config.model import HttpService
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.http import probe_http
from uptime_daemon.probes.session import HttpClient, ProbeConnector, make_client_session
from uptime_daemon.results import FailureReason, Phase

ServerFactory = Callable[..., Awaitable[TestServer]]
CHUNK = b"x" * 65536
GIB = 1 << 30


def http(url: str, **options: Any) -> HttpService:
    return HttpService.model_validate({"kind": "http", "url": url, **options})


@pytest.fixture(params=[HttpClient.AIOHTTP, HttpClient.LEAN], ids=["aiohttp", "lean"])
def client(request: pytest.FixtureRequest) -> HttpClient:
    """The HTTP client under test."""
    return HttpClient(request.param)


@pytest.fixture
async def session(
    resolver: LoopbackResolver, client: HttpClient
) -> AsyncIterator[aiohttp.ClientSession]:
    """The production probe session, running HTTP checks on ``client``."""
    async with make_client_session(resolver=resolver, http_client=client) as made:
        yield made


@dataclass
class Seen:
    """What the target observed, for assertions on the server side."""

    requests: list[dict[str, str]] = field(default_factory=list)
    peers: list[int] = field(default_factory=list)
    slow_hit: asyncio.Event = field(default_factory=asyncio.Event)
    stream_done: asyncio.Event = field(default_factory=asyncio.Event)
    streamed_bytes: int = 0


@dataclass
class Target:
    server: TestServer
    seen: Seen

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


async def _away(request: web.Request) -> web.Response:
    # Another origin (localhost, not 127.0.0.1): credentials must not follow the request there.
    raise web.HTTPFound(location=f"http://localhost:{request.url.port}/echo")


async def _see_other(_: web.Request) -> web.Response:
    raise web.HTTPSeeOther(location="/echo")


@pytest.fixture
async def target(aiohttp_server: ServerFactory) -> Target:
    """A server with one route per behaviour under test."""
    seen = Seen()

    async def ok(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.peers.append(int(peer[1]) if peer else -1)
        return web.json_response({"status": "ok", "checks": [{"ok": True}]})

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=503, text="maintenance")

    async def slow(_: web.Request) -> web.Response:
        seen.slow_hit.set()
        await asyncio.Event().wait()  # never answers; the client's deadline ends it
        raise AssertionError

    async def stream(request: web.Request) -> web.StreamResponse:
        declared = {"Content-Length": str(GIB)} if "declared" in request.query else {}
        response = web.StreamResponse(headers=declared)
        await response.prepare(request)
        try:
            while seen.streamed_bytes < GIB:
                await response.write(CHUNK)
                seen.streamed_bytes += len(CHUNK)
        finally:
            seen.stream_done.set()
        return response

    async def head(_: web.Request) -> web.Response:
        return web.Response(headers={"Content-Length": str(GIB)})

    async def echo(request: web.Request) -> web.Response:
        seen.requests.append(
            {
                "method": request.method,
                "authorization": request.headers.get("Authorization", ""),
                "x-probe": request.headers.get("X-Probe", ""),
                "body": await request.text(),
            }
        )
        return web.Response(text="hello")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(location=str(request.rel_url))

    async def hop(_: web.Request) -> web.Response:
        raise web.HTTPFound(location="/ok")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/broken", broken)
    app.router.add_get("/slow", slow)
    app.router.add_get("/stream", stream)
    app.router.add_route("HEAD", "/head", head)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/loop", loop)
    app.router.add_get("/hop", hop)
    app.router.add_get("/away", _away)
    app.router.add_route("*", "/see-other", _see_other)
    return Target(await aiohttp_server(app), seen)


@pytest.mark.parametrize(
    ("path", "options", "reason", "detail", "status"),
    [
        pytest.param("/ok", {}, None, "200 OK", 200, id="up"),
        pytest.param(
            "/broken",
            {},
            FailureReason.HTTP_STATUS,
            "503 Service Unavailable, expected 200-299",
            503,
            id="wrong-status",
        ),
        pytest.param(
            "/broken", {"accepted_status": ["500-599"]}, None, "503", 503, id="accepted-range"
        ),
        pytest.param("/missing", {}, FailureReason.HTTP_STATUS, "404 Not Found", 404, id="404"),
        pytest.param(
            "/ok",
            {"body_contains": "maintenance"},
            FailureReason.ASSERTION,
            "body does not contain 'maintenance'",
            200,
            id="keyword-missing",
        ),
        pytest.param("/ok", {"body_contains": '"ok"'}, None, "200 OK", 200, id="keyword-found"),
        pytest.param(
            "/ok",
            {"json_assertions": [{"path": "checks.0.ok", "equals": False}]},
            FailureReason.ASSERTION,
            "json checks.0.ok: expected False, got True",
            200,
            id="json-path-wrong-value",
        ),
        pytest.param(
            "/ok",
            {"json_assertions": [{"path": "checks.0.ok", "equals": 1}]},
            FailureReason.ASSERTION,
            "json checks.0.ok: expected 1, got True",
            200,
            id="json-true-is-not-1",
        ),
        pytest.param(
            "/ok",
            {
                "json_assertions": [
                    {"path": "status", "equals": "ok"},
                    {"path": "checks.3.ok", "equals": True},
                ]
            },
            FailureReason.ASSERTION,
            "json checks.3.ok: missing",
            200,
            id="json-second-assertion-named",
        ),
        pytest.param(
            "/ok",
            {"json_assertions": [{"path": "status", "equals": "ok"}]},
            None,
            "200 OK",
            200,
            id="json-path-holds",
        ),
        pytest.param(
            "/echo",
            {"json_assertions": [{"path": "status", "equals": "ok"}]},
            FailureReason.ASSERTION,
            "body is not JSON",
            200,
            id="json-expected-text-given",
        ),
        pytest.param(
            "/loop",
            {"max_redirects": 3},
            FailureReason.HTTP_STATUS,
            "more than 3 redirects, last 302",
            302,
            id="too-many-redirects",
        ),
        pytest.param("/hop", {}, None, "200 OK", 200, id="redirect-followed"),
        pytest.param(
            "/hop",
            {"follow_redirects": False},
            FailureReason.HTTP_STATUS,
            "302 Found",
            302,
            id="redirect-not-followed",
        ),
        pytest.param(
            "/head",
            {"method": "HEAD", "max_body_bytes": 10},
            None,
            "200 OK",
            200,
            id="head-ignores-declared-length",
        ),
    ],
)
async def test_http_outcomes(
    target: Target,
    ctx: ProbeContext,
    path: str,
    options: dict[str, Any],
    reason: FailureReason | None,
    detail: str,
    status: int,
) -> None:
    """Each target behaviour maps to its result, reason, detail and HTTP status."""
    result = await probe_http(http(target.url(path), **options), ctx)
    assert (result.ok, result.failure) == (reason is None, reason), result.detail
    assert detail in result.detail
    assert result.http_status == status
    assert result.duration_seconds > 0


@pytest.mark.parametrize(
    "query",
    [pytest.param("", id="chunked"), pytest.param("?declared", id="declared-content-length")],
)
async def test_oversized_body_is_capped_without_reading_it(
    target: Target, ctx: ProbeContext, query: str
) -> None:
    """A 1 GiB body fails as body_too_large after at most a few chunks, and the probe hangs up."""
    result = await probe_http(http(target.url("/stream" + query), max_body_bytes=100_000), ctx)
    assert result.failure is FailureReason.BODY_TOO_LARGE
    assert "body exceeds 100000 bytes" in result.detail
    async with asyncio.timeout(10):
        await target.seen.stream_done.wait()  # the server's write fails once we have hung up
    assert target.seen.streamed_bytes < 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(
            {"bearer_token": "tok-123"},
            {"method": "GET", "authorization": "Bearer tok-123"},
            id="bearer",
        ),
        pytest.param(
            {"basic_auth": {"username": "u", "password": "p"}},
            {"method": "GET", "authorization": "Basic dTpw"},
            id="basic",
        ),
        pytest.param(
            {"method": "POST", "body": "ping", "headers": {"X-Probe": "1"}},
            {"method": "POST", "body": "ping", "x-probe": "1", "authorization": ""},
            id="method-body-headers",
        ),
    ],
)
async def test_request_is_sent_as_configured_and_credentials_never_echoed(
    target: Target, ctx: ProbeContext, options: dict[str, Any], expected: dict[str, str]
) -> None:
    """The server sees method, body, headers and credentials; the result's detail shows none of them."""
    result = await probe_http(http(target.url("/echo"), **options), ctx)
    assert result.ok, result.detail
    [seen] = target.seen.requests
    assert expected.items() <= seen.items()
    assert not {"tok-123", "dTpw", "Bearer", "Basic"} & set(result.detail.split())


async def test_slow_target_is_cut_by_the_callers_deadline(
    target: Target, ctx: ProbeContext
) -> None:
    """The probe owns no timeout: the caller's asyncio.timeout ends it and TimeoutError reaches the caller."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await probe_http(http(target.url("/slow")), ctx)
    assert target.seen.slow_hit.is_set()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def garbage_port() -> AsyncIterator[int]:
    """A raw TCP server that answers any request with junk instead of HTTP."""

    async def junk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"\x16\x03\x01 certainly not HTTP \x00\xff\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(junk, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(
    ("make_url", "reason"),
    [
        pytest.param(
            lambda _: f"http://127.0.0.1:{_closed_port()}/",
            FailureReason.CONNECTION_REFUSED,
            id="refused",
        ),
        pytest.param(lambda _: "http://no-such-host.invalid/", FailureReason.DNS, id="dns"),
        pytest.param(
            lambda port: f"http://127.0.0.1:{port}/", FailureReason.PROTOCOL, id="garbage"
        ),
        pytest.param(
            lambda port: f"https://127.0.0.1:{port}/", FailureReason.TLS, id="tls-to-non-tls-peer"
        ),
        pytest.param(
            lambda port: f"http://admin:hunter2@127.0.0.1:{port}/",
            FailureReason.PROTOCOL,
            id="url-credentials-masked",
        ),
    ],
)
async def test_transport_failures(
    ctx: ProbeContext, garbage_port: int, make_url: Callable[[int], str], reason: FailureReason
) -> None:
    """Refusal, DNS, junk and a non-TLS peer each have their own reason; a URL password never shows."""
    result = await probe_http(http(make_url(garbage_port)), ctx)
    assert result.failure is reason, result.detail
    assert result.detail
    assert "hunter2" not in result.detail


async def test_the_lean_client_runs_plain_checks(
    ctx: ProbeContext, garbage_port: int, client: HttpClient
) -> None:
    """Junk is a protocol failure on both clients; the words are llhttp's on the lean one only."""
    result = await probe_http(http(f"http://127.0.0.1:{garbage_port}/"), ctx)
    assert result.failure is FailureReason.PROTOCOL
    lean = result.detail.startswith("invalid HTTP response: ")
    assert lean is (client is HttpClient.LEAN), result.detail


async def test_refused_detail_names_the_address_not_the_tls_context(ctx: ProbeContext) -> None:
    """An operator reads where the connection went and why, not an object repr."""
    port = _closed_port()
    result = await probe_http(http(f"http://127.0.0.1:{port}/"), ctx)
    assert result.failure is FailureReason.CONNECTION_REFUSED
    assert result.detail is not None
    assert result.detail.startswith(f"cannot connect to 127.0.0.1:{port}: "), result.detail
    assert "refused" in result.detail.lower()
    assert "SSLContext" not in result.detail
    assert " at 0x" not in result.detail


async def test_dns_failure_is_answered_locally(
    ctx: ProbeContext, resolver: LoopbackResolver
) -> None:
    """The reserved .invalid name goes to the injected resolver, which never leaves the machine."""
    result = await probe_http(http("http://down.example.invalid/health"), ctx)
    assert result.failure is FailureReason.DNS
    assert resolver.asked == ["down.example.invalid"]


async def test_a_fresh_connection_per_probe(target: Target, ctx: ProbeContext) -> None:
    """Keep-alive is off: each probe connects anew (so a dead listener is noticed)."""
    for _ in range(3):
        assert (await probe_http(http(target.url("/ok")), ctx)).ok
    assert len(set(target.seen.peers)) == 3


async def test_relative_url_targets_this_daemon(target: Target, ctx: ProbeContext) -> None:
    """A URL starting with / is resolved against the daemon's own base URL."""
    own = ProbeContext(
        session=ctx.session, clock=ctx.clock, store=ctx.store, self_base_url=target.url("/")
    )
    result = await probe_http(http("/echo"), own)
    assert result.ok, result.detail
    assert len(target.seen.requests) == 1


async def test_phases_are_disjoint_and_exact(
    aiohttp_server: ServerFactory, client: HttpClient
) -> None:
    """DNS, connect, first byte and body are separate spans, measured with the injected clock."""
    clock = ManualClock()

    async def think(_: web.Request) -> web.Response:
        clock.advance(7)
        return web.Response(text="done")

    app = web.Application()
    app.router.add_get("/", think)
    server = await aiohttp_server(app)
    resolver = LoopbackResolver(clock, delay_seconds=5)
    async with make_client_session(clock=clock, resolver=resolver, http_client=client) as session:
        ctx = ProbeContext(
            session=session, clock=clock, store=FakeStore(), self_base_url="http://127.0.0.1:9"
        )
        result = await probe_http(http(f"http://localhost:{server.port}/"), ctx)
    assert result.ok, result.detail
    assert dict(result.phases) == {
        Phase.DNS: 5,
        Phase.CONNECT: 0,
        Phase.FIRST_BYTE: 7,
        Phase.BODY: 0,
    }
    assert result.duration_seconds == 12


async def test_concurrent_probes_keep_their_own_timings(
    aiohttp_server: ServerFactory, client: HttpClient
) -> None:
    """Two probes in flight through the one session never see each other's phase marks."""
    clock = ManualClock()
    entered = asyncio.Event()
    release = asyncio.Event()

    async def gated(_: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        clock.advance(3)
        return web.Response(text="slow")

    async def quick(_: web.Request) -> web.Response:
        clock.advance(1)
        return web.Response(text="fast")

    app = web.Application()
    app.router.add_get("/gated", gated)
    app.router.add_get("/quick", quick)
    server = await aiohttp_server(app)
    async with make_client_session(clock=clock, http_client=client) as session:
        ctx = ProbeContext(
            session=session, clock=clock, store=FakeStore(), self_base_url="http://127.0.0.1:9"
        )
        slow = asyncio.create_task(probe_http(http(str(server.make_url("/gated"))), ctx))
        await entered.wait()
        fast = await probe_http(http(str(server.make_url("/quick"))), ctx)
        release.set()
        gated_result = await slow
    assert fast.phases[Phase.FIRST_BYTE] == 1
    assert gated_result.phases[Phase.FIRST_BYTE] == 4  # its own wait, which spans the fast probe


@dataclass(frozen=True)
class TlsTarget:
    url: str
    expires: datetime


@pytest.fixture
async def tls_target(aiohttp_server: ServerFactory) -> TlsTarget:
    """An HTTPS server for 127.0.0.1 with a certificate from a throwaway CA nobody trusts."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    expires = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).not_valid_after_utc

    async def secure(_: web.Request) -> web.Response:
        return web.Response(text="secure")

    app = web.Application()
    app.router.add_get("/", secure)
    server = await aiohttp_server(app, ssl=context)
    return TlsTarget(f"https://127.0.0.1:{server.port}/", expires)


async def test_untrusted_certificate_rejected_when_verifying(
    tls_target: TlsTarget, ctx: ProbeContext
) -> None:
    """An untrusted certificate is a tls failure with verification on, and the detail says why."""
    result = await probe_http(http(tls_target.url), ctx)
    assert result.failure is FailureReason.TLS
    assert "certificate rejected" in result.detail


async def test_untrusted_certificate_accepted_without_verification(
    tls_target: TlsTarget, session: aiohttp.ClientSession
) -> None:
    """With verification off the probe succeeds, records days to expiry and times the handshake."""
    clock = ManualClock()
    ctx = ProbeContext(
        session=session, clock=clock, store=FakeStore(), self_base_url="http://127.0.0.1:9"
    )
    result = await probe_http(http(tls_target.url, verify_tls=False), ctx)
    assert result.ok, result.detail
    assert result.tls_days_left == (tls_target.expires - clock.now()).total_seconds() / 86_400
    assert result.phases[Phase.TLS] > 0  # the session's own (system) clock times the handshake


def _expired(ca: trustme.CA) -> trustme.LeafCert:
    """A certificate for 127.0.0.1 that expired yesterday (by the real clock, which TLS checks)."""
    yesterday = datetime.now(UTC) - timedelta(days=1)
    return ca.issue_cert(
        "127.0.0.1", not_before=yesterday - timedelta(days=30), not_after=yesterday
    )


@pytest.mark.parametrize(
    ("issue", "trusted", "rejected_because"),
    [
        pytest.param(
            lambda ca: ca.issue_cert("127.0.0.1"),
            False,
            "unable to get local issuer",
            id="untrusted",
        ),
        pytest.param(_expired, True, "certificate has expired", id="expired"),
        pytest.param(
            lambda ca: ca.issue_cert("other.example"), True, "IP address mismatch", id="wrong-host"
        ),
    ],
)
async def test_a_refused_certificate_still_records_days_to_expiry(
    aiohttp_server: ServerFactory,
    issue: Callable[[trustme.CA], trustme.LeafCert],
    trusted: bool,
    rejected_because: str,
    client: HttpClient,
) -> None:
    """With verification on, a refused certificate is a tls failure that still says when it expires."""
    ca = trustme.CA()
    leaf = issue(ca)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    expires = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).not_valid_after_utc

    async def secure(_: web.Request) -> web.Response:
        return web.Response(text="secure")

    app = web.Application()
    app.router.add_get("/", secure)
    server = await aiohttp_server(app, ssl=context)
    clock = ManualClock()
    async with make_client_session(
        clock=clock, resolver=LoopbackResolver(), http_client=client
    ) as session:
        if trusted:  # the probes' verifying context, trusting this test's CA as well
            connector = session.connector
            assert isinstance(connector, ProbeConnector)
            ca.configure_trust(connector.tls_context(verify=True))
        ctx = ProbeContext(
            session=session, clock=clock, store=FakeStore(), self_base_url="http://127.0.0.1:9"
        )
        result = await probe_http(http(f"https://127.0.0.1:{server.port}/"), ctx)
    assert result.failure is FailureReason.TLS, result.detail
    assert rejected_because in result.detail
    assert result.tls_days_left == (expires - clock.now()).total_seconds() / 86_400


@pytest.mark.parametrize(
    ("path", "options", "expected"),
    [
        pytest.param(
            "/away",
            {"bearer_token": "tok-123"},
            {"method": "GET", "authorization": ""},
            id="other-origin-drops-credentials",
        ),
        pytest.param(
            "/see-other",
            {"bearer_token": "tok-123", "headers": {"X-Probe": "1"}},
            {"method": "GET", "authorization": "Bearer tok-123", "x-probe": "1"},
            id="same-origin-keeps-them",
        ),
        pytest.param(
            "/see-other",
            {"method": "DELETE"},
            {"method": "GET"},
            id="303-turns-into-get",
        ),
        pytest.param(
            "/see-other",
            {"method": "HEAD"},
            {"method": "HEAD"},
            id="303-keeps-head",
        ),
    ],
)
async def test_redirects_are_followed_as_aiohttp_does(
    target: Target,
    ctx: ProbeContext,
    path: str,
    options: dict[str, Any],
    expected: dict[str, str],
) -> None:
    """Method and credentials change across a redirect by the same rules on both clients."""
    result = await probe_http(http(target.url(path), **options), ctx)
    assert result.ok, result.detail
    [seen] = target.seen.requests
    assert expected.items() <= seen.items()
