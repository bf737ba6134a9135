"""The HTTP(S) probe: one request through the shared session, a streamed and capped body, assertions.

Success means an accepted status and every body assertion holding. The body is read only when the
status is accepted, in chunks, and never past ``max_body_bytes``: a 1 GB answer costs one chunk (none
when its Content-Length already says too much). ``make_client_session`` lives in ``session.py`` and
is re-exported here for the composition root.
"""

from __future__ import annotations

import base64
from typing import Final

import aiohttp
import orjson

from uptime_daemon.config.model import HttpService
from uptime_daemon.probes._classify import TARGET_ERRORS, classify, describe
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.session import (
    PhaseTimer,
    ProbeResponse,
    certificate_days_left,
    make_client_session,
    refused_certificate,
    tls_setting,
)
from uptime_daemon.results import FailureReason, Phase, ProbeResult

__all__ = ["check_body", "json_equal", "make_client_session", "probe_http", "resolve_url"]

CHUNK_BYTES: Final = 64 * 1024
DETAIL_CHARS: Final = 200
_NO_BODY_STATUSES: Final = frozenset({204, 304})
_MISSING: Final = object()


def resolve_url(url: str, ctx: ProbeContext, scheme: str = "http") -> str:
    """Relative URLs (``/health``) point at this daemon's own server; ``scheme="ws"`` for WebSockets."""
    if not url.startswith("/"):
        return url
    base = ctx.self_base_url.rstrip("/")
    if scheme == "ws":
        base = "ws" + base.removeprefix("http")  # http → ws, https → wss
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


def json_equal(actual: object, expected: object) -> bool:
    """JSON equality: like ``==``, except that ``true`` is not ``1`` (Python's bool is an int)."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            json_equal(actual[key], expected[key]) for key in expected
        )
    if isinstance(actual, list) and isinstance(expected, list | tuple):
        return len(actual) == len(expected) and all(map(json_equal, actual, expected))
    return actual == expected


def check_body(service: HttpService, body: bytes) -> str | None:
    """The first failed body assertion, described; ``None`` when all hold."""
    if service.body_contains is not None and service.body_contains.encode() not in body:
        return f"body does not contain {service.body_contains!r}"[:DETAIL_CHARS]
    if not service.json_assertions:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "body is not JSON"
    for assertion in service.json_assertions:
        value = _lookup(document, assertion.path)
        if value is _MISSING:
            return f"json {assertion.path}: missing"[:DETAIL_CHARS]
        if not json_equal(value, assertion.equals):
            return f"json {assertion.path}: expected {assertion.equals!r}, got {value!r}"[
                :DETAIL_CHARS
            ]
    return None


def _headers(service: HttpService) -> dict[str, str]:
    headers = dict(service.headers)
    if service.bearer_token is not None:
        headers["Authorization"] = f"Bearer {service.bearer_token.get_secret_value()}"
    elif service.basic_auth is not None:
        raw = f"{service.basic_auth.username}:{service.basic_auth.password.get_secret_value()}"
        headers["Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode()
    return headers


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
    status_line = f"{response.status} {response.reason or ''}".strip()
    if not service.status_accepted(response.status):
        return (
            FailureReason.HTTP_STATUS,
            f"{status_line}, expected {', '.join(service.accepted_status)}",
        )
    if service.method == "HEAD" or response.status in _NO_BODY_STATUSES:
        return None, status_line
    body_started = ctx.clock.monotonic()
    keep = service.body_contains is not None or bool(service.json_assertions)
    body = await _read_capped(response, service.max_body_bytes, keep=keep)
    timer.add(Phase.BODY, ctx.clock.monotonic() - body_started)
    if body is None:
        return (
            FailureReason.BODY_TOO_LARGE,
            f"{status_line}, body exceeds {service.max_body_bytes} bytes",
        )
    problem = check_body(service, body)
    if problem is not None:
        return FailureReason.ASSERTION, problem
    return None, status_line


async def probe_http(service: HttpService, ctx: ProbeContext) -> ProbeResult:
    """One request; success means an accepted status and every body assertion holding."""
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
            headers=_headers(service),
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
