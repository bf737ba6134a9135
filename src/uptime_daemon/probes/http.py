"""The HTTP(S) probe: one request, a streamed and capped body, assertions; on one of two clients.

Success means an accepted status and every body assertion holding. The body is read only when the
status is accepted, and never past ``max_body_bytes``: a 1 GB answer costs one chunk (none when its
Content-Length already says too much). A plain check runs on the lean client (``http_lean.py``:
llhttp on the loop's own transports, at a fraction of aiohttp's CPU); the rest, and every check
when ``UPTIME_HTTP_CLIENT=aiohttp``, on aiohttp's client through the shared session. Both judge
alike (``_http_verdict.py``). ``make_client_session`` lives in ``session.py`` and is re-exported
here for the composition root.
"""

from __future__ import annotations

from typing import Final

import aiohttp

from uptime_daemon.config.model import HttpService
from uptime_daemon.probes._classify import TARGET_ERRORS, classify, describe
from uptime_daemon.probes._http_verdict import (
    NO_BODY_STATUSES,
    body_too_large,
    check_body,
    json_equal,
    judge_body,
    judge_status,
    keeps_body,
    request_headers,
)
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.http_lean import lean_supported, probe_http_lean
from uptime_daemon.probes.session import (
    PhaseTimer,
    ProbeConnector,
    ProbeResponse,
    certificate_days_left,
    make_client_session,
    refused_certificate,
    tls_setting,
)
from uptime_daemon.results import FailureReason, Phase, ProbeResult

__all__ = [
    "check_body",
    "json_equal",
    "lean_supported",
    "make_client_session",
    "probe_http",
    "probe_http_aiohttp",
    "resolve_url",
]

CHUNK_BYTES: Final = 64 * 1024


def resolve_url(url: str, ctx: ProbeContext, scheme: str = "http") -> str:
    """Relative URLs (``/health``) point at this daemon's own server; ``scheme="ws"`` for WebSockets."""
    if not url.startswith("/"):
        return url
    base = ctx.self_base_url.rstrip("/")
    if scheme == "ws":
        base = "ws" + base.removeprefix("http")  # http → ws, https → wss
    return base + url


async def probe_http(service: HttpService, ctx: ProbeContext) -> ProbeResult:
    """One request; success means an accepted status and every body assertion holding.

    The lean client runs it when the session's connector allows (``UPTIME_HTTP_CLIENT``) and the
    check is a plain one (``lean_supported``); aiohttp's client otherwise.
    """
    connector = ctx.session.connector
    if isinstance(connector, ProbeConnector) and connector.lean_http and lean_supported(service):
        return await probe_http_lean(service, ctx, connector, resolve_url(service.url, ctx))
    return await probe_http_aiohttp(service, ctx)


async def _read_capped(response: aiohttp.ClientResponse, limit: int, *, keep: bool) -> bytes | None:
    """The body (empty unless ``keep``), or ``None`` as soon as it is known to exceed ``limit``."""
    if response.content_length is not None and response.content_length > limit:
        return None
    body = bytearray()
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            return None
        if keep:
            body += chunk
    return bytes(body)


async def _judge(
    service: HttpService, response: aiohttp.ClientResponse, timer: PhaseTimer, ctx: ProbeContext
) -> tuple[FailureReason | None, str]:
    """Status first (a wrong one needs no body), then the capped body and its assertions."""
    failure, status_line = judge_status(service, response.status, response.reason)
    if failure is not None:
        return failure, status_line
    if service.method == "HEAD" or response.status in NO_BODY_STATUSES:
        return None, status_line
    body_started = ctx.clock.monotonic()
    body = await _read_capped(response, service.max_body_bytes, keep=keeps_body(service))
    timer.add(Phase.BODY, ctx.clock.monotonic() - body_started)
    if body is None:
        return body_too_large(service, status_line)
    return judge_body(service, status_line, body)


async def probe_http_aiohttp(service: HttpService, ctx: ProbeContext) -> ProbeResult:
    """One check on aiohttp's client, through the shared session (any ``HttpService``)."""
    url = resolve_url(service.url, ctx)
    timer = PhaseTimer(ctx.clock.monotonic)
    started = ctx.clock.monotonic()
    http_status: int | None = None
    days_left: float | None = None

    def result(failure: FailureReason | None, detail: str) -> ProbeResult:
        return ProbeResult(
            ok=failure is None,
            duration_seconds=ctx.clock.monotonic() - started,
            failure=failure,
            detail=detail,
            phases=timer.phases(),
            http_status=http_status,
            tls_days_left=days_left,
        )

    try:
        async with ctx.session.request(
            service.method,
            url,
            headers=request_headers(service),
            data=service.body,
            allow_redirects=service.follow_redirects,
            max_redirects=service.max_redirects,
            ssl=tls_setting(ctx.session, verify=service.verify_tls),
            trace_request_ctx=timer,
        ) as response:
            http_status = response.status
            if isinstance(response, ProbeResponse) and response.peer is not None:
                certificate = response.peer.certificate
                days_left = (
                    certificate_days_left(certificate, ctx.clock.now()) if certificate else None
                )
            failure, detail = await _judge(service, response, timer, ctx)
            return result(failure, detail)
    except aiohttp.TooManyRedirects as exc:
        http_status = exc.history[-1].status if exc.history else None
        return result(
            FailureReason.HTTP_STATUS,
            f"more than {service.max_redirects} redirects, last {http_status}",
        )
    except TARGET_ERRORS as exc:
        refused = refused_certificate(exc)  # a refused certificate's expiry is recorded too
        if refused is not None:
            days_left = certificate_days_left(refused, ctx.clock.now())
        return result(classify(exc, tls=url.startswith("https:")), describe(exc))
