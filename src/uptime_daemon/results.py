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
    """The daemon's own store, or a KurrentDB, PostgreSQL, MySQL/MariaDB or Redis server by URL."""
    TCP = "tcp"
    DNS = "dns"
    GRPC = "grpc"


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
    AUTH = "auth"
    """The server refused our credentials."""
    QUERY = "query"
    """The health query failed on the server (a syntax error, a missing table, a read-only error)."""
    ROLE = "role"
    """A database answered in the wrong role (a replica where a primary is expected, or back)."""
    REPLICATION_LAG = "replication_lag"
    """A replica is further behind its primary than allowed."""
    CLUSTER = "cluster"
    """A cluster without a leader, or with fewer members alive than required."""
    DNS_NXDOMAIN = "dns_nxdomain"
    """The name does not exist (a DNS check's own verdict, not a failure to resolve a target)."""
    NOT_SERVING = "not_serving"
    """A gRPC health check answered NOT_SERVING (or SERVICE_UNKNOWN)."""


class InconclusiveReason(StrEnum):
    """Why a check gave no verdict at all. Closed: a label value of ``uptime_checks_inconclusive_total``."""

    DAEMON_OVERLOADED = "daemon_overloaded"
    """The probe's deadline lapsed while the daemon's own loop was late (``loop_lag``)."""
    SHED = "shed"
    """The check never ran: due while the service's previous check still ran, or too late to start."""


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
    AUTH = "auth"
    QUERY = "query"


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
    """Days until the peer certificate expires (HTTPS, WSS, TCP with TLS, ``rediss://``)."""
    close_code: int | None = None
    """WebSocket close code, when the probe saw one."""
    degraded: str | None = None
    """Set on a successful probe whose target serves but is impaired (a cluster member down, a
    replica lagging below the limit): why. The status machine makes it ``degraded``."""

    def __post_init__(self) -> None:
        """Keep ``ok`` and ``failure`` consistent: a failed probe always says why."""
        if self.ok == (self.failure is not None):
            msg = f"ok={self.ok} with failure={self.failure}"
            raise ValueError(msg)
        if self.degraded is not None and not self.ok:
            msg = "only a successful probe can be degraded (a failed one says why it failed)"
            raise ValueError(msg)
