"""Stored events: the seeds' schema field for field, deterministic ids, decoding every version."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uptime_daemon import events
from uptime_daemon.errors import UptimeDaemonError
from uptime_daemon.results import CheckKind, FailureReason, Phase, ProbeResult
from uptime_daemon.status import INITIAL, Grade, Outcome, Status
from uptime_daemon.store import NewEvent

SCHEDULED = datetime(2024, 1, 15, 10, 30, 0, 0, tzinfo=UTC)
COMPLETED = SCHEDULED + timedelta(milliseconds=45)
EVENT_ID_FORMAT = re.compile(r"^evt_\d{13}_[0-9a-f]{6}$")

HELD_UP = Outcome(
    status=Status.UP,
    previous_status=Status.UP,
    changed=False,
    streak_seconds=5.0,
    grade=Grade.EXCELLENT,
    state=INITIAL,
)
WENT_DOWN = Outcome(
    status=Status.DOWN,
    previous_status=Status.UP,
    changed=True,
    streak_seconds=0.0,
    grade=Grade.FAILED,
    state=INITIAL,
)
FAST_OK = ProbeResult(ok=True, duration_seconds=0.0451, detail="200 OK", http_status=200)


def status_event(
    probe: ProbeResult = FAST_OK,
    outcome: Outcome = HELD_UP,
    *,
    service: str = "http",
    instance: str = "probe-1",
    location: str = "default",
    kind: CheckKind = CheckKind.HTTP,
    completed_at: datetime = COMPLETED,
) -> NewEvent:
    """One ``ServiceStatusChanged`` of the check scheduled at ``SCHEDULED``."""
    event = events.status_changed(
        service=service,
        instance=instance,
        location=location,
        kind=kind,
        scheduled_at=SCHEDULED,
        completed_at=completed_at,
        outcome=outcome,
        probe=probe,
        interval_seconds=30,
        timeout_seconds=10,
    )
    assert event.type == events.EVENT_TYPE_STATUS_CHANGED == "ServiceStatusChanged"
    assert event.id == events.event_id(service, location, SCHEDULED)
    return event


# --- encoding ---------------------------------------------------------------------------------


def test_status_changed_matches_the_seed_schema_exactly() -> None:
    """Every field and value; seed fields first, in the seeds' order, in the stored bytes."""
    probe = ProbeResult(
        ok=True,
        duration_seconds=0.0451,
        detail="200 OK",
        http_status=200,
        phases={Phase.CONNECT: 0.0012345678, Phase.FIRST_BYTE: 0.04},
    )
    data = status_event(probe).data
    short = events.event_id("http", "default", SCHEDULED).hex[:6]
    expected = {
        "serviceName": "http",
        "status": "up",
        "timestamp": "2024-01-15T10:30:00.045Z",
        "duration": 5000,
        "metadata": {"responseTime": 45, "performanceGrade": "excellent"},
        "eventId": f"evt_1705314600045_{short}",
        "schemaVersion": 2,
        "previousStatus": "up",
        "changed": False,
        "instance": "probe-1",
        "location": "default",
        "scheduledAt": "2024-01-15T10:30:00.000Z",
        "intervalMs": 30000,
        "timeoutMs": 10000,
        "quorum": {"k": 1, "of": ["default"]},
        "probe": {
            "kind": "http",
            "ok": True,
            "reason": None,
            "detail": "200 OK",
            "httpStatus": 200,
            "phases": {"connect": 0.001235, "first_byte": 0.04},
        },
    }
    parsed = orjson.loads(data)
    assert parsed == expected
    assert list(parsed) == list(expected)  # the whole key order, not only the key set
    assert data.startswith(
        b'{"serviceName":"http","status":"up","timestamp":"2024-01-15T10:30:00.045Z",'
        b'"duration":5000,"metadata":{"responseTime":45,"performanceGrade":"excellent"},'
        b'"eventId":"evt_1705314600045_'
    )


def test_first_event_has_no_previous_status() -> None:
    """``previousStatus`` is JSON null on a stream's first check."""
    first = Outcome(
        status=Status.DOWN,
        previous_status=None,
        changed=True,
        streak_seconds=0.0,
        grade=Grade.FAILED,
        state=INITIAL,
    )
    probe = ProbeResult(ok=False, duration_seconds=2.5, failure=FailureReason.TIMEOUT)
    data = orjson.loads(status_event(probe, first).data)
    assert data["previousStatus"] is None
    assert b'"previousStatus":null,"changed":true' in status_event(probe, first).data
    assert (data["status"], data["duration"], data["metadata"]) == (
        "down",
        0,
        {"responseTime": 2500, "performanceGrade": "failed"},
    )


@pytest.mark.parametrize(
    ("probe", "kind", "expected"),
    [
        pytest.param(
            ProbeResult(
                ok=False,
                duration_seconds=1.0,
                failure=FailureReason.CLOSED,
                detail="closed 1011",
                close_code=1011,
                tls_days_left=12.3456,
            ),
            CheckKind.WEBSOCKET,
            {
                "kind": "websocket",
                "ok": False,
                "reason": "closed",
                "detail": "closed 1011",
                "httpStatus": None,
                "tlsDaysLeft": 12.35,
                "closeCode": 1011,
            },
            id="websocket-extras-when-known",
        ),
        pytest.param(
            ProbeResult(
                ok=False,
                duration_seconds=0.01,
                failure=FailureReason.HTTP_STATUS,
                detail="503 Service Unavailable",
                http_status=503,
            ),
            CheckKind.HTTP,
            {
                "kind": "http",
                "ok": False,
                "reason": "http_status",
                "detail": "503 Service Unavailable",
                "httpStatus": 503,
            },
            id="http-failure",
        ),
        pytest.param(
            ProbeResult(ok=True, duration_seconds=0.01, detail="round trip"),
            CheckKind.DATABASE,
            {
                "kind": "database",
                "ok": True,
                "reason": None,
                "detail": "round trip",
                "httpStatus": None,
            },
            id="database-no-extras",
        ),
    ],
)
def test_probe_object(probe: ProbeResult, kind: CheckKind, expected: dict[str, Any]) -> None:
    """The probe records its closed reason; TLS days, close codes and phases appear only when known."""
    assert orjson.loads(status_event(probe, kind=kind).data)["probe"] == expected


def test_store_metadata() -> None:
    """Both event types carry the same small producer record as store metadata."""
    created = events.stream_created("http", SCHEDULED)
    changed = status_event()
    expected = {"schemaVersion": 2, "producer": "uptime-daemon"}
    assert orjson.loads(created.metadata) == orjson.loads(changed.metadata) == expected


@pytest.mark.parametrize(
    ("completed_at", "millis"),
    [
        pytest.param(COMPLETED, "1705314600045", id="whole-millis"),
        pytest.param(
            SCHEDULED + timedelta(microseconds=999_900), "1705314600999", id="truncated-not-rounded"
        ),
        pytest.param(
            datetime(2033, 5, 18, 3, 33, 20, tzinfo=UTC), "2000000000000", id="far-future"
        ),
    ],
)
def test_event_id_field_format(completed_at: datetime, millis: str) -> None:
    """``evt_{unix ms}_{6 hex}``; the ms agree with ``timestamp`` (both truncate)."""
    data = orjson.loads(status_event(completed_at=completed_at).data)
    assert EVENT_ID_FORMAT.fullmatch(data["eventId"])
    unix_ms, short = data["eventId"].removeprefix("evt_").split("_")
    assert unix_ms == millis
    assert data["timestamp"][-5:-1] == "." + millis[-3:]
    assert short == events.event_id("http", "default", SCHEDULED).hex[:6]


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
            id="scheduled-at",
        ),
    ],
)
def test_event_ids_are_deterministic_and_distinct(
    a: tuple[str, str, datetime], b: tuple[str, str, datetime]
) -> None:
    """Same check, same id (retries deduplicate); any difference, another id."""
    assert events.event_id(*a) == events.event_id(*a)
    assert events.event_id(*a) != events.event_id(*b)


def test_event_id_ignores_completion_and_outcome() -> None:
    """A retried check completes later with other results, yet is the same stored event."""
    first = status_event()
    retry = status_event(
        ProbeResult(ok=False, duration_seconds=3, failure=FailureReason.TIMEOUT),
        WENT_DOWN,
        completed_at=COMPLETED + timedelta(seconds=3),
    )
    assert first.id == retry.id
    same_instant_elsewhere = SCHEDULED.astimezone(timezone(timedelta(hours=2)))
    assert events.event_id("http", "default", same_instant_elsewhere) == first.id


def test_stream_created_is_the_seed_event() -> None:
    """``StreamCreated`` is the seeds' shape, key for key and in order."""
    event = events.stream_created("http", SCHEDULED)
    assert event.type == events.EVENT_TYPE_STREAM_CREATED == "StreamCreated"
    assert event.data == (
        b'{"streamName":"service-uptime-http","description":"Service uptime tracking for http",'
        b'"tags":["uptime","monitoring","http"],"owner":"system",'
        b'"createdAt":"2024-01-15T10:30:00.000Z","data":{}}'
    )


def test_stream_created_description_and_id() -> None:
    """A configured description replaces the default; the id depends on the stream alone."""
    described = events.stream_created("api", SCHEDULED, "Public API")
    assert orjson.loads(described.data) == {
        "streamName": "service-uptime-api",
        "description": "Public API",
        "tags": ["uptime", "monitoring", "api"],
        "owner": "system",
        "createdAt": "2024-01-15T10:30:00.000Z",
        "data": {},
    }
    later = events.stream_created("api", SCHEDULED + timedelta(days=1))
    assert described.id == later.id  # two daemons creating the same stream write the same event
    assert described.id != events.stream_created("http", SCHEDULED).id


@pytest.mark.parametrize(
    ("stream", "service"),
    [
        pytest.param("service-uptime-http", "http", id="ours"),
        pytest.param("service-uptime-my-api-2", "my-api-2", id="dashed-name"),
        pytest.param("service-uptime-", None, id="prefix-only"),
        pytest.param("system-health-check", None, id="system-stream"),
        pytest.param("connection-test", None, id="other"),
    ],
)
def test_stream_names(stream: str, service: str | None) -> None:
    """``service_from_stream`` inverts ``stream_name`` and rejects every other stream."""
    assert events.service_from_stream(stream) == service
    if service is not None:
        assert events.stream_name(service) == stream


# --- decoding ---------------------------------------------------------------------------------


def test_round_trip() -> None:
    """What we write decodes to the same facts."""
    probe = ProbeResult(ok=False, duration_seconds=0.2, failure=FailureReason.TIMEOUT, detail="t")
    data = status_event(probe, WENT_DOWN, service="db", location="x", kind=CheckKind.DATABASE).data
    assert events.decode_status_changed(data) == events.StatusChanged(
        service="db",
        status=Status.DOWN,
        timestamp=COMPLETED,
        duration_seconds=0.0,
        response_seconds=0.2,
        grade=Grade.FAILED,
        previous_status=Status.UP,
        changed=True,
        instance="probe-1",
        quorum=1,
        quorum_of=("x",),
        location="x",
        scheduled_at=SCHEDULED,
        probe_ok=False,
        reason=FailureReason.TIMEOUT,
        gap_seconds=70.0,
        payload=orjson.loads(data),
    )
    assert events.decode_status_changed(data).payload == orjson.loads(data)


def test_round_trip_of_a_first_healthy_check() -> None:
    """No previous status and no failure reason decode as ``None``."""
    first = Outcome(
        status=Status.UP,
        previous_status=None,
        changed=True,
        streak_seconds=0.0,
        grade=Grade.EXCELLENT,
        state=INITIAL,
    )
    decoded = events.decode_status_changed(status_event(FAST_OK, first).data)
    assert (decoded.previous_status, decoded.reason, decoded.probe_ok) == (None, None, True)
    assert decoded.response_seconds == 0.045  # stored as whole milliseconds


SEED_INVENTORY = {
    "serviceName": "http",
    "status": "up",
    "timestamp": "2024-01-15T10:30:00.000Z",
    "duration": 5000,
    "metadata": {"responseTime": 45, "performanceGrade": "excellent"},
    "eventId": "evt_1234567890_abcdef",
}
SEED_FLAT_WRITE = {
    "serviceName": "http",
    "status": "up",
    "timestamp": "2024-01-15T10:30:00.000Z",
    "responseTime": 45,
    "performanceGrade": "excellent",
}


@pytest.mark.parametrize(
    ("seed", "duration_seconds"),
    [
        pytest.param(SEED_INVENTORY, 5.0, id="stream-inventory-shape"),
        pytest.param(SEED_FLAT_WRITE, 0.0, id="flat-write-example"),
    ],
)
def test_seed_events_decode(seed: dict[str, Any], duration_seconds: float) -> None:
    """The seeds' own events (no schemaVersion) upcast to v1 with neutral defaults."""
    assert events.decode_status_changed(orjson.dumps(seed)) == events.StatusChanged(
        service="http",
        status=Status.UP,
        timestamp=SCHEDULED,
        duration_seconds=duration_seconds,
        response_seconds=0.045,
        grade=Grade.EXCELLENT,
        previous_status=None,
        changed=False,
        instance=None,
        quorum=1,
        quorum_of=("default",),
        location="default",
        scheduled_at=SCHEDULED,
        probe_ok=True,
        reason=None,
        gap_seconds=None,
        payload=seed,
    )
    assert events.decode_status_changed(orjson.dumps(seed)).payload == seed, "kept as stored"


def test_seed_down_event_infers_a_failed_probe() -> None:
    """A seed ``down`` event had a failed probe; its reason was never recorded."""
    seed = {
        **SEED_INVENTORY,
        "status": "down",
        "metadata": {"responseTime": 0, "performanceGrade": "failed"},
    }
    decoded = events.decode_status_changed(orjson.dumps(seed))
    assert (decoded.status, decoded.probe_ok, decoded.reason) == (Status.DOWN, False, None)


def test_version_1_events_decode_with_no_instance() -> None:
    """Events written before version 2 never said which daemon wrote them: ``instance`` is None."""
    v1 = {key: value for key, value in GOOD.items() if key != "instance"} | {"schemaVersion": 1}
    decoded = events.decode_status_changed(orjson.dumps(v1))
    assert decoded.instance is None
    assert decoded == dataclasses.replace(
        events.decode_status_changed(status_event().data), instance=None
    )
    assert events.decode_status_changed(status_event(instance="eu-2").data).instance == "eu-2"


def test_an_event_records_the_placement_it_was_made_under() -> None:
    """``quorum`` says the service's locations and k, so the log folds without today's config."""
    event = events.status_changed(
        service="api",
        instance="eu-1",
        location="eu",
        kind=CheckKind.HTTP,
        scheduled_at=SCHEDULED,
        completed_at=COMPLETED,
        outcome=HELD_UP,
        probe=FAST_OK,
        interval_seconds=30,
        timeout_seconds=10,
        quorum=2,
        locations=("eu", "us", "ap"),
    )
    assert orjson.loads(event.data)["quorum"] == {"k": 2, "of": ["eu", "us", "ap"]}
    decoded = events.decode_status_changed(event.data)
    assert (decoded.quorum, decoded.quorum_of) == (2, ("eu", "us", "ap"))


def test_upcaster_chain() -> None:
    """Every version below the current one has an upcaster; upcasting never mutates its input."""
    assert sorted(events.UPCASTERS) == list(range(events.SCHEMA_VERSION))
    seed = dict(SEED_FLAT_WRITE)
    upcast = events.upcast(seed)
    assert seed == SEED_FLAT_WRITE
    assert upcast["schemaVersion"] == events.SCHEMA_VERSION
    assert upcast["metadata"] == {"responseTime": 45, "performanceGrade": "excellent"}
    assert "responseTime" not in upcast


GOOD: dict[str, Any] = orjson.loads(status_event().data)


def _with(**changes: Any) -> bytes:
    return orjson.dumps({**GOOD, **changes})


def _without(key: str, source: dict[str, Any] = GOOD) -> bytes:
    return orjson.dumps({k: v for k, v in source.items() if k != key})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"nope", "not JSON", id="not-json"),
        pytest.param(b"[1]", "not a JSON object", id="array"),
        pytest.param(_with(status="sideways"), "'status'", id="bad-status"),
        pytest.param(_with(timestamp="yesterday"), "'timestamp'", id="bad-timestamp"),
        pytest.param(_without("scheduledAt"), "'scheduledAt'", id="no-scheduled-at"),
        pytest.param(_with(duration=True), "'duration'", id="bool-duration"),
        pytest.param(_with(duration=-5), "'duration'", id="negative-duration"),
        pytest.param(_with(serviceName=None), "'serviceName'", id="null-service"),
        pytest.param(_without("serviceName"), "'serviceName'", id="no-service"),
        pytest.param(_with(metadata=[45]), "'metadata'", id="metadata-not-object"),
        pytest.param(
            _with(metadata={"responseTime": "x", "performanceGrade": "good"}),
            "'metadata.responseTime'",
            id="bad-response-time",
        ),
        pytest.param(
            _with(metadata={"responseTime": 4, "performanceGrade": "great"}),
            "'metadata.performanceGrade'",
            id="bad-grade",
        ),
        pytest.param(_with(previousStatus="sideways"), "'previousStatus'", id="bad-previous"),
        pytest.param(_with(changed="yes"), "'changed'", id="changed-not-bool"),
        pytest.param(_with(location=7), "'location'", id="location-not-text"),
        pytest.param(_with(instance=7), "'instance'", id="instance-not-text"),
        pytest.param(_without("quorum"), "'quorum'", id="v2-without-quorum"),
        pytest.param(_with(quorum={"k": 0, "of": ["eu"]}), "'quorum.k'", id="quorum-zero"),
        pytest.param(_with(quorum={"k": 2, "of": ["eu"]}), "'quorum.k'", id="quorum-over-n"),
        pytest.param(_with(quorum={"k": 1, "of": []}), "'quorum.of'", id="quorum-of-none"),
        pytest.param(_with(quorum={"k": 1, "of": [3]}), "'quorum.of'", id="quorum-of-not-text"),
        pytest.param(_with(probe=None), "'probe'", id="no-probe"),
        pytest.param(_with(probe={"reason": None}), "'probe.ok'", id="probe-without-ok"),
        pytest.param(
            _with(probe={"ok": False, "reason": "gremlins"}), "'probe.reason'", id="unknown-reason"
        ),
        pytest.param(_without("timeoutMs"), "'timeoutMs'", id="interval-without-timeout"),
        pytest.param(_with(intervalMs=-1), "'intervalMs'", id="negative-interval"),
        pytest.param(_with(schemaVersion=99), "'schemaVersion'", id="future-version"),
        pytest.param(_with(schemaVersion=-1), "'schemaVersion'", id="negative-version"),
        pytest.param(_with(schemaVersion="1"), "'schemaVersion'", id="text-version"),
        pytest.param(_with(schemaVersion=True), "'schemaVersion'", id="bool-version"),
        pytest.param(
            _without("metadata", SEED_INVENTORY),
            "'metadata.responseTime'",
            id="seed-no-measurement",
        ),
        pytest.param(
            orjson.dumps({**SEED_FLAT_WRITE, "status": "sideways"}),
            "'status'",
            id="seed-bad-status",
        ),
    ],
)
def test_malformed_events_name_the_field(data: bytes, message: str) -> None:
    """Bad data raises EventDecodeError naming what is wrong; it is a ValueError and one of ours."""
    with pytest.raises(events.EventDecodeError, match=re.escape(message)) as caught:
        events.decode_status_changed(data)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, UptimeDaemonError)


# --- the fast decoding path (decode_check) ------------------------------------------------------

VERDICT_STATUSES = [Status.UP, Status.DEGRADED, Status.DOWN]
NAMES = st.text(min_size=1, max_size=12)


@st.composite
def our_events(draw: st.DrawFn) -> bytes:
    """A ``ServiceStatusChanged`` as this build writes it, with drawn facts."""
    ok = draw(st.booleans())
    status = draw(st.sampled_from(VERDICT_STATUSES))
    locations = tuple(draw(st.lists(NAMES, min_size=1, max_size=4, unique=True)))
    probe = ProbeResult(
        ok=ok,
        duration_seconds=draw(st.floats(min_value=0, max_value=600)),
        failure=None if ok else draw(st.sampled_from(list(FailureReason))),
        detail=draw(st.text(max_size=20)),
        http_status=draw(st.none() | st.integers(100, 599)),
    )
    outcome = Outcome(
        status=status,
        previous_status=draw(st.none() | st.sampled_from(VERDICT_STATUSES)),
        changed=draw(st.booleans()),
        streak_seconds=draw(st.floats(min_value=0, max_value=1e7)),
        grade=draw(st.sampled_from(list(Grade))),
        state=INITIAL,
    )
    scheduled = SCHEDULED + timedelta(milliseconds=draw(st.integers(0, 10**11)))
    event = events.status_changed(
        service=draw(NAMES),
        instance=draw(NAMES),
        location=locations[0],
        kind=draw(st.sampled_from(list(CheckKind))),
        scheduled_at=scheduled,
        completed_at=scheduled + timedelta(milliseconds=draw(st.integers(0, 60_000))),
        outcome=outcome,
        probe=probe,
        interval_seconds=draw(st.floats(min_value=0.001, max_value=86_400)),
        timeout_seconds=draw(st.floats(min_value=0.001, max_value=600)),
        quorum=draw(st.integers(1, len(locations))),
        locations=locations,
    )
    return event.data


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["up", "down", "sideways", "good", "timeout", "2024-01-15T10:30:00Z"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=5,
)


def _paths(value: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of a JSON object, nested objects included."""
    found = []
    if isinstance(value, dict):
        for key, inner in value.items():
            found.append((*prefix, key))
            found.extend(_paths(inner, (*prefix, key)))
    return found


@st.composite
def corrupted(draw: st.DrawFn) -> dict[str, Any]:
    """One of our events with one field, at any depth, replaced by any JSON value or removed."""
    raw: dict[str, Any] = orjson.loads(draw(our_events()))
    path = draw(st.sampled_from(_paths(raw)))
    parent = raw
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(JSON_VALUES)
    return raw


@settings(max_examples=300, deadline=None)
@given(our_events())
def test_our_events_take_the_fast_path_to_the_strict_result(data: bytes) -> None:
    """For every event this build writes the fast path answers, and answers what strict decoding does."""
    fast = events._fast_check(orjson.loads(data))
    assert fast is not None
    assert fast == events.decode_check(data) == events.Check.of(events.decode_status_changed(data))


@settings(max_examples=1000, deadline=None)
@given(corrupted())
def test_a_corrupted_event_is_never_folded_as_a_wrong_value(raw: dict[str, Any]) -> None:
    """One field damaged anywhere: the fast path never folds what strict decoding refuses.

    When strict decoding refuses, the fast path does not answer and ``decode_check`` refuses with
    the strict message; when strict decoding accepts, both give the same facts.
    """
    data = orjson.dumps(raw)
    refused: str | None = None
    try:
        strict = events.Check.of(events.decode_status_changed(data))
    except events.EventDecodeError as exc:
        refused = str(exc)
    fast = events._fast_check(raw)
    if refused is None:
        assert fast is None or fast == strict
        assert events.decode_check(data) == strict
        return
    assert fast is None
    with pytest.raises(events.EventDecodeError) as caught:
        events.decode_check(data)
    assert str(caught.value) == refused


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(orjson.dumps(SEED_INVENTORY), id="seed-inventory"),
        pytest.param(orjson.dumps(SEED_FLAT_WRITE), id="seed-flat-write"),
        pytest.param(_with(schemaVersion=1, quorum=None, instance=None), id="version-1"),
        pytest.param(_with(timestamp="2024-01-15T11:30:00.000+01:00"), id="offset-timestamp"),
    ],
)
def test_other_versions_and_spellings_decode_strictly(data: bytes) -> None:
    """Older versions and the seeds' events are upcast by the strict decoder, with equal facts."""
    assert events.decode_check(data) == events.Check.of(events.decode_status_changed(data))


def test_the_fast_path_leaves_other_versions_to_the_strict_decoder() -> None:
    """Only the current version is read directly; a version-1 event is not mistaken for one."""
    assert events._fast_check(orjson.loads(_with(schemaVersion=1))) is None
    assert events._fast_check(GOOD) is not None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(_with(status="sideways"), "'status'", id="bad-status"),
        pytest.param(_with(timestamp="yesterday"), "'timestamp'", id="bad-timestamp"),
        pytest.param(_with(changed="yes"), "'changed'", id="changed-not-bool"),
        pytest.param(_with(quorum={"k": 2, "of": ["eu"]}), "'quorum.k'", id="quorum-over-n"),
        pytest.param(_with(duration=True), "'duration'", id="bool-duration"),
        pytest.param(_with(schemaVersion=True), "'schemaVersion'", id="bool-version"),
        pytest.param(
            _with(probe={"ok": False, "reason": "gremlins"}), "'probe.reason'", id="unknown-reason"
        ),
        pytest.param(b"nope", "not JSON", id="not-json"),
    ],
)
def test_decode_check_refuses_with_the_strict_message(data: bytes, message: str) -> None:
    """The fast path never folds what strict decoding refuses; the message names the field."""
    with pytest.raises(events.EventDecodeError, match=re.escape(message)):
        events.decode_check(data)
