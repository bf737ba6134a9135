"""Certificate expiry of HTTPS/WSS targets, read by a separate TLS handshake and cached per target.

aiohttp releases a fresh connection as soon as a small body is read, before the caller can ask the
transport for the peer certificate, so the probe asks here instead: one handshake per target per
``ttl_seconds`` (an hour), whatever the probe interval. Verification is off for this handshake on
purpose: the point is to report expiry even of a certificate the probe itself rejects.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from cryptography import x509

DEFAULT_TTL_SECONDS: Final = 3600.0


@dataclass(slots=True)
class CertificateCache:
    """Expiry per ``(host, port)``; entries older than ``ttl_seconds`` are fetched again."""

    ttl_seconds: float = DEFAULT_TTL_SECONDS
    _entries: dict[tuple[str, int], tuple[float, datetime | None]] = field(default_factory=dict)

    async def days_left(self, host: str, port: int, now: datetime) -> float | None:
        """Days until the certificate served at ``host:port`` expires; ``None`` if it cannot be read."""
        key = (host, port)
        cached = self._entries.get(key)
        if cached is None or time.monotonic() - cached[0] > self.ttl_seconds:
            cached = (time.monotonic(), await _fetch_expiry(host, port))
            self._entries[key] = cached
        expires = cached[1]
        if expires is None:
            return None
        return (expires - now.astimezone(UTC)).total_seconds() / 86_400


async def _fetch_expiry(host: str, port: int) -> datetime | None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    except (OSError, ssl.SSLError):
        return None
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        return x509.load_der_x509_certificate(der).not_valid_after_utc if der else None
    except ValueError:
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
