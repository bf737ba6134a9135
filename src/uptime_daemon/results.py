"""What a probe returns: a value for every target failure, with a closed set of reasons.

This module is pure data so that ``events`` (and through it the projector) can describe probe
outcomes without importing the probes themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class CheckKind(StrEnum):
    """The protocols we probe."""

    HTTP = "http"
    WEBSOCKET = "websocket"
    DATABASE = "database"


class FailureReason(StrEnum):
    """Why a probe failed. Closed: metrics and events use these as label values."""

    TIMEOUT = "timeout"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_ERROR = "connection_error"
    """Reset, unreachable, or another transport failure that is not a refusal."""
    DNS = "dns"
    TLS = "tls"
    HTTP_STATUS = "http_status"
    ASSERTION = "assertion"
    HANDSHAKE = "handshake"
    CLOSED = "closed"
    BODY_TOO_LARGE = "body_too_large"
    PROTOCOL = "protocol"
    """The peer answered, but not in the protocol we speak (garbage instead of HTTP, bad frames)."""
    STORE_ERROR = "store_error"


class Phase(StrEnum):
    """Timed parts of a probe."""

    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    FIRST_BYTE = "first_byte"
    BODY = "body"
    HANDSHAKE = "handshake"
    SCRIPT = "script"
    WRITE = "write"
    READ = "read"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe. ``detail`` is short, human and never holds credentials."""

    ok: bool
    duration_seconds: float
    failure: FailureReason | None = None
    detail: str = ""
    phases: Mapping[Phase, float] = field(default_factory=dict)
    http_status: int | None = None
    tls_days_left: float | None = None
    """Days until the peer certificate expires (HTTPS/WSS only)."""
    close_code: int | None = None
    """WebSocket close code, when the probe saw one."""

    def __post_init__(self) -> None:
        """Keep ``ok`` and ``failure`` consistent: a failed probe always says why."""
        if self.ok == (self.failure is not None):
            msg = f"ok={self.ok} with failure={self.failure}"
            raise ValueError(msg)
