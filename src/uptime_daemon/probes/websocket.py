"""The WebSocket probe: upgrade, an optional ordered send/expect script, a clean close.

Phases: ``tls`` (wss only), ``handshake`` (connect and HTTP upgrade, TLS apart) and ``script`` (the
script's round trips). aiohttp's ``ws_connect`` takes no ``trace_request_ctx``, so DNS and TCP
connect are not told apart from the upgrade here. A target that refuses the upgrade, or hangs up
or resets the connection before answering it in full, is a ``handshake`` failure.
"""

from __future__ import annotations

from typing import Final

import aiohttp
import orjson
from yarl import URL

from uptime_daemon.config.model import WebSocketService, WebSocketStep
from uptime_daemon.probes._classify import DETAIL_CHARS, TARGET_ERRORS, classify, describe
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.http import json_equal, resolve_url
from uptime_daemon.probes.session import (
    certificate_days_left,
    peer_tls,
    refused_certificate,
    tls_setting,
)
from uptime_daemon.results import FailureReason, Phase, ProbeResult

SHOWN_CHARS: Final = 80
_CLOSING: Final = frozenset(
    {aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED}
)


class _StepFailed(Exception):
    """The script stopped at a step; carries the result's reason and detail."""

    def __init__(self, reason: FailureReason, detail: str, close_code: int | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail[:DETAIL_CHARS]
        self.close_code = close_code


def _mismatch(step: WebSocketStep, text: str) -> str | None:
    """Why ``text`` does not satisfy the expect step, or ``None`` when it does."""
    shown = text[:SHOWN_CHARS]
    if step.expect is not None and text != step.expect:
        return f"expected {step.expect!r}, got {shown!r}"
    if step.expect_contains is not None and step.expect_contains not in text:
        return f"expected a message containing {step.expect_contains!r}, got {shown!r}"
    if step.expect_json is not None:
        return _json_mismatch(step.expect_json, text)
    return None


def _json_mismatch(expected: dict[str, object], text: str) -> str | None:
    """Subset match: every key of ``expected`` is in the JSON object ``text`` with that value."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return f"expected JSON, got {text[:SHOWN_CHARS]!r}"
    if not isinstance(document, dict):
        return f"expected a JSON object, got {text[:SHOWN_CHARS]!r}"
    for key, value in expected.items():
        if key not in document:
            return f"{key}: missing"
        if not json_equal(document[key], value):
            return f"{key}: expected {value!r}, got {document[key]!r}"
    return None


async def _expect(ws: aiohttp.ClientWebSocketResponse, step: WebSocketStep, index: int) -> None:
    while True:
        message = await ws.receive()
        if message.type in _CLOSING:
            code = ws.close_code
            shown = "without a close frame" if code is None else f"with code {code}"
            raise _StepFailed(FailureReason.CLOSED, f"step {index}: closed by peer {shown}", code)
        if message.type is aiohttp.WSMsgType.ERROR:
            error = ws.exception() or message.data
            reason = classify(error) if isinstance(error, BaseException) else FailureReason.PROTOCOL
            detail = describe(error) if isinstance(error, BaseException) else "protocol error"
            raise _StepFailed(reason, f"step {index}: {detail}", ws.close_code)
        data = message.data
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data)
        problem = _mismatch(step, text)
        if problem is None:
            return
        if not step.skip_unmatched:
            raise _StepFailed(FailureReason.ASSERTION, f"step {index}: {problem}")


async def _send(ws: aiohttp.ClientWebSocketResponse, text: str, index: int) -> None:
    try:
        await ws.send_str(text)
    except ConnectionResetError as exc:  # aiohttp's ClientConnectionResetError is one
        code = ws.close_code
        raise _StepFailed(
            FailureReason.CLOSED, f"step {index}: connection closed before sending", code
        ) from exc


async def _run_script(
    ws: aiohttp.ClientWebSocketResponse, script: tuple[WebSocketStep, ...]
) -> None:
    for index, step in enumerate(script):
        if step.send is not None:
            await _send(ws, step.send, index)
        elif step.send_json is not None:
            await _send(ws, orjson.dumps(step.send_json).decode(), index)
        else:
            await _expect(ws, step, index)


def _offered(service: WebSocketService) -> tuple[str, ...]:
    """The subprotocols to offer: the configured ones, and the required one if it is not among them."""
    required = service.require_subprotocol
    if required is None or required in service.subprotocols:
        return service.subprotocols
    return (*service.subprotocols, required)


async def probe_websocket(service: WebSocketService, ctx: ProbeContext) -> ProbeResult:
    """Connect, run the script, close cleanly; record the close code and the phase times."""
    url = URL(resolve_url(service.url, ctx, scheme="ws"))
    started = ctx.clock.monotonic()
    phases: dict[Phase, float] = {}
    close_code: int | None = None
    days_left: float | None = None
    http_status: int | None = None
    upgraded = False

    def result(failure: FailureReason | None, detail: str) -> ProbeResult:
        return ProbeResult(
            ok=failure is None,
            duration_seconds=ctx.clock.monotonic() - started,
            failure=failure,
            detail=detail,
            phases=phases,
            http_status=http_status,
            tls_days_left=days_left,
            close_code=close_code,
        )

    try:
        async with ctx.session.ws_connect(
            url,
            protocols=_offered(service),
            headers=service.headers,
            ssl=tls_setting(ctx.session, verify=service.verify_tls),
            max_msg_size=service.max_message_bytes,
            autoping=True,
        ) as ws:
            upgraded = True
            connected = ctx.clock.monotonic()
            http_status = 101
            handshake = connected - started
            peer = peer_tls(ws.get_extra_info("ssl_object"))
            if peer is not None:
                if peer.handshake_seconds is not None:
                    phases[Phase.TLS] = peer.handshake_seconds
                    handshake = max(0.0, handshake - peer.handshake_seconds)
                if peer.certificate:
                    days_left = certificate_days_left(peer.certificate, ctx.clock.now())
            phases[Phase.HANDSHAKE] = handshake
            if (
                service.require_subprotocol is not None
                and ws.protocol != service.require_subprotocol
            ):
                chosen = "none" if ws.protocol is None else repr(ws.protocol)
                return result(
                    FailureReason.HANDSHAKE,
                    f"server chose subprotocol {chosen}, not {service.require_subprotocol!r}",
                )
            try:
                await _run_script(ws, service.script)
            except _StepFailed as failed:
                close_code = failed.close_code
                return result(failed.reason, failed.detail)
            phases[Phase.SCRIPT] = ctx.clock.monotonic() - connected
            await ws.close()
            close_code = ws.close_code
            return result(
                None, f"101 Switching Protocols, {len(service.script)} steps, closed {close_code}"
            )
    except aiohttp.WSServerHandshakeError as exc:
        http_status = exc.status
        return result(
            FailureReason.HANDSHAKE, f"upgrade refused: {exc.status} {exc.message}"[:DETAIL_CHARS]
        )
    except TARGET_ERRORS as exc:
        refused = refused_certificate(exc)  # a refused certificate's expiry is recorded too
        if refused is not None:
            days_left = certificate_days_left(refused, ctx.clock.now())
        return result(*_failure(exc, tls=url.scheme == "wss", upgraded=upgraded))


def _failure(exc: BaseException, *, tls: bool, upgraded: bool) -> tuple[FailureReason, str]:
    """The reason and detail of a transport failure.

    Before the 101, a peer that hangs up or resets after the connection (and TLS) was made failed
    the handshake: the network did its part. Refusals, DNS, TLS and timeouts keep their reasons.
    """
    reason = classify(exc, tls=tls)
    if (
        not upgraded
        and reason is FailureReason.CONNECTION_ERROR
        and not isinstance(exc, aiohttp.ClientConnectorError)
    ):
        return FailureReason.HANDSHAKE, f"upgrade failed: {describe(exc)}"[:DETAIL_CHARS]
    return reason, describe(exc)
