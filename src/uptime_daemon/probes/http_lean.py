"""The lean HTTP/1.1 client for plain checks: llhttp (httptools) on the loop's own transports.

aiohttp's client was most of an HTTP check's CPU (issue 18). A plain check needs little of it:
resolve through the shared connector (same resolver, same DNS cache), connect (TLS by the loop's own
SSL transport with the connector's timed contexts), write one request with ``Connection: close``,
parse one answer with llhttp, read at most ``max_body_bytes``, follow redirects as aiohttp does.
``lean_supported`` says which checks it runs; aiohttp keeps the rest (a request body, credentials
in the URL, headers that change the framing). A fresh connection per check, as aiohttp's session
makes: connect time is measured and a dead listener is noticed.

Verdicts, phases, HTTP status and certificate expiry are aiohttp's, and so are the details, except
a protocol violation's, which is llhttp's own words: ``tests/probes/test_http.py`` runs every case
on both clients.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import zlib
from functools import lru_cache
from typing import Final
from urllib.parse import urlsplit

import aiohappyeyeballs
import aiohttp
import httptools
from aiohttp.abc import ResolveResult
from yarl import URL

from uptime_daemon.config.model import HttpService
from uptime_daemon.probes._classify import (
    DETAIL_CHARS,
    TARGET_ERRORS,
    certificate_detail,
    classify,
    connect_detail,
    connect_failure,
    describe,
)
from uptime_daemon.probes._http_verdict import (
    NO_BODY_STATUSES,
    body_too_large,
    judge_body,
    judge_status,
    keeps_body,
    request_headers,
)
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.session import (
    PhaseTimer,
    ProbeConnector,
    certificate_days_left,
    peer_tls,
    refused_certificate,
)
from uptime_daemon.redact import redact
from uptime_daemon.results import FailureReason, Phase, ProbeResult

__all__ = ["lean_supported", "probe_http_lean"]

MAX_FIELD_BYTES: Final = 8190
"""A status line's reason, a header's name or value: longer is a protocol failure (aiohttp's limit)."""
MAX_HEADERS: Final = 128
"""More header lines than this is a protocol failure (aiohttp's limit)."""
MAX_HEAD_BYTES: Final = 2 * MAX_FIELD_BYTES * (MAX_HEADERS + 1)
"""What may arrive before the head is complete: the limits above bound llhttp's, this bounds ours."""
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
HAPPY_EYEBALLS_DELAY_SECONDS: Final = 0.25
"""aiohttp's: the next address of a name is tried this long after the previous one, in parallel."""
USER_AGENT: Final = aiohttp.http.SERVER_SOFTWARE
"""The same as aiohttp's, so a target sees one client whichever of the two ran the check."""
ACCEPT_ENCODING: Final = "gzip, deflate"
_WITHOUT_BODY_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
"""aiohttp sends ``Content-Length: 0`` for any other method without a body; so do we."""
_FRAMING_HEADERS: Final = frozenset(
    {"connection", "content-length", "expect", "te", "trailer", "transfer-encoding", "upgrade"}
)
"""Headers that change how a request or its answer is framed: a check that sets one stays on aiohttp."""
_FORBIDDEN_CHARACTERS: Final = frozenset("\r\n\0")
_AIOHTTP_ONLY_HEADERS: Final = frozenset({"cookie", "proxy-authorization"})
"""aiohttp treats these apart (its cookie jar, its proxy support)."""
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
"""Dropped when a redirect leaves the origin, as aiohttp does."""
_C0_CONTROL_OR_SPACE: Final = "".join(map(chr, range(0x21)))
_REMOVE_TAB_OR_NEWLINE: Final = str.maketrans("", "", "\t\n\r")


def lean_supported(service: HttpService) -> bool:
    """Whether the lean client runs ``service``'s checks (pure: the same answer every time).

    It needs a request without a body, a URL without credentials (aiohttp turns them into basic
    auth), and headers that neither change the framing nor could be smuggled into another line.
    """
    if service.body is not None or "@" in urlsplit(service.url).netloc:
        return False
    for name, value in service.headers.items():
        lowered = name.lower()
        if lowered in _FRAMING_HEADERS or lowered in _AIOHTTP_ONLY_HEADERS:
            return False
        if _FORBIDDEN_CHARACTERS & set(name + value) or not name or ":" in name:
            return False
    return True


@lru_cache(maxsize=4096)
def _parse_url(url: str) -> URL:
    """The URL as aiohttp parses it (yarl, re-quoted); services repeat, so parsing is cached."""
    return URL(url)


class _Failed(Exception):
    """A target failure with its verdict, raised inside the lean probe and turned into its result."""

    def __init__(self, reason: FailureReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Stop(Exception):
    """Raised in a parser callback once the answer has told us enough."""


def _os_detail(error: BaseException) -> str:
    """How aiohttp words a connection that broke after it was set up (``describe``)."""
    errno = getattr(error, "errno", None)
    if isinstance(errno, int) and errno:
        return os.strerror(errno)  # "Connection reset by peer", not "[Errno 104] ..."
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


class _Decoder:
    """A gzip or deflate body, decompressed as it arrives, never past the cap."""

    __slots__ = ("_encoding", "_zlib")

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._zlib: zlib._Decompress | None = None

    def decode(self, data: bytes, room: int) -> tuple[bytes, bool]:
        """Up to ``room + 1`` decoded bytes of ``data``, and whether more were left undecoded."""
        if self._zlib is None:
            if self._encoding == "deflate":
                # A zlib stream, or (like aiohttp, for servers that do this) raw deflate.
                wbits = zlib.MAX_WBITS if data[:1] and data[0] & 0x0F == 8 else -zlib.MAX_WBITS  # noqa: PLR2004 - CM=8 is deflate
            else:
                wbits = 16 + zlib.MAX_WBITS
            self._zlib = zlib.decompressobj(wbits)
        out = self._zlib.decompress(data, room + 1)
        return out, bool(self._zlib.unconsumed_tail)


class _Answer(asyncio.Protocol):
    """One answer on one connection, parsed as it arrives; the probe awaits its head, then its body.

    Verdicts are drawn after each segment is parsed, not inside llhttp's callbacks: a segment that
    completes the answer and then breaks the protocol is a protocol failure, as it is for aiohttp.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, limit: int, keep: bool) -> None:
        self._loop = loop
        self._limit = limit
        self._keep = keep
        self._parser = httptools.HttpResponseParser(self)
        # aiohttp's leniencies for answers (outside its dev mode): bare LF line ends, and
        # header characters and chunk-size spaces that strict llhttp refuses.
        self._parser.set_dangerous_leniencies(
            lenient_headers=True,
            lenient_optional_cr_before_lf=True,
            lenient_spaces_after_chunk_size=True,
        )
        self._waiter: asyncio.Future[None] | None = None
        # The head.
        self.status = 0
        self.reason = b""
        self.content_length: int | None = None
        self.location: str | None = None
        self._chunked = False
        self._encoding = ""
        self._headers = 0
        self._head_bytes = 0
        self.head_done = False
        self._interim = False
        # The body.
        self._decoder: _Decoder | None = None
        self._size = 0
        self._chunks: list[bytes] = []
        self.body_done = False
        self.too_large = False
        # How it ended early.
        self.failure: tuple[FailureReason, str] | None = None
        self._stopped = False

    # asyncio.Protocol (the probe holds the transport: it writes the request and hangs up)

    def data_received(self, data: bytes) -> None:
        """Parse a segment, then draw what it settled."""
        if self._settled:
            return  # the verdict is in; what follows changes nothing (we hang up)
        if not self.head_done:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # a 101's head is complete, and what follows it is not HTTP
        except httptools.HttpParserError as exc:
            if not self._stopped:
                self._fail(FailureReason.PROTOCOL, _parser_detail(exc))
        if not self.head_done and self._head_bytes > MAX_HEAD_BYTES and self.failure is None:
            self._fail(FailureReason.PROTOCOL, f"response head exceeds {MAX_HEAD_BYTES} bytes")
        self._wake()

    def connection_lost(self, exc: BaseException | None) -> None:
        """The end of the answer for a close-delimited body; for anything else, too early."""
        if not self._settled:
            if exc is not None and self.head_done:
                # aiohttp: an unfinished payload, whatever broke it.
                self._fail(FailureReason.PROTOCOL, f"the body was cut short: {_os_detail(exc)}")
            elif exc is not None:
                reason = (
                    FailureReason.TLS
                    if isinstance(exc, ssl.SSLError)
                    else FailureReason.CONNECTION_ERROR
                )
                self._fail(reason, _os_detail(exc))
            elif not self.head_done:
                where = (
                    "before answering" if self._head_bytes == 0 else "in the middle of its answer"
                )
                self._fail(
                    FailureReason.CONNECTION_ERROR, f"the server closed the connection {where}"
                )
            elif self._close_delimited:
                self.body_done = True
            else:
                expected = (
                    "its chunked body"
                    if self._chunked
                    else f"{self.content_length} bytes of body, after {self._size}"
                )
                self._fail(
                    FailureReason.PROTOCOL,
                    f"the server closed the connection before sending {expected}",
                )
        self._wake()

    # llhttp's callbacks (httptools)

    def on_message_begin(self) -> None:
        """A new answer (after an interim 1xx one, the final one)."""
        self.reason = b""
        self.content_length = None
        self.location = None
        self._chunked = False
        self._encoding = ""
        self._headers = 0
        self._interim = False

    def on_status(self, reason: bytes) -> None:
        """The reason phrase, in one or more pieces."""
        self.reason += reason
        if len(self.reason) > MAX_FIELD_BYTES:
            self._stop(FailureReason.PROTOCOL, f"status line exceeds {MAX_FIELD_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        """One whole header; only those that frame the body or redirect are kept."""
        self._headers += 1
        if self._headers > MAX_HEADERS:
            self._stop(FailureReason.PROTOCOL, f"more than {MAX_HEADERS} headers")
        if len(name) > MAX_FIELD_BYTES or len(value) > MAX_FIELD_BYTES:
            self._stop(FailureReason.PROTOCOL, f"a header exceeds {MAX_FIELD_BYTES} bytes")
        if b"\0" in value:  # lenient llhttp lets it through; aiohttp refuses it, and so do we
            self._stop(FailureReason.PROTOCOL, "a header value holds a NUL byte")
        lowered = name.lower()
        if lowered == b"content-length":
            try:
                self.content_length = int(value)  # llhttp has checked its digits already
            except ValueError:
                self._stop(FailureReason.PROTOCOL, "invalid Content-Length")
        elif lowered == b"transfer-encoding":
            self._chunked = b"chunked" in value.lower()
        elif lowered == b"content-encoding":
            self._encoding = value.strip().lower().decode("latin-1")
        elif lowered == b"location" or (lowered == b"uri" and self.location is None):
            self.location = value.decode("utf-8", "surrogateescape")

    def on_headers_complete(self) -> None:
        """The head: an interim 1xx answer is skipped (as aiohttp does); the final one is kept."""
        self.status = self._parser.get_status_code()
        if 100 <= self.status < 200 and self.status != 101:  # noqa: PLR2004 - 1xx, 101 is final
            self._interim = True
            return
        self.head_done = True
        if self._encoding in {"gzip", "x-gzip", "deflate"}:
            self._decoder = _Decoder(self._encoding)

    def on_body(self, data: bytes) -> None:
        """Count (and keep, if an assertion reads it) the body, never past the cap.

        Counted from the first byte, even before the probe knows it wants the body: a probe that
        does not (a wrong status, HEAD) hangs up at once, and one that does finds it counted.
        """
        self._take(data)

    def on_message_complete(self) -> None:
        """The end of a body framed by its length or its chunks."""
        if self._interim:
            return
        self.body_done = True

    # The probe's side

    async def head(self) -> None:
        """Wait for the final answer's head; ``_Failed`` if it did not come."""
        while not (self.head_done or self.failure):
            await self._wait()
        if self.failure is not None:
            raise _Failed(*self.failure)

    async def body(self) -> bytes | None:
        """The body (empty unless kept), or ``None`` once it is known to exceed the cap."""
        while not (self.body_done or self.too_large or self.failure):
            await self._wait()
        if self.too_large:
            return None
        if self.failure is not None:
            raise _Failed(*self.failure)
        return b"".join(self._chunks)

    # Helpers

    @property
    def _settled(self) -> bool:
        return self.body_done or self.too_large or self.failure is not None

    @property
    def _close_delimited(self) -> bool:
        return self.content_length is None and not self._chunked

    def _take(self, data: bytes) -> None:
        room = self._limit - self._size
        if self._decoder is not None:
            try:
                data, more = self._decoder.decode(data, room)
            except zlib.error as exc:
                self._stop(
                    FailureReason.PROTOCOL, f"cannot decode the {self._encoding} body: {exc}"
                )
            if more:
                self.too_large = True
                self._halt()
        self._size += len(data)
        if self._size > self._limit:
            self.too_large = True
            self._halt()
        if self._keep:
            self._chunks.append(data)

    def _halt(self) -> None:
        self._stopped = True
        raise _Stop

    def _fail(self, reason: FailureReason, detail: str) -> None:
        if self.failure is None:
            self.failure = (reason, detail[:DETAIL_CHARS])

    def _stop(self, reason: FailureReason, detail: str) -> None:
        self._fail(reason, detail)
        self._halt()

    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _parser_detail(exc: httptools.HttpParserError) -> str:
    text = str(exc).strip() or type(exc).__name__
    return redact(f"invalid HTTP response: {text}")[:DETAIL_CHARS]


def _request(method: str, url: URL, headers: dict[str, str]) -> bytes:
    """The request head, headers in aiohttp's order: Host, the configured ones, the defaults."""
    given = {name.lower() for name in headers}
    lines = [f"{method} {url.raw_path_qs or '/'} HTTP/1.1"]
    if "host" not in given:
        lines.append(f"Host: {url.host_port_subcomponent}")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if "accept" not in given:
        lines.append("Accept: */*")
    if "accept-encoding" not in given:
        lines.append(f"Accept-Encoding: {ACCEPT_ENCODING}")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {USER_AGENT}")
    if method not in _WITHOUT_BODY_METHODS:
        lines.append("Content-Length: 0")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _addr_infos(hosts: list[ResolveResult]) -> list[aiohappyeyeballs.AddrInfoType]:
    """Resolved addresses as ``getaddrinfo`` tuples, as aiohttp's connector makes them."""
    infos: list[aiohappyeyeballs.AddrInfoType] = []
    for host in hosts:
        address: tuple[str, int] | tuple[str, int, int, int] = (
            (host["host"], host["port"], 0, 0)
            if host["family"] == socket.AF_INET6
            else (host["host"], host["port"])
        )
        infos.append((host["family"], socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address))
    return infos


async def _open(
    connector: ProbeConnector,
    url: URL,
    answer: _Answer,
    tls_context: ssl.SSLContext | None,
    timer: PhaseTimer,
) -> asyncio.Transport:
    """Resolve and connect (TLS included) as aiohttp's connector does; ``_Failed`` with its verdict."""
    loop = asyncio.get_running_loop()
    host = url.raw_host or ""
    port = url.port or (443 if tls_context else 80)
    if host.endswith(".."):
        host = host.rstrip(".") + "."
    timer.start("connect")
    try:
        hosts = await connector.resolve(host, port, timer)
    except OSError as exc:
        if exc.errno is None and isinstance(exc, TimeoutError):
            raise
        raise _Failed(FailureReason.DNS, connect_detail(url.raw_host, port, exc)) from exc
    server_hostname = host.rstrip(".") if tls_context is not None else None
    addr_infos = _addr_infos(hosts)
    last: _Failed | None = None
    while addr_infos:
        try:
            if len(addr_infos) == 1:  # the common case, without a socket made in Python first
                family, _, proto, _, address = addr_infos[0]
                transport, _ = await loop.create_connection(
                    lambda: answer,
                    address[0],
                    address[1],
                    family=family,
                    proto=proto,
                    ssl=tls_context,
                    server_hostname=server_hostname,
                )
            else:
                sock = await aiohappyeyeballs.start_connection(
                    addr_infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_SECONDS, loop=loop
                )
                transport, _ = await loop.create_connection(
                    lambda: answer, sock=sock, ssl=tls_context, server_hostname=server_hostname
                )
        except ssl.SSLCertVerificationError as exc:
            last = _Failed(FailureReason.TLS, certificate_detail(exc))
            last.__cause__ = exc
        except OSError as exc:
            if exc.errno is None and isinstance(exc, TimeoutError):
                raise
            tls = tls_context is not None
            last = _Failed(connect_failure(exc, tls=tls), connect_detail(url.raw_host, port, exc))
            last.__cause__ = exc
        else:
            timer.add_connection(timer.elapsed("connect"))
            return transport
        aiohappyeyeballs.pop_addr_infos_interleave(addr_infos, None)
    assert last is not None  # noqa: S101 - a name resolves to at least one address
    raise last


def _redirect(url: URL, location: str) -> URL:
    """Where a redirect leads, by aiohttp's rules (its errors for a location that is no http URL)."""
    try:
        target = URL(location)
    except ValueError as exc:
        raise aiohttp.InvalidUrlRedirectClientError(
            location,
            "Server attempted redirecting to a location that does not look like a URL",
        ) from exc
    scheme = target.scheme
    if scheme not in {"", "http", "https"}:
        raise aiohttp.NonHttpUrlRedirectClientError(location)
    if not scheme or (scheme == url.scheme and _has_no_authority(location, scheme)):
        target = url.join(target)
    try:
        target.origin()
    except ValueError as exc:
        raise aiohttp.InvalidUrlRedirectClientError(target, "Invalid redirect URL origin") from exc
    return target


def _has_no_authority(location: str, scheme: str) -> bool:
    """``http:/path`` or ``http:path`` (no ``//``): a reference to the current URL, as browsers read it."""
    stripped = location.strip(_C0_CONTROL_OR_SPACE).translate(_REMOVE_TAB_OR_NEWLINE)
    rest = stripped[len(scheme) + 1 : len(scheme) + 3]
    return rest[:1] not in {"/", "\\"} or rest[1:] not in {"/", "\\"}


def _drop_credentials(headers: dict[str, str]) -> dict[str, str]:
    return {
        name: value for name, value in headers.items() if name.lower() not in _CREDENTIAL_HEADERS
    }


async def probe_http_lean(  # noqa: C901, PLR0911, PLR0912, PLR0915 - one request, its redirects, its verdict
    service: HttpService, ctx: ProbeContext, connector: ProbeConnector, url_text: str
) -> ProbeResult:
    """One check on the lean client: ``service`` must be ``lean_supported``; ``url_text`` absolute."""
    clock = ctx.clock
    timer = PhaseTimer(clock.monotonic)
    started = clock.monotonic()
    http_status: int | None = None
    days_left: float | None = None

    def result(failure: FailureReason | None, detail: str) -> ProbeResult:
        return ProbeResult(
            ok=failure is None,
            duration_seconds=clock.monotonic() - started,
            failure=failure,
            detail=detail,
            phases=timer.phases(),
            http_status=http_status,
            tls_days_left=days_left,
        )

    loop = asyncio.get_running_loop()
    url = _parse_url(url_text)
    method = service.method
    headers = request_headers(service)
    keep = keeps_body(service)
    redirects = 0
    try:
        while True:
            tls = url.scheme == "https"
            tls_context = connector.tls_context(verify=service.verify_tls) if tls else None
            answer = _Answer(loop, limit=service.max_body_bytes, keep=keep)
            transport = await _open(connector, url, answer, tls_context, timer)
            try:
                transport.write(_request(method, url, headers))
                timer.start("request")
                await answer.head()
                timer.add(Phase.FIRST_BYTE, timer.elapsed("request"))
                peer = peer_tls(transport.get_extra_info("ssl_object"))
                if peer is not None:
                    timer.add(Phase.TLS, peer.handshake_seconds)
                http_status = answer.status
                if answer.status in REDIRECT_STATUSES and service.follow_redirects:
                    redirects += 1
                    # aiohttp's rule, max_redirects = 0 included (no limit but the deadline).
                    if service.max_redirects and redirects >= service.max_redirects:
                        return result(
                            FailureReason.HTTP_STATUS,
                            f"more than {service.max_redirects} redirects, last {http_status}",
                        )
                    if answer.location is not None:
                        if (answer.status == 303 and method != "HEAD") or (  # noqa: PLR2004 - See Other
                            answer.status in {301, 302} and method == "POST"
                        ):
                            method = "GET"
                        target = _redirect(url, answer.location)
                        if url.origin() != target.origin():
                            headers = _drop_credentials(headers)
                        url = target
                        continue
                if peer is not None and peer.certificate:
                    days_left = certificate_days_left(peer.certificate, clock.now())
                failure, status_line = judge_status(
                    service, answer.status, answer.reason.decode("utf-8", "surrogateescape")
                )
                if failure is not None:
                    return result(failure, status_line)
                if method == "HEAD" or answer.status in NO_BODY_STATUSES or answer.status == 101:  # noqa: PLR2004 - Switching Protocols has no body of its own
                    return result(None, status_line)
                body_started = clock.monotonic()
                declared = answer.content_length
                body = (
                    None
                    if declared is not None and declared > service.max_body_bytes
                    else await answer.body()
                )
                timer.add(Phase.BODY, clock.monotonic() - body_started)
                if body is None:
                    return result(*body_too_large(service, status_line))
                return result(*judge_body(service, status_line, body))
            finally:
                transport.close()
    except _Failed as failed:
        cause = failed.__cause__
        if cause is not None:
            refused = refused_certificate(cause)  # a refused certificate's expiry is recorded too
            if refused is not None:
                days_left = certificate_days_left(refused, clock.now())
        return result(failed.reason, failed.detail)
    except TARGET_ERRORS as exc:
        return result(classify(exc, tls=url.scheme == "https"), describe(exc))
