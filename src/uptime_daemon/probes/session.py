"""The one HTTP client session every probe shares, and the per-request phase timings it records.

The composition root creates it once (``make_client_session``); probes never create sessions or
connectors. It opens a fresh connection per request (``force_close``), as real probes must: DNS,
connect and TLS timings are real, and a dead listener is noticed at once. There is no pool limit: the
scheduler bounds concurrency.

Timings travel in each request's own ``trace_request_ctx`` (a ``PhaseTimer``), so concurrent probes
never mix them. The TLS handshake is timed by the SSL object itself (``SSLContext.sslobject_class``),
and the peer certificate is taken from the connection the request actually used, before aiohttp
releases it (``ProbeResponse.start``): no second handshake, and verification off still reports it.
A certificate that verification refuses (expired, untrusted, another host's) is read from the
failing handshake itself and travels on the error (``refused_certificate``): its expiry is news too.

The connector also serves the lean HTTP client (``http_lean.py``): its resolver and DNS cache
(``ProbeConnector.resolve``), its timed TLS contexts, and the choice of client (``HttpClient``, from
``UPTIME_HTTP_CLIENT``), made once when the composition root creates the session.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import SimpleNamespace
from typing import Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ClientResponse
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from cryptography import x509

from uptime_daemon.clock import Clock, SystemClock
from uptime_daemon.errors import ConfigError
from uptime_daemon.results import Phase

DNS_CACHE_SECONDS: Final = 10
"""Resolved addresses are reused this long: shorter than any sensible probe interval, so most probes
still resolve (and time) DNS, while a burst of checks does not queue on the resolver's threads."""
SECONDS_PER_DAY: Final = 86_400
_REFUSED_CERTIFICATE: Final = "uptime_refused_certificate"
"""The attribute of an ``SSLCertVerificationError`` that holds the leaf it refused (DER)."""
HTTP_CLIENT_ENV: Final = "UPTIME_HTTP_CLIENT"


class HttpClient(StrEnum):
    """Which client runs HTTP checks: ``UPTIME_HTTP_CLIENT``; ``auto`` unless set."""

    AUTO = "auto"
    """The lean client for every check it supports (``lean_supported``), aiohttp for the rest."""
    LEAN = "lean"
    """The same as ``auto`` today; named so that a benchmark or an operator can say it outright."""
    AIOHTTP = "aiohttp"
    """aiohttp's client for every check: the way back if the lean client misbehaves somewhere."""


def http_client_from(environ: Mapping[str, str]) -> HttpClient:
    """The HTTP client ``environ`` asks for; an unknown value is refused rather than guessed at."""
    choice = environ.get(HTTP_CLIENT_ENV, HttpClient.AUTO.value)
    try:
        return HttpClient(choice)
    except ValueError:
        *others, last = (client.value for client in HttpClient)
        raise ConfigError(
            f"{HTTP_CLIENT_ENV}: must be {', '.join(others)} or {last}, got {choice!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class PeerTls:
    """What the TLS layer of one connection told us."""

    certificate: bytes | None
    """The peer's leaf certificate, DER; present whether or not it was verified."""
    handshake_seconds: float | None
    """Time from the first handshake call to its completion, by the session's clock."""


def _timed_ssl_object(clock: Clock) -> type[ssl.SSLObject]:
    """An ``SSLObject`` class that remembers how long its handshake took, by ``clock``."""

    class TimedSSLObject(ssl.SSLObject):
        # SSLObject has no public constructor (``SSLContext.wrap_bio`` builds it without __init__),
        # so the state starts as class attributes and becomes per instance on first assignment.
        handshake_started: float | None = None
        handshake_seconds: float | None = None

        def do_handshake(self) -> None:
            if self.handshake_started is None:
                self.handshake_started = clock.monotonic()
            try:
                super().do_handshake()  # raises SSLWantReadError until the peer has answered
            except ssl.SSLCertVerificationError as exc:
                # The last moment the refused certificate can be read: it travels on the error,
                # which asyncio and aiohttp hand on as it is (``refused_certificate``).
                setattr(exc, _REFUSED_CERTIFICATE, _unverified_leaf(self))
                raise
            self.handshake_seconds = clock.monotonic() - self.handshake_started

    return TimedSSLObject


def _unverified_leaf(ssl_object: ssl.SSLObject) -> bytes | None:
    """The peer's leaf certificate (DER) as it arrived, before or despite verification."""
    public = getattr(ssl_object, "get_unverified_chain", None)  # Python 3.13+: DER bytes
    if public is not None:
        chain = public()
        return bytes(chain[0]) if chain else None
    # Python 3.11 and 3.12 have the same call, not yet public, answering certificate objects.
    private = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    chain = private() if private is not None else None
    return ssl.PEM_cert_to_DER_cert(chain[0].public_bytes()) if chain else None


def refused_certificate(exc: BaseException) -> bytes | None:
    """The leaf certificate (DER) whose verification failed with ``exc``, when the handshake kept it."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        exc = exc.certificate_error
    certificate = getattr(exc, _REFUSED_CERTIFICATE, None)
    return certificate if isinstance(certificate, bytes) else None


def peer_tls(ssl_object: object) -> PeerTls | None:
    """The certificate and handshake time of a connection's ``ssl_object`` (``None`` for plain TCP)."""
    if not isinstance(ssl_object, ssl.SSLObject):
        return None
    seconds = getattr(ssl_object, "handshake_seconds", None)
    return PeerTls(
        certificate=ssl_object.getpeercert(binary_form=True),
        handshake_seconds=seconds if isinstance(seconds, float) else None,
    )


def certificate_days_left(certificate: bytes, now: datetime) -> float | None:
    """Days from ``now`` until a DER certificate expires (negative once expired); ``None`` if unreadable."""
    try:
        expires = x509.load_der_x509_certificate(certificate).not_valid_after_utc
    except ValueError:
        return None
    return (expires - now.astimezone(UTC)).total_seconds() / SECONDS_PER_DAY


class ProbeResponse(ClientResponse):
    """A response that keeps the TLS facts of its connection, read before the connection goes away.

    A small body arrives with the headers, and aiohttp releases (with ``force_close``: closes) the
    connection before the caller gets the response, so this is the last moment they can be read.
    """

    peer: PeerTls | None = None

    async def start(self, connection: Connection) -> ClientResponse:
        """Record the connection's TLS facts, then parse the response as usual."""
        transport = connection.transport
        if transport is not None:
            self.peer = peer_tls(transport.get_extra_info("ssl_object"))
        return await super().start(connection)


@dataclass(slots=True)
class PhaseTimer:
    """Per-request timings, passed as ``trace_request_ctx``; summed over redirect hops.

    Phases are disjoint: ``connect`` is connection set-up without DNS and TLS, ``first_byte`` runs
    from the request headers being sent to the response headers being parsed.
    """

    monotonic: Callable[[], float]
    _totals: dict[Phase, float] = field(default_factory=dict)
    _create_seconds: float = 0.0
    _marks: dict[str, float] = field(default_factory=dict)

    def start(self, name: str) -> None:
        """Mark the start of a span."""
        self._marks[name] = self.monotonic()

    def elapsed(self, name: str) -> float | None:
        """Seconds since ``start(name)``, consuming the mark; ``None`` if it was never started."""
        started = self._marks.pop(name, None)
        return None if started is None else max(0.0, self.monotonic() - started)

    def add(self, phase: Phase, seconds: float | None) -> None:
        """Add to a phase (redirects add one span per hop)."""
        if seconds is not None:
            self._totals[phase] = self._totals.get(phase, 0.0) + seconds

    def add_connection(self, seconds: float | None) -> None:
        """Add a whole connection set-up (DNS + TCP + TLS); ``phases`` takes DNS and TLS out."""
        if seconds is not None:
            self._create_seconds += seconds
            self._totals.setdefault(Phase.CONNECT, 0.0)

    def phases(self) -> dict[Phase, float]:
        """The phases seen so far."""
        out = dict(self._totals)
        if Phase.CONNECT in out:
            others = out.get(Phase.DNS, 0.0) + out.get(Phase.TLS, 0.0)
            out[Phase.CONNECT] = max(0.0, self._create_seconds - others)
        return out


_Hook = Callable[[aiohttp.ClientSession, SimpleNamespace, object], Awaitable[None]]


def _hook(action: Callable[[PhaseTimer, object], None]) -> _Hook:
    async def hook(_session: aiohttp.ClientSession, ctx: SimpleNamespace, params: object) -> None:
        timer = ctx.trace_request_ctx
        if isinstance(timer, PhaseTimer):  # requests made without one (ws_connect) are not traced
            action(timer, params)

    return hook


def _response_done(timer: PhaseTimer, params: object) -> None:
    timer.add(Phase.FIRST_BYTE, timer.elapsed("request"))
    response = getattr(params, "response", None)
    if isinstance(response, ProbeResponse) and response.peer is not None:
        timer.add(Phase.TLS, response.peer.handshake_seconds)


def _trace_config() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_dns_resolvehost_start.append(_hook(lambda t, _: t.start("dns")))
    trace.on_dns_resolvehost_end.append(_hook(lambda t, _: t.add(Phase.DNS, t.elapsed("dns"))))
    trace.on_connection_create_start.append(_hook(lambda t, _: t.start("connect")))
    trace.on_connection_create_end.append(
        _hook(lambda t, _: t.add_connection(t.elapsed("connect")))
    )
    trace.on_request_headers_sent.append(_hook(lambda t, _: t.start("request")))
    trace.on_request_redirect.append(_hook(_response_done))
    trace.on_request_end.append(_hook(_response_done))
    return trace


def _tls_context(*, verify: bool, clock: Clock) -> ssl.SSLContext:
    """Like aiohttp's own contexts, plus a handshake-timing SSL object."""
    if verify:
        context = ssl.create_default_context()
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # accepts a self-signed certificate: verify_tls = false
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_alpn_protocols(("http/1.1",))
    context.sslobject_class = _timed_ssl_object(clock)
    return context


class _DnsSpan(Trace):
    """The connector's DNS signals for one lean request, timing a real lookup (not a cache hit).

    aiohttp's own requests send these through the session's trace hooks (``_trace_config``); a lean
    request has no aiohttp request around it, so it hands the connector this instead.
    """

    def __init__(self, timer: PhaseTimer) -> None:  # only the DNS signals are sent: no super()
        self._timer = timer

    async def send_dns_resolvehost_start(self, host: str) -> None:  # noqa: ARG002 - aiohttp's signature
        """A lookup starts."""
        self._timer.start("dns")

    async def send_dns_resolvehost_end(self, host: str) -> None:  # noqa: ARG002 - aiohttp's signature
        """The lookup answered."""
        self._timer.add(Phase.DNS, self._timer.elapsed("dns"))

    async def send_dns_cache_hit(self, host: str) -> None:
        """Nothing to time."""

    async def send_dns_cache_miss(self, host: str) -> None:
        """Nothing to time: the lookup's own start and end follow."""


class ProbeConnector(aiohttp.TCPConnector):
    """The probes' connector: fresh connection per request, no pool limit, timed TLS contexts."""

    def __init__(
        self,
        *,
        clock: Clock,
        resolver: AbstractResolver | None = None,
        http_client: HttpClient = HttpClient.AUTO,
    ) -> None:
        # Blocking (the CA bundle is read from disk), once, when the composition root starts.
        self._tls_contexts = {
            True: _tls_context(verify=True, clock=clock),
            False: _tls_context(verify=False, clock=clock),
        }
        self.lean_http: Final = http_client is not HttpClient.AIOHTTP
        """Whether checks the lean client supports run on it (``http_lean.py``)."""
        super().__init__(
            force_close=True,
            limit=0,
            ttl_dns_cache=DNS_CACHE_SECONDS,
            resolver=resolver,
            ssl=self._tls_contexts[True],
        )

    def tls_context(self, *, verify: bool) -> ssl.SSLContext:
        """The context for a request that does (or, for a self-signed target, does not) verify."""
        return self._tls_contexts[verify]

    async def resolve(self, host: str, port: int, timer: PhaseTimer) -> list[ResolveResult]:
        """``host``'s addresses as aiohttp's own requests get them: same resolver, same DNS cache.

        A real lookup is timed into ``timer`` as DNS; a cache hit or an IP literal is not. Raises
        ``OSError`` when the name does not resolve, and aiohttp's ``InvalidUrlClientError`` for a
        legacy numeric IPv4 form (``127.1``), as aiohttp's requests do.
        """
        return await self._resolve_host(host, port, traces=[_DnsSpan(timer)])


def tls_setting(session: aiohttp.ClientSession, *, verify: bool) -> ssl.SSLContext | bool:
    """The ``ssl=`` argument for a probe request: our timed context, or a plain flag for other sessions."""
    connector = session.connector
    if isinstance(connector, ProbeConnector):
        return connector.tls_context(verify=verify)
    return verify


def make_client_session(
    *,
    clock: Clock | None = None,
    resolver: AbstractResolver | None = None,
    http_client: HttpClient | None = None,
) -> aiohttp.ClientSession:
    """The shared probe session. Create it once, in the composition root, and close it on shutdown.

    ``clock`` times TLS handshakes (the probes time everything else with their context's clock);
    ``resolver`` replaces the system resolver (tests use one that never leaves the machine);
    ``http_client`` chooses the HTTP checks' client, by default from ``UPTIME_HTTP_CLIENT``
    (``ConfigError`` for an unknown value).
    """
    client = http_client_from(os.environ) if http_client is None else http_client
    return aiohttp.ClientSession(
        connector=ProbeConnector(
            clock=clock or SystemClock(), resolver=resolver, http_client=client
        ),
        trace_configs=[_trace_config()],
        response_class=ProbeResponse,
        timeout=aiohttp.ClientTimeout(total=None),  # the caller owns the deadline
        cookie_jar=aiohttp.DummyCookieJar(),  # one probe must never carry state into the next
        raise_for_status=False,
    )
