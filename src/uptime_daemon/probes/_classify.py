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


def classify(exc: BaseException, *, tls: bool = False) -> FailureReason:  # noqa: C901, PLR0911 - one answer per family
    """The failure reason for an exception a probe caught; ``tls`` says the URL was https/wss."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return FailureReason.DNS
    if isinstance(
        exc, aiohttp.ClientSSLError | ssl.SSLError | aiohttp.ClientConnectorCertificateError
    ):
        return FailureReason.TLS
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return FailureReason.CONNECTION_REFUSED
        if tls and isinstance(
            exc.os_error, ConnectionResetError | ConnectionAbortedError | ssl.SSLError
        ):
            # A refused connect is ECONNREFUSED; a reset on a TLS connection came after the TCP
            # handshake, i.e. during the TLS one (a peer that does not speak TLS).
            return FailureReason.TLS
        return FailureReason.CONNECTION_ERROR
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
        cause = exc.certificate_error
        reason = getattr(cause, "verify_message", None) or str(cause)
        text = f"certificate rejected: {reason}"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        # aiohttp's own text embeds the repr of the request's SSL context, even for plain HTTP.
        # asyncio replaces strerror with "Connect call failed (...)"; the errno still says why.
        cause = exc.os_error
        why = os.strerror(cause.errno) if cause.errno else (cause.strerror or type(cause).__name__)
        text = f"cannot connect to {exc.host}:{exc.port}: {why}"
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
