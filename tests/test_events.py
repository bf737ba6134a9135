"""Stored events: the seeds' schema field for field, deterministic ids, decoding every version."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from uptime_daemon import events
from uptime_daemon.results import CheckKind, FailureReason, Phase, ProbeResult
from uptime_daemon.status import Grade, Outcome, ServiceState, Status

SCHEDULED = datetime(2024, 1, 15, 10, 30, 0, 0, tzinfo=UTC)
COMPLETED = SCHEDULED + timedelta(milliseconds=45)


def _event(probe: ProbeResult, outcome: Outcome) -> dict[str, object]:
    event = events.status_changed(
        service="http",
        location="default",
        kind=CheckKind.HTTP,
        scheduled_at=SCHEDULED,
        completed_at=COMPLETED,
        outcome=outcome,
        probe=probe,
        interval_seconds=30,
        timeout_seconds=10,
    )
    assert event.type == "ServiceStatusChanged"
    assert event.id == events.event_id("http", "default", SCHEDULED)
    return dict(orjson.loads(event.data))


OUTCOME = Outcome(
    status=Status.UP,
    previous_status=Status.UP,
    changed=False,
    streak_seconds=5.0,
    grade=Grade.EXCELLENT,
    state=ServiceState.initial(),
)


def test_status_changed_matches_the_seed_schema_exactly() -> None:
    """Every field, every value, seed fields first and in the seed's order."""
    probe = ProbeResult(
        ok=True,
        duration_seconds=0.0451,
        detail="200 OK",
        http_status=200,
        phases={Phase.CONNECT: 0.0012345678},
    )
    data = _event(probe, OUTCOME)
    uid = events.event_id("http", "default", SCHEDULED)
    assert data == {
        "serviceName": "http",
        "status": "up",
        "timestamp": "2024-01-15T10:30:00.045Z",
        "duration": 5000,
        "metadata": {"responseTime": 45, "performanceGrade": "excellent"},
        "eventId": f"evt_1705314600045_{uid.hex[:6]}",
        "schemaVersion": 1,
        "previousStatus": "up",
        "changed": False,
        "location": "default",
        "scheduledAt": "2024-01-15T10:30:00.000Z",
        "intervalMs": 30000,
        "timeoutMs": 10000,
        "probe": {
            "kind": "http",
            "ok": True,
            "reason": None,
            "detail": "200 OK",
            "httpStatus": 200,
            "phases": {"connect": 0.001235},
        },
    }
    assert list(data)[:6] == [
        "serviceName",
        "status",
        "timestamp",
        "duration",
        "metadata",
        "eventId",
    ]
    assert re.fullmatch(r"evt_\d{13}_[0-9a-f]{6}", str(data["eventId"]))


def test_failed_probe_records_reason_and_extras() -> None:
    """A failure carries its closed reason; TLS days and close codes appear only when known."""
    probe = ProbeResult(
        ok=False,
        duration_seconds=1.0,
        failure=FailureReason.CLOSED,
        detail="closed 1011",
        close_code=1011,
        tls_days_left=12.3456,
    )
    data = _event(probe, OUTCOME)
    assert data["probe"] == {
        "kind": "http",
        "ok": False,
        "reason": "closed",
        "detail": "closed 1011",
        "httpStatus": None,
        "tlsDaysLeft": 12.35,
        "closeCode": 1011,
    }


def test_stream_created_is_the_seed_event() -> None:
    """``StreamCreated`` is byte-for-byte the seeds' shape."""
    event = events.stream_created("http", SCHEDULED)
    assert event.type == "StreamCreated"
    assert orjson.loads(event.data) == {
        "streamName": "service-uptime-http",
        "description": "Service uptime tracking for http",
        "tags": ["uptime", "monitoring", "http"],
        "owner": "system",
        "createdAt": "2024-01-15T10:30:00.000Z",
        "data": {},
    }
    assert event.id == events.stream_created("http", SCHEDULED + timedelta(days=1)).id


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(
            ("http", "default", SCHEDULED), ("websocket", "default", SCHEDULED), id="service"
        ),
        pytest.param(("http", "default", SCHEDULED), ("http", "eu-west", SCHEDULED), id="location"),
        pytest.param(
            ("http", "default", SCHEDULED),
            ("http", "default", SCHEDULED + timedelta(milliseconds=1)),
            id="time",
        ),
    ],
)
def test_event_ids_are_deterministic_and_distinct(
    a: tuple[str, str, datetime], b: tuple[str, str, datetime]
) -> None:
    """Same check, same id (retries deduplicate); any difference, another id."""
    assert events.event_id(*a) == events.event_id(*a)
    assert events.event_id(*a) != events.event_id(*b)


def test_round_trip() -> None:
    """What we write decodes to the same facts."""
    probe = ProbeResult(ok=False, duration_seconds=0.2, failure=FailureReason.TIMEOUT, detail="t")
    outcome = Outcome(
        status=Status.DOWN,
        previous_status=Status.UP,
        changed=True,
        streak_seconds=0.0,
        grade=Grade.FAILED,
        state=ServiceState.initial(),
    )
    event = events.status_changed(
        service="db",
        location="x",
        kind=CheckKind.DATABASE,
        scheduled_at=SCHEDULED,
        completed_at=COMPLETED,
        outcome=outcome,
        probe=probe,
        interval_seconds=30,
        timeout_seconds=10,
    )
    decoded = events.decode_status_changed(event.data)
    assert decoded.service == "db"
    assert decoded.status is Status.DOWN
    assert decoded.previous_status is Status.UP
    assert decoded.changed is True
    assert decoded.timestamp == COMPLETED
    assert decoded.scheduled_at == SCHEDULED
    assert decoded.response_seconds == 0.2
    assert decoded.reason == "timeout"
    assert decoded.gap_seconds == 70


@pytest.mark.parametrize(
    "seed",
    [
        pytest.param(
            {
                "serviceName": "http",
                "status": "up",
                "timestamp": "2024-01-15T10:30:00.000Z",
                "duration": 5000,
                "metadata": {"responseTime": 45, "performanceGrade": "excellent"},
                "eventId": "evt_1234567890_abcdef",
            },
            id="stream-inventory-shape",
        ),
        pytest.param(
            {
                "serviceName": "http",
                "status": "up",
                "timestamp": "2024-01-15T10:30:00.000Z",
                "responseTime": 45,
                "performanceGrade": "excellent",
            },
            id="flat-write-example",
        ),
    ],
)
def test_seed_events_decode(seed: dict[str, object]) -> None:
    """The seeds' own events (no schemaVersion) upcast and decode."""
    decoded = events.decode_status_changed(orjson.dumps(seed))
    assert decoded.status is Status.UP
    assert decoded.response_seconds == 0.045
    assert decoded.grade is Grade.EXCELLENT
    assert decoded.location == "default"
    assert decoded.gap_seconds is None


GOOD = orjson.loads(
    events.status_changed(
        service="http",
        location="default",
        kind=CheckKind.HTTP,
        scheduled_at=SCHEDULED,
        completed_at=COMPLETED,
        outcome=OUTCOME,
        probe=ProbeResult(ok=True, duration_seconds=0.01),
        interval_seconds=30,
        timeout_seconds=10,
    ).data
)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param(b"nope", "not JSON", id="not-json"),
        pytest.param(b"[1]", "not a JSON object", id="array"),
        pytest.param(orjson.dumps({**GOOD, "status": "sideways"}), "'status'", id="bad-status"),
        pytest.param(
            orjson.dumps({**GOOD, "timestamp": "yesterday"}), "'timestamp'", id="bad-timestamp"
        ),
        pytest.param(orjson.dumps({**GOOD, "duration": True}), "'duration'", id="bool-duration"),
        pytest.param(orjson.dumps({**GOOD, "serviceName": None}), "'serviceName'", id="no-service"),
        pytest.param(
            orjson.dumps({**GOOD, "metadata": {"responseTime": "x"}}), "'responseTime'", id="bad-rt"
        ),
        pytest.param(
            orjson.dumps({**GOOD, "schemaVersion": 99}), "'schemaVersion'", id="future-version"
        ),
    ],
)
def test_malformed_events_name_the_field(data: bytes, field: str) -> None:
    """Bad data raises EventDecodeError naming what is wrong."""
    with pytest.raises(events.EventDecodeError, match=field):
        events.decode_status_changed(data)
