"""Map exceptions to a closed ``FailureReason`` by their type, never by their message text."""

from __future__ import annotations

import ssl

import aiohttp
from aiohttp import http_exceptions

from uptime_daemon.redact import redact
from uptime_daemon.results import FailureReason

TARGET_ERRORS = (
    aiohttp.ClientError,
    OSError,
    ssl.SSLError,
    http_exceptions.HttpProcessingError,
    ValueError,
)
"""What a misbehaving target can make aiohttp raise; anything else is our bug and propagates."""


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
        return FailureReason.HTTP_STATUS
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
    """A short detail line: the exception's class and first line, never longer than 200 chars."""
    text = redact(str(exc).splitlines()[0]) if str(exc) else ""
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return detail[:200]
