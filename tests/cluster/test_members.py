"""The member table: event encoding and strict decoding, and the pure fold that says who is alive."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from uptime_daemon.cluster.members import (
    EMPTY_TABLE,
    EVENT_TYPE_HEARTBEAT,
    EVENT_TYPE_LEFT,
    STREAM,
    MemberDecodeError,
    MemberEvent,
    MemberHeartbeat,
    MemberLeft,
    MemberTable,
    alive,
    apply,
    decode,
    heartbeat_event,
    left_event,
    prune,
)

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
US = "us-east"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def hb(
    instance: str, seconds: float, ttl: float = 10.0, location: str = US, started: float = 0.0
) -> MemberHeartbeat:
    return MemberHeartbeat(instance, location, at(started), at(seconds), ttl)


def left(instance: str, seconds: float, location: str = US) -> MemberLeft:
    return MemberLeft(instance, location, at(seconds))


def fold(events: list[MemberEvent]) -> MemberTable:
    table = EMPTY_TABLE
    for event in events:
        table = apply(table, event)
    return table


# --- encoding ---------------------------------------------------------------------------------


def test_stream_is_a_temporary_system_stream() -> None:
    assert STREAM == "system-cluster-members"


def test_heartbeat_payload_is_camel_case_json() -> None:
    """The stored bytes, exactly: camelCase keys, millisecond UTC times, a schema version."""
    event = heartbeat_event(
        MemberHeartbeat("daemon-1", US, at(-3600), at(1.2345), ttl_seconds=15.0)
    )
    assert event.type == "MemberHeartbeat"
    assert orjson.loads(event.data) == {
        "instance": "daemon-1",
        "location": "us-east",
        "startedAt": "2026-01-05T09:00:00.000Z",
        "at": "2026-01-05T10:00:01.234Z",
        "ttlSeconds": 15.0,
        "schemaVersion": 1,
    }
    assert orjson.loads(event.metadata) == {"schemaVersion": 1, "producer": "uptime-daemon"}


def test_left_payload_is_camel_case_json() -> None:
    event = left_event(MemberLeft("daemon-1", US, at(2)))
    assert event.type == "MemberLeft"
    assert orjson.loads(event.data) == {
        "instance": "daemon-1",
        "location": "us-east",
        "at": "2026-01-05T10:00:02.000Z",
        "schemaVersion": 1,
    }


def test_event_ids_are_deterministic_uuid5() -> None:
    """A retried append carries the same id (the store deduplicates); nothing else collides."""
    namespace = uuid.UUID("48a50cd1-2c80-4125-beb4-e4febe31c1b8")  # pinned: never change it
    first = heartbeat_event(hb("daemon-1", 1))
    assert first.id == uuid.uuid5(namespace, "MemberHeartbeat:daemon-1:2026-01-05T10:00:01.000Z")
    assert heartbeat_event(hb("daemon-1", 1, ttl=99, started=-5)).id == first.id
    ids = {
        first.id,
        heartbeat_event(hb("daemon-1", 2)).id,
        heartbeat_event(hb("daemon-2", 1)).id,
        left_event(left("daemon-1", 1)).id,
    }
    assert len(ids) == 4


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(hb("daemon-1", 1.5, ttl=0.3, started=-10), id="heartbeat"),
        pytest.param(hb("d", 0, ttl=7, location="eu", started=0), id="heartbeat-int-ttl"),
        pytest.param(left("daemon-1", 2.25), id="left"),
    ],
)
def test_decode_round_trips(event: MemberEvent) -> None:
    new = heartbeat_event(event) if isinstance(event, MemberHeartbeat) else left_event(event)
    assert decode(new.type, new.data) == event


GOOD = {
    "instance": "daemon-1",
    "location": "us-east",
    "startedAt": "2026-01-05T09:00:00.000Z",
    "at": "2026-01-05T10:00:00.000Z",
    "ttlSeconds": 15,
    "schemaVersion": 1,
}


def _with(**changes: object) -> bytes:
    data = {**GOOD, **changes}
    return orjson.dumps({key: value for key, value in data.items() if value is not ...})


@pytest.mark.parametrize(
    ("event_type", "data", "message"),
    [
        pytest.param("Other", _with(), "event type 'Other': expected", id="unknown-type"),
        pytest.param(EVENT_TYPE_HEARTBEAT, b"{", "not JSON", id="not-json"),
        pytest.param(EVENT_TYPE_HEARTBEAT, b"[1]", "not a JSON object: list", id="array"),
        pytest.param(
            EVENT_TYPE_HEARTBEAT, _with(schemaVersion=...), "'schemaVersion'", id="no-version"
        ),
        pytest.param(
            EVENT_TYPE_HEARTBEAT, _with(schemaVersion=2), "'schemaVersion'", id="future-version"
        ),
        pytest.param(
            EVENT_TYPE_HEARTBEAT, _with(schemaVersion=True), "'schemaVersion'", id="bool-version"
        ),
        pytest.param(EVENT_TYPE_HEARTBEAT, _with(instance=...), "'instance'", id="no-instance"),
        pytest.param(EVENT_TYPE_HEARTBEAT, _with(instance=""), "'instance'", id="empty-instance"),
        pytest.param(EVENT_TYPE_LEFT, _with(location=7), "'location'", id="number-location"),
        pytest.param(EVENT_TYPE_HEARTBEAT, _with(at="yesterday"), "'at'", id="bad-at"),
        pytest.param(EVENT_TYPE_LEFT, _with(at=...), "'at'", id="left-without-at"),
        pytest.param(EVENT_TYPE_HEARTBEAT, _with(startedAt=None), "'startedAt'", id="null-start"),
        pytest.param(EVENT_TYPE_HEARTBEAT, _with(ttlSeconds=...), "'ttlSeconds'", id="no-ttl"),
        pytest.param(EVENT_TYPE_HEARTBEAT, _with(ttlSeconds=0), "'ttlSeconds'", id="zero-ttl"),
        pytest.param(EVENT_TYPE_HEARTBEAT, _with(ttlSeconds=-1), "'ttlSeconds'", id="neg-ttl"),
        pytest.param(EVENT_TYPE_HEARTBEAT, _with(ttlSeconds=True), "'ttlSeconds'", id="bool-ttl"),
        pytest.param(EVENT_TYPE_HEARTBEAT, _with(ttlSeconds="15"), "'ttlSeconds'", id="text-ttl"),
        pytest.param(
            EVENT_TYPE_HEARTBEAT, _with(ttlSeconds=86_400.5), "'ttlSeconds'", id="ttl-over-a-day"
        ),
        pytest.param(EVENT_TYPE_HEARTBEAT, _with(ttlSeconds=1e300), "up to 86400", id="huge-ttl"),
    ],
)
def test_decode_is_strict_and_names_the_field(event_type: str, data: bytes, message: str) -> None:
    """A malformed event must neither keep a member alive nor kill it: it is refused, by field."""
    with pytest.raises(MemberDecodeError, match=message):
        decode(event_type, data)


def test_a_day_long_ttl_is_the_longest_accepted() -> None:
    decoded = decode(EVENT_TYPE_HEARTBEAT, _with(ttlSeconds=86_400))
    assert isinstance(decoded, MemberHeartbeat)
    assert decoded.ttl_seconds == 86_400.0


def test_a_heartbeat_at_the_end_of_time_does_not_overflow() -> None:
    """``at + ttl`` past year 9999 would raise; the fold must answer, not crash the loop."""
    end = datetime.max.replace(tzinfo=UTC) - timedelta(seconds=1)
    table = apply(EMPTY_TABLE, MemberHeartbeat("a", US, T0, end, 86_400))
    assert alive(table, US, end) == ("a",)
    assert prune(table, end) is table


def test_decode_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="'ttlSeconds': expected a positive number of seconds"):
        decode(EVENT_TYPE_HEARTBEAT, _with(ttlSeconds=-1))


# --- the fold ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "now", "expected"),
    [
        pytest.param([], 0, (), id="empty"),
        pytest.param([hb("a", 0)], 0, ("a",), id="alive-at-its-heartbeat"),
        pytest.param([hb("a", 0)], 9.999, ("a",), id="alive-until-ttl"),
        pytest.param([hb("a", 0)], 10, (), id="expired-at-ttl"),
        pytest.param([hb("a", 0, ttl=2), hb("b", 0, ttl=20)], 5, ("b",), id="each-its-own-ttl"),
        pytest.param([hb("b", 0), hb("c", 1), hb("a", 2)], 3, ("a", "b", "c"), id="sorted"),
        pytest.param([hb("a", 0), left("a", 1)], 2, (), id="left"),
        pytest.param([hb("a", 0), left("a", 0)], 0, (), id="leave-wins-a-tie"),
        pytest.param([hb("a", 5), left("a", 1)], 6, ("a",), id="older-leave-is-void"),
        pytest.param([hb("a", 0), left("a", 1), hb("a", 2)], 3, ("a",), id="back-after-leave"),
        pytest.param([left("a", 1), hb("a", 0)], 0.5, (), id="leave-before-heartbeat-arrives"),
        pytest.param([left("a", 1)], 1, (), id="only-a-leave"),
        pytest.param([hb("a", 0), hb("a", 8)], 15, ("a",), id="newest-heartbeat-counts"),
        pytest.param([hb("a", 8), hb("a", 0)], 15, ("a",), id="older-heartbeat-ignored"),
        pytest.param([hb("a", 0, ttl=100), hb("a", 1, ttl=2)], 5, (), id="newest-ttl-counts"),
        pytest.param([hb("a", 0), hb("x", 0, location="eu")], 1, ("a",), id="other-location"),
        pytest.param([hb("a", 0), hb("a", 1, location="eu")], 2, (), id="moved-away"),
        pytest.param([hb("a", 5)], 4.9, ("a",), id="stamped-ahead-of-reader-clock"),
    ],
)
def test_alive(events: list[MemberEvent], now: float, expected: tuple[str, ...]) -> None:
    assert alive(fold(events), US, at(now)) == expected


def test_other_locations_are_answered_apart() -> None:
    table = fold([hb("a", 0), hb("x", 0, location="eu"), hb("y", 0, location="eu")])
    assert alive(table, "eu", at(1)) == ("x", "y")
    assert alive(table, "nowhere", at(1)) == ()


def test_events_that_tell_nothing_new_return_the_same_table() -> None:
    """An older heartbeat, an older leave or a duplicate changes nothing, not even the object."""
    table = fold([hb("a", 5), left("a", 3)])
    stale_events: list[MemberEvent] = [hb("a", 4), hb("a", 5), left("a", 2), left("a", 3)]
    for stale in stale_events:
        assert apply(table, stale) is table
    assert apply(table, hb("a", 6)) is not table
    assert apply(table, left("a", 4)) is not table


def test_apply_does_not_mutate_its_input() -> None:
    table = fold([hb("a", 0)])
    apply(table, hb("b", 0))
    assert set(table.members) == {"a"}


def test_prune_forgets_only_what_can_no_longer_matter() -> None:
    table = fold([hb("gone", 0, ttl=1), hb("old-leaver", 0), left("old-leaver", 2), hb("a", 50)])
    pruned = prune(table, at(30))
    assert set(pruned.members) == {"a"}
    assert prune(pruned, at(30)) is pruned
    assert set(prune(table, at(1)).members) == {"gone", "old-leaver", "a"}


# --- properties -------------------------------------------------------------------------------

INSTANCES = st.sampled_from(["a", "b", "c", "d"])
LOCATIONS = st.sampled_from([US, "eu"])
MILLIS = st.integers(min_value=0, max_value=60_000)
TTL_MILLIS = st.integers(min_value=1, max_value=20_000)


@st.composite
def heartbeats(draw: st.DrawFn) -> MemberHeartbeat:
    return MemberHeartbeat(
        instance=draw(INSTANCES),
        location=draw(LOCATIONS),
        started_at=T0,
        at=T0 + timedelta(milliseconds=draw(MILLIS)),
        ttl_seconds=draw(TTL_MILLIS) / 1000,
    )


@st.composite
def leaves(draw: st.DrawFn) -> MemberLeft:
    return MemberLeft(draw(INSTANCES), draw(LOCATIONS), T0 + timedelta(milliseconds=draw(MILLIS)))


@given(st.lists(heartbeats(), max_size=20), st.randoms(), MILLIS)
def test_order_of_heartbeats_of_different_members_does_not_matter(
    events: list[MemberHeartbeat], rnd: random.Random, now_millis: int
) -> None:
    """Interleave the members' heartbeats any way (each member's own stay in order): same table."""
    by_member: dict[str, list[MemberHeartbeat]] = {}
    for event in events:
        by_member.setdefault(event.instance, []).append(event)
    queues = list(by_member.values())
    interleaved: list[MemberEvent] = []
    while queues:
        queue = rnd.choice(queues)
        interleaved.append(queue.pop(0))
        queues = [q for q in queues if q]
    now = T0 + timedelta(milliseconds=now_millis)
    assert fold(interleaved) == fold(list(events))
    for location in (US, "eu"):
        assert alive(fold(interleaved), location, now) == alive(fold(list(events)), location, now)


@given(st.lists(heartbeats() | leaves(), max_size=25), st.randoms())
def test_the_fold_does_not_depend_on_arrival_order_at_all(
    events: list[MemberEvent], rnd: random.Random
) -> None:
    """Newest heartbeat and newest leave per member, whatever the order, duplicates included.

    Stronger than the scheduler needs, and what a re-seed after an outage relies on: it re-reads
    events the subscription had already delivered.
    """
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert fold(shuffled) == fold(events)
    assert fold(events + events) == fold(events)


@given(
    st.lists(st.tuples(MILLIS, TTL_MILLIS), min_size=1, max_size=6, unique_by=lambda p: p[0]),
    st.none() | MILLIS,
    st.floats(min_value=0, max_value=2.5),
    st.randoms(),
)
def test_alive_exactly_within_the_newest_heartbeats_lifetime(
    beats: list[tuple[int, int]],
    left_millis: int | None,
    fraction_of_ttl: float,
    rnd: random.Random,
) -> None:
    """From its newest heartbeat's ``at``: alive for ``[at, at + ttl)``, unless it left since."""
    events: list[MemberEvent] = [
        MemberHeartbeat("a", US, T0, T0 + timedelta(milliseconds=ms), ttl / 1000)
        for ms, ttl in beats
    ]
    if left_millis is not None:
        events.append(MemberLeft("a", US, T0 + timedelta(milliseconds=left_millis)))
    rnd.shuffle(events)
    newest_millis, newest_ttl = max(beats)
    newest = T0 + timedelta(milliseconds=newest_millis)
    lifetime = timedelta(milliseconds=newest_ttl)
    now = newest + lifetime * fraction_of_ttl
    has_left = left_millis is not None and left_millis >= newest_millis
    expected = not has_left and newest <= now < newest + lifetime
    assert (alive(fold(events), US, now) == ("a",)) is expected
    assert alive(fold(events), "eu", now) == ()


@given(st.lists(heartbeats() | leaves(), max_size=25), MILLIS, MILLIS)
def test_pruning_never_changes_who_is_alive_from_then_on(
    events: list[MemberEvent], before_millis: int, later_millis: int
) -> None:
    table = fold(events)
    before = T0 + timedelta(milliseconds=before_millis)
    now = before + timedelta(milliseconds=later_millis)
    pruned = prune(table, before)
    for location in (US, "eu"):
        assert alive(pruned, location, now) == alive(table, location, now)
