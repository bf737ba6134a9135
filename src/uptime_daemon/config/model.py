"""The frozen settings tree: validated once at load, then passed everywhere by the composition root.

Every model forbids unknown keys, so a typo is an error naming its key path, never a silently ignored
setting. Times are seconds (floats) and say so in their names; the seeds' milliseconds appear only at
the event-payload edge.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from uptime_daemon.redact import redact
from uptime_daemon.results import CheckKind

SERVICE_NAME_PATTERN: Final = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
MAX_NAME: Final = 64
MAX_INSTANCE_SUFFIX: Final = 24
"""How much of the instance name an instance-scoped service name carries."""
ServiceName = Annotated[str, StringConstraints(pattern=SERVICE_NAME_PATTERN)]
GROUP_NAME_PATTERN: Final = r"^[A-Za-z0-9](?:[A-Za-z0-9 ._-]{0,62}[A-Za-z0-9._-])?$"
"""1-64 letters, digits, spaces, ``.``, ``_``, ``-``; no leading or trailing space."""
GroupName = Annotated[str, StringConstraints(pattern=GROUP_NAME_PATTERN)]
LocationName = Annotated[str, StringConstraints(pattern=SERVICE_NAME_PATTERN)]
Seconds = Annotated[float, Field(gt=0, le=86_400)]


def _readable(path: str) -> str:
    if not os.access(path, os.R_OK):
        raise ValueError(f"cannot read {path!r}")
    return path


ReadableFile = Annotated[str, AfterValidator(_readable)]
Verbatim = Annotated[str, StringConstraints(strip_whitespace=False)]
"""A string kept as written (line endings of a protocol exchange matter)."""
"""A file the daemon can read (a CA bundle): checked at load, so a typo is a config error."""
_STATUS_RANGE: Final = re.compile(r"^([1-5]\d\d)(?:-([1-5]\d\d))?$")


def _origin(value: str) -> str:
    """A browser origin as the ``Origin`` header spells it: ``scheme://host[:port]``, or ``*``."""
    if value == "*":
        return value
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in origin {value!r}") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or any(c.isspace() for c in value)
    ):
        raise ValueError(
            f"an origin is scheme://host[:port] (http or https, no path), got {value!r}"
        )
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    suffix = "" if port in (None, default) else f":{port}"
    return f"{parts.scheme}://{host}{suffix}"


Origin = Annotated[str, AfterValidator(_origin)]
"""A browser origin, normalised (lower-case host, default port dropped) as browsers send it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class AuthSettings(_Model):
    """Who may do what. Empty token lists leave an endpoint open (the default bind is loopback)."""

    read_tokens: tuple[SecretStr, ...] = ()
    """Bearer tokens for the read endpoints that are protected (``/streams``, and all of them with
    ``protect_reads``). ``UPTIME_READ_TOKENS`` (comma-separated) overrides."""
    operator_tokens: tuple[SecretStr, ...] = ()
    """Bearer tokens that may also run checks (``POST /uptime/check``) and read everything.
    ``UPTIME_OPERATOR_TOKENS`` overrides."""
    protect_reads: bool = False
    """Require a read or operator token everywhere except ``/health``, ``/health/ready`` and ``/metrics``."""
    metrics_username: str | None = None
    metrics_password: SecretStr | None = None
    """Basic auth for ``/metrics`` (Prometheus ``basic_auth``); ``UPTIME_METRICS_PASSWORD`` overrides."""
    checks_per_minute: int = Field(default=30, ge=1, le=100_000)
    """Rate limit of ``POST /uptime/check`` (each call may probe every service)."""

    @model_validator(mode="after")
    def _metrics_pair(self) -> AuthSettings:
        if (self.metrics_username is None) != (self.metrics_password is None):
            raise ValueError("set both metrics_username and metrics_password, or neither")
        return self


class ServerSettings(_Model):
    """The HTTP server: API, metrics, live feed and status page."""

    host: str = "127.0.0.1"
    """Bind address. Loopback by default: exposing the daemon is a deliberate choice."""
    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port; 0 picks a free one (tests). ``HTTP_PORT`` overrides it."""
    shutdown_timeout_seconds: Seconds = 10.0
    """Upper bound on a graceful stop: in-flight probes, spool flush and checkpoint together."""
    live_health_interval_seconds: Seconds = 10.0
    """How often ``/ws/health`` clients get a ``health_status`` message."""
    summary_max_age_seconds: float = Field(default=1.0, ge=0, le=60)
    """How far ``/uptime/summary`` may lag the clock for a service with no new check (0: never).

    A new check or status change shows within a quarter of this (the answer is rebuilt off the
    request path and served pre-serialized, with an ``ETag``); the growing up/down seconds of a
    quiet service lag by at most this, which keeps the summary cheap under load."""
    allowed_origins: tuple[Origin, ...] = ()
    """Browser origins (``scheme://host[:port]``) that may call the API and the live feeds from
    another site (CORS). Empty: same-origin only. ``"*"`` allows any origin but never with
    credentials. ``ALLOWED_ORIGINS`` (comma-separated, the seeds' variable) overrides."""
    auth: AuthSettings = AuthSettings()


def host_instance_name(host: str) -> str:
    """A host name as an instance name: lower-case letters, digits and ``-``, at most 64."""
    name = re.sub(r"[^a-z0-9-]+", "-", host.lower()).strip("-")[:64].strip("-")
    return name or "uptime-daemon"


def default_quorum(locations: int) -> int:
    """The default k: a majority of the service's locations (1 of 1, 2 of 2, 2 of 3)."""
    return locations // 2 + 1


@dataclass(frozen=True, slots=True)
class Placement:
    """A service's locations and its quorum k (``1 ≤ k ≤ len(locations)``)."""

    locations: tuple[str, ...]
    quorum: int


class StoreKind(StrEnum):
    """The event store adapters; a store URL's scheme names one."""

    SQLITE = "sqlite"
    KURRENTDB = "kurrentdb"


KURRENTDB_SCHEMES: Final = ("kurrentdb://", "kurrentdb+discover://", "esdb://", "kdb://")


class StoreSettings(_Model):
    """Where events go. ``sqlite:///relative`` or ``sqlite:////absolute`` or ``kurrentdb://...``.

    The URL's scheme is the store's ``kind``: the one fact the composition root selects the adapter
    (and the default state paths) by.
    """

    url: str = "sqlite:///var/uptime-daemon/events.db"
    """``KURRENTDB_URL`` overrides it (an ``http://host:2113`` value as in the seeds is accepted)."""
    username: str | None = None
    """``KURRENTDB_USERNAME``."""
    password: SecretStr | None = None
    """``KURRENTDB_PASSWORD``; never logged or served."""
    use_tls: bool = False
    """``KURRENTDB_USE_TLS``."""
    verify_cert: bool = True
    """``KURRENTDB_VERIFY_CERT``; off only for a self-signed test cluster."""
    ca_file: str | None = None
    """PEM file of the CA that signed the cluster's certificates."""
    operation_timeout_seconds: Seconds = 5.0
    """Deadline for one store operation before it counts as unavailable."""
    spool_path: str | None = None
    """Outage spool file; default: beside the SQLite file, else ``var/uptime-daemon/spool.db``."""
    spool_max_events: int = Field(default=100_000, ge=1, le=100_000_000)
    """Events kept while the store is unreachable (~1 KB each); past it, new ones are dropped and counted."""
    raw_retention_days: int = Field(default=30, ge=0, le=36_500)
    """Raw check events older than this are compacted into exact hourly rollups (one
    ``system-uptime-rollup-{service}`` event per service per compaction) and then removed: deleted on
    SQLite, truncated (``$tb``) on KurrentDB. Replaying rollups plus the raw events left gives the
    very projection the raw log gives. ``0`` keeps every raw event forever."""
    compaction_interval_seconds: Seconds = 86_400.0
    """How often the daemon compacts (and once at start): each pass writes one rollup per service
    holding every hour it covers, so daily passes cost ~5 KB a service a day, hourly ones ~1 KB an
    hour (``bench/retention.py``)."""

    @property
    def kind(self) -> StoreKind:
        """Which adapter the URL selects."""
        return StoreKind.SQLITE if self.url.startswith("sqlite:") else StoreKind.KURRENTDB

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite://", *KURRENTDB_SCHEMES)):
            raise ValueError("must start with sqlite://, kurrentdb:// or kurrentdb+discover://")
        if value.startswith("sqlite://") and not value.startswith("sqlite:///"):
            raise ValueError("sqlite URLs are sqlite:///relative/path or sqlite:////absolute/path")
        return value


class ProjectorSettings(_Model):
    """The uptime projection: what it keeps and how it survives restarts."""

    snapshot_path: str | None = None
    """Where the projection and its checkpoint are saved; default: beside the SQLite file, else
    ``var/uptime-daemon/projection.json``."""
    snapshot_interval_seconds: Seconds = 60.0
    """How often the snapshot is rewritten (and always on shutdown); longer when writing it would
    take more than 1 % of the event loop (a big history: ``projector.runner.snapshot_spacing``)."""
    retention_days: int = Field(default=90, ge=1, le=3650)
    """History kept in memory; the longest window ``?hours=`` can ask for."""


class MetricsSettings(_Model):
    """What ``GET /metrics`` exposes per service (the cost of a scrape grows with it)."""

    per_service_histograms: bool = False
    """Per-service probe-duration histograms (``uptime_probe_duration_seconds{service,kind}``
    buckets). Off by default: at 10,000 services they are most of the scrape."""


class LogSettings(_Model):
    """Structured logging."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    """``auto``: console renderer on a TTY, JSON lines otherwise."""


class SchedulerSettings(_Model):
    """How probes are started."""

    enabled: bool = True
    """Off: this instance probes nothing and only serves the log (a read replica), or tests drive
    checks through ``POST /uptime/check``."""
    max_concurrency: int = Field(default=256, ge=1, le=100_000)
    """Global bound on probes in flight at once, whatever the number of services."""
    jitter_seconds: float = Field(default=1.0, ge=0, le=3600)
    """Random delay added to each run so thousands of services do not fire in the same instant."""
    tick_seconds: float = Field(default=0.05, ge=0, le=1)
    """Runs start on a grid of this step: the runs due within one tick start together, so the
    daemon wakes once per tick for all of them rather than once per run (at 10,000 services a
    minute that is 8 runs per wake-up, and about half the CPU: ``docs/performance-history.md``). A run
    starts at most this much after its jittered time; its check is still labelled with its slot.
    The first runs at start keep their spread, off the ticks. Capped at a twentieth of each
    service's interval; 0 starts every run at its own instant."""
    per_host_concurrency: int = Field(default=16, ge=1, le=10_000)
    """Probes in flight at once against one host (``host:port``), however many services share it.

    Many services on one host is the common case; a burst of connections is what a small server
    (a listen backlog of a few) drops, and the monitor would then report the outage it caused. A
    probe's deadline starts when it gets its slot: the wait is reported apart
    (``uptime_probe_slot_wait_seconds``), never as the target's response time or a timeout."""


class ClusterSettings(_Model):
    """Several daemons on one KurrentDB: membership and sharing (README "Running several daemons").

    Without this table a daemon probes every service of its location.
    """

    replicas: int = Field(default=1, ge=1, le=100)
    """Members of one location that probe each service (1: each service once; 2: an HA pair)."""
    heartbeat_seconds: Seconds = 2.0
    """How often a member says it is alive (on the temporary stream ``system-cluster-members``)."""
    member_ttl_seconds: Seconds = 10.0
    """A member silent for this long is gone: its services move to the others within this plus
    one heartbeat and one interval."""
    locations: tuple[LocationName, ...] | None = Field(default=None, min_length=1)
    """The default ``locations`` of every service (else this daemon's own location)."""

    @model_validator(mode="after")
    def _ttl_outlives_heartbeats(self) -> ClusterSettings:
        if self.member_ttl_seconds < 2 * self.heartbeat_seconds:
            raise ValueError("member_ttl_seconds must be at least twice heartbeat_seconds")
        return self


class GradeThresholds(_Model):
    """Response-time limits for the performance grade of a successful probe (slower is ``poor``)."""

    excellent_seconds: Seconds = 0.1
    good_seconds: Seconds = 0.3
    fair_seconds: Seconds = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> GradeThresholds:
        if not self.excellent_seconds <= self.good_seconds <= self.fair_seconds:
            raise ValueError("excellent_seconds <= good_seconds <= fair_seconds must hold")
        return self


class CheckPolicy(_Model):
    """Settings every service has; the ``[defaults]`` table sets them for all services at once."""

    interval_seconds: Seconds = 30.0
    timeout_seconds: Seconds = 10.0
    """Deadline of one probe, enforced by the caller."""
    failures_before_down: int = Field(default=2, ge=1, le=100)
    """Consecutive failed probes that turn ``up`` into ``down`` (one blip is not an outage)."""
    successes_before_up: int = Field(default=1, ge=1, le=100)
    """Consecutive good probes that bring a ``down`` service back."""
    degraded_after_seconds: Seconds | None = None
    """A successful probe slower than this is ``degraded``; unset means never degraded."""
    grades: GradeThresholds = GradeThresholds()
    locations: tuple[LocationName, ...] | None = Field(default=None, min_length=1)
    """Where the service is probed from; each daemon probes only the services listed for its own
    ``location``. Unset: this daemon's location alone, so a single daemon behaves as ever."""
    quorum: int | None = Field(default=None, ge=1)
    """k: how many locations must say down for the service to be down; default a majority."""

    @field_validator("locations")
    @classmethod
    def _distinct(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("each location at most once")
        return value


class Defaults(CheckPolicy):
    """The ``[defaults]`` table."""


DEFAULT_TIMEOUT_SECONDS: Final = 10.0


_SCHEME_PORTS: Final = {
    "http": 80,
    "https": 443,
    "ws": 80,
    "wss": 443,
    "postgresql": 5432,
    "postgres": 5432,
    "mysql": 3306,
    "redis": 6379,
    "rediss": 6379,
    "kurrentdb": 2113,
    "kurrentdb+discover": 2113,
}
"""Default ports of the URL schemes probes take, so ``http://h`` and ``http://h:80`` share a limit."""


class _ServiceBase(CheckPolicy):
    description: str | None = None
    group: GroupName | None = None
    """Where the status page files the service (``"payments"``): a group whose services are all up
    folds to one row with a count, and the page can be filtered by it. Unset: no group."""
    depends_on: tuple[ServiceName, ...] = ()
    """Parents: while one of them is down, this service's notifications are recorded as suppressed
    (its monitoring and accounting go on). A resolution of an outage you were told of is always sent."""

    @property
    def watches_this_daemon(self) -> bool:
        """A relative URL is this daemon's own server: only this daemon can probe it."""
        url = getattr(self, "url", "")
        return isinstance(url, str) and url.startswith("/")

    @property
    def host_key(self) -> str | None:
        """The ``host:port`` its probe connects to, for the per-host limit; ``None``: none known.

        A relative URL (this daemon's own server) is ``None``: the daemon's own answers need no
        protection from itself, and holding them back would only delay its own health checks.
        """
        url = getattr(self, "url", None)
        if isinstance(url, SecretStr):
            url = url.get_secret_value()
        if not isinstance(url, str) or url.startswith("/"):
            return None
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            return None
        if not parts.hostname:
            return None
        return (
            f"{parts.hostname}:{port if port is not None else _SCHEME_PORTS.get(parts.scheme, 0)}"
        )

    @model_validator(mode="before")
    @classmethod
    def _default_timeout(cls, data: object) -> object:
        """An unset timeout is 10 s or the interval, whichever is shorter."""
        if isinstance(data, dict) and "timeout_seconds" not in data:
            interval = data.get("interval_seconds")
            if isinstance(interval, int | float) and 0 < interval < DEFAULT_TIMEOUT_SECONDS:
                return {**data, "timeout_seconds": interval}
        return data

    @model_validator(mode="after")
    def _timeout_fits(self) -> _ServiceBase:
        if self.timeout_seconds > self.interval_seconds:
            raise ValueError("timeout_seconds must not exceed interval_seconds")
        return self


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    if value.startswith("/"):
        return value  # relative: this daemon's own server, resolved once it has bound its port
    if not value.startswith(tuple(f"{s}://" for s in schemes)):
        shown = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(f"must start with {shown}, or / for this daemon's own server")
    if any(character.isspace() for character in value):
        raise ValueError("must not contain spaces (write them as %20)")
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535")
    if not parts.hostname:
        raise ValueError("names no host")
    return value


class BasicAuth(_Model):
    """HTTP basic credentials."""

    username: str
    password: SecretStr


class JsonAssertion(_Model):
    """``path`` is a dotted path into the JSON body (``status`` or ``checks.0.ok``); ``equals`` its value."""

    path: Annotated[str, StringConstraints(min_length=1)]
    equals: Any


class HttpService(_ServiceBase):
    """An HTTP(S) endpoint."""

    kind: Literal[CheckKind.HTTP]
    url: str
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = {}
    body: str | None = None
    bearer_token: SecretStr | None = None
    basic_auth: BasicAuth | None = None
    accepted_status: tuple[str, ...] = ("200-299",)
    """Codes or inclusive ranges: ``["200-299", "304"]``."""
    body_contains: str | None = None
    json_assertions: tuple[JsonAssertion, ...] = ()
    follow_redirects: bool = True
    max_redirects: int = Field(default=10, ge=0, le=50)
    verify_tls: bool = True
    max_body_bytes: int = Field(default=1_048_576, ge=0, le=1_073_741_824)
    """Read at most this much of the body; more is ``body_too_large``."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value, ("http", "https"))

    @field_validator("accepted_status")
    @classmethod
    def _statuses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            match = _STATUS_RANGE.match(item)
            if match is None or (match.group(2) and int(match.group(2)) < int(match.group(1))):
                raise ValueError(f"{item!r} is not a status code or range like 200-299")
        if not value:
            raise ValueError("must list at least one status code or range")
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> HttpService:
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("set bearer_token or basic_auth, not both")
        return self

    def status_accepted(self, status: int) -> bool:
        """Whether ``status`` is in one of the accepted codes or ranges."""
        for item in self.accepted_status:
            low, _, high = item.partition("-")
            if int(low) <= status <= int(high or low):
                return True
        return False


class WebSocketStep(_Model):
    """One step of a WebSocket script: send a message, or expect one (text or JSON)."""

    send: str | None = None
    send_json: Any = None
    expect: str | None = None
    """The reply must equal this text."""
    expect_contains: str | None = None
    expect_json: dict[str, Any] | None = None
    """Every key here must be present in the JSON reply with this value (a subset match)."""
    skip_unmatched: bool = False
    """For an expect step: ignore other messages until a matching one arrives (for feeds that
    push unsolicited messages); the probe's deadline still bounds the wait."""

    @model_validator(mode="after")
    def _exactly_one(self) -> WebSocketStep:
        chosen = [
            name
            for name in ("send", "send_json", "expect", "expect_contains", "expect_json")
            if getattr(self, name) is not None
        ]
        if len(chosen) != 1:
            raise ValueError(
                "each step sets exactly one of send, send_json, expect, expect_contains, expect_json"
            )
        return self


class WebSocketService(_ServiceBase):
    """A WebSocket endpoint."""

    kind: Literal[CheckKind.WEBSOCKET]
    url: str
    headers: dict[str, str] = {}
    subprotocols: tuple[str, ...] = ()
    require_subprotocol: str | None = None
    """The server must choose this subprotocol."""
    script: tuple[WebSocketStep, ...] = ()
    verify_tls: bool = True
    max_message_bytes: int = Field(default=1_048_576, ge=1, le=67_108_864)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value, ("ws", "wss"))


DatabaseFlavour = Literal["own", "kurrentdb", "postgresql", "mysql", "redis"]
_PG_SSLMODES: Final = frozenset(
    {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
)
_MYSQL_SSL_MODES: Final = frozenset(
    {"DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"}
)
_BOOLEAN: Final = frozenset({"true", "false", "1", "0", "yes", "no", "on", "off"})
_DATABASE_SCHEMES: Final[dict[str, DatabaseFlavour]] = {
    "kurrentdb": "kurrentdb",
    "kurrentdb+discover": "kurrentdb",
    "esdb": "kurrentdb",
    "esdb+discover": "kurrentdb",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "redis": "redis",
    "rediss": "redis",
}
_FLAVOUR_FIELDS: Final[dict[str, tuple[DatabaseFlavour, ...]]] = {
    "query": ("postgresql", "mysql"),
    "expect": ("postgresql", "mysql"),
    "expect_primary": ("postgresql", "mysql"),
    "max_replication_lag_seconds": ("postgresql", "mysql"),
    "expect_role": ("redis",),
    "min_alive_members": ("kurrentdb",),
}


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def _check_postgresql_url(url: str) -> None:
    if _query(url).get("sslmode", "prefer") not in _PG_SSLMODES:
        raise ValueError(f"url: sslmode must be one of {', '.join(sorted(_PG_SSLMODES))}")


def _check_mysql_url(url: str) -> None:
    query = _query(url)
    unknown = sorted(set(query) - {"ssl", "ssl-mode", "ssl_mode"})
    if unknown:
        raise ValueError(f"url: unknown parameter {unknown[0]!r} (known: ssl, ssl-mode)")
    mode = (query.get("ssl-mode") or query.get("ssl_mode") or "DISABLED").upper()
    if mode not in _MYSQL_SSL_MODES or query.get("ssl", "false").lower() not in _BOOLEAN:
        raise ValueError(
            "url: ssl-mode is DISABLED/PREFERRED/REQUIRED/VERIFY_CA/VERIFY_IDENTITY and ssl is "
            "true or false"
        )


def _check_redis_url(url: str) -> None:
    # Imported here: the drivers are tens of megabytes of modules a daemon without such a service
    # never needs (``probes.__init__`` loads the probes the same way).
    from redis.connection import parse_url as parse_redis_url  # noqa: PLC0415

    try:
        parse_redis_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    except ValueError as exc:
        raise ValueError(f"url: not a Redis URL: {redact(str(exc))}") from None


def _check_kurrentdb_url(url: str) -> None:
    from kurrentdbclient.connection_spec import ConnectionSpec  # noqa: PLC0415 - as above
    from kurrentdbclient.exceptions import KurrentDBClientError  # noqa: PLC0415

    try:
        ConnectionSpec(url)
    except (ValueError, KurrentDBClientError) as exc:
        raise ValueError(f"url: not a KurrentDB connection string: {redact(str(exc))}") from None


_URL_CHECKS: Final[dict[str, Callable[[str], None]]] = {
    "postgresql": _check_postgresql_url,
    "mysql": _check_mysql_url,
    "redis": _check_redis_url,
    "kurrentdb": _check_kurrentdb_url,
}


class DatabaseService(_ServiceBase):
    """A database: the daemon's own store (no ``url``), or a server named by its ``url``.

    * no ``url``: a write/read round trip on a temporary system stream of this daemon's store;
    * ``kurrentdb://`` / ``kurrentdb+discover://``: the same round trip on that KurrentDB, and for a
      cluster its gossip: a leader present, at least ``min_alive_members`` alive (``degraded``
      while a member is down but the cluster serves);
    * ``postgresql://``: connect, authenticate, ``query``; ``expect_primary`` and
      ``max_replication_lag_seconds`` check the role and a replica's lag;
    * ``mysql://`` (MySQL and MariaDB): the same;
    * ``redis://`` / ``rediss://``: AUTH, PING, and ``expect_role``.

    Credentials go in the URL (``postgresql://user:password@host/db``) and are masked in every output.
    """

    @property
    def watches_this_daemon(self) -> bool:
        """Without a URL, the round trip is this daemon's own connection to the store."""
        return self.url is None

    kind: Literal[CheckKind.DATABASE]
    url: str | None = None
    """The server to check; unset: this daemon's own event store."""
    stream: str = "system-health-check"
    """The temporary stream of the round trip (own store and KurrentDB)."""
    max_age_seconds: int = Field(default=3600, ge=1)
    """Retention of the health-check stream (``$maxAge``) so it stays temporary."""
    max_count: int = Field(default=100, ge=1)
    """Retention of the health-check stream (``$maxCount``)."""
    query: str = "SELECT 1"
    """SQL run on each check (PostgreSQL, MySQL); keep it cheap and read-only."""
    expect: str | None = None
    """The first column of the query's first row, as text, must equal this."""
    expect_primary: bool | None = None
    """True: must be a primary (accepting writes); False: must be a replica; unset: either."""
    max_replication_lag_seconds: float | None = Field(default=None, gt=0, le=86_400)
    """On a replica: further behind than this is ``down`` (reason ``replication_lag``)."""
    expect_role: Literal["master", "replica"] | None = None
    """Redis: the role ``ROLE`` must report."""
    min_alive_members: int | None = Field(default=None, ge=1, le=100)
    """KurrentDB cluster: fewer alive members is ``down`` (reason ``cluster``); any member down
    while a leader serves is ``degraded``."""
    verify_tls: bool = True
    """Check the server's certificate when the URL asks for TLS."""
    ca_file: ReadableFile | None = None
    """PEM file of the CA that signed the server's certificate (a private CA)."""

    @property
    def flavour(self) -> DatabaseFlavour:
        """Which server the URL names (``own`` without one)."""
        if self.url is None:
            return "own"
        return _DATABASE_SCHEMES[self.url.split("://", 1)[0].lower()]

    @field_validator("url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme, found, rest = value.partition("://")
        if not found or scheme.lower() not in _DATABASE_SCHEMES or not rest:
            shown = ", ".join(f"{s}://" for s in _DATABASE_SCHEMES)
            raise ValueError(f"must start with one of {shown}")
        return value

    @field_validator("stream")
    @classmethod
    def _system_stream(cls, value: str) -> str:
        if re.fullmatch(r"system-[a-z0-9-]{1,100}", value) is None:
            raise ValueError("must be a system-* stream name (lowercase letters, digits and '-')")
        return value

    @model_validator(mode="after")
    def _url_parameters(self) -> DatabaseService:
        """What the URL says must be something its driver understands (checked at load)."""
        if self.url is not None:
            _URL_CHECKS[self.flavour](self.url)
        if self.flavour == "kurrentdb" and not self.verify_tls:
            raise ValueError("verify_tls: the KurrentDB client always verifies; give ca_file")
        return self

    @model_validator(mode="after")
    def _fields_fit_the_server(self) -> DatabaseService:
        flavour = self.flavour
        for name, flavours in _FLAVOUR_FIELDS.items():
            if name in self.model_fields_set and flavour not in flavours:
                servers = " or ".join(flavours)
                raise ValueError(f"{name}: applies to {servers} URLs only")
        return self


class TcpService(_ServiceBase):
    """A TCP port: connect, optionally TLS (with certificate expiry), optionally a banner exchange."""

    @property
    def host_key(self) -> str | None:
        """The ``host:port`` connected to."""
        return f"{self.host}:{self.port}"

    kind: Literal[CheckKind.TCP]
    host: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    verify_tls: bool = True
    ca_file: ReadableFile | None = None
    server_name: str | None = None
    """TLS SNI and certificate name; default: ``host``."""
    send: Verbatim | None = None
    """Sent once connected (escapes such as ``\\r\\n`` as TOML writes them; kept verbatim)."""
    expect: Verbatim | None = None
    """The reply (read until it appears, or ``max_bytes``) must contain this."""
    max_bytes: int = Field(default=65_536, ge=1, le=16_777_216)


DnsRecordType = Literal["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SRV", "PTR", "SOA", "CAA"]


class DnsService(_ServiceBase):
    """A DNS name: resolve one record type, at a given resolver or the system's."""

    @property
    def host_key(self) -> str | None:
        """The resolver asked (the system's: ``None``, no limit of ours)."""
        if self.resolver is None:
            return None
        return self.resolver if ":" in self.resolver else f"{self.resolver}:53"

    kind: Literal[CheckKind.DNS]
    name: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    record_type: DnsRecordType = "A"
    resolver: str | None = None
    """``host`` or ``host:port`` of the server to ask; default: the system's resolvers."""
    expect: tuple[str, ...] = ()
    """Each of these must be among the answers (as text: ``192.0.2.1``, ``10 mail.example.``);
    empty: any answer will do."""
    transport: Literal["udp", "tcp"] = "udp"

    @field_validator("resolver")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
        if not host or (port and not (port.isdigit() and 1 <= int(port) <= 65535)):  # noqa: PLR2004
            raise ValueError("must be host or host:port (port 1-65535)")
        return value


class GrpcService(_ServiceBase):
    """A gRPC server's standard health check (``grpc.health.v1.Health/Check``)."""

    @property
    def host_key(self) -> str | None:
        """The server's ``host:port``."""
        return self.target

    kind: Literal[CheckKind.GRPC]
    target: Annotated[str, StringConstraints(min_length=3, max_length=300)]
    """``host:port``."""
    service: str = ""
    """The health service name to ask about; empty: the server as a whole."""
    tls: bool = False
    verify_tls: bool = True
    ca_file: ReadableFile | None = None
    server_name: str | None = None

    @model_validator(mode="after")
    def _always_verified(self) -> GrpcService:
        if not self.verify_tls:
            raise ValueError("verify_tls: gRPC always verifies the certificate; give ca_file")
        return self


Service = Annotated[
    HttpService | WebSocketService | DatabaseService | TcpService | DnsService | GrpcService,
    Field(discriminator="kind"),
]


NotificationKind = Literal["webhook", "slack", "email", "alertmanager"]
Transition = Literal["down", "up", "degraded"]
ChannelName = Annotated[str, StringConstraints(pattern=SERVICE_NAME_PATTERN)]
_CHANNEL_SCHEMES: Final[dict[str, tuple[str, ...]]] = {
    "webhook": ("http", "https"),
    "slack": ("http", "https"),
    "alertmanager": ("http", "https"),
    "email": ("smtp", "smtps"),
}
_EMAIL: Final = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE: Final = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def shown_url(url: str) -> str:
    """A channel URL as logs and the API may show it: scheme, host and port only.

    Incoming-webhook URLs carry their secret in the path (Slack's ``/services/T…/B…/secret``), so
    the path, query and any credentials are never shown.
    """
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


class NotificationChannel(_Model):
    """One ``[notifications.NAME]`` table: where to send, and which transitions.

    README "Notifications and maintenance" has examples of each kind.
    """

    kind: NotificationKind
    url: SecretStr
    """``http(s)://`` (webhook, slack: the incoming-webhook URL, alertmanager: its base URL) or
    ``smtp://host:port`` / ``smtps://host:port`` (email). Secret: only scheme and host are shown."""
    headers: dict[str, SecretStr] = {}
    """Extra request headers (webhook, alertmanager); values are secrets."""
    services: tuple[ServiceName, ...] = ()
    """Only these services; empty: every service."""
    on: tuple[Transition, ...] = ("down", "up")
    """Which transitions: ``down`` and ``degraded`` open an outage, ``up`` ends it (sent only for
    an outage this channel was told of)."""
    min_down_seconds: float = Field(default=0.0, ge=0, le=7 * 86_400)
    """Only when the outage (down or degraded) lasted at least this long; a shorter one is recorded
    as suppressed, and its end is not sent."""
    repeat_every_seconds: float | None = Field(default=None, ge=60, le=7 * 86_400)
    """Reminders while the outage lasts (each one delivered once, like the first)."""
    timeout_seconds: Seconds = 10.0
    """Deadline of one delivery attempt."""
    to: tuple[str, ...] = ()
    """Email: the recipients."""
    sender: str | None = Field(default=None, alias="from")
    """Email: the ``From`` address (the key is ``from``)."""
    username: str | None = None
    """Email: SMTP AUTH user."""
    password: SecretStr | None = None
    """Email: SMTP AUTH password."""
    starttls: bool = True
    """Email over ``smtp://``: upgrade with STARTTLS when the server offers it (required when a
    password is set: credentials never cross the network in the clear)."""
    verify_tls: bool = True
    """Check the receiver's certificate (off only for a self-signed test receiver)."""
    ca_file: ReadableFile | None = None
    """PEM file of the CA that signed the receiver's certificate (a private CA); default: the
    system's trust store."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, populate_by_name=True
    )

    @property
    def shown_url(self) -> str:
        """The URL without its secret parts."""
        return shown_url(self.url.get_secret_value())

    def wants(self, service: str, transition: str) -> bool:
        """Whether this channel is told of ``service`` entering ``transition``."""
        return transition in self.on and (not self.services or service in self.services)

    def _check_email(self) -> None:
        if not self.to:
            raise ValueError("to: an email channel needs at least one recipient")
        if self.sender is None:
            raise ValueError("from: an email channel needs a sender address")
        for address in (*self.to, self.sender):
            if _EMAIL.fullmatch(address) is None:
                raise ValueError(f"{address!r} is not an email address")

    @model_validator(mode="after")
    def _fits_kind(self) -> NotificationChannel:
        url = self.url.get_secret_value()
        schemes = _CHANNEL_SCHEMES[self.kind]
        parts = urlsplit(url)
        if parts.scheme not in schemes or not parts.hostname:
            shown = " or ".join(f"{s}://host" for s in schemes)
            raise ValueError(f"url: a {self.kind} channel needs {shown}")
        if self.kind == "email":
            self._check_email()
        elif self.to or self.sender is not None or self.username or self.password:
            raise ValueError("to/from/username/password are for email channels only")
        if self.kind in ("slack", "email") and self.headers:
            raise ValueError(f"headers: not sent by {self.kind} channels")
        for header, value in self.headers.items():
            if not _HEADER_NAME.fullmatch(header) or not _HEADER_VALUE.fullmatch(
                value.get_secret_value()
            ):
                raise ValueError(f"headers: {header!r} is not a valid HTTP header name and value")
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password, or neither")
        if "up" in self.on and not {"down", "degraded"} & set(self.on):
            raise ValueError("on: up ends an outage this channel was told of: add down or degraded")
        if len(set(self.on)) != len(self.on) or not self.on:
            raise ValueError("on: list each of down, up, degraded at most once, at least one")
        return self


class AlertingSettings(_Model):
    """How notifications are delivered, and the outgoing heartbeat (the dead-man's switch)."""

    heartbeat_url: SecretStr | None = None
    """Fetched (GET) every ``heartbeat_seconds`` while this daemon is ready — a Healthchecks-style
    check that alerts when the pings stop, that is when every daemon is gone."""
    heartbeat_seconds: Seconds = 60.0
    lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    """A claimed notification whose sender went silent for this long is taken over by another
    daemon (it is sent again with the same idempotency key)."""
    retry_for_seconds: float = Field(default=86_400.0, ge=60, le=30 * 86_400)
    """Failed deliveries are retried (backoff 5 s doubling to 5 min) for this long, then recorded
    as abandoned."""
    max_age_seconds: float = Field(default=86_400.0, ge=60, le=30 * 86_400)
    """A transition already this old when a starting daemon first reads it is not sent (a daemon
    replaying history pages nobody); transitions read live are always sent, however late."""
    alert_ttl_seconds: float = Field(default=7 * 86_400.0, ge=60, le=365 * 86_400)
    """Alertmanager: a firing alert's ``endsAt`` is this far after the push (a reminder renews it);
    the resolution ends it at once."""

    @field_validator("heartbeat_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urlsplit(value.get_secret_value()).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value


class MaintenanceWindow(_Model):
    """One ``[maintenance.NAME]`` table: a one-off or a recurring window.

    One-off: ``start``/``end``. Recurring: ``cron`` + ``duration_seconds``, optionally bounded by
    ``start``/``end``.
    """

    services: tuple[ServiceName, ...] = ()
    """Empty: every service."""
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    cron: str | None = None
    """Five fields (minute hour day month weekday) in ``timezone``: when each occurrence starts."""
    duration_seconds: float | None = Field(default=None, gt=0, le=30 * 86_400)
    timezone: str = "UTC"
    reason: str = Field(default="", max_length=500)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _one_shape(self) -> MaintenanceWindow:
        if self.cron is None:
            if self.start is None or self.end is None:
                raise ValueError("a window needs start and end, or cron and duration_seconds")
            if self.duration_seconds is not None:
                raise ValueError("duration_seconds goes with cron")
        else:
            if self.duration_seconds is None:
                raise ValueError("cron needs duration_seconds")
            from uptime_daemon.config.cron import CronError, parse_cron  # noqa: PLC0415 - keeps model import light

            try:
                parse_cron(self.cron, self.timezone)
            except CronError as exc:
                raise ValueError(f"cron: {exc}") from None
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    @property
    def duration(self) -> timedelta | None:
        """How long each occurrence of a recurring window lasts."""
        return None if self.duration_seconds is None else timedelta(seconds=self.duration_seconds)


class StreamsSettings(_Model):
    """The seeds' stream API beyond the daemon's own read-only streams."""

    user_data: bool = False
    """Accept the seeds' ``user-{userId}-{profile|preferences|activity|loans|offers}`` streams through
    ``POST /api/streams/create`` and ``POST /api/streams/{name}/events``.

    Off by default: a monitor that stores other applications' personal data takes on their privacy
    duties (retention, access, deletion). When on, writes need an operator token (so at least one
    must be configured), and these streams are readable only with a token, never on the status page.
    """


class Settings(_Model):
    """The whole configuration."""

    environment: Literal["dev", "staging", "test", "mainnet"] = "dev"
    instance: Annotated[str, StringConstraints(pattern=SERVICE_NAME_PATTERN)] = Field(
        default_factory=lambda: host_instance_name(socket.gethostname())
    )
    """This daemon's name among several sharing one KurrentDB (in every event it writes); by default
    the host name, lower-cased, other characters as ``-``. ``UPTIME_INSTANCE`` overrides it."""
    location: LocationName = "default"
    """Where probes run from; part of every event id."""
    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    log: LogSettings = LogSettings()
    projector: ProjectorSettings = ProjectorSettings()
    metrics: MetricsSettings = MetricsSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    cluster: ClusterSettings | None = None
    """Present: this daemon shares its location's services with the other members."""
    defaults: Defaults = Defaults()
    services: dict[ServiceName, Service] = {}
    notifications: dict[ChannelName, NotificationChannel] = {}
    """Where transitions are sent (README "Notifications and maintenance")."""
    alerting: AlertingSettings = AlertingSettings()
    maintenance: dict[ServiceName, MaintenanceWindow] = {}
    """Windows declared in config; each becomes an event of ``system-maintenance`` at start-up."""
    streams: StreamsSettings = StreamsSettings()

    def policy(self, service: str) -> CheckPolicy:
        """The check policy of ``service``; ``[defaults]`` for one only the log still knows."""
        return self.services.get(service, self.defaults)

    def placement(self, service: str) -> Placement:
        """Where ``service`` is probed from and the quorum its status needs."""
        policy = self.policy(service)
        locations = policy.locations or self._default_locations()
        return Placement(locations, policy.quorum or default_quorum(len(locations)))

    def probed_here(self) -> dict[str, Service]:
        """The services this daemon probes: those listed for its own location."""
        return {
            name: service
            for name, service in self.services.items()
            if self.location in (service.locations or self._default_locations())
        }

    def instance_scoped(self) -> Settings:
        """In a cluster, the services that watch this daemon itself become this instance's own.

        Every member's config has the seeds' self-monitoring services (``http`` on ``/health``,
        ``database``, ...): in one log they would merge into one stream and be shared out as if
        they were one target. Named ``{name}-{instance}`` and placed at this location only, each
        member keeps its own. Without ``[cluster]`` nothing changes (the seeds' stream names).
        """
        if self.cluster is None:
            return self
        suffix = "-" + self.instance[:MAX_INSTANCE_SUFFIX].rstrip("-")
        renamed = {
            name: name[: MAX_NAME - len(suffix)].rstrip("-") + suffix
            for name, service in self.services.items()
            if service.watches_this_daemon
        }
        if not renamed:
            return self

        def names(listed: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(renamed.get(name, name) for name in listed)

        services: dict[str, Service] = {}
        for name, service in self.services.items():
            update: dict[str, object] = {"depends_on": names(service.depends_on)}
            if name in renamed:
                update |= {"locations": (self.location,), "quorum": 1}
            services[renamed.get(name, name)] = service.model_copy(update=update)
        return self.model_copy(
            update={
                "services": services,
                "notifications": {
                    key: channel.model_copy(update={"services": names(channel.services)})
                    for key, channel in self.notifications.items()
                },
                "maintenance": {
                    key: window.model_copy(update={"services": names(window.services)})
                    for key, window in self.maintenance.items()
                },
            }
        )

    def _default_locations(self) -> tuple[str, ...]:
        if self.cluster is not None and self.cluster.locations is not None:
            return self.cluster.locations
        return (self.location,)

    @model_validator(mode="after")
    def _cluster_needs_a_shared_store(self) -> Settings:
        if self.cluster is not None and self.store.kind is StoreKind.SQLITE:
            msg = (
                "cluster: needs a KurrentDB store (store.url or KURRENTDB_URL): the embedded "
                "SQLite store serves one daemon"
            )
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _user_data_needs_an_operator_token(self) -> Settings:
        if self.streams.user_data and not self.server.auth.operator_tokens:
            msg = (
                "streams.user_data: needs server.auth.operator_tokens (or UPTIME_OPERATOR_TOKENS): "
                "user-data streams are written only with an operator token"
            )
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _references_exist(self) -> Settings:
        """Every service named by a dependency, a channel or a window is configured; no cycles."""
        for name, service in self.services.items():
            for parent in service.depends_on:
                if parent == name:
                    raise ValueError(
                        f"services.{name}.depends_on: a service cannot depend on itself"
                    )
                if parent not in self.services:
                    raise ValueError(f"services.{name}.depends_on: no service named {parent!r}")
        cycle = _dependency_cycle({n: s.depends_on for n, s in self.services.items()})
        if cycle:
            raise ValueError(
                "services: depends_on makes a cycle ("
                + " -> ".join(cycle)
                + "): while all of them are down nobody would be told"
            )
        listed = [
            *(("notifications", key, c.services) for key, c in self.notifications.items()),
            *(("maintenance", key, w.services) for key, w in self.maintenance.items()),
        ]
        for table, key, names in listed:
            for name in names:
                if name not in self.services:
                    raise ValueError(f"{table}.{key}.services: no service named {name!r}")
        return self

    @model_validator(mode="after")
    def _lease_outlasts_deliveries(self) -> Settings:
        lease = self.alerting.lease_seconds
        for name, channel in self.notifications.items():
            if channel.timeout_seconds >= lease:
                msg = (
                    f"notifications.{name}.timeout_seconds: {channel.timeout_seconds:g} s must be "
                    f"shorter than alerting.lease_seconds ({lease:g} s), or another daemon takes "
                    "over a delivery still in progress"
                )
                raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _quorum_fits(self) -> Settings:
        for name in self.services:
            placement = self.placement(name)
            if placement.quorum > len(placement.locations):
                n = len(placement.locations)
                msg = f"services.{name}.quorum: {placement.quorum} is more than its {n} location(s)"
                raise ValueError(msg)
        return self


def _dependency_cycle(parents: dict[str, tuple[str, ...]]) -> list[str]:
    """A cycle of ``depends_on`` as the names along it (first repeated at the end), or ``[]``."""
    done: set[str] = set()
    for root in sorted(parents):
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            name, index = stack.pop()
            if index == 0:
                if name in on_path:
                    return [*path[path.index(name) :], name]
                if name in done:
                    continue
                path.append(name)
                on_path.add(name)
            children = parents.get(name, ())
            if index < len(children):
                stack.append((name, index + 1))
                stack.append((children[index], 0))
            else:
                done.add(name)
                on_path.discard(name)
                path.pop()
    return []
