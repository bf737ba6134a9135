"""The EventStore contract: every adapter passes these same tests.

An adapter's test module subclasses ``EventStoreContract`` (as ``TestXxx``) and provides one async
fixture, ``store``, built with the ``clock`` fixture's ``now`` so retention can be tested without
waiting. Nothing here knows which backend it runs against.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from uptime_daemon.errors import ConcurrencyConflict, EventStoreUnavailable, StreamNotFound
from uptime_daemon.store import CaughtUp, EventStore, Expected, NewEvent, RecordedEvent, StreamState

WAIT = 10.0


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.current = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


def new(kind: str = "Tested", body: bytes = b'{"n": 1}') -> NewEvent:
    return NewEvent(id=uuid.uuid4(), type=kind, data=body, metadata=b'{"m": true}')


def unique(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def take(
    iterator: AsyncIterator[RecordedEvent | CaughtUp], count: int
) -> list[RecordedEvent | CaughtUp]:
    """The next ``count`` items, failing (not hanging) if they do not come."""
    return [await asyncio.wait_for(anext(iterator), WAIT) for _ in range(count)]


class EventStoreContract:
    """Subclass as ``TestSomething`` and provide a ``store`` fixture."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    async def test_append_and_read_back(self, store: EventStore) -> None:
        """Events come back with ids, types, data, metadata, gapless revisions and rising positions."""
        stream = unique()
        batch = [new("A"), new("B"), new("C")]
        last = await store.append(stream, batch, StreamState.NO_STREAM)
        read = await store.read_stream(stream)
        assert [e.id for e in read] == [e.id for e in batch]
        assert [e.type for e in read] == ["A", "B", "C"]
        assert [e.revision for e in read] == [0, 1, 2]
        assert all(
            e.stream == stream and e.data == b'{"n": 1}' and e.metadata == b'{"m": true}'
            for e in read
        )
        positions = [e.position for e in read]
        assert positions == sorted(set(positions))
        assert positions[-1] == last
        assert all(e.recorded_at.tzinfo is not None for e in read)

    @pytest.mark.parametrize(
        ("existing", "expected", "succeeds"),
        [
            pytest.param(0, StreamState.NO_STREAM, True, id="no-stream-on-new"),
            pytest.param(2, StreamState.NO_STREAM, False, id="no-stream-on-existing"),
            pytest.param(0, StreamState.ANY, True, id="any-on-new"),
            pytest.param(2, StreamState.ANY, True, id="any-on-existing"),
            pytest.param(0, StreamState.STREAM_EXISTS, False, id="exists-on-new"),
            pytest.param(2, StreamState.STREAM_EXISTS, True, id="exists-on-existing"),
            pytest.param(2, 1, True, id="exact-revision"),
            pytest.param(2, 0, False, id="stale-revision"),
            pytest.param(2, 5, False, id="future-revision"),
            pytest.param(0, 0, False, id="revision-on-new"),
        ],
    )
    async def test_expected_state(
        self, store: EventStore, existing: int, expected: Expected, succeeds: bool
    ) -> None:
        """Each expected state holds exactly when it should; a conflict writes nothing."""
        stream = unique()
        if existing:
            await store.append(stream, [new() for _ in range(existing)])
        if succeeds:
            await store.append(stream, [new()], expected)
            assert len(await store.read_stream(stream)) == existing + 1
        else:
            with pytest.raises(ConcurrencyConflict) as caught:
                await store.append(stream, [new()], expected)
            assert caught.value.stream == stream
            assert caught.value.actual == (existing - 1 if existing else None)
            if existing:
                assert len(await store.read_stream(stream)) == existing

    @pytest.mark.parametrize(
        "expected",
        [
            pytest.param(StreamState.ANY, id="any"),
            pytest.param(StreamState.NO_STREAM, id="original-no-stream"),
        ],
    )
    async def test_reappend_is_idempotent(self, store: EventStore, expected: Expected) -> None:
        """Re-appending the same ids returns the original position and writes nothing."""
        stream = unique()
        batch = [new(), new()]
        first = await store.append(stream, batch, StreamState.NO_STREAM)
        again = await store.append(stream, batch, expected)
        assert again == first
        assert len(await store.read_stream(stream)) == 2

    async def test_reappend_with_original_exact_revision(self, store: EventStore) -> None:
        """A retry with the revision the original write expected is a no-op too."""
        stream = unique()
        await store.append(stream, [new()])
        batch = [new()]
        first = await store.append(stream, batch, 0)
        await store.append(stream, [new()])
        assert await store.append(stream, batch, 0) == first
        assert len(await store.read_stream(stream)) == 3

    async def test_partial_overlap_conflicts(self, store: EventStore) -> None:
        """A batch mixing stored and new ids is refused, and nothing of it is written."""
        stream = unique()
        stored = new()
        await store.append(stream, [stored])
        with pytest.raises(ConcurrencyConflict):
            await store.append(stream, [stored, new()])
        assert len(await store.read_stream(stream)) == 1

    async def test_concurrent_appends_exactly_one_wins(self, store: EventStore) -> None:
        """Twenty writers expecting the same revision: one succeeds, nineteen conflict."""
        stream = unique()
        await store.append(stream, [new()])
        results = await asyncio.gather(
            *(store.append(stream, [new()], 0) for _ in range(20)), return_exceptions=True
        )
        assert sum(isinstance(r, int) for r in results) == 1
        assert sum(isinstance(r, ConcurrencyConflict) for r in results) == 19
        assert [e.revision for e in await store.read_stream(stream)] == [0, 1]

    async def test_empty_append_checks_expected_only(self, store: EventStore) -> None:
        """Appending nothing validates the expectation and writes nothing."""
        stream = unique()
        with pytest.raises(ConcurrencyConflict):
            await store.append(stream, [], StreamState.STREAM_EXISTS)
        await store.append(stream, [], StreamState.NO_STREAM)
        with pytest.raises(StreamNotFound):
            await store.read_stream(stream)

    async def test_read_stream_directions_limits_and_start(self, store: EventStore) -> None:
        """Forwards and backwards, limited, from an inclusive revision."""
        stream = unique()
        await store.append(stream, [new(str(i)) for i in range(6)])

        async def types(**kwargs: object) -> list[str]:
            return [e.type for e in await store.read_stream(stream, **kwargs)]  # type: ignore[arg-type]

        assert await types() == ["0", "1", "2", "3", "4", "5"]
        assert await types(backwards=True, limit=2) == ["5", "4"]
        assert await types(from_revision=3) == ["3", "4", "5"]
        assert await types(from_revision=3, limit=1) == ["3"]
        assert await types(backwards=True, from_revision=2) == ["2", "1", "0"]
        assert await types(from_revision=99) == []

    async def test_missing_stream_is_not_found(self, store: EventStore) -> None:
        """Reading a stream nobody wrote raises StreamNotFound."""
        with pytest.raises(StreamNotFound):
            await store.read_stream(unique())

    async def test_read_all_after_position_with_prefix_and_limit(self, store: EventStore) -> None:
        """The global log: exclusive start, prefix filter, limit, global order."""
        tag = uuid.uuid4().hex[:8]
        mine, other = f"svc-{tag}-a", f"oth-{tag}-a"
        start = await store.append(unique("warmup"), [new()])
        await store.append(mine, [new("1")])
        await store.append(other, [new("x")])
        await store.append(f"svc-{tag}-b", [new("2")])
        await store.append(mine, [new("3")])
        found = await store.read_all(after=start, stream_prefix=f"svc-{tag}-")
        assert [e.type for e in found] == ["1", "2", "3"]
        assert [e.position for e in found] == sorted(e.position for e in found)
        limited = await store.read_all(after=start, stream_prefix=f"svc-{tag}-", limit=2)
        assert [e.type for e in limited] == ["1", "2"]
        resumed = await store.read_all(after=limited[-1].position, stream_prefix=f"svc-{tag}-")
        assert [e.type for e in resumed] == ["3"]
        everything = await store.read_all(after=start)
        assert {"1", "2", "3", "x"} <= {e.type for e in everything}

    async def test_subscribe_catch_up_then_live_without_gap_or_duplicate(
        self, store: EventStore
    ) -> None:
        """History, then CaughtUp once, then live events — every event exactly once, in order."""
        tag = f"sub-{uuid.uuid4().hex[:8]}-"
        stream = tag + "x"
        await store.append(stream, [new(f"h{i}") for i in range(25)])
        subscription = store.subscribe(stream_prefix=tag)
        try:
            seen: list[str] = []
            caught = 0
            appender = asyncio.create_task(self._append_slowly(store, stream, "c", 25))
            while len(seen) < 50 or not caught:
                item = await asyncio.wait_for(anext(subscription), WAIT)
                if isinstance(item, CaughtUp):
                    caught += 1
                    continue
                seen.append(item.type)
                if caught and len(seen) == 50:
                    break
            await appender
            await store.append(stream, [new("live")])
            while True:
                item = await asyncio.wait_for(anext(subscription), WAIT)
                if isinstance(item, CaughtUp):
                    caught += 1
                    continue
                seen.append(item.type)
                break
        finally:
            await subscription.aclose()  # type: ignore[attr-defined]
        assert caught == 1
        assert seen[:25] == [f"h{i}" for i in range(25)]
        assert (
            sorted(seen[25:50], key=lambda t: int(t[1:]))
            == seen[25:50]
            == [f"c{i}" for i in range(25)]
        )
        assert seen[50] == "live"

    @staticmethod
    async def _append_slowly(store: EventStore, stream: str, prefix: str, count: int) -> None:
        for i in range(count):
            await store.append(stream, [new(f"{prefix}{i}")])
            await asyncio.sleep(0)

    async def test_subscribe_resumes_exclusively(self, store: EventStore) -> None:
        """Resuming after a position starts with the next event, not that one."""
        tag = f"res-{uuid.uuid4().hex[:8]}-"
        stream = tag + "x"
        await store.append(stream, [new("a"), new("b"), new("c")])
        events = await store.read_all(stream_prefix=tag)
        subscription = store.subscribe(after=events[0].position, stream_prefix=tag)
        try:
            items = await take(subscription, 3)
        finally:
            await subscription.aclose()  # type: ignore[attr-defined]
        assert [getattr(i, "type", None) for i in items[:2]] == ["b", "c"]
        assert isinstance(items[2], CaughtUp)
        assert items[2].position == events[2].position

    async def test_subscribe_to_an_empty_prefix_catches_up_at_once(self, store: EventStore) -> None:
        """A subscription with nothing to replay says CaughtUp immediately and then sees new events."""
        tag = f"empty-{uuid.uuid4().hex[:8]}-"
        subscription = store.subscribe(stream_prefix=tag)
        try:
            (first,) = await take(subscription, 1)
            assert isinstance(first, CaughtUp)
            await store.append(unique("unrelated"), [new("no")])
            await store.append(tag + "s", [new("yes")])
            (second,) = await take(subscription, 1)
        finally:
            await subscription.aclose()  # type: ignore[attr-defined]
        assert isinstance(second, RecordedEvent)
        assert second.type == "yes"

    async def test_max_count_hides_older_events_from_stream_reads(self, store: EventStore) -> None:
        """Only the newest max_count events are readable; read_all still has all of them."""
        stream = unique("sys")
        await store.append(stream, [new(str(i)) for i in range(5)])
        await store.set_stream_metadata(stream, max_count=2)
        assert [e.type for e in await store.read_stream(stream)] == ["3", "4"]
        assert (await store.get_stream_metadata(stream)).max_count == 2
        assert len(await store.read_all(stream_prefix=stream)) == 5

    async def test_max_age_hides_old_events(self, store: EventStore, clock: FakeClock) -> None:
        """Events older than max_age are hidden from stream reads as time passes."""
        stream = unique("sys")
        await store.set_stream_metadata(stream, max_age_seconds=60)
        await store.append(stream, [new("old")])
        clock.advance(45)
        await store.append(stream, [new("new")])
        assert [e.type for e in await store.read_stream(stream)] == ["old", "new"]
        clock.advance(30)
        assert [e.type for e in await store.read_stream(stream)] == ["new"]
        assert (await store.get_stream_metadata(stream)).max_age_seconds == 60

    async def test_soft_delete_then_revive(self, store: EventStore) -> None:
        """Deleted reads as not found; appending revives it with revisions continuing."""
        stream = unique()
        await store.append(stream, [new("a"), new("b")])
        await store.delete_stream(stream)
        with pytest.raises(StreamNotFound):
            await store.read_stream(stream)
        await store.append(stream, [new("c")], StreamState.NO_STREAM)
        revived = await store.read_stream(stream)
        assert [(e.type, e.revision) for e in revived] == [("c", 2)]

    async def test_delete_checks_expected_and_existence(self, store: EventStore) -> None:
        """Deleting a missing stream is not found; a stale expected revision conflicts."""
        with pytest.raises(StreamNotFound):
            await store.delete_stream(unique())
        stream = unique()
        await store.append(stream, [new(), new()])
        with pytest.raises(ConcurrencyConflict):
            await store.delete_stream(stream, 0)
        await store.delete_stream(stream, 1)

    async def test_ping_measures_a_round_trip(self, store: EventStore) -> None:
        """Ping returns a small non-negative number of seconds."""
        assert 0 <= await store.ping() < WAIT

    async def test_closed_store_refuses_work(self, store: EventStore) -> None:
        """After close, every operation raises EventStoreUnavailable."""
        await store.close()
        with pytest.raises(EventStoreUnavailable):
            await store.append(unique(), [new()])
        with pytest.raises(EventStoreUnavailable):
            await store.read_all()
        with pytest.raises(EventStoreUnavailable):
            await store.ping()
