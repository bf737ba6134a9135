"""The lean HTTP client's own ground: answers written byte for byte by a raw loopback server.

Every case runs on both clients and must end the same way (ok, reason, HTTP status): the lean
client is held to aiohttp's verdicts, including on the broken answers aiohttp tolerates or refuses.
Each runs on asyncio's loop and again on uvloop (the daemon's default), whose transports differ. Also
here: which checks the lean client takes (``lean_supported``), and ``UPTIME_HTTP_CLIENT``.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import trustme
import uvloop

from tests.probes.fakes import FakeStore, LoopbackResolver
from uptime_daemon.clock import SystemClock
from uptime_daemon.config.model import HttpService
from uptime_daemon.errors import ConfigError
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.http import probe_http
from uptime_daemon.probes.http_lean import MAX_FIELD_BYTES, MAX_HEADERS, lean_supported
from uptime_daemon.probes.session import HttpClient, http_client_from, make_client_session
from uptime_daemon.results import FailureReason, Phase, ProbeResult

RESET = b"<reset>"
"""A segment that is not sent: the server resets the connection (RST) instead."""


def http(url: str, **options: Any) -> HttpService:
    return HttpService.model_validate({"kind": "http", "url": url, **options})


@dataclass
class Scripted:
    """A raw TCP server that reads one request head and answers with ``segments``, then closes.

    Each segment is written and drained on its own, with Nagle off, so a client sees the answer in
    as many pieces as the kernel keeps apart.
    """

    port: int = 0
    segments: list[bytes] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            for segment in self.segments:
                if segment == RESET:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                writer.write(segment)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up first: it had heard enough
        writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@asynccontextmanager
async def serving(segments: list[bytes] | None = None) -> AsyncIterator[Scripted]:
    script = Scripted(segments=segments or [])
    server = await asyncio.start_server(script.answer, "127.0.0.1", 0)
    script.port = int(server.sockets[0].getsockname()[1])
    try:
        yield script
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    async with serving() as script:
        yield script


async def _probe_both(service: HttpService) -> dict[HttpClient, ProbeResult]:
    results = {}
    for client in (HttpClient.AIOHTTP, HttpClient.LEAN):
        async with make_client_session(resolver=LoopbackResolver(), http_client=client) as session:
            ctx = ProbeContext(
                session=session,
                clock=SystemClock(),
                store=FakeStore(),
                self_base_url="http://127.0.0.1:9",
            )
            results[client] = await probe_http(service, ctx)
    return results


def _gzip_answer(document: bytes) -> bytes:
    body = gzip.compress(document)
    return b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


def _deflate_answer(document: bytes, *, raw: bool) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    body = packer.compress(document) + packer.flush()
    return b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


OK_JSON = b'{"status": "ok"}'
HUGE = b"z" * 300_000
CASES = [
    pytest.param(
        [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        ],
        {"body_contains": "hello world"},
        None,
        200,
        id="chunked",
    ),
    pytest.param(
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"5\r\nhel", b"lo\r\n0\r\n\r\n"],
        {"body_contains": "hello"},
        None,
        200,
        id="chunked-in-pieces",
    ),
    pytest.param(
        [b"HTTP/1.0 200 OK\r\n\r\nhello ", b"world"],
        {"body_contains": "hello world"},
        None,
        200,
        id="close-delimited-http-1.0",
    ),
    pytest.param(
        [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello"],
        {"body_contains": "hello"},
        None,
        200,
        id="close-delimited-http-1.1",
    ),
    pytest.param(
        [bytes([byte]) for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello"],
        {"body_contains": "hello"},
        None,
        200,
        id="one-byte-per-segment",
    ),
    pytest.param(
        [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        {},
        None,
        200,
        id="100-continue-then-final",
    ),
    pytest.param(
        [
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"
        ],
        {},
        FailureReason.HTTP_STATUS,
        503,
        id="103-then-final-in-one-segment",
    ),
    pytest.param(
        [b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"],
        {},
        None,
        200,
        id="bare-lf-tolerated",
    ),
    pytest.param(
        [b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"],
        {},
        None,
        200,
        id="no-reason-phrase",
    ),
    pytest.param([_gzip_answer(OK_JSON)], {"body_contains": '"ok"'}, None, 200, id="gzip-body"),
    pytest.param(
        [_deflate_answer(OK_JSON, raw=False)],
        {"json_assertions": [{"path": "status", "equals": "ok"}]},
        None,
        200,
        id="deflate-body",
    ),
    pytest.param(
        [_deflate_answer(OK_JSON, raw=True)],
        {"body_contains": '"ok"'},
        None,
        200,
        id="raw-deflate-body",
    ),
    pytest.param(
        [_gzip_answer(HUGE)],
        {"max_body_bytes": 100_000},
        FailureReason.BODY_TOO_LARGE,
        200,
        id="gzip-bomb-capped-after-decoding",
    ),
    pytest.param(
        [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"%x\r\n%s\r\n" % (len(HUGE), HUGE),
        ],
        {"max_body_bytes": 100_000},
        FailureReason.BODY_TOO_LARGE,
        200,
        id="chunked-over-the-cap",
    ),
    pytest.param(
        [b"HTTP/1.0 200 OK\r\n\r\n", HUGE],
        {"max_body_bytes": 100_000},
        FailureReason.BODY_TOO_LARGE,
        200,
        id="close-delimited-over-the-cap",
    ),
    pytest.param(
        [b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"],
        {"max_body_bytes": 3},
        None,
        200,
        id="body-exactly-at-the-cap",
    ),
    pytest.param(
        [b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"],
        {"max_body_bytes": 2},
        FailureReason.BODY_TOO_LARGE,
        200,
        id="declared-one-past-the-cap",
    ),
    pytest.param(
        [b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_FIELD_BYTES + 1) + b"\r\n\r\n"],
        {},
        FailureReason.PROTOCOL,
        None,
        id="header-value-too-long",
    ),
    pytest.param(
        [
            b"HTTP/1.1 200 OK\r\nX-Big: "
            + b"a" * (MAX_FIELD_BYTES - 10)
            + b"\r\nContent-Length: 0\r\n\r\n"
        ],
        {},
        None,
        200,
        id="header-value-just-under-the-cap",
    ),
    pytest.param(
        [
            b"HTTP/1.1 200 OK\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))
            + b"Content-Length: 0\r\n\r\n"
        ],
        {},
        FailureReason.PROTOCOL,
        None,
        id="too-many-headers",
    ),
    pytest.param(
        [b"HTTP/1.1 200 " + b"O" * (MAX_FIELD_BYTES + 1) + b"\r\nContent-Length: 0\r\n\r\n"],
        {},
        FailureReason.PROTOCOL,
        None,
        id="status-line-too-long",
    ),
    pytest.param([], {}, FailureReason.CONNECTION_ERROR, None, id="closed-before-answering"),
    pytest.param(
        [b"HTTP/1.1 200 OK\r\nContent-Le"],
        {},
        FailureReason.CONNECTION_ERROR,
        None,
        id="closed-in-the-head",
    ),
    pytest.param(
        [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"],
        {},
        FailureReason.PROTOCOL,
        200,
        id="closed-in-a-sized-body",
    ),
    pytest.param(
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"],
        {},
        FailureReason.PROTOCOL,
        200,
        id="closed-in-a-chunked-body",
    ),
    pytest.param(
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"],
        {},
        FailureReason.PROTOCOL,
        None,
        id="bad-chunk-size",
    ),
    pytest.param([b"<html>hi</html>"], {}, FailureReason.PROTOCOL, None, id="http-0.9"),
    pytest.param(
        [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"],
        {},
        FailureReason.PROTOCOL,
        None,
        id="two-content-lengths",
    ),
    pytest.param(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        ],
        {},
        FailureReason.PROTOCOL,
        None,
        id="length-and-chunked",
    ),
    pytest.param(
        [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"],
        {},
        FailureReason.PROTOCOL,
        None,
        id="junk-after-the-answer-in-its-segment",
    ),
    pytest.param(
        [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"],
        {},
        FailureReason.HTTP_STATUS,
        101,
        id="101-is-final",
    ),
    pytest.param([RESET], {}, FailureReason.CONNECTION_ERROR, None, id="reset-before-answering"),
    pytest.param(
        [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", RESET],
        {},
        FailureReason.PROTOCOL,
        200,
        id="reset-in-the-body",
    ),
]


def _assert_alike(
    results: dict[HttpClient, ProbeResult], reason: FailureReason | None, status: int | None
) -> None:
    for client, result in results.items():
        assert (result.ok, result.failure, result.http_status) == (
            reason is None,
            reason,
            status,
        ), (client, result.detail)
    details = {result.detail for result in results.values()}
    if reason is not FailureReason.PROTOCOL:  # llhttp words protocol violations its own way
        assert len(details) == 1, details


@pytest.mark.parametrize(("segments", "options", "reason", "status"), CASES)
async def test_both_clients_judge_each_answer_alike(
    segments: list[bytes],
    options: dict[str, Any],
    reason: FailureReason | None,
    status: int | None,
) -> None:
    """The same answer ends the same way (ok, reason, HTTP status) on aiohttp and the lean client."""
    async with serving(segments) as script:
        results = await _probe_both(http(script.url, **options))
    _assert_alike(results, reason, status)


@pytest.mark.parametrize(("segments", "options", "reason", "status"), CASES)
def test_and_alike_on_uvloop(
    segments: list[bytes],
    options: dict[str, Any],
    reason: FailureReason | None,
    status: int | None,
) -> None:
    """The same on uvloop, whose transports are not asyncio's (the daemon runs on it by default)."""

    async def scenario() -> dict[HttpClient, ProbeResult]:
        async with serving(segments) as script:
            return await _probe_both(http(script.url, **options))

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        results = runner.run(scenario())
    _assert_alike(results, reason, status)


async def test_the_lean_request_is_aiohttps_request(scripted: Scripted) -> None:
    """Same request line and headers as aiohttp's, in aiohttp's order (the target cannot tell)."""
    scripted.segments = [b"HTTP/1.1 204 No Content\r\n\r\n"]
    url = f"http://127.0.0.1:{scripted.port}/a%20b/%C3%A9?x=1&y=a%2Fb#fragment"
    options = {"headers": {"X-Probe": "1", "accept": "text/plain"}, "bearer_token": "t"}
    service = http(url, **options)
    results = await _probe_both(service)
    assert all(result.ok for result in results.values())
    aiohttp_request, lean_request = scripted.requests
    assert lean_request == aiohttp_request
    assert lean_request.startswith(b"GET /a%20b/%C3%A9?x=1&y=a/b HTTP/1.1\r\n")
    assert b"\r\nConnection: close\r\n" in lean_request


@pytest.mark.parametrize("method", ["DELETE", "OPTIONS"])
async def test_methods_without_a_body_are_framed_as_aiohttp_frames_them(
    scripted: Scripted, method: str
) -> None:
    """``Content-Length: 0`` for a method that usually carries a body, none for one that does not."""
    scripted.segments = [b"HTTP/1.1 204 No Content\r\n\r\n"]
    await _probe_both(http(scripted.url, method=method))
    aiohttp_request, lean_request = scripted.requests
    assert lean_request == aiohttp_request
    assert (b"Content-Length: 0" in lean_request) is (method == "DELETE")


@pytest.mark.parametrize(
    ("options", "supported"),
    [
        pytest.param({}, True, id="plain-get"),
        pytest.param({"url": "https://example.invalid/x"}, True, id="https"),
        pytest.param({"url": "/health"}, True, id="this-daemon"),
        pytest.param({"method": "HEAD"}, True, id="head"),
        pytest.param({"method": "DELETE"}, True, id="delete-without-body"),
        pytest.param({"method": "POST", "body": "ping"}, False, id="request-body"),
        pytest.param({"bearer_token": "t", "headers": {"X-A": "b"}}, True, id="bearer-and-headers"),
        pytest.param({"basic_auth": {"username": "u", "password": "p"}}, True, id="basic-auth"),
        pytest.param({"url": "http://u:p@example.invalid/"}, False, id="credentials-in-url"),
        pytest.param({"url": "http://example.invalid/?next=a@b"}, True, id="at-sign-in-query"),
        pytest.param({"headers": {"Cookie": "a=b"}}, False, id="cookie-header"),
        pytest.param({"headers": {"Transfer-Encoding": "chunked"}}, False, id="framing-header"),
        pytest.param({"headers": {"connection": "keep-alive"}}, False, id="connection-header"),
        pytest.param({"headers": {"X-A": "b\r\nX-B: c"}}, False, id="header-injection"),
        pytest.param({"headers": {"Host": "other.example"}}, True, id="host-override"),
        pytest.param({"follow_redirects": False, "max_redirects": 0}, True, id="no-redirects"),
        pytest.param({"verify_tls": False, "accepted_status": ["200-599"]}, True, id="lax"),
    ],
)
def test_which_checks_the_lean_client_takes(options: dict[str, Any], supported: bool) -> None:
    """A pure function of the settings: request bodies, URL credentials and framing go to aiohttp."""
    service = http(options.pop("url", "http://example.invalid/health"), **options)
    assert lean_supported(service) is supported


async def test_an_unsupported_check_still_runs_on_aiohttp(scripted: Scripted) -> None:
    """With the lean client chosen, a check with a request body is sent by aiohttp, body and all."""
    scripted.segments = [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]
    async with make_client_session(
        resolver=LoopbackResolver(), http_client=HttpClient.LEAN
    ) as session:
        ctx = ProbeContext(
            session=session, clock=SystemClock(), store=FakeStore(), self_base_url="http://x:9"
        )
        result = await probe_http(http(scripted.url, method="POST", body="ping"), ctx)
    assert result.ok, result.detail
    [request] = scripted.requests
    assert request.startswith(b"POST / HTTP/1.1\r\n")
    assert b"Content-Length: 4\r\n" in request


async def test_a_session_that_is_not_the_probes_uses_aiohttp(scripted: Scripted) -> None:
    """A plain aiohttp session (no ``ProbeConnector``) still runs the check, on aiohttp."""
    scripted.segments = [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]
    async with aiohttp.ClientSession() as session:
        ctx = ProbeContext(
            session=session, clock=SystemClock(), store=FakeStore(), self_base_url="http://x:9"
        )
        result = await probe_http(http(scripted.url), ctx)
    assert result.ok, result.detail


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, HttpClient.AUTO, id="unset"),
        pytest.param({"UPTIME_HTTP_CLIENT": "auto"}, HttpClient.AUTO, id="auto"),
        pytest.param({"UPTIME_HTTP_CLIENT": "lean"}, HttpClient.LEAN, id="lean"),
        pytest.param({"UPTIME_HTTP_CLIENT": "aiohttp"}, HttpClient.AIOHTTP, id="aiohttp"),
    ],
)
def test_the_client_is_chosen_by_the_environment(
    environ: dict[str, str], expected: HttpClient
) -> None:
    assert http_client_from(environ) is expected


def test_an_unknown_client_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        http_client_from({"UPTIME_HTTP_CLIENT": "curl"})
    assert str(raised.value) == "UPTIME_HTTP_CLIENT: must be auto, lean or aiohttp, got 'curl'"


@pytest.mark.parametrize("verify", [True, False], ids=["verifying", "not-verifying"])
def test_tls_alike_on_uvloop(verify: bool) -> None:
    """On uvloop, an untrusted certificate is refused (or, unverified, accepted) alike, expiry kept."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure"

    async def scenario() -> dict[HttpClient, ProbeResult]:
        script = Scripted(segments=[answer])
        server = await asyncio.start_server(script.answer, "127.0.0.1", 0, ssl=context)
        port = int(server.sockets[0].getsockname()[1])
        try:
            return await _probe_both(
                http(f"https://127.0.0.1:{port}/", verify_tls=verify, body_contains="secure")
            )
        finally:
            server.close()
            await server.wait_closed()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        results = runner.run(scenario())
    expected = FailureReason.TLS if verify else None
    _assert_alike(results, expected, None if verify else 200)
    days = {result.tls_days_left is not None for result in results.values()}
    assert days == {True}
    if verify:
        assert all("certificate rejected" in result.detail for result in results.values())
    else:
        assert all(result.phases[Phase.TLS] > 0 for result in results.values())
