"""The TCP probe, and the stream plumbing the socket probes share (Redis uses it too).

A check resolves the host, connects to the first address that accepts, optionally shakes hands in
TLS, and optionally sends a line and reads until the expected reply appears. Each step is timed, and
a failure is classified where it happens (a reset during the TLS handshake is a TLS failure, the same
reset while reading a reply is not), so no exception is ever judged by its message.

Connections are never pooled. ``opened`` closes them however the check ends: gracefully (bounded)
when it ran to its end, at once when it failed or the caller's deadline cancelled it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

from uptime_daemon.clock import Clock
from uptime_daemon.config.model import TcpService
from uptime_daemon.probes._attempt import Attempt
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.session import certificate_days_left
from uptime_daemon.redact import redact
from uptime_daemon.results import FailureReason, Phase, ProbeResult

__all__ = [
    "Stream",
    "TargetFailure",
    "excerpt",
    "hostport",
    "opened",
    "os_reason",
    "probe_tcp",
    "tls_context",
    "tls_note",
]

CHUNK_BYTES: Final = 64 * 1024
CLOSE_GRACE_SECONDS: Final = 0.5
"""How long a finished check waits for the peer to acknowledge its close (TLS close_notify)."""
DETAIL_CHARS: Final = 200
EXCERPT_CHARS: Final = 60


class TargetFailure(Exception):
    """A step failed because of the target or the network: already classified, with a short detail."""

    def __init__(self, reason: FailureReason, detail: str) -> None:
        """``detail`` is masked and shortened here, once."""
        self.reason = reason
        self.detail = redact(detail)[:DETAIL_CHARS]
        super().__init__(self.detail)


@dataclass(frozen=True, slots=True)
class Stream:
    """One connected (and possibly TLS-wrapped) stream."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    address: str
    """The IP address connected to."""
    certificate: bytes | None
    """The peer's leaf certificate (DER) when TLS was used, verified or not."""


def os_reason(exc: OSError) -> str:
    """Why a socket call failed, from its errno (asyncio rewrites the message, not the errno)."""
    if exc.errno and not isinstance(exc, socket.gaierror):  # getaddrinfo's codes are not errnos
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


def hostport(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def excerpt(data: bytes, limit: int = EXCERPT_CHARS) -> str:
    """A short printable rendering of bytes a peer sent: control characters escaped, quoted."""
    text = data.decode("utf-8", "replace")
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return f"'{shown}{'…' if len(text) > limit else ''}'"


def tls_note(days_left: float | None) -> str:
    """``TLS, certificate valid 89 days`` (or expired), for a success detail."""
    if days_left is None:
        return "TLS"
    if days_left < 0:
        return f"TLS, certificate expired {int(-days_left)} days ago"
    return f"TLS, certificate valid {int(days_left)} days"


@lru_cache(maxsize=32)
def _cached_tls_context(verify: bool, ca_file: str | None, _mtime_ns: int) -> ssl.SSLContext:
    if verify:
        return ssl.create_default_context(cafile=ca_file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # verify_tls = false: a self-signed certificate is fine
    return context


def tls_context(*, verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """A client context, built once per setting, and again when ``ca_file`` changes on disk.

    Building one reads the CA bundle from disk (blocking), so it is not done on every check.

    Raises:
        TargetFailure: the CA file cannot be read or holds no certificate (reason ``tls``).
    """
    ca_file = ca_file if verify else None
    try:
        mtime_ns = Path(ca_file).stat().st_mtime_ns if ca_file is not None else 0
        return _cached_tls_context(verify, ca_file, mtime_ns)
    except (OSError, ssl.SSLError) as exc:
        raise TargetFailure(FailureReason.TLS, f"cannot load CA file {ca_file}: {exc}") from exc


async def _resolve(host: str, port: int, clock: Clock, phases: dict[Phase, float]) -> list[str]:
    """The host's addresses, in the system's order of preference; an IP literal as it is."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [host]
    started = clock.monotonic()
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetFailure(FailureReason.DNS, f"cannot resolve {host}: {os_reason(exc)}") from exc
    except UnicodeError as exc:  # a label IDNA cannot encode
        raise TargetFailure(FailureReason.DNS, f"cannot resolve {host}: {exc}") from exc
    finally:
        phases[Phase.DNS] = clock.monotonic() - started
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def _connect(
    host: str, port: int, addresses: list[str], clock: Clock, phases: dict[Phase, float]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """Connect to the first address that accepts; the reason of the last one otherwise."""
    started = clock.monotonic()
    error: OSError | None = None
    try:
        for address in addresses:
            try:
                reader, writer = await asyncio.open_connection(address, port)
            except OSError as exc:
                error = exc
            else:
                return reader, writer, address
    finally:
        phases[Phase.CONNECT] = clock.monotonic() - started
    reason = (
        FailureReason.CONNECTION_REFUSED
        if isinstance(error, ConnectionRefusedError)
        else FailureReason.CONNECTION_ERROR
    )
    why = os_reason(error) if error is not None else "no address"
    raise TargetFailure(reason, f"cannot connect to {hostport(host, port)}: {why}")


async def _start_tls(
    writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    server_name: str,
    clock: Clock,
    phases: dict[Phase, float],
) -> bytes | None:
    """Shake hands; a failure here (a reset included: a peer that does not speak TLS) is ``tls``."""
    started = clock.monotonic()
    try:
        await writer.start_tls(context, server_hostname=server_name)
    except ssl.SSLCertVerificationError as exc:
        detail = f"certificate rejected: {exc.verify_message or exc.reason}"
        raise TargetFailure(FailureReason.TLS, detail) from exc
    except ssl.SSLError as exc:
        detail = f"TLS handshake failed: {exc.reason or type(exc).__name__}"
        raise TargetFailure(FailureReason.TLS, detail) from exc
    except (ConnectionResetError, ConnectionAbortedError, EOFError) as exc:
        detail = "TLS handshake failed: the peer closed the connection (does it speak TLS?)"
        raise TargetFailure(FailureReason.TLS, detail) from exc
    except OSError as exc:
        detail = f"TLS handshake failed: {os_reason(exc)}"
        raise TargetFailure(FailureReason.TLS, detail) from exc
    finally:
        phases[Phase.TLS] = clock.monotonic() - started
    ssl_object = writer.get_extra_info("ssl_object")
    if isinstance(ssl_object, ssl.SSLObject):
        return ssl_object.getpeercert(binary_form=True)
    return None


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close politely, but never wait more than ``CLOSE_GRACE_SECONDS`` for the peer."""
    try:
        writer.close()
        async with asyncio.timeout(CLOSE_GRACE_SECONDS):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        pass  # the peer's trouble, not the check's: the abort below frees the socket anyway
    finally:
        writer.transport.abort()  # a no-op once closed


@asynccontextmanager
async def opened(
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None,
    server_name: str | None,
    clock: Clock,
    phases: dict[Phase, float],
) -> AsyncIterator[Stream]:
    """A fresh connection to ``host:port`` (TLS with SNI ``server_name or host`` when ``tls``).

    Raises:
        TargetFailure: resolving (``dns``), connecting (``connection_refused``,
            ``connection_error``) or the handshake (``tls``) failed.
    """
    addresses = await _resolve(host, port, clock, phases)
    reader, writer, address = await _connect(host, port, addresses, clock, phases)
    try:
        certificate = None
        if tls is not None:
            certificate = await _start_tls(writer, tls, server_name or host, clock, phases)
        yield Stream(reader, writer, address, certificate)
    except BaseException:
        writer.transport.abort()  # failed or cancelled: free the socket now, wait for nothing
        raise
    await _close(writer)


async def _read_until(
    reader: asyncio.StreamReader, needle: bytes, limit: int
) -> tuple[bytes, bool, bool]:
    """Read until ``needle`` appears, ``limit`` bytes arrived or the peer closed.

    Returns (what was read, needle found, peer closed).
    """
    data = bytearray()
    searched = 0
    while True:
        if data.find(needle, searched) >= 0:
            return bytes(data), True, False
        searched = max(0, len(data) - len(needle) + 1)
        if len(data) >= limit:
            return bytes(data), False, False
        chunk = await reader.read(min(CHUNK_BYTES, limit - len(data)))
        if not chunk:
            return bytes(data), False, True
        data += chunk


async def _converse(
    service: TcpService, stream: Stream, clock: Clock, phases: dict[Phase, float]
) -> tuple[FailureReason | None, str]:
    """Send ``send``, read until ``expect``; the failure (if any) and a detail about the reply."""
    target = hostport(service.host, service.port)
    try:
        if service.send is not None:
            started = clock.monotonic()
            stream.writer.write(service.send.encode())
            await stream.writer.drain()
            phases[Phase.WRITE] = clock.monotonic() - started
        if service.expect is None:
            return None, ""
        started = clock.monotonic()
        data, found, closed = await _read_until(
            stream.reader, service.expect.encode(), service.max_bytes
        )
        phases[Phase.READ] = clock.monotonic() - started
    except ssl.SSLError as exc:
        raise TargetFailure(FailureReason.TLS, f"TLS error from {target}: {exc.reason}") from exc
    except OSError as exc:
        raise TargetFailure(
            FailureReason.CONNECTION_ERROR, f"connection to {target} failed: {os_reason(exc)}"
        ) from exc
    if found:
        first_line = data.split(b"\n", 1)[0].rstrip(b"\r")
        return None, f"replied {excerpt(first_line)}"
    if closed and not data:
        return FailureReason.CLOSED, f"{target} closed the connection without a reply"
    why = "before closing" if closed else f"in the first {service.max_bytes} bytes"
    return FailureReason.ASSERTION, f"no {service.expect!r} {why}, got {excerpt(data)}"


async def probe_tcp(service: TcpService, ctx: ProbeContext) -> ProbeResult:
    """Connect (and TLS, and the banner exchange when configured) once."""
    clock = ctx.clock
    attempt = Attempt(clock)
    phases, result = attempt.phases, attempt.result

    try:
        context = (
            tls_context(verify=service.verify_tls, ca_file=service.ca_file) if service.tls else None
        )
        async with opened(
            service.host,
            service.port,
            tls=context,
            server_name=service.server_name,
            clock=clock,
            phases=phases,
        ) as stream:
            if stream.certificate is not None:
                attempt.tls_days_left = certificate_days_left(stream.certificate, clock.now())
            failure, said = await _converse(service, stream, clock, phases)
            target = hostport(service.host, service.port)
            if stream.address != service.host:
                target += f" ({stream.address})"
            detail = f"connected to {target}"
            if service.tls:
                detail += f" ({tls_note(attempt.tls_days_left)})"
            if failure is not None:
                return result(failure, said)
            return result(None, f"{detail}, {said}" if said else detail)
    except TargetFailure as exc:
        return result(exc.reason, exc.detail)
