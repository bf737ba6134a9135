"""A check's replay digest (``events.check_digest``): the facts ``decode_check`` gives, exactly."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import orjson
import pytest
from hypothesis import given, settings

from tests.test_events import GOOD, SEED_FLAT_WRITE, SEED_INVENTORY, _with, corrupted, our_events
from uptime_daemon import events


def undigested(kind: str, data: bytes) -> events.Check | None:
    """The check a stored digest gives back, or ``None`` when the event gets no digest."""
    digest = events.check_digest(kind, data)
    if digest is None:
        return None
    key, packed = digest
    return events.check_of_digest(events.digest_key(key), packed)


def same_check(left: events.Check, right: events.Check) -> None:
    """Equal facts, and times equal as the snapshot writes them (same zone object, same type)."""
    assert left == right
    for mine, theirs in (
        (left.timestamp, right.timestamp),
        (left.scheduled_at, right.scheduled_at),
    ):
        assert mine.tzinfo is theirs.tzinfo is UTC
        assert mine.isoformat() == theirs.isoformat()
    assert [type(value) for value in left] == [type(value) for value in right]


@settings(max_examples=500, deadline=None)
@given(our_events())
def test_every_check_this_build_writes_gets_a_digest_of_exactly_its_facts(data: bytes) -> None:
    back = undigested(events.EVENT_TYPE_STATUS_CHANGED, data)
    assert back is not None
    same_check(back, events.decode_check(data))


@settings(max_examples=1000, deadline=None)
@given(corrupted())
def test_a_digest_is_never_made_of_what_the_decoder_refuses(raw: dict[str, Any]) -> None:
    """One field damaged anywhere: no digest when decoding refuses, the same facts when it accepts."""
    data = orjson.dumps(raw)
    try:
        strict = events.decode_check(data)
    except events.EventDecodeError:
        assert events.check_digest(events.EVENT_TYPE_STATUS_CHANGED, data) is None
        return
    back = undigested(events.EVENT_TYPE_STATUS_CHANGED, data)
    if back is not None:  # None is allowed: the replay then decodes the payload
        same_check(back, strict)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(orjson.dumps(SEED_INVENTORY), id="seed-inventory"),
        pytest.param(orjson.dumps(SEED_FLAT_WRITE), id="seed-flat-write"),
        pytest.param(_with(schemaVersion=1, quorum=None, instance=None), id="version-1"),
        pytest.param(_with(timestamp="2024-01-15T11:30:00.000+01:00"), id="offset-timestamp"),
    ],
)
def test_the_seeds_and_older_versions_get_digests_of_their_upcast_facts(data: bytes) -> None:
    back = undigested(events.EVENT_TYPE_STATUS_CHANGED, data)
    assert back is not None
    same_check(back, events.decode_check(data))


def test_a_seed_event_without_a_policy_keeps_its_gap_unknown() -> None:
    """No ``intervalMs``: the replay must still fall back to the configured gap."""
    back = undigested(events.EVENT_TYPE_STATUS_CHANGED, orjson.dumps(SEED_INVENTORY))
    assert back is not None
    assert back.gap_seconds is None


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        pytest.param(events.EVENT_TYPE_CHECK_PENDING, _with(), id="another-type"),
        pytest.param(events.EVENT_TYPE_STATUS_CHANGED, b"{oops", id="not-json"),
        pytest.param(events.EVENT_TYPE_STATUS_CHANGED, b"[]", id="not-an-object"),
        pytest.param(events.EVENT_TYPE_STATUS_CHANGED, _with(status="sideways"), id="refused"),
        pytest.param(
            events.EVENT_TYPE_STATUS_CHANGED,
            _with(scheduledAt="2024-01-15T09:00:00.000Z"),
            id="scheduled-more-than-35-minutes-before",
        ),
    ],
)
def test_what_gets_no_digest(kind: str, data: bytes) -> None:
    """Not a check, undecodable, or not held exactly by 21 bytes: the payload is what replays."""
    assert events.check_digest(kind, data) is None


def test_the_key_is_shared_by_a_services_checks_and_the_bytes_are_21() -> None:
    first = events.check_digest(events.EVENT_TYPE_STATUS_CHANGED, _with())
    later = events.check_digest(
        events.EVENT_TYPE_STATUS_CHANGED,
        _with(timestamp="2024-01-15T10:31:00.000Z", scheduledAt="2024-01-15T10:30:59.000Z"),
    )
    assert first is not None
    assert later is not None
    assert first[0] == later[0]
    assert first[1] != later[1]
    assert len(first[1]) == len(later[1]) == events.CHECK_DIGEST.size == 21
    assert GOOD["serviceName"] in first[0]


@pytest.mark.parametrize(
    "packed",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00" * 20, id="short"),
        pytest.param(events.CHECK_DIGEST.pack(3, 0, 0, 0.1), id="unknown-verdict"),
        pytest.param(events.CHECK_DIGEST.pack(0, 2**62, 0, 0.1), id="time-out-of-range"),
    ],
)
def test_a_damaged_digest_is_refused_by_name(packed: bytes) -> None:
    key = events.digest_key('["svc","default",1,["default"],95.0]')
    with pytest.raises(events.EventDecodeError, match="check digest"):
        events.check_of_digest(key, packed)


@pytest.mark.parametrize(
    "key",
    [
        "not json",
        "{}",
        '["svc","default",1,["default"]]',
        '["svc","default",2,["default"],95.0]',
        '["svc","default",1,["default"],95]',
        '["svc",7,1,["default"],95.0]',
        '["svc","default",1,[3],null]',
    ],
)
def test_a_damaged_digest_key_is_refused_by_name(key: str) -> None:
    with pytest.raises(events.EventDecodeError, match="check digest key"):
        events.digest_key(key)
