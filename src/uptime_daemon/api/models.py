"""Every JSON shape the API accepts or returns: one source of truth.

Handlers validate and serialize with these models, and the OpenAPI document is generated from them.

Field names are camelCase on the wire (the seeds' style) and snake_case in Python.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from uptime_daemon.clock import to_iso_millis
from uptime_daemon.status import Status

Timestamp = Annotated[
    datetime,
    PlainSerializer(to_iso_millis, return_type=str),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "example": "2026-01-15T10:30:00.000Z"}
    ),
]
"""UTC, millisecond precision, ``Z`` suffix — the seeds' timestamp format."""

_ISO_DATE_TIME: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _date_time_text(value: object) -> object:
    """Refuse what pydantic would read as a Unix time (``"21"``): the schema says ``date-time``."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or _ISO_DATE_TIME.match(value) is None:
        raise ValueError("expected an ISO 8601 date-time with a zone, e.g. 2026-01-15T10:30:00Z")
    return value


DateTimeInput = Annotated[AwareDatetime, BeforeValidator(_date_time_text)]
"""A date-time in a request: RFC 3339 text with a zone, nothing else."""


class ApiModel(BaseModel):
    """Base: camelCase aliases, frozen, unknown input keys rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


# --- requests ------------------------------------------------------------------------------------


class WindowQuery(ApiModel):
    """A look-back window in whole hours: 1 to 87,600 (ten years) are accepted.

    A window longer than the projection's retention (``projector.retention_days``, 90 days by
    default) is answered for the retention, and the answer's ``window.hours`` says so.
    """

    hours: int = Field(
        default=24,
        ge=1,
        le=87_600,
        description="Window length in hours, ending now; longer than the retention is clamped to it "
        "(the answer's window.hours says what was used).",
    )


class TimelineQuery(WindowQuery):
    """A window, and optionally one location's own timeline instead of the service's verdict."""

    location: str | None = Field(
        default=None,
        description="One location's timeline (its own status machine); default: the service's "
        "k-of-n quorum timeline.",
    )


class CheckQuery(ApiModel):
    """Which service to check now."""

    service: str | None = Field(default=None, description="One service; all when omitted.")


MAX_POSITION: Final = 2**63 - 1
"""Revisions and commit positions are signed 64-bit in both stores: anything larger is a 400."""


class StreamEventsQuery(ApiModel):
    """Paging through one stream."""

    limit: int = Field(default=100, ge=1, le=1000)
    direction: Literal["forwards", "backwards"] = "forwards"
    from_revision: int | None = Field(
        default=None,
        ge=0,
        le=MAX_POSITION,
        alias="fromRevision",
        description="Inclusive start revision.",
    )


class LiveQuery(ApiModel):
    """Resume the live feed after a commit position; choose the snapshot's size."""

    from_: int | None = Field(default=None, ge=0, le=MAX_POSITION, alias="from")
    services: bool = Field(
        default=True,
        description="false: health_status without the per-service list (for clients that follow "
        "the changes and read /status/data themselves, as the status page does past 1,000 services).",
    )


# --- errors --------------------------------------------------------------------------------------


class ErrorBody(ApiModel):
    """Every 4xx/5xx body: always these three keys."""

    error: str = Field(description="Machine-readable code, e.g. bad_request, unknown_service.")
    message: str
    field: str | None = Field(
        description="The offending parameter; always present, null when no one parameter is at "
        "fault (an unknown path, a wrong method, a rate limit, a missing token)."
    )


# --- health --------------------------------------------------------------------------------------


class Liveness(ApiModel):
    """``GET /health``."""

    status: Literal["ok"]
    service: str
    version: str
    environment: str
    instance: str
    location: str
    timestamp: Timestamp
    uptime_seconds: float


class Component(ApiModel):
    """One part of the daemon and whether it is healthy."""

    name: str
    ok: bool
    detail: str


class Readiness(ApiModel):
    """``GET /health/ready``: ready only when every component is."""

    ready: bool
    reason: str | None = Field(description="Why not ready; null when ready.")
    components: list[Component]


class StoreHealth(ApiModel):
    """``GET /health/kurrentdb``: the event store, whatever its backend."""

    backend: str
    url: str = Field(description="Credentials masked.")
    connected: bool
    round_trip_ms: float | None
    error: str | None
    last_append_at: Timestamp | None
    last_append_position: int | None
    appends: int
    append_failures: int
    last_append_error: str | None = Field(
        description="Why the latest append failed; null once one succeeds."
    )
    spooled_events: int = Field(description="Events waiting in the outage spool.")
    spool_dropped_events: int = Field(description="Events dropped because the spool was full.")


class ServiceStatusBrief(ApiModel):
    """Current status of one service."""

    service: str
    kind: str | None
    configured: bool
    status: Status
    since: Timestamp | None
    last_check: Timestamp | None
    in_maintenance: bool = Field(
        default=False, description="A maintenance window covers the service now."
    )
    suppressed_by: list[str] = Field(
        default_factory=list,
        description="Parents (depends_on) that are down now: this service's notifications are "
        "suppressed while it lasts.",
    )


class Member(ApiModel):
    """One daemon sharing the store, as its heartbeats on ``system-cluster-members`` say."""

    instance: str
    location: str
    alive: bool
    this: bool = Field(description="This daemon.")
    started_at: Timestamp | None
    last_heartbeat: Timestamp | None
    left_at: Timestamp | None
    services_owned: int | None = Field(
        description="Services of this daemon's location it probes now (by rendezvous hashing over "
        "the alive members); null for members of other locations."
    )


class ComprehensiveHealth(ApiModel):
    """``GET /health/comprehensive``."""

    status: Literal["ok", "degraded", "down"]
    timestamp: Timestamp
    components: list[Component]
    services: list[ServiceStatusBrief]
    members: list[Member] = Field(
        description="The daemons sharing the store (with [cluster]); empty for a daemon alone."
    )


# --- uptime --------------------------------------------------------------------------------------


class Window(ApiModel):
    """The window a summary covers."""

    hours: int
    start: Timestamp
    end: Timestamp


class StateSeconds(ApiModel):
    """Time-weighted seconds per state inside the window (exact); the five add up to the window.

    ``maintenance`` is the time maintenance windows cover, whatever was observed then: it is
    left out of the other four and of every ratio.
    """

    up: float
    degraded: float
    down: float
    unknown: float
    maintenance: float = 0.0


class CheckCounts(ApiModel):
    """Check counts (hourly buckets: the window's first hour is taken whole)."""

    total: int
    up: int
    degraded: int
    down: int
    inconclusive: int = Field(
        description="Checks that concluded nothing because the daemon could not keep up "
        "(README: overload never reads as an outage); not in total, up, degraded or down."
    )
    up_ratio: float | None


class ResponseTime(ApiModel):
    """Response times of non-down checks, from a log-bucket histogram."""

    samples: int
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    relative_error: float = Field(description="Upper bound of the percentiles' relative error.")


class Incident(ApiModel):
    """An outage: from the check that turned the service down to the one that brought it back.

    Its time is observed down seconds plus unknown seconds (no credible verdict: the daemon was
    stopped or its checks went quiet for longer than 2 × interval + timeout); the two add up to
    ``durationSeconds``. ``mttrSeconds`` and ``longestOutageSeconds`` use ``downSeconds``.
    """

    start: Timestamp
    end: Timestamp | None
    ongoing: bool
    duration_seconds: float = Field(
        description="Wall-clock seconds from start to end (to now while ongoing): "
        "downSeconds + unknownSeconds."
    )
    down_seconds: float = Field(
        description="Seconds the service was seen down during the whole incident (its checks' "
        "verdicts while credible); what mttrSeconds and longestOutageSeconds use. While ongoing, "
        "up to now: down while the last check is credible, unknown after."
    )
    unknown_seconds: float = Field(
        description="Seconds of the whole incident no credible check covered (the daemon stopped, "
        "or no check for longer than 2 × interval + timeout): neither down nor up."
    )
    seconds_in_window: float = Field(
        description="Observed down seconds inside the window, maintenance left out: this "
        "incident's part of seconds.down (the incidents' values add up to it)."
    )
    maintenance_seconds: float = Field(
        default=0.0, description="The incident's time inside the window that maintenance covers."
    )


class Quorum(ApiModel):
    """How the service's status comes from its locations.

    Down when at least ``k`` of the ``n`` locations say down; degraded when any says down or
    degraded below that; unknown only when none has a credible verdict.
    """

    k: int
    n: int
    locations: list[str]


class LocationUptime(ApiModel):
    """One location's own view of the service over the window (its own status machine)."""

    status: Status
    since: Timestamp | None
    last_check: Timestamp | None
    seconds: StateSeconds
    checks: CheckCounts
    response_time: ResponseTime


class ServiceUptime(ServiceStatusBrief):
    """Every figure of one service over the window (its current status first).

    ``status``, ``seconds``, incidents and ratios are the k-of-n quorum verdict over the locations;
    ``checks`` and ``responseTime`` count every location's checks; ``locations`` has each one's own.
    """

    last_response_ms: float | None
    window: Window
    uptime_ratio: float | None = Field(description="up / (up + degraded + down) seconds.")
    availability_ratio: float | None = Field(
        description="(up + degraded) / (up + degraded + down) seconds."
    )
    seconds: StateSeconds
    checks: CheckCounts
    response_time: ResponseTime
    incidents: list[Incident]
    mttr_seconds: float | None = Field(
        description="Mean downSeconds of the incidents that ended inside the window: observed "
        "down time only, never the unknownSeconds of a stop during an outage."
    )
    mtbf_seconds: float | None = Field(
        description="Up-or-degraded seconds in the window per incident that began in it."
    )
    longest_outage_seconds: float | None = Field(
        description="The largest downSeconds of an incident overlapping the window (observed "
        "down time, the whole incident's, not only its part inside the window)."
    )
    quorum: Quorum
    locations: dict[str, LocationUptime]


class UptimeSummary(ApiModel):
    """``GET /uptime/summary``: every service."""

    generated_at: Timestamp
    hours: int
    status: Literal["ok", "degraded", "down"] = Field(
        description="Worst current status across services."
    )
    services: list[ServiceUptime]


class Period(ApiModel):
    """A contiguous span of one status (``maintenance``: a maintenance window, whatever was observed)."""

    status: Status | Literal["maintenance"]
    start: Timestamp
    end: Timestamp
    duration_seconds: float


class Timeline(ApiModel):
    """``GET /uptime/timeline/{name}``."""

    service: str
    location: str | None = Field(
        description="The location whose own timeline this is; null for the service's verdict."
    )
    window: Window
    periods: list[Period]


class ProbeInfo(ApiModel):
    """The probe part of a stored ``ServiceStatusChanged`` event."""

    model_config = ConfigDict(extra="allow")
    kind: str
    ok: bool
    reason: str | None
    detail: str
    http_status: int | None = None


class CheckResult(ApiModel):
    """One check run by ``POST /uptime/check``."""

    service: str
    stored: bool
    position: int | None
    store_error: str | None
    spooled: bool = Field(
        description="The store was unreachable; the event waits in the outage spool."
    )
    event_type: str = Field(
        description="``ServiceStatusChanged``, or ``ServiceCheckPending`` for a failed check of a "
        "service with no verdict yet (fewer failures than ``failures_before_down``)."
    )
    event: dict[str, Any] = Field(description="The event data exactly as stored.")


class CheckResults(ApiModel):
    """``POST /uptime/check``."""

    checks: list[CheckResult]


# --- status page ---------------------------------------------------------------------------------


class DayBar(ApiModel):
    """One day of the 90-day bar: time-weighted seconds per state (UTC days)."""

    date: str = Field(description="YYYY-MM-DD (UTC).")
    up: float
    degraded: float
    down: float
    unknown: float
    maintenance: float = 0.0
    uptime_ratio: float | None = Field(
        description="up / (up + degraded + down), maintenance left out; null when nothing was observed."
    )


class PageLocation(ApiModel):
    """One location's own current view of a service (the page shows it beside the verdict)."""

    location: str
    status: Status
    since: Timestamp | None


class PageService(ApiModel):
    """``GET /status/service/{name}``: everything the status page shows for one service opened."""

    service: str
    kind: str | None
    group: str | None = Field(default=None, description="The service's ``group`` in the config.")
    configured: bool
    status: Status
    since: Timestamp | None
    in_maintenance: bool = Field(description="A maintenance window covers the service now.")
    maintenance_reason: str | None = Field(description="The reason of the window covering it now.")
    last_reason: str | None = Field(
        default=None, description="The failure reason of the newest check (null: it succeeded)."
    )
    last_detail: str | None = Field(
        default=None,
        description="What the newest check saw (``HTTP 200``, ``connection refused``).",
    )
    suppressed_by: list[str] = Field(
        description="Parents (depends_on) down now: this service's alerts are held back."
    )
    uptime_24h: float | None = Field(alias="uptime24h")
    uptime_7d: float | None = Field(alias="uptime7d")
    uptime_30d: float | None = Field(alias="uptime30d")
    days: list[DayBar]
    response_ms_hourly: list[float | None] = Field(
        description="Average response time per hour, last 24 h, oldest first."
    )
    locations: list[PageLocation] = Field(
        description="Each location's own status when the service is watched from more than one."
    )
    incidents: list[Incident] = Field(
        description="The most recent incidents (newest first), at most 5."
    )


class PageRow(ApiModel):
    """One configured service as the page's first paint needs it: a few dozen bytes.

    A key holding its default (``group`` null, ``inMaintenance`` false, ``lastReason`` null,
    ``suppressedBy`` empty) is left out of the answer, so a healthy service costs its name, its
    status and its ``since``. The figures are in ``GET /status/service/{name}``.
    """

    service: str
    group: str | None = Field(default=None, description="The service's ``group`` in the config.")
    status: Status = Field(
        description="The verdict now (a new service whose first check failed is ``unknown``)."
    )
    since: Timestamp | None = Field(
        default=None, description="When the service entered its status; null before a check."
    )
    in_maintenance: bool = Field(
        default=False, description="A maintenance window covers the service now."
    )
    last_reason: str | None = Field(
        default=None,
        description="The failure reason of the newest check (``connection_refused``, "
        "``http_status``, ``timeout``…); left out when it succeeded.",
    )
    suppressed_by: list[str] = Field(
        default_factory=list,
        description="Parents (depends_on) down now: this service's alerts are held back.",
    )


class StatusPage(ApiModel):
    """``GET /status/data``: every configured service in a few dozen bytes, and the daemon's health.

    Bounded for large configurations (about 80 bytes a service, under 1 MB for 10,000 services;
    gzip when the client accepts it): a service's bars, response times and incidents are in
    ``GET /status/service/{name}``, fetched when it is opened. Services in config order.
    """

    generated_at: Timestamp
    status: Literal["ok", "degraded", "down"]
    position: int | None = Field(description="Commit position the projection has folded up to.")
    projector_lag_seconds: float
    components: list[Component]
    services: list[PageRow] = Field(
        description="Configured services only (a removed one's history stays in /uptime)."
    )


# --- streams -------------------------------------------------------------------------------------


class StreamsQuery(ApiModel):
    """Paging through the browsable streams (the seeds' ``?limit=50&offset=0``)."""

    limit: int = Field(default=50, ge=1, le=1000, description="Streams per page.")
    offset: int = Field(
        default=0, ge=0, le=MAX_POSITION, description="How many streams to skip (0-based)."
    )


StreamKind = Literal["service", "system", "user"]


class StreamInfo(ApiModel):
    """A browsable stream."""

    name: str
    kind: StreamKind = Field(
        description="``service``: a service's uptime events; ``system``: the daemon's own; "
        "``user``: the seeds' user-data streams (listed only to a token holder)."
    )
    last_revision: int | None = Field(description="``null``: no event yet (a new service).")
    last_position: int | None


class StreamList(ApiModel):
    """``GET /streams`` (the seeds' ``GET /api/streams/browse``): one page of streams.

    Order: service streams by name, then the daemon's system streams, then user-data streams in the
    order they were created. ``total`` counts every stream the caller may see.
    """

    streams: list[StreamInfo]
    total: int
    limit: int
    offset: int


class StreamRetention(ApiModel):
    """A stream's retention metadata, in KurrentDB's own names."""

    max_age: int | None = Field(
        alias="$maxAge", description="Seconds an event stays readable; ``null``: for ever."
    )
    max_count: int | None = Field(
        alias="$maxCount", description="Newest events kept readable; ``null``: all."
    )


class EventHead(ApiModel):
    """Where one event sits, without its data."""

    event_id: str
    event_type: str
    revision: int
    position: int
    recorded_at: Timestamp


class StreamDetails(ApiModel):
    """``GET /streams/{name}/details``: a stream's extent and retention.

    ``firstRevision`` and ``created`` are those of the oldest event still readable (retention and
    soft deletes hide older ones), so ``eventCount`` is the number of readable events.
    """

    name: str
    kind: StreamKind
    first_revision: int
    last_revision: int
    event_count: int
    created: Timestamp = Field(description="When the oldest readable event was recorded.")
    last_event: EventHead
    metadata: StreamRetention


class RecordedEvent(ApiModel):
    """One stored event."""

    event_id: str
    event_type: str
    stream_name: str
    revision: int
    position: int
    recorded_at: Timestamp
    data: Any = Field(description="JSON data (a string when the bytes are not JSON).")
    metadata: Any


class StreamEvents(ApiModel):
    """``GET /streams/{name}/events``."""

    stream_name: str
    direction: Literal["forwards", "backwards"]
    events: list[RecordedEvent]


USER_DATA_TYPES: Final = ("profile", "preferences", "activity", "loans", "offers")
UserDataType = Literal["profile", "preferences", "activity", "loans", "offers"]
USER_ID_PATTERN: Final = r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$"
CLIENT_EVENT_ID_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,128}$"


class UserDataUpdated(ApiModel):
    """The seeds' ``UserDataUpdated`` payload, as stored (``timestamp`` and ``eventId`` filled in)."""

    user_id: str = Field(pattern=USER_ID_PATTERN, description="Must be the stream name's userId.")
    type: UserDataType = Field(description="Must be the stream name's suffix.")
    category: str = Field(min_length=1, max_length=100)
    data: dict[str, Any] = Field(description="The application's own JSON object.")
    is_public: bool = Field(
        default=False,
        description="Kept as sent; the daemon never publishes user data whatever it says.",
    )
    timestamp: DateTimeInput | None = Field(
        default=None, description="When it happened; the time of the write when omitted."
    )
    event_id: str | None = Field(
        default=None,
        pattern=CLIENT_EVENT_ID_PATTERN,
        description="The client's idempotency id (the seeds' ``evt_…``): the same id written twice "
        "to a stream is stored once. One is generated when omitted.",
    )


class StreamCreateRequest(ApiModel):
    """``POST /streams/create``: a new user-data stream with its first event (the seeds' body)."""

    stream_name: str = Field(
        description="``user-{userId}-{profile|preferences|activity|loans|offers}``."
    )
    event_type: Literal["UserDataUpdated"]
    event_data: UserDataUpdated


class StreamAppendRequest(ApiModel):
    """``POST /streams/{name}/events``: one event for a user-data stream (the seeds' body)."""

    event_type: Literal["UserDataUpdated"]
    event_data: UserDataUpdated


class AppendResult(ApiModel):
    """What a user-data write stored."""

    stream_name: str
    event_id: str = Field(description="The stored event's id (a UUID derived from clientEventId).")
    client_event_id: str = Field(description="``eventData.eventId`` as stored.")
    revision: int
    position: int
    duplicate: bool = Field(
        description="``true``: this clientEventId was already stored; nothing new was written."
    )


# --- maintenance ---------------------------------------------------------------------------------


class MaintenanceRequest(ApiModel):
    """``POST /maintenance``: a one-off window.

    Also one already past: its time then turns into ``maintenance`` in every figure.
    """

    services: list[str] = Field(
        default_factory=list, description="Service names; empty: every service.", max_length=1000
    )
    start: DateTimeInput = Field(description="ISO 8601 with a zone (``Z`` or an offset).")
    end: DateTimeInput = Field(description="ISO 8601 with a zone; after start.")
    reason: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceRequest:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if len(set(self.services)) != len(self.services):
            raise ValueError("services: each name at most once")
        return self


class MaintenanceAction(ApiModel):
    """``POST /maintenance/{id}/end`` and ``DELETE /maintenance/{id}``: an optional reason."""

    reason: str = Field(default="", max_length=500)


class MaintenanceWindowView(ApiModel):
    """One maintenance window as the log declares it."""

    id: str
    services: list[str] = Field(description="Empty: every service.")
    start: Timestamp | None
    end: Timestamp | None = Field(description="As declared; ``endedAt`` may end it earlier.")
    cron: str | None = Field(description="Recurring: when each occurrence starts.")
    duration_seconds: float | None = Field(description="Recurring: how long each occurrence lasts.")
    timezone: str
    reason: str
    source: str = Field(
        description="``api``, or ``config:NAME`` for a ``[maintenance.NAME]`` table."
    )
    declared_at: Timestamp
    declared_by: str
    ended_at: Timestamp | None
    cancelled: bool
    state: Literal["scheduled", "active", "ended", "cancelled"]


class MaintenanceList(ApiModel):
    """``GET /maintenance``."""

    windows: list[MaintenanceWindowView]
