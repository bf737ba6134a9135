"""Map exceptions to a closed ``FailureReason`` by their type, never by their message text."""

from __future__ import annotations

import os
import ssl
from typing import Final

import aiohttp
from aiohttp import http_exceptions

from uptime_daemon.redact import redact
from uptime_daemon.results import FailureReason

DETAIL_CHARS: Final = 200

TARGET_ERRORS: Final = (
    aiohttp.ClientError,
    OSError,
    ssl.SSLError,
    http_exceptions.HttpProcessingError,
    aiohttp.WebSocketError,
)
"""What a misbehaving target can make aiohttp raise; anything else is our bug and propagates.

``OSError`` includes ``TimeoutError``, but the caller's ``asyncio.timeout`` reaches the probe as
``CancelledError`` (a ``BaseException``) and only becomes ``TimeoutError`` outside it.
"""


def connect_failure(os_error: OSError, *, tls: bool) -> FailureReason:
    """The reason a connection could not be set up (DNS apart) with ``os_error``."""
    if isinstance(os_error, ConnectionRefusedError):
        return FailureReason.CONNECTION_REFUSED
    if isinstance(os_error, ssl.SSLError) or (
        tls and isinstance(os_error, ConnectionResetError | ConnectionAbortedError)
    ):
        # A refused connect is ECONNREFUSED; a reset on a TLS connection came after the TCP
        # handshake, i.e. during the TLS one (a peer that does not speak TLS).
        return FailureReason.TLS
    return FailureReason.CONNECTION_ERROR


def connect_detail(host: str | None, port: int | None, os_error: OSError) -> str:
    """``cannot connect to HOST:PORT: why``, the why from the errno where there is one."""
    # asyncio replaces strerror with "Connect call failed (...)"; the errno still says why.
    errno = os_error.errno
    why = os.strerror(errno) if errno else (os_error.strerror or type(os_error).__name__)
    return redact(f"cannot connect to {host}:{port}: {why}")[:DETAIL_CHARS]


def certificate_detail(error: BaseException) -> str:
    """``certificate rejected: why``, as OpenSSL's verification put it."""
    reason = getattr(error, "verify_message", None) or str(error)
    return redact(f"certificate rejected: {reason}")[:DETAIL_CHARS]


def classify(exc: BaseException, *, tls: bool = False) -> FailureReason:  # noqa: C901, PLR0911 - one answer per family
    """The failure reason for an exception a probe caught; ``tls`` says the URL was https/wss."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return FailureReason.DNS
    if isinstance(
        exc, aiohttp.ClientSSLError | ssl.SSLError | aiohttp.ClientConnectorCertificateError
    ):
        return FailureReason.TLS
    if isinstance(exc, aiohttp.ClientConnectorError):
        return connect_failure(exc.os_error, tls=tls)
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return FailureReason.TIMEOUT
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return FailureReason.HANDSHAKE
    if isinstance(exc, aiohttp.TooManyRedirects):
        return FailureReason.HTTP_STATUS  # the last answer was a redirect nobody asked us to accept
    if isinstance(exc, aiohttp.WebSocketError):
        if exc.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
            return FailureReason.BODY_TOO_LARGE
        return FailureReason.PROTOCOL
    if isinstance(
        exc,
        aiohttp.ClientResponseError
        | aiohttp.ClientPayloadError
        | http_exceptions.HttpProcessingError
        | aiohttp.WSMessageTypeError,
    ):
        return FailureReason.PROTOCOL
    if isinstance(exc, ConnectionRefusedError):
        return FailureReason.CONNECTION_REFUSED
    return FailureReason.CONNECTION_ERROR


def describe(exc: BaseException) -> str:
    """A short detail line: the exception's class and first line, credentials in URLs masked."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        text = certificate_detail(exc.certificate_error)
    elif isinstance(exc, aiohttp.ClientConnectorError):
        # aiohttp's own text embeds the repr of the request's SSL context, even for plain HTTP.
        text = connect_detail(exc.host, exc.port, exc.os_error)
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        # Its text is the repr of whatever part of the answer had been parsed when the peer left.
        before = isinstance(exc.message, str)
        text = "the server closed the connection " + (
            "before answering" if before else "in the middle of its answer"
        )
    elif isinstance(exc, aiohttp.ClientOSError) and exc.errno:
        text = os.strerror(exc.errno)  # "Connection reset by peer", not "[Errno 104] ..."
    else:
        lines = str(exc).splitlines()
        text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return redact(text)[:DETAIL_CHARS]
