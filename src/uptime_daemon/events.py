"""The stored events, exactly as the seeds specify them, plus ours; ids, encoding, decoding, upcasting.

``ServiceStatusChanged`` carries the seeds' fields first (``serviceName, status, timestamp, duration,
metadata{responseTime, performanceGrade}, eventId``), then ours (``schemaVersion, previousStatus,
changed, location, scheduledAt, intervalMs, timeoutMs, probe{…}``). ``intervalMs``/``timeoutMs`` record
the check policy in force when the check ran, so the projector's gap rule (2 × interval + timeout,
DESIGN §3) replays exactly even after the configuration changes.

The store event id is a UUIDv5 of (service, location, scheduledAt): a retried append of the same check
is a no-op, never a double count. Any change to a payload bumps ``SCHEMA_VERSION`` and adds an
upcaster to ``UPCASTERS``; old events stay readable forever. Events without ``schemaVersion`` are the
seeds' own (version 0).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple, TypeGuard, TypeVar
from uuid import UUID, uuid5

import orjson

from uptime_daemon.clock import EPOCH, MICROSECOND, from_micros, parse_iso, to_iso_millis, to_micros
from uptime_daemon.errors import UptimeDaemonError
from uptime_daemon.results import CheckKind, FailureReason, InconclusiveReason, ProbeResult
from uptime_daemon.status import VERDICTS, Grade, Outcome, Status, credible_seconds
from uptime_daemon.store import UPTIME_STREAM_PREFIX, NewEvent

EVENT_TYPE_STREAM_CREATED: Final = "StreamCreated"
EVENT_TYPE_STATUS_CHANGED: Final = "ServiceStatusChanged"
EVENT_TYPE_CHECK_PENDING: Final = "ServiceCheckPending"
"""A check of a service with no verdict yet that failed, fewer than ``failures_before_down`` times
in a row: recorded (nothing is lost, and a restart resumes the count), but with no ``status``, since
the seeds' statuses are verdicts and there is none yet. Same fields as ``ServiceStatusChanged``
minus ``status``/``duration``/``previousStatus``/``changed``, plus ``pending`` {failures, of}."""
EVENT_TYPE_CHECK_INCONCLUSIVE: Final = "ServiceCheckInconclusive"
"""A check that proves nothing about the target: its deadline lapsed while the daemon itself was
late (``loop_lag.overrun_explained``). Recorded so the log says the daemon could not keep up, but
no verdict: no ``status``, never a transition, no time in any state. Same fields as
``ServiceCheckPending`` minus ``pending``, plus ``inconclusive`` {reason, lagMs}."""
SCHEMA_VERSION: Final = 2
"""2 added ``instance`` (which daemon wrote the event) and ``quorum`` (the service's locations and
the k its status needs); 1 is the first of ours; 0 the seeds'."""
EVENT_ID_NAMESPACE: Final = UUID("6f0b5a52-39a4-4e0e-9b0c-7d1f3a1e2c55")
"""Fixed forever: changing it would change every event id and break idempotent re-appends."""
PRODUCER: Final = "uptime-daemon"
EVENT_METADATA: Final = orjson.dumps({"schemaVersion": SCHEMA_VERSION, "producer": PRODUCER})
"""The store metadata of every event we write. Informational only: decoding reads the version from
the payload (the seeds' events have no metadata at all), but a human browsing the store, or another
tool reading it, can tell our events from anyone else's without parsing the payload."""
_MILLISECOND: Final = timedelta(milliseconds=1)


class EventDecodeError(UptimeDaemonError, ValueError):
    """A stored event does not have the shape its type and version promise; the message names the field."""


def stream_name(service: str) -> str:
    """``service-uptime-{service}``: one stream per service, as in the seeds."""
    return f"{UPTIME_STREAM_PREFIX}{service}"


def service_from_stream(stream: str) -> str | None:
    """The service of an uptime stream, or ``None`` for any other stream."""
    if stream.startswith(UPTIME_STREAM_PREFIX) and len(stream) > len(UPTIME_STREAM_PREFIX):
        return stream[len(UPTIME_STREAM_PREFIX) :]
    return None


def event_id(service: str, location: str, scheduled_at: datetime) -> UUID:
    """The store id of one scheduled check: deterministic, so retries and duplicate writers deduplicate.

    Keyed on the *scheduled* time, not the completion time: a retry of the same run completes later
    but is still the same check.
    """
    return uuid5(EVENT_ID_NAMESPACE, f"{service}:{location}:{to_iso_millis(scheduled_at)}")


def _unix_millis(moment: datetime) -> int:
    """Whole milliseconds since the epoch, truncated like ``to_iso_millis`` so both agree."""
    return (moment - EPOCH) // _MILLISECOND


def stream_created(service: str, created_at: datetime, description: str | None = None) -> NewEvent:
    """The first event of ``service-uptime-{service}`` (appended with expected state "no stream").

    Its id depends only on the stream name, so two daemons creating the same stream write the same
    event and the second append is a harmless no-op or conflict. An unset (or empty) ``description``
    gets the seeds' default text.
    """
    name = stream_name(service)
    data = {
        "streamName": name,
        "description": description or f"Service uptime tracking for {service}",
        "tags": ["uptime", "monitoring", service],
        "owner": "system",
        "createdAt": to_iso_millis(created_at),
        "data": {},
    }
    return NewEvent(
        id=uuid5(EVENT_ID_NAMESPACE, f"stream-created:{name}"),
        type=EVENT_TYPE_STREAM_CREATED,
        data=orjson.dumps(data),
        metadata=EVENT_METADATA,
    )


def _probe_payload(kind: CheckKind, probe: ProbeResult) -> dict[str, Any]:
    """The ``probe`` object: always its five core keys, the protocol extras only when known."""
    data: dict[str, Any] = {
        "kind": kind.value,
        "ok": probe.ok,
        "reason": None if probe.failure is None else probe.failure.value,
        "detail": probe.detail,
        "httpStatus": probe.http_status,
    }
    if probe.tls_days_left is not None:
        data["tlsDaysLeft"] = round(probe.tls_days_left, 2)
    if probe.close_code is not None:
        data["closeCode"] = probe.close_code
    if probe.degraded is not None:
        data["degraded"] = probe.degraded
    if probe.phases:
        data["phases"] = {str(phase): round(seconds, 6) for phase, seconds in probe.phases.items()}
    return data


def status_changed(
    *,
    service: str,
    instance: str,
    location: str,
    kind: CheckKind,
    scheduled_at: datetime,
    completed_at: datetime,
    outcome: Outcome,
    probe: ProbeResult,
    interval_seconds: float,
    timeout_seconds: float,
    quorum: int = 1,
    locations: tuple[str, ...] = (),
    failures_before_down: int = 1,
    inconclusive: tuple[InconclusiveReason, float] | None = None,
) -> NewEvent:
    """One completed check, seed fields first (orjson keeps this insertion order in the bytes).

    A check with no verdict (``outcome.status`` ``None``: pending) is a ``ServiceCheckPending``;
    one that concluded nothing (``inconclusive``: the reason and the loop's lag in seconds) a
    ``ServiceCheckInconclusive``, whatever ``outcome`` says (the unchanged state).

    ``quorum`` and ``locations`` (default: ``location`` alone) record the service's placement, as
    ``intervalMs`` records its policy: the log says how to fold itself, whatever today's config.

    Seconds become the seeds' integer milliseconds here and nowhere else.
    """
    verdict = None if inconclusive is not None else outcome.status
    uid = (
        event_id(service, location, scheduled_at)
        if inconclusive is None
        # Deterministic, but not the id a verdict of this slot has: a replica that did conclude
        # (an HA pair probes each slot twice), or this daemon probing the slot again after a
        # restart, must not be dropped as its duplicate.
        else uuid5(
            EVENT_ID_NAMESPACE, f"inconclusive:{service}:{location}:{to_iso_millis(scheduled_at)}"
        )
    )
    data: dict[str, Any] = {"serviceName": service}
    if verdict is not None:
        data["status"] = verdict.value
    data["timestamp"] = to_iso_millis(completed_at)
    if verdict is not None:
        data["duration"] = round(outcome.streak_seconds * 1000)
    data["metadata"] = {
        "responseTime": round(probe.duration_seconds * 1000),
        "performanceGrade": (Grade.FAILED if inconclusive else outcome.grade).value,
    }
    data["eventId"] = f"evt_{_unix_millis(completed_at)}_{uid.hex[:6]}"
    data["schemaVersion"] = SCHEMA_VERSION
    if inconclusive is not None:
        reason, lag_seconds = inconclusive
        data["inconclusive"] = {"reason": reason.value, "lagMs": round(lag_seconds * 1000)}
    elif verdict is None:
        data["pending"] = {
            "failures": outcome.state.consecutive_failures,
            "of": failures_before_down,
        }
    else:
        data["previousStatus"] = (
            None if outcome.previous_status is None else outcome.previous_status.value
        )
        data["changed"] = outcome.changed
    data |= {
        "instance": instance,
        "location": location,
        "scheduledAt": to_iso_millis(scheduled_at),
        "intervalMs": round(interval_seconds * 1000),
        "timeoutMs": round(timeout_seconds * 1000),
        "quorum": {"k": quorum, "of": list(locations or (location,))},
        "probe": _probe_payload(kind, probe),
    }
    kind_of_event = (
        EVENT_TYPE_CHECK_INCONCLUSIVE
        if inconclusive is not None
        else EVENT_TYPE_CHECK_PENDING
        if verdict is None
        else EVENT_TYPE_STATUS_CHANGED
    )
    return NewEvent(id=uid, type=kind_of_event, data=orjson.dumps(data), metadata=EVENT_METADATA)


@dataclass(frozen=True, slots=True)
class CheckInconclusive:
    """A decoded ``ServiceCheckInconclusive``: a check that concluded nothing about its target."""

    service: str
    timestamp: datetime
    location: str
    scheduled_at: datetime
    reason: InconclusiveReason
    lag_seconds: float
    probe_reason: FailureReason | None
    """What the probe itself saw (``timeout``), though it proves nothing."""
    detail: str


def decode_check_inconclusive(data: bytes) -> CheckInconclusive:
    """Decode a ``ServiceCheckInconclusive``; ``EventDecodeError`` names the bad field."""
    event = _Fields(payload(data))
    probe = event.object("probe")
    inconclusive = event.object("inconclusive")
    return CheckInconclusive(
        service=event.text("serviceName"),
        timestamp=event.time("timestamp"),
        location=event.text("location"),
        scheduled_at=event.time("scheduledAt"),
        reason=inconclusive.enum("reason", InconclusiveReason),
        lag_seconds=inconclusive.millis("lagMs"),
        probe_reason=probe.enum("reason", FailureReason) if probe.has("reason") else None,
        detail=probe.text("detail") if probe.has("detail") else "",
    )


@dataclass(frozen=True, slots=True)
class CheckPending:
    """A decoded ``ServiceCheckPending``: a failed check of a service with no verdict yet."""

    service: str
    timestamp: datetime
    location: str
    scheduled_at: datetime
    failures: int
    reason: FailureReason | None
    detail: str
    gap_seconds: float | None


def decode_check_pending(data: bytes) -> CheckPending:
    """Decode a ``ServiceCheckPending``; ``EventDecodeError`` names the bad field."""
    event = _Fields(payload(data))
    probe = event.object("probe")
    gap = None
    if event.has("intervalMs") or event.has("timeoutMs"):
        gap = credible_seconds(event.millis("intervalMs"), event.millis("timeoutMs"))
    detail = probe.text("detail") if probe.has("detail") else ""
    return CheckPending(
        service=event.text("serviceName"),
        timestamp=event.time("timestamp"),
        location=event.text("location"),
        scheduled_at=event.time("scheduledAt"),
        failures=event.object("pending").count("failures"),
        reason=probe.enum("reason", FailureReason) if probe.has("reason") else None,
        detail=detail,
        gap_seconds=gap,
    )


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """A decoded ``ServiceStatusChanged``, whatever version it was written in (upcast to the latest)."""

    service: str
    status: Status
    timestamp: datetime
    """When the check completed."""
    duration_seconds: float
    """How long ``status`` had held at ``timestamp``."""
    response_seconds: float
    grade: Grade
    previous_status: Status | None
    """``None`` on a stream's first check, and on seed events (which do not record it)."""
    changed: bool
    instance: str | None
    """The daemon that wrote it; ``None`` for events from before version 2 (never recorded)."""
    quorum: int
    """k of the service's quorum when the check was made."""
    quorum_of: tuple[str, ...]
    """The service's locations when the check was made."""
    location: str
    scheduled_at: datetime
    probe_ok: bool
    """The raw probe outcome, which may differ from ``status`` (a blip, a recovery not yet confirmed)."""
    reason: FailureReason | None
    gap_seconds: float | None
    """How long the verdict stays credible (``credible_seconds``) when the event records the
    policy (ours do; the seeds' do not)."""
    payload: Mapping[str, Any] = field(compare=False, repr=False)
    """The event data exactly as stored (before upcasting): what the live feed and API show. Not a
    decoded fact: two events equal in every fact are equal whatever their spelling."""


def json_or_text(data: bytes) -> object:
    """Any event's data for display: the JSON value, else the text (``None`` when empty)."""
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", errors="replace")


def payload(data: bytes) -> dict[str, Any]:
    """The event data as a dict; ``EventDecodeError`` if it is not a JSON object."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError(f"event data is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise EventDecodeError(f"event data is not a JSON object: {type(value).__name__}")
    return value


def upcast_v0_v1(raw: dict[str, Any]) -> dict[str, Any]:
    """The seeds' events (no ``schemaVersion``) in v1 shape, filling only what can be known.

    Two shapes exist: the stream inventory's (``metadata{responseTime, performanceGrade}``,
    ``duration``, ``eventId``) and the write example's flat one (``responseTime``/``performanceGrade``
    at the top level, no ``duration``). Measurements are never invented: a seed event without a
    response time or a grade stays without one and fails to decode, naming the field. What the seeds
    never recorded gets a neutral default: no transition information (``changed`` false, no previous
    status), location ``default``, scheduled when it completed, a zero streak, and a probe outcome
    inferred from the status.
    """
    flat = ("responseTime", "performanceGrade")
    v1 = {key: value for key, value in raw.items() if key not in flat}
    if "metadata" not in raw:
        v1["metadata"] = {key: raw[key] for key in flat if key in raw}
    v1.setdefault("duration", 0)
    v1["schemaVersion"] = 1
    v1.setdefault("previousStatus", None)
    v1.setdefault("changed", False)
    v1.setdefault("location", "default")
    v1.setdefault("scheduledAt", raw.get("timestamp"))
    v1.setdefault("probe", {"ok": raw.get("status") != Status.DOWN.value, "reason": None})
    return v1


def upcast_v1_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 1 did not record which daemon wrote the event, nor a quorum.

    ``instance`` is unknown (null); its daemons watched each service from one location (k = 1).
    """
    quorum = raw.get("quorum") or {"k": 1, "of": [raw.get("location")]}
    return {**raw, "schemaVersion": 2, "instance": raw.get("instance"), "quorum": quorum}


UPCASTERS: Final[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    0: upcast_v0_v1,
    1: upcast_v1_v2,
}
"""Version ``n`` → a function producing version ``n + 1``; one entry for every version below
``SCHEMA_VERSION``."""


_E = TypeVar("_E", Status, Grade, FailureReason, InconclusiveReason)


class _Fields:
    """Typed reads from one JSON object; errors name the field by its full path (``probe.ok``)."""

    __slots__ = ("_prefix", "_raw")

    def __init__(self, raw: dict[str, Any], prefix: str = "") -> None:
        self._raw = raw
        self._prefix = prefix

    def _invalid(self, name: str, expected: str, value: object) -> EventDecodeError:
        return EventDecodeError(
            f"field {self._prefix + name!r}: expected {expected}, got {value!r}"
        )

    def has(self, name: str) -> bool:
        return self._raw.get(name) is not None

    def text(self, name: str) -> str:
        value = self._raw.get(name)
        if not isinstance(value, str):
            raise self._invalid(name, "a string", value)
        return value

    def count(self, name: str) -> int:
        """A whole number of at least 1."""
        value = self._raw.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self._invalid(name, "a whole number of at least 1", value)
        return value

    def texts(self, name: str) -> tuple[str, ...]:
        """A non-empty list of strings."""
        value = self._raw.get(name)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self._invalid(name, "a non-empty list of strings", value)
        return tuple(value)

    def flag(self, name: str) -> bool:
        value = self._raw.get(name)
        if not isinstance(value, bool):
            raise self._invalid(name, "true or false", value)
        return value

    def millis(self, name: str) -> float:
        """A non-negative millisecond count, returned as seconds."""
        value = self._raw.get(name)
        # JSON true is a Python int; it is not a number of milliseconds.
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self._invalid(name, "a non-negative number of milliseconds", value)
        return value / 1000

    def version(self) -> int:
        """``schemaVersion``; absent means the seeds' version 0."""
        value = self._raw.get("schemaVersion", 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._invalid("schemaVersion", "an integer", value)
        if not 0 <= value <= SCHEMA_VERSION:
            raise self._invalid("schemaVersion", f"a version from 0 to {SCHEMA_VERSION}", value)
        return value

    def object(self, name: str) -> _Fields:
        value = self._raw.get(name)
        if not isinstance(value, dict):
            raise self._invalid(name, "an object", value)
        return _Fields(value, f"{self._prefix}{name}.")

    def enum(self, name: str, enum: type[_E], allowed: frozenset[_E] | None = None) -> _E:
        """A member of ``enum`` (of ``allowed``, when given) by its value."""
        value = self._raw.get(name)
        if isinstance(value, str):
            try:
                member = enum(value)  # a dict lookup inside Enum: this runs three times per event
            except ValueError:
                pass
            else:
                if allowed is None or member in allowed:
                    return member
        shown = [member.value for member in enum if allowed is None or member in allowed]
        raise self._invalid(name, "one of " + ", ".join(shown), value)

    def time(self, name: str) -> datetime:
        text = self.text(name)
        try:
            return parse_iso(text)
        except ValueError:
            raise self._invalid(name, "an ISO-8601 timestamp", text) from None


def upcast(raw: dict[str, Any]) -> dict[str, Any]:
    """Any known version of the payload, brought to ``SCHEMA_VERSION`` one upcaster at a time."""
    version = _Fields(raw).version()
    while version < SCHEMA_VERSION:
        raw = UPCASTERS[version](raw)
        version += 1
    return raw


def decode_status_changed(data: bytes) -> StatusChanged:
    """Decode any version of ``ServiceStatusChanged``; ``EventDecodeError`` names the bad field.

    Strict on purpose: a corrupt event is reported (the projector counts and logs it) rather than
    folded in as a plausible-looking wrong value.
    """
    return _decode_status_changed(payload(data))


def _decode_status_changed(stored: dict[str, Any]) -> StatusChanged:
    """``decode_status_changed`` of the parsed payload."""
    event = _Fields(upcast(stored))
    metadata = event.object("metadata")
    probe = event.object("probe")
    location = event.text("location")
    quorum = event.object("quorum")
    k, of = quorum.count("k"), quorum.texts("of")
    if k > len(of):
        raise quorum._invalid("k", f"at most its {len(of)} location(s)", k)  # noqa: SLF001
    gap = None
    if event.has("intervalMs") or event.has("timeoutMs"):
        gap = credible_seconds(event.millis("intervalMs"), event.millis("timeoutMs"))
    return StatusChanged(
        service=event.text("serviceName"),
        status=event.enum("status", Status, VERDICTS),
        timestamp=event.time("timestamp"),
        duration_seconds=event.millis("duration"),
        response_seconds=metadata.millis("responseTime"),
        grade=metadata.enum("performanceGrade", Grade),
        previous_status=event.enum("previousStatus", Status, VERDICTS)
        if event.has("previousStatus")
        else None,
        changed=event.flag("changed"),
        instance=event.text("instance") if event.has("instance") else None,
        location=location,
        quorum=k,
        quorum_of=of,
        scheduled_at=event.time("scheduledAt"),
        probe_ok=probe.flag("ok"),
        reason=probe.enum("reason", FailureReason) if probe.has("reason") else None,
        gap_seconds=gap,
        payload=stored,
    )


class Check(NamedTuple):
    """What the projection folds from one ``ServiceStatusChanged``: its facts, nothing for display.

    A named tuple rather than a frozen dataclass because a replay builds one per event and a tuple
    costs a third as much to build; ``decode_check`` gives exactly ``Check.of`` the strict decoding.
    """

    service: str
    status: Status
    timestamp: datetime
    response_seconds: float
    gap_seconds: float | None
    location: str
    scheduled_at: datetime
    quorum: int
    quorum_of: tuple[str, ...]

    @classmethod
    def of(cls, event: StatusChanged) -> Check:
        """The facts of a decoded event."""
        return cls(
            event.service,
            event.status,
            event.timestamp,
            event.response_seconds,
            event.gap_seconds,
            event.location,
            event.scheduled_at,
            event.quorum,
            event.quorum_of,
        )


_VERDICT_OF: Final = {status.value: status for status in VERDICTS}
_GRADES: Final = frozenset(grade.value for grade in Grade)
_REASONS: Final = frozenset(reason.value for reason in FailureReason)


def decode_check(data: bytes) -> Check:
    """``Check.of(decode_status_changed(data))``, fast for the events this build writes.

    An event of the current ``SCHEMA_VERSION`` whose every field has exactly the type and range the
    strict decoder demands is read straight from the parsed dict; anything else — an older version,
    the seeds' events, a field of the wrong shape — goes through ``decode_status_changed``, so a
    corrupt event is refused with the same message, never folded as a plausible wrong value.
    """
    stored = payload(data)
    check = _fast_check(stored)
    if check is None:
        return Check.of(_decode_status_changed(stored))
    return check


def _fast_check(raw: dict[str, Any]) -> Check | None:  # noqa: C901, PLR0911 - one guard per field, in one place
    """The strict decoder's checks, written as plain type tests on one version's shape.

    ``None`` whenever a check fails (or is not one this path knows): the caller then decodes
    strictly, which names the field. Types are compared exactly (``type(x) is int``), which is
    stricter than the strict decoder only for values JSON never produces. Written for speed (a
    replay runs it for every event): a local for the lookups, ``_is_millis`` inlined.
    """
    get: Callable[[str], Any] = raw.get
    version = get("schemaVersion")
    if type(version) is not int or version != SCHEMA_VERSION:
        return None
    service = get("serviceName")
    location = get("location")
    timestamp = get("timestamp")
    scheduled_at = get("scheduledAt")
    if not (str is type(service) is type(location) is type(timestamp) is type(scheduled_at)):
        return None
    value = get("status")
    status = _VERDICT_OF.get(value) if type(value) is str else None
    previous = get("previousStatus")
    instance = get("instance")
    duration = get("duration")
    if (
        status is None
        or (previous is not None and (type(previous) is not str or previous not in _VERDICT_OF))
        or (instance is not None and type(instance) is not str)
        or type(get("changed")) is not bool
        or type(duration) not in _NUMBERS
        or not duration >= 0  # NaN too, as _is_millis
    ):
        return None
    metadata, probe, quorum = get("metadata"), get("probe"), get("quorum")
    if not (dict is type(metadata) is type(probe) is type(quorum)):
        return None
    response: Any = metadata.get("responseTime")
    grade = metadata.get("performanceGrade")
    reason = probe.get("reason")
    if (
        type(response) not in _NUMBERS
        or not response >= 0
        or type(grade) is not str
        or grade not in _GRADES
        or type(probe.get("ok")) is not bool
        or (reason is not None and (type(reason) is not str or reason not in _REASONS))
    ):
        return None
    k, of = quorum.get("k"), quorum.get("of")
    if type(k) is not int or type(of) is not list or not 1 <= k <= len(of):
        return None
    for name in of:
        if type(name) is not str:
            return None
    interval, timeout = get("intervalMs"), get("timeoutMs")
    gap = None
    if interval is not None or timeout is not None:
        if not (_is_millis(interval) and _is_millis(timeout)):
            return None
        gap = credible_seconds(interval / 1000, timeout / 1000)
    try:
        completed, scheduled = parse_iso(timestamp), parse_iso(scheduled_at)
    except ValueError:
        return None
    return Check(
        service,
        status,
        completed,
        response / 1000,
        gap,
        location,
        scheduled,
        k,
        tuple(of),
    )


_NUMBERS: Final = frozenset({int, float})
"""The types of a JSON number (``bool`` is not one): ``_is_millis`` inlined."""


def _is_millis(value: object) -> TypeGuard[int | float]:
    """What ``_Fields.millis`` accepts: a non-negative JSON number (``true`` is not one)."""
    return (type(value) is int or type(value) is float) and value >= 0


# --- the replay digest of a check ----------------------------------------------------------------

CHECK_DIGEST: Final = struct.Struct("<Bqid")
"""A check's per-event facts in 21 bytes: verdict code (``DIGEST_VERDICTS``), completion time in
microseconds since the epoch, completion minus scheduled time in microseconds, response seconds."""
DIGEST_VERDICTS: Final = (Status.UP, Status.DEGRADED, Status.DOWN)
"""Verdict codes as stored on disk: never reorder."""
_DIGEST_CODE: Final = {status: code for code, status in enumerate(DIGEST_VERDICTS)}
_INT32: Final = 2**31
DigestKey = tuple[str, str, int, tuple[str, ...], float | None]
"""What a check shares with the service's other checks: ``(service, location, quorum,
quorum_of, gap_seconds)``, stored once per distinct value (the store interns the key)."""


def check_digest(kind: str, data: bytes) -> tuple[str, bytes] | None:
    """The store's ``Digest`` of a ``ServiceStatusChanged``: ``(key, packed)``, or ``None``.

    Written beside the payload when the event is appended, so a replay folds the check from 21
    bytes and an interned key instead of parsing and validating its JSON: the facts were validated
    once, here, by ``decode_check``. ``check_of_digest(digest_key(key), packed)`` gives exactly
    ``decode_check(data)``. ``None`` (the replay then decodes the payload as before) for any other
    type, a payload ``decode_check`` refuses, and the rare check the digest cannot hold exactly: a
    scheduled time more than 35 minutes off, or a gap JSON cannot carry. (``parse_iso`` gives every
    time in UTC, offsets included; the ``tzinfo`` test only keeps a change there from making a
    digest that decodes to another zone than the payload.)
    """
    if kind != EVENT_TYPE_STATUS_CHANGED:
        return None
    try:
        check = decode_check(data)
    except Exception:  # noqa: BLE001 - a digest is an optimisation: it must never fail an append
        return None  # the replay decodes this payload, and the strict decoder names what is wrong
    at, scheduled, gap = check.timestamp, check.scheduled_at, check.gap_seconds
    lead = (at - scheduled) // MICROSECOND
    code = _DIGEST_CODE.get(check.status)
    if (
        code is None
        or at.tzinfo is not UTC
        or scheduled.tzinfo is not UTC
        or not -_INT32 <= lead < _INT32
        or type(check.response_seconds) is not float
        or (gap is not None and (type(gap) is not float or not math.isfinite(gap)))
    ):
        return None
    key = orjson.dumps([check.service, check.location, check.quorum, check.quorum_of, gap]).decode()
    packed = CHECK_DIGEST.pack(
        code,
        to_micros(at),
        lead,
        check.response_seconds,
    )
    return key, packed


def digest_key(key: str) -> DigestKey:
    """A stored digest key's facts; ``EventDecodeError`` if it is not one ``check_digest`` wrote."""
    try:
        service, location, quorum, quorum_of, gap = orjson.loads(key)
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise EventDecodeError(f"check digest key is not one this build writes: {key!r}") from exc
    if not (
        type(service) is str
        and type(location) is str
        and type(quorum) is int
        and type(quorum_of) is list
        and all(type(name) is str for name in quorum_of)
        and 1 <= quorum <= len(quorum_of)
        and (gap is None or type(gap) is float)
    ):
        raise EventDecodeError(f"check digest key is not one this build writes: {key!r}")
    return service, location, quorum, tuple(quorum_of), gap


def unpack_digest(packed: bytes) -> tuple[Status, int, int, float]:
    """A digest's verdict, completion time and lead over the scheduled time (µs), response seconds.

    No datetime is made. ``EventDecodeError`` for bytes ``check_digest`` never wrote, except times
    out of ``datetime``'s range, which ``check_of_digest`` finds.
    """
    try:
        code, at_micros, lead, response = CHECK_DIGEST.unpack(packed)
        return DIGEST_VERDICTS[code], at_micros, lead, response
    except (struct.error, IndexError) as exc:
        raise EventDecodeError(f"check digest is not one this build writes: {exc}") from exc


def check_of_digest(key: DigestKey, packed: bytes) -> Check:
    """The ``Check`` a digest holds; ``EventDecodeError`` for bytes ``check_digest`` never wrote."""
    status, at_micros, lead, response = unpack_digest(packed)
    try:
        at = from_micros(at_micros)
        scheduled = at - timedelta(0, 0, lead)
    except OverflowError as exc:
        raise EventDecodeError(f"check digest is not one this build writes: {exc}") from exc
    service, location, quorum, quorum_of, gap = key
    return Check(service, status, at, response, gap, location, scheduled, quorum, quorum_of)
