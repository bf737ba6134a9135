"""Snapshots: a saved-and-loaded projection answers exactly like the original."""

from __future__ import annotations

import asyncio
import base64
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uptime_daemon.projector import snapshot
from uptime_daemon.projector.fold import Observation, ProjectionState, apply
from uptime_daemon.projector.summary import service_timeline, summarize
from uptime_daemon.status import Status

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.floats(min_value=0.1, max_value=3000),
        st.sampled_from([Status.UP, Status.DEGRADED, Status.DOWN]),
        st.floats(min_value=0, max_value=3),
    ),
    min_size=1,
    max_size=80,
)


def _fold(
    steps: list[tuple[str, float, Status, float]], state: ProjectionState, start: datetime
) -> datetime:
    at = start
    for service, delta, status, response in steps:
        at += timedelta(seconds=delta)
        apply(state, Observation(service, at, status, response, 90.0))
    return at


@settings(max_examples=60, deadline=None)
@given(STEPS, STEPS)
def test_snapshot_then_continue_equals_uninterrupted_fold(
    first: list[tuple[str, float, Status, float]],
    second: list[tuple[str, float, Status, float]],
) -> None:
    """Fold, snapshot, reload, fold more == fold everything in one go (summaries and timelines)."""
    whole = ProjectionState()
    middle = _fold(first, whole, T0)
    end = _fold(second, whole, middle)

    part = ProjectionState()
    _fold(first, part, T0)
    restored = snapshot.decode(snapshot.encode(snapshot.Snapshot(42, part)))
    assert restored.position == 42
    _fold(second, restored.state, middle)

    now = end + timedelta(seconds=5)
    assert set(restored.state.services) == set(whole.services)
    for name, service in whole.services.items():
        other = restored.state.services[name]
        assert summarize(other, now=now, hours=48) == summarize(service, now=now, hours=48)
        assert service_timeline(other, now=now, hours=48) == service_timeline(
            service, now=now, hours=48
        )


@settings(max_examples=40, deadline=None)
@given(STEPS, st.integers(min_value=1, max_value=4), st.sampled_from([None, 0, 42]))
def test_the_sliced_encoding_is_the_same_bytes(
    steps: list[tuple[str, float, Status, float]], per_slice: int, position: int | None
) -> None:
    """What the running projector writes (a few records per turn of the loop) is ``encode``'s."""
    state = ProjectionState()
    _fold(steps, state, T0)
    whole = snapshot.Snapshot(position, state)
    encoding = snapshot.Encoding(whole, records_per_slice=per_slice)

    async def slices() -> list[list[bytes]]:
        return [pieces async for pieces in encoding]

    given = asyncio.run(slices())
    assert all(len(pieces) <= per_slice + 1 for pieces in given)  # the tail may join a full one
    sliced = b"".join(piece for pieces in given for piece in pieces)
    assert sliced == snapshot.encode(whole)
    assert encoding.size == len(sliced)
    assert encoding.busy_seconds >= 0
    assert snapshot.decode(sliced).position == position


def test_encoding_is_deterministic() -> None:
    """The same state always encodes to the same bytes (services in name order)."""
    state = ProjectionState()
    _fold([("b", 1, Status.UP, 0.1), ("a", 1, Status.DOWN, 0.2)], state, T0)
    assert snapshot.encode(snapshot.Snapshot(7, state)) == snapshot.encode(
        snapshot.decode(snapshot.encode(snapshot.Snapshot(7, state)))
    )


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="garbage"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(
            b'{"format": 999, "position": 1, "retentionSeconds": 1, "services": {}}',
            id="future-format",
        ),
        pytest.param(
            b'{"format": 1, "position": 1, "retentionSeconds": 1, "services": {}}',
            id="older-format-without-recent-slots",
        ),
        pytest.param(
            b'{"format": 3, "position": 1, "retentionSeconds": 1, "services": {}, "maintenance": []}',
            id="older-format-without-incident-down-and-unknown",
        ),
        pytest.param(b'{"format": 2, "position": 1, "services": {}}', id="missing-key"),
        pytest.param(
            b'{"format": 2, "position": 1, "retentionSeconds": 1, "services": {"a": {"status": "sideways"}}}',
            id="bad-status",
        ),
    ],
)
def test_untrustworthy_snapshots_are_rejected(data: bytes) -> None:
    """A corrupt or foreign file raises SnapshotError (the projector then replays from zero)."""
    with pytest.raises(snapshot.SnapshotError):
        snapshot.decode(data)


def test_atomic_write_and_read(tmp_path: Path) -> None:
    """The file is replaced whole and reads back; no file reads as None."""
    path = tmp_path / "deep" / "projection.json"
    assert snapshot.read(path) is None
    state = ProjectionState()
    _fold([("a", 1, Status.UP, 0.1)], state, T0)
    snapshot.write_atomically(path, snapshot.encode(snapshot.Snapshot(3, state)))
    loaded = snapshot.read(path)
    assert loaded is not None
    assert loaded.position == 3
    assert not (tmp_path / "deep" / "projection.json.tmp").exists()


def test_a_file_left_uncommitted_leaves_the_old_one(tmp_path: Path) -> None:
    """Pieces written, then no commit (an error went past it): the old file, nothing beside it."""
    path = tmp_path / "projection.json"
    snapshot.write_atomically(path, [b"old ", b"bytes"])
    with snapshot.AtomicFile(path) as file:
        file.write([b"new"])
    assert path.read_bytes() == b"old bytes"
    assert list(tmp_path.iterdir()) == [path]
    with snapshot.AtomicFile(path) as file:
        file.write([b"new ", b"bytes"])
        file.commit()
    assert path.read_bytes() == b"new bytes"
    assert list(tmp_path.iterdir()) == [path]


def test_incidents_keep_their_down_and_unknown_time() -> None:
    """An incident's split between down and unknown survives the snapshot to the microsecond."""
    state = ProjectionState()
    _fold(
        [
            ("a", 1, Status.DOWN, 0.1),
            ("a", 10.000001, Status.DOWN, 0.1),
            ("a", 500, Status.UP, 0.1),
        ],
        state,
        T0,
    )
    (incident,) = state.services["a"].incidents
    # Checks at 1 s and 11.000001 s, each credible for 90 s, then up at 511.000001 s.
    assert incident.down == timedelta(seconds=10.000001 + 90)
    assert incident.unknown == timedelta(seconds=500 - 90)
    back = snapshot.decode(snapshot.encode(snapshot.Snapshot(1, state)))
    assert back.state.services["a"].incidents == [incident]


def _as_object(data: bytes) -> dict[str, Any]:
    """Format 9's lines as the one JSON object format 8 was (``services`` a mapping)."""
    head, *lines = data.splitlines()
    raw: dict[str, Any] = orjson.loads(head)
    raw["format"] = 8
    raw["services"] = dict(orjson.loads(line) for line in lines)
    return raw


def test_a_snapshot_is_a_line_per_service_and_format_8_still_reads() -> None:
    """Read a record at a time; the one-object files written before read as the same state."""
    state = ProjectionState()
    _fold([(name, 60, Status.UP, 0.05) for name in "abc" for _ in range(3)], state, T0)
    data = snapshot.encode(snapshot.Snapshot(4, state))
    head, *lines = data.splitlines()
    assert orjson.loads(head)["services"] == len(lines) == 3
    assert snapshot.decode(data).state == state
    assert snapshot.decode(orjson.dumps(_as_object(data))).state == state
    for damaged in (
        b"\n".join([head, *lines[:-1]]),  # a service short
        b"\n".join([head, *lines, lines[0]]),  # one more than it says
        b"\n".join([head, lines[0][:-3], *lines[1:]]),  # a broken record
    ):
        with pytest.raises(snapshot.SnapshotError):
            snapshot.decode(damaged)


def test_a_snapshot_packs_closed_hours_and_reads_the_previous_format() -> None:
    """Format 6 packs the closed hours; a format 5 file (every hour listed) reads as the same state."""
    state = ProjectionState()
    _fold([("a", 600, Status.UP, 0.05 + n / 1000) for n in range(60)], state, T0)
    service = state.services["a"]
    assert len(service.buckets) > len(service.buckets.open)  # hours were packed
    data = snapshot.encode(snapshot.Snapshot(9, state))
    record = _as_object(data)["services"]["a"]
    assert len(record["buckets"]) == len(service.buckets.open)
    assert snapshot.decode(data).state == state
    old = _as_object(data)
    old["format"] = 5
    old["services"]["a"] = snapshot.encode_record(service)  # every hour as a list, no "packed"
    assert "packed" not in old["services"]["a"]
    assert snapshot.decode(orjson.dumps(old)).state == state


@pytest.mark.parametrize(
    "damage",
    [
        lambda packed: packed[:-4],
        lambda _: base64.b64encode(zlib.compress(b"\x01\x00\x00\x00\x00\x00\x00\x00")).decode(),
        lambda _: "not base64!",
    ],
)
def test_damaged_packed_hours_are_a_snapshot_error(damage: Callable[[str], str]) -> None:
    state = ProjectionState()
    _fold([("a", 600, Status.UP, 0.05) for _ in range(60)], state, T0)
    raw = _as_object(snapshot.encode(snapshot.Snapshot(9, state)))
    raw["services"]["a"]["packed"] = damage(raw["services"]["a"]["packed"])
    with pytest.raises(snapshot.SnapshotError):
        snapshot.decode(orjson.dumps(raw))
