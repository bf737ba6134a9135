"""The HTTP(S) probe, and the one client session every probe shares.

The session uses a fresh connection per probe (``force_close``), as real probes must: connect and
TLS timings are real and a dead listener is noticed. Phase timings come from an aiohttp
``TraceConfig`` whose state travels in each request's own ``trace_request_ctx``, so concurrent probes
never mix them. The body is streamed and capped; a 1 GB answer is never buffered.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Final

import aiohttp
import orjson

from uptime_daemon.config.model import DatabaseService, HttpService, WebSocketService
from uptime_daemon.probes._classify import TARGET_ERRORS, classify, describe
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.results import FailureReason, Phase, ProbeResult

CHUNK_BYTES: Final = 64 * 1024
_MISSING: Final = object()


@dataclass(slots=True)
class _Timings:
    """Per-request trace state (monotonic seconds)."""

    clock: Any
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks[name] = self.clock()

    def phases(self) -> dict[Phase, float]:
        out: dict[Phase, float] = {}
        m = self.marks
        for phase, start, end in (
            (Phase.DNS, "dns_start", "dns_end"),
            (Phase.CONNECT, "connect_start", "connect_end"),
            (Phase.FIRST_BYTE, "request_start", "headers"),
        ):
            if start in m and end in m:
                out[phase] = max(0.0, m[end] - m[start])
        return out


def _trace_config() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig(trace_config_ctx_factory=SimpleNamespace)

    def on(name: str) -> Callable[[object, SimpleNamespace, object], Awaitable[None]]:
        async def hook(_session: object, ctx: SimpleNamespace, _params: object) -> None:
            timings = ctx.trace_request_ctx
            if isinstance(timings, _Timings):
                timings.mark(name)

        return hook

    trace.on_request_start.append(on("request_start"))
    trace.on_dns_resolvehost_start.append(on("dns_start"))
    trace.on_dns_resolvehost_end.append(on("dns_end"))
    trace.on_connection_create_start.append(on("connect_start"))
    trace.on_connection_create_end.append(on("connect_end"))
    trace.on_request_end.append(on("headers"))
    return trace


def make_client_session(
    resolver: aiohttp.abc.AbstractResolver | None = None,
) -> aiohttp.ClientSession:
    """The shared probe session: fresh connection per probe, no pool limit, phase tracing."""
    connector = aiohttp.TCPConnector(
        force_close=True, limit=0, ttl_dns_cache=10, resolver=resolver, enable_cleanup_closed=False
    )
    return aiohttp.ClientSession(
        connector=connector,
        trace_configs=[_trace_config()],
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
        raise_for_status=False,
    )


def resolve_url(url: str, ctx: ProbeContext, scheme: str = "http") -> str:
    """Relative URLs (``/health``) point at this daemon's own server."""
    if not url.startswith("/"):
        return url
    base = ctx.self_base_url
    if scheme == "ws":
        base = "ws" + base.removeprefix("http")
    return base + url


def _lookup(document: object, path: str) -> object:
    current = document
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def check_body(service: HttpService, body: bytes) -> str | None:
    """The first failed body assertion, described; ``None`` when all hold."""
    if service.body_contains is not None and service.body_contains.encode() not in body:
        return f"body does not contain {service.body_contains!r}"
    if not service.json_assertions:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "body is not JSON"
    for assertion in service.json_assertions:
        value = _lookup(document, assertion.path)
        if value is _MISSING:
            return f"{assertion.path}: missing"
        if value != assertion.equals:
            return f"{assertion.path}: expected {assertion.equals!r}, got {value!r}"[:200]
    return None


def _headers(service: HttpService) -> dict[str, str]:
    headers = dict(service.headers)
    if service.bearer_token is not None:
        headers["Authorization"] = f"Bearer {service.bearer_token.get_secret_value()}"
    elif service.basic_auth is not None:
        raw = f"{service.basic_auth.username}:{service.basic_auth.password.get_secret_value()}"
        headers["Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode()
    return headers


async def probe_http(
    service: HttpService | WebSocketService | DatabaseService, ctx: ProbeContext
) -> ProbeResult:
    """One request; success means an accepted status and every body assertion holding."""
    if not isinstance(service, HttpService):
        raise TypeError(f"probe_http got a {type(service).__name__}")
    timings = _Timings(ctx.clock.monotonic)
    started = ctx.clock.monotonic()

    def result(
        failure: FailureReason | None,
        detail: str,
        *,
        http_status: int | None = None,
        tls_days_left: float | None = None,
        phases: dict[Phase, float] | None = None,
    ) -> ProbeResult:
        return ProbeResult(
            ok=failure is None,
            duration_seconds=ctx.clock.monotonic() - started,
            failure=failure,
            detail=detail,
            phases=timings.phases() | (phases or {}),
            http_status=http_status,
            tls_days_left=tls_days_left,
        )

    try:
        async with ctx.session.request(
            service.method,
            resolve_url(service.url, ctx),
            headers=_headers(service),
            data=service.body,
            allow_redirects=service.follow_redirects,
            max_redirects=service.max_redirects,
            ssl=service.verify_tls,
            trace_request_ctx=timings,
        ) as response:
            days = None
            if response.url.scheme == "https":
                days = await ctx.certificates.days_left(
                    response.url.raw_host or "", response.url.port or 443, ctx.clock.now()
                )
            body_started = ctx.clock.monotonic()
            body = bytearray()
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                body += chunk
                if len(body) > service.max_body_bytes:
                    return result(
                        FailureReason.BODY_TOO_LARGE,
                        f"body exceeds {service.max_body_bytes} bytes",
                        http_status=response.status,
                        tls_days_left=days,
                    )
            phases = {Phase.BODY: ctx.clock.monotonic() - body_started}
            status = f"{response.status} {response.reason or ''}".strip()
            if not service.status_accepted(response.status):
                return result(
                    FailureReason.HTTP_STATUS,
                    status,
                    http_status=response.status,
                    tls_days_left=days,
                    phases=phases,
                )
            problem = check_body(service, bytes(body))
            if problem is not None:
                return result(
                    FailureReason.ASSERTION,
                    problem,
                    http_status=response.status,
                    tls_days_left=days,
                    phases=phases,
                )
            return result(
                None, status, http_status=response.status, tls_days_left=days, phases=phases
            )
    except TARGET_ERRORS as exc:
        tls = resolve_url(service.url, ctx).startswith("https:")
        return result(classify(exc, tls=tls), describe(exc))
