"""The stored events, exactly as the seeds specify them, plus ours; ids, encoding, decoding, upcasting.

``ServiceStatusChanged`` carries the seeds' fields first (``serviceName, status, timestamp, duration,
metadata{responseTime, performanceGrade}, eventId``), then ours (``schemaVersion, previousStatus,
changed, location, scheduledAt, intervalMs, timeoutMs, probe{…}``). The store event id is a UUIDv5 of
(service, location, scheduledAt): a retried append of the same check is a no-op, never a double count.

Any change to a payload bumps ``SCHEMA_VERSION`` and adds an upcaster to ``UPCASTERS``; old events
stay readable forever. Events without ``schemaVersion`` are the seeds' own (version 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar
from uuid import UUID, uuid5

import orjson

from uptime_daemon.clock import parse_iso, to_iso_millis
from uptime_daemon.errors import UptimeDaemonError
from uptime_daemon.results import CheckKind, ProbeResult
from uptime_daemon.status import Grade, Outcome, Status
from uptime_daemon.store import UPTIME_STREAM_PREFIX, NewEvent

EVENT_TYPE_STREAM_CREATED: Final = "StreamCreated"
EVENT_TYPE_STATUS_CHANGED: Final = "ServiceStatusChanged"
SCHEMA_VERSION: Final = 1
EVENT_ID_NAMESPACE: Final = UUID("6f0b5a52-39a4-4e0e-9b0c-7d1f3a1e2c55")
"""Fixed forever: changing it would change every event id and break idempotent re-appends."""
_METADATA: Final = orjson.dumps({"schemaVersion": SCHEMA_VERSION, "producer": "uptime-daemon"})


class EventDecodeError(UptimeDaemonError, ValueError):
    """A stored event does not have the shape its type and version promise."""


def stream_name(service: str) -> str:
    """``service-uptime-{service}``."""
    return f"{UPTIME_STREAM_PREFIX}{service}"


def service_from_stream(stream: str) -> str | None:
    """The service of an uptime stream, or ``None`` for any other stream."""
    if stream.startswith(UPTIME_STREAM_PREFIX) and len(stream) > len(UPTIME_STREAM_PREFIX):
        return stream[len(UPTIME_STREAM_PREFIX) :]
    return None


def event_id(service: str, location: str, scheduled_at: datetime) -> UUID:
    """The store id of one scheduled check: deterministic, so retries deduplicate."""
    return uuid5(EVENT_ID_NAMESPACE, f"{service}:{location}:{to_iso_millis(scheduled_at)}")


def stream_created(service: str, created_at: datetime, description: str | None = None) -> NewEvent:
    """The first event of ``service-uptime-{service}`` (appended with expected state "no stream")."""
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
        metadata=_METADATA,
    )


def status_changed(
    *,
    service: str,
    location: str,
    kind: CheckKind,
    scheduled_at: datetime,
    completed_at: datetime,
    outcome: Outcome,
    probe: ProbeResult,
    interval_seconds: float,
    timeout_seconds: float,
) -> NewEvent:
    """One completed check, seed fields first."""
    uid = event_id(service, location, scheduled_at)
    probe_data: dict[str, Any] = {
        "kind": kind.value,
        "ok": probe.ok,
        "reason": None if probe.failure is None else probe.failure.value,
        "detail": probe.detail,
        "httpStatus": probe.http_status,
    }
    if probe.tls_days_left is not None:
        probe_data["tlsDaysLeft"] = round(probe.tls_days_left, 2)
    if probe.close_code is not None:
        probe_data["closeCode"] = probe.close_code
    if probe.phases:
        probe_data["phases"] = {
            str(phase): round(seconds, 6) for phase, seconds in probe.phases.items()
        }
    data = {
        "serviceName": service,
        "status": outcome.status.value,
        "timestamp": to_iso_millis(completed_at),
        "duration": round(outcome.streak_seconds * 1000),
        "metadata": {
            "responseTime": round(probe.duration_seconds * 1000),
            "performanceGrade": outcome.grade.value,
        },
        "eventId": f"evt_{round(completed_at.timestamp() * 1000)}_{uid.hex[:6]}",
        "schemaVersion": SCHEMA_VERSION,
        "previousStatus": None
        if outcome.previous_status is None
        else outcome.previous_status.value,
        "changed": outcome.changed,
        "location": location,
        "scheduledAt": to_iso_millis(scheduled_at),
        "intervalMs": round(interval_seconds * 1000),
        "timeoutMs": round(timeout_seconds * 1000),
        "probe": probe_data,
    }
    return NewEvent(
        id=uid, type=EVENT_TYPE_STATUS_CHANGED, data=orjson.dumps(data), metadata=_METADATA
    )


@dataclass(frozen=True, slots=True)
class StatusChangedV1:
    """A decoded ``ServiceStatusChanged``, whatever version it was written in."""

    service: str
    status: Status
    timestamp: datetime
    duration_seconds: float
    response_seconds: float
    grade: Grade
    previous_status: Status | None
    changed: bool
    location: str
    scheduled_at: datetime
    probe_ok: bool
    reason: str | None
    gap_seconds: float | None
    """2 × interval + timeout when the event records them (ours do; the seeds' do not)."""


def payload(data: bytes) -> dict[str, Any]:
    """The event data as a dict; ``EventDecodeError`` if it is not a JSON object."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise EventDecodeError("event data is not a JSON object")
    return value


def upcast_v0_v1(raw: dict[str, Any]) -> dict[str, Any]:
    """The seeds' events: no version, ``responseTime``/``performanceGrade`` nested or flat."""
    metadata = raw.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {
            "responseTime": raw.get("responseTime", 0),
            "performanceGrade": raw.get(
                "performanceGrade", "failed" if raw.get("status") == "down" else "good"
            ),
        }
    return {
        **raw,
        "duration": raw.get("duration", 0),
        "metadata": metadata,
        "schemaVersion": 1,
        "previousStatus": raw.get("previousStatus"),
        "changed": raw.get("changed", False),
        "location": raw.get("location", "default"),
        "scheduledAt": raw.get("scheduledAt", raw.get("timestamp")),
        "probe": raw.get("probe", {"ok": raw.get("status") != "down", "reason": None}),
    }


UPCASTERS: Final[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {0: upcast_v0_v1}
"""Version ``n`` → a function producing version ``n + 1``."""


E = TypeVar("E", Status, Grade)


def _invalid(name: str, expected: str, value: object) -> EventDecodeError:
    return EventDecodeError(f"field {name!r}: expected {expected}, got {value!r}")


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str):
        raise _invalid(name, "a string", value)
    return value


def _number(raw: dict[str, Any], name: str) -> float:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):  # JSON true is not a number
        raise _invalid(name, "a number", value)
    return float(value)


def _object(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    if not isinstance(value, dict):
        raise _invalid(name, "an object", value)
    return value


def _enum(raw: dict[str, Any], name: str, enum: type[E]) -> E:
    value = raw.get(name)
    if isinstance(value, str) and value in {member.value for member in enum}:
        return enum(value)
    raise _invalid(name, "one of " + ", ".join(e.value for e in enum), value)


def _time(raw: dict[str, Any], name: str) -> datetime:
    text = _text(raw, name)
    try:
        return parse_iso(text)
    except ValueError:
        raise _invalid(name, "an ISO-8601 timestamp", text) from None


def decode_status_changed(data: bytes) -> StatusChangedV1:
    """Decode any version of ``ServiceStatusChanged``; ``EventDecodeError`` names the bad field."""
    raw = payload(data)
    version = raw.get("schemaVersion", 0)
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or not 0 <= version <= SCHEMA_VERSION
    ):
        raise EventDecodeError(f"field 'schemaVersion': unsupported {version!r}")
    while version < SCHEMA_VERSION:
        raw = UPCASTERS[version](raw)
        version += 1
    metadata = _object(raw, "metadata")
    probe = _object(raw, "probe")
    previous = raw.get("previousStatus")
    interval, timeout = raw.get("intervalMs"), raw.get("timeoutMs")
    gap = None
    if isinstance(interval, int | float) and isinstance(timeout, int | float):
        gap = (2 * interval + timeout) / 1000
    reason = probe.get("reason")
    return StatusChangedV1(
        service=_text(raw, "serviceName"),
        status=_enum(raw, "status", Status),
        timestamp=_time(raw, "timestamp"),
        duration_seconds=_number(raw, "duration") / 1000,
        response_seconds=_number(metadata, "responseTime") / 1000,
        grade=_enum(metadata, "performanceGrade", Grade),
        previous_status=None if previous is None else _enum(raw, "previousStatus", Status),
        changed=bool(raw.get("changed", False)),
        location=str(raw.get("location", "default")),
        scheduled_at=_time(raw, "scheduledAt"),
        probe_ok=bool(probe.get("ok", raw.get("status") != "down")),
        reason=reason if isinstance(reason, str) else None,
        gap_seconds=gap,
    )
