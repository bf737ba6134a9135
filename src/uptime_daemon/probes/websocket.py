"""The WebSocket probe: upgrade, optional ordered send/expect script, clean close."""

from __future__ import annotations

from typing import Any, Final

import aiohttp
import orjson
from yarl import URL

from uptime_daemon.config.model import DatabaseService, HttpService, WebSocketService, WebSocketStep
from uptime_daemon.probes._classify import TARGET_ERRORS, classify, describe
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.http import resolve_url
from uptime_daemon.results import FailureReason, Phase, ProbeResult

_CLOSING: Final = frozenset(
    {aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED}
)


class _StepFailed(Exception):
    def __init__(self, reason: FailureReason, detail: str, close_code: int | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.close_code = close_code


def _matches(step: WebSocketStep, text: str) -> str | None:
    """Why ``text`` does not satisfy the expect step, or ``None`` when it does."""
    if step.expect is not None and text != step.expect:
        return f"expected {step.expect!r}, got {text[:80]!r}"
    if step.expect_contains is not None and step.expect_contains not in text:
        return f"expected a message containing {step.expect_contains!r}, got {text[:80]!r}"
    if step.expect_json is not None:
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            return f"expected JSON, got {text[:80]!r}"
        if not isinstance(document, dict):
            return "expected a JSON object"
        for key, value in step.expect_json.items():
            if document.get(key) != value:
                return f"{key}: expected {value!r}, got {document.get(key)!r}"[:200]
    return None


async def _expect(ws: aiohttp.ClientWebSocketResponse, step: WebSocketStep, index: int) -> None:
    while True:
        message = await ws.receive()
        if message.type in _CLOSING:
            raise _StepFailed(
                FailureReason.CLOSED,
                f"step {index}: closed by peer (code {ws.close_code})",
                ws.close_code,
            )
        if message.type is aiohttp.WSMsgType.ERROR:
            raise _StepFailed(
                FailureReason.PROTOCOL, f"step {index}: {describe(ws.exception() or Exception())}"
            )
        data: Any = message.data
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data)
        problem = _matches(step, text)
        if problem is None:
            return
        if not step.skip_unmatched:
            raise _StepFailed(FailureReason.ASSERTION, f"step {index}: {problem}")


async def _run_script(
    ws: aiohttp.ClientWebSocketResponse, script: tuple[WebSocketStep, ...]
) -> None:
    for index, step in enumerate(script):
        if step.send is not None:
            await ws.send_str(step.send)
        elif step.send_json is not None:
            await ws.send_str(orjson.dumps(step.send_json).decode())
        else:
            await _expect(ws, step, index)


async def probe_websocket(
    service: HttpService | WebSocketService | DatabaseService, ctx: ProbeContext
) -> ProbeResult:
    """Connect, run the script, close cleanly; record handshake and script times and the close code."""
    if not isinstance(service, WebSocketService):
        raise TypeError(f"probe_websocket got a {type(service).__name__}")
    started = ctx.clock.monotonic()
    phases: dict[Phase, float] = {}
    close_code: int | None = None
    days_left: float | None = None

    def result(failure: FailureReason | None, detail: str) -> ProbeResult:
        return ProbeResult(
            ok=failure is None,
            duration_seconds=ctx.clock.monotonic() - started,
            failure=failure,
            detail=detail,
            phases=phases,
            close_code=close_code,
            tls_days_left=days_left,
        )

    url = URL(resolve_url(service.url, ctx, scheme="ws"))
    if url.scheme == "wss":
        days_left = await ctx.certificates.days_left(
            url.raw_host or "", url.port or 443, ctx.clock.now()
        )
    try:
        async with ctx.session.ws_connect(
            url,
            protocols=service.subprotocols,
            headers=service.headers,
            ssl=service.verify_tls,
            max_msg_size=service.max_message_bytes,
            autoping=True,
        ) as ws:
            phases[Phase.HANDSHAKE] = ctx.clock.monotonic() - started
            if (
                service.require_subprotocol is not None
                and ws.protocol != service.require_subprotocol
            ):
                return result(
                    FailureReason.HANDSHAKE,
                    f"server chose subprotocol {ws.protocol!r}, not {service.require_subprotocol!r}",
                )
            script_started = ctx.clock.monotonic()
            try:
                await _run_script(ws, service.script)
            except _StepFailed as failed:
                close_code = failed.close_code
                return result(failed.reason, failed.detail)
            phases[Phase.SCRIPT] = ctx.clock.monotonic() - script_started
            await ws.close()
            close_code = ws.close_code
            return result(
                None, f"101 Switching Protocols, {len(service.script)} steps, closed {close_code}"
            )
    except aiohttp.WSServerHandshakeError as exc:
        return result(
            FailureReason.HANDSHAKE, f"handshake refused: {exc.status} {exc.message}"[:200]
        )
    except TARGET_ERRORS as exc:
        return result(classify(exc, tls=url.scheme == "wss"), describe(exc))
