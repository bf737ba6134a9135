"""The gRPC probe: the standard ``grpc.health.v1.Health/Check`` over a fresh ``grpc.aio`` channel.

One channel per check, with its own subchannel pool (gRPC otherwise shares connections, and their
reconnect backoff, between channels to the same address), closed in ``finally`` without grace, so
a check never reuses or leaves a connection. The probe sets no gRPC deadline: the caller's
``asyncio.timeout`` is the one deadline, and a server that accepts and never answers is its case.

Phases: ``connect`` (TCP, TLS and the HTTP/2 preface, up to a ready or failed channel) and
``query`` (the ``Check`` call). gRPC reports every transport failure as ``UNAVAILABLE`` and keeps
the operating system's reason (a refusal, a TLS alert, a non-HTTP/2 peer) only in its status text,
so that text is the one place where a reason is told apart by words (``unavailable_reason``).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Final

import grpc
from grpc_health.v1 import (
    health_pb2,
    health_pb2_grpc,
)

from uptime_daemon.config.model import GrpcService
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.redact import redact
from uptime_daemon.results import FailureReason, Phase, ProbeResult

DETAIL_CHARS: Final = 200
CONNECT_MARGIN_SECONDS: Final = 1.0
"""How long past the check's deadline gRPC may go on connecting (see ``channel_options``)."""
_SETTLED: Final = frozenset(
    {
        grpc.ChannelConnectivity.READY,
        grpc.ChannelConnectivity.TRANSIENT_FAILURE,
        grpc.ChannelConnectivity.SHUTDOWN,
    }
)
_BY_CODE: Final = {
    grpc.StatusCode.NOT_FOUND: FailureReason.NOT_SERVING,
    grpc.StatusCode.UNIMPLEMENTED: FailureReason.PROTOCOL,
    grpc.StatusCode.DEADLINE_EXCEEDED: FailureReason.TIMEOUT,
    grpc.StatusCode.UNAUTHENTICATED: FailureReason.AUTH,
    grpc.StatusCode.PERMISSION_DENIED: FailureReason.AUTH,
    grpc.StatusCode.CANCELLED: FailureReason.CONNECTION_ERROR,
}
"""Status codes with one meaning for a health check; the rest (INTERNAL, UNKNOWN, …) are protocol."""
_UNAVAILABLE_TEXTS: Final = (
    ("connection refused", FailureReason.CONNECTION_REFUSED),
    ("tls handshake", FailureReason.TLS),
    ("ssl_error", FailureReason.TLS),
    ("hostname verification", FailureReason.TLS),
    ("errors resolving", FailureReason.DNS),
    ("dns resolution failed", FailureReason.DNS),
    ("failed parsing http/2", FailureReason.PROTOCOL),
)
"""Words gRPC core puts in an ``UNAVAILABLE`` status text, first match wins."""
_CONNECT_FAILED: Final = re.compile(r"^failed to connect to all addresses; last error: [A-Z_]+: ")
NO_VERIFY_HINT: Final = " (verify_tls = false is not possible with gRPC: give ca_file)"
"""grpcio always verifies the server certificate; there is no switch to turn that off."""


def channel_options(timeout_seconds: float) -> tuple[tuple[str, int], ...]:
    """Options for a check's own channel: a connection of its own, one attempt, a bounded connect.

    gRPC shares connections (and their reconnect backoff) between channels to one address unless
    the channel has a local subchannel pool. And it keeps connecting after its channel is closed,
    until the attempt's deadline (``grpc.min_reconnect_backoff_ms``, 20 s by default): a silent
    peer would hold a socket that long after the caller gave up. Past the check's own deadline it
    is closed, so the caller's timeout still acts first.
    """
    connect_ms = round((timeout_seconds + CONNECT_MARGIN_SECONDS) * 1000)
    return (
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.enable_retries", 0),
        ("grpc.min_reconnect_backoff_ms", connect_ms),
    )


def unavailable_reason(text: str) -> FailureReason:
    """The reason behind an ``UNAVAILABLE`` status, from the words gRPC core put in its text."""
    lowered = text.lower()
    for words, reason in _UNAVAILABLE_TEXTS:
        if words in lowered:
            return reason
    return FailureReason.CONNECTION_ERROR


def status_text(error: grpc.aio.AioRpcError) -> str:
    """``CODE: text``, without gRPC's boilerplate: ``UNAVAILABLE: ipv4:…: Connection refused``."""
    text = _CONNECT_FAILED.sub("", error.details() or "")
    return f"{error.code().name}: {text}" if text else str(error.code().name)


def rpc_failure(error: grpc.aio.AioRpcError) -> FailureReason:
    """The failure reason of a failed health call: by status code, and for UNAVAILABLE by its text."""
    code = error.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return unavailable_reason(error.details() or "")
    return _BY_CODE.get(code, FailureReason.PROTOCOL)


def _describe(error: grpc.aio.AioRpcError, service: GrpcService) -> str:
    code = error.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return f"service {service.service!r} unknown to the server (NOT_FOUND)"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return "the server has no grpc.health.v1.Health service (UNIMPLEMENTED)"
    shown = status_text(error)
    if rpc_failure(error) is FailureReason.TLS and not service.verify_tls:
        return hinted(shown, NO_VERIFY_HINT)
    return redact(shown)[:DETAIL_CHARS]


def hinted(text: str, hint: str) -> str:
    """``text`` (masked, shortened) with ``hint`` after it, the whole within ``DETAIL_CHARS``."""
    return redact(text)[: DETAIL_CHARS - len(hint)] + hint


def _channel(service: GrpcService, roots: bytes | None) -> grpc.aio.Channel:
    options: tuple[tuple[str, Any], ...] = channel_options(service.timeout_seconds)
    if not service.tls:
        return grpc.aio.insecure_channel(service.target, options=options)
    if service.server_name:
        options = (*options, ("grpc.ssl_target_name_override", service.server_name))
    credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    return grpc.aio.secure_channel(service.target, credentials, options=options)


async def read_roots(ca_file: str | None) -> bytes | None:
    """The PEM bytes of a CA file (off the event loop), or ``None`` for the system's roots."""
    return None if ca_file is None else await asyncio.to_thread(Path(ca_file).read_bytes)


def _status_name(status: int) -> str:
    try:
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(status))
    except ValueError:  # an open enum: a newer server may send a value we do not know
        return str(status)


async def _settle(channel: grpc.aio.Channel) -> None:
    """Connect, until the channel is ready or has failed (a failed call then says why)."""
    state = channel.get_state(try_to_connect=True)
    while state not in _SETTLED:
        await channel.wait_for_state_change(state)
        state = channel.get_state(try_to_connect=True)


async def probe_grpc(service: GrpcService, ctx: ProbeContext) -> ProbeResult:
    """Ask the server's health service about ``service.service``: SERVING is up, anything else down."""
    started = ctx.clock.monotonic()
    asked = f"service {service.service!r}" if service.service else "the server"
    try:
        roots = await read_roots(service.ca_file if service.tls else None)
    except OSError as exc:  # checked at load; gone or unreadable since
        return ProbeResult(
            ok=False,
            duration_seconds=ctx.clock.monotonic() - started,
            failure=FailureReason.TLS,
            detail=f"cannot read ca_file: {exc.strerror or type(exc).__name__}",
        )
    phases: dict[Phase, float] = {}
    channel = _channel(service, roots)
    try:
        await _settle(channel)
        connected = ctx.clock.monotonic()
        phases[Phase.CONNECT] = connected - started
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service.service))
        except grpc.aio.AioRpcError as exc:
            return ProbeResult(
                ok=False,
                duration_seconds=ctx.clock.monotonic() - started,
                failure=rpc_failure(exc),
                detail=_describe(exc, service),
                phases=phases,
            )
        phases[Phase.QUERY] = ctx.clock.monotonic() - connected
    finally:
        await channel.close()  # no grace: cancels a call still in flight and returns at once
    duration = ctx.clock.monotonic() - started
    status = _status_name(response.status)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        return ProbeResult(
            ok=False,
            duration_seconds=duration,
            failure=FailureReason.NOT_SERVING,
            detail=f"{asked} is {status}",
            phases=phases,
        )
    return ProbeResult(
        ok=True, duration_seconds=duration, detail=f"{asked} is {status}", phases=phases
    )
