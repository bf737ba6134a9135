"""The EventStore contract: every adapter passes these same tests, unchanged.

To run it against an adapter, in that adapter's test module:

1. ``from tests.store.contract import EventStoreContract, FakeClock``;
2. subclass it as ``class TestXxxContract(EventStoreContract)``;
3. give the subclass one async fixture named ``store`` that opens a fresh, empty store whose wall
   clock is the ``clock`` fixture's ``now`` (this class provides ``clock``), yields it, and closes
   it afterwards. ``close`` must tolerate being called twice: some tests close the store themselves.

Nothing here knows which backend it runs against. Tests never sleep to let time pass: retention is
driven by the ``FakeClock``, and every wait for an event is bounded by ``WAIT`` (a hang fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from uptime_daemon.errors import ConcurrencyConflict, EventStoreUnavailable, StreamNotFound
from uptime_daemon.store import (
    CaughtUp,
    EventStore,
    Expected,
    NewEvent,
    RecordedEvent,
    StreamPrefix,
    StreamState,
    read_log,
)

WAIT = 10.0
"""Seconds any single expected event may take before the test fails instead of hanging."""

Item = RecordedEvent | CaughtUp


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


async def next_item(iterator: AsyncIterator[Item]) -> Item:
    """The next item, failing (not hanging) if it does not come."""
    return await asyncio.wait_for(anext(iterator), WAIT)


async def take(iterator: AsyncIterator[Item], count: int) -> list[Item]:
    """The next ``count`` items, failing (not hanging) if they do not come."""
    return [await next_item(iterator) for _ in range(count)]


async def aclose(iterator: AsyncIterator[Item]) -> None:
    """End a subscription (the protocol promises an ``AsyncIterator``; adapters use generators)."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


@contextlib.asynccontextmanager
async def subscribed(
    store: EventStore, *, after: int | None = None, stream_prefix: StreamPrefix = None
) -> AsyncIterator[AsyncIterator[Item]]:
    iterator = store.subscribe(after=after, stream_prefix=stream_prefix)
    try:
        yield iterator
    finally:
        await aclose(iterator)


def only_events(items: list[Item]) -> list[RecordedEvent]:
    return [item for item in items if isinstance(item, RecordedEvent)]


async def append_one_by_one(store: EventStore, stream: str, prefix: str, count: int) -> None:
    for i in range(count):
        await store.append(stream, [new(f"{prefix}{i}")])


class EventStoreContract:
    """Subclass as ``TestSomething`` and provide a ``store`` fixture (see the module docstring)."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    # --- append and read back ---------------------------------------------------------------------

    async def test_append_and_read_back(self, store: EventStore, clock: FakeClock) -> None:
        """Events come back whole, with gapless revisions, rising positions and the store's clock."""
        stream = unique()
        batch = [new("A", b'{"a": 1}'), new("B", b"{}"), new("C", b"[]")]
        fourth = new("D")
        last = await store.append(stream, batch, StreamState.NO_STREAM)
        more = await store.append(stream, [fourth], 2)
        read = await store.read_stream(stream)
        assert [(e.id, e.type, e.data, e.metadata) for e in read] == [
            (e.id, e.type, e.data, e.metadata) for e in [*batch, fourth]
        ]
        assert [e.type for e in read] == ["A", "B", "C", "D"]
        assert [e.revision for e in read] == [0, 1, 2, 3]
        assert {e.stream for e in read} == {stream}
        positions = [e.position for e in read]
        assert positions == sorted(set(positions))
        assert positions[2] == last
        assert positions[3] == more > last
        assert all(abs(e.recorded_at - clock.now()) < timedelta(seconds=1) for e in read)

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
        """Each expected state holds exactly when it should; a conflict names the stream and writes nothing."""
        stream = unique()
        if existing:
            await store.append(stream, [new() for _ in range(existing)])
        if succeeds:
            await store.append(stream, [new("added")], expected)
            read = await store.read_stream(stream)
            assert [(e.type, e.revision) for e in read[existing:]] == [("added", existing)]
        else:
            with pytest.raises(ConcurrencyConflict) as caught:
                await store.append(stream, [new()], expected)
            assert caught.value.stream == stream
            assert caught.value.actual == (existing - 1 if existing else None)
            if existing:
                assert len(await store.read_stream(stream)) == existing
            else:
                with pytest.raises(StreamNotFound):
                    await store.read_stream(stream)

    @pytest.mark.parametrize(
        ("existing", "original", "retry"),
        [
            pytest.param(0, StreamState.NO_STREAM, StreamState.ANY, id="any-after-no-stream"),
            pytest.param(0, StreamState.NO_STREAM, StreamState.NO_STREAM, id="no-stream-again"),
            pytest.param(1, 0, StreamState.ANY, id="any-after-exact"),
            pytest.param(1, 0, 0, id="original-exact-again"),
        ],
    )
    async def test_reappend_is_idempotent(
        self, store: EventStore, existing: int, original: Expected, retry: Expected
    ) -> None:
        """Re-appending the same ids returns the original position and writes nothing."""
        stream = unique()
        if existing:
            await store.append(stream, [new() for _ in range(existing)])
        batch = [new("x"), new("y")]
        first = await store.append(stream, batch, original)
        again = await store.append(stream, batch, retry)
        assert again == first
        assert await store.read_all(after=first) == []
        assert [e.type for e in await store.read_stream(stream)][existing:] == ["x", "y"]

    async def test_reappend_after_later_writes_with_original_revision(
        self, store: EventStore
    ) -> None:
        """A late retry with the revision the original write expected is still a no-op."""
        stream = unique()
        await store.append(stream, [new()])
        batch = [new()]
        first = await store.append(stream, batch, 0)
        await store.append(stream, [new()])
        assert await store.append(stream, batch, 0) == first
        assert await store.append(stream, batch) == first
        assert [e.id for e in await store.read_stream(stream)][1] == batch[0].id
        assert len(await store.read_stream(stream)) == 3

    async def test_reappend_with_an_unrelated_revision_conflicts(self, store: EventStore) -> None:
        """Known ids with an expected revision that never held for them are a conflict."""
        stream = unique()
        batch = [new(), new()]
        await store.append(stream, batch, StreamState.NO_STREAM)
        await store.append(stream, [new() for _ in range(4)])
        with pytest.raises(ConcurrencyConflict):
            await store.append(stream, batch, 3)
        assert len(await store.read_stream(stream)) == 6

    @pytest.mark.parametrize(
        "shape",
        [
            pytest.param("stored-then-new", id="stored-then-new"),
            pytest.param("reordered", id="reordered"),
            pytest.param("first-only", id="first-only"),
        ],
    )
    async def test_partial_overlap_conflicts(self, store: EventStore, shape: str) -> None:
        """A batch that only partly matches stored ids is refused, and nothing of it is written."""
        stream = unique()
        a, b = new("a"), new("b")
        head = await store.append(stream, [a, b])
        batch = {
            "stored-then-new": [a, b, new()],
            "reordered": [b, a],
            "first-only": [a, new()],
        }[shape]
        with pytest.raises(ConcurrencyConflict):
            await store.append(stream, batch)
        assert [e.type for e in await store.read_stream(stream)] == ["a", "b"]
        assert await store.read_all(after=head) == []

    async def test_concurrent_appends_exactly_one_wins(self, store: EventStore) -> None:
        """Fifty writers expecting the same revision at once: one succeeds, the rest conflict."""
        stream = unique()
        await store.append(stream, [new()])
        results = await asyncio.gather(
            *(store.append(stream, [new(f"w{i}")], 0) for i in range(50)), return_exceptions=True
        )
        winners = [i for i, r in enumerate(results) if isinstance(r, int)]
        assert len(winners) == 1
        assert all(isinstance(r, ConcurrencyConflict) for r in results if not isinstance(r, int))
        read = await store.read_stream(stream)
        assert [(e.type, e.revision) for e in read[1:]] == [(f"w{winners[0]}", 1)]

    async def test_concurrent_appends_to_many_streams_all_land(self, store: EventStore) -> None:
        """Concurrent appends to different streams all succeed with distinct positions."""
        streams = [unique() for _ in range(40)]
        positions = await asyncio.gather(*(store.append(s, [new(s)]) for s in streams))
        assert len(set(positions)) == 40
        for stream, position in zip(streams, positions, strict=True):
            (event,) = await store.read_stream(stream)
            assert (event.type, event.position) == (stream, position)

    async def test_empty_append_checks_expected_only(self, store: EventStore) -> None:
        """Appending nothing validates the expectation and writes nothing."""
        stream = unique()
        with pytest.raises(ConcurrencyConflict):
            await store.append(stream, [], StreamState.STREAM_EXISTS)
        await store.append(stream, [], StreamState.NO_STREAM)
        with pytest.raises(StreamNotFound):
            await store.read_stream(stream)
        last = await store.append(stream, [new(), new()])
        assert isinstance(await store.append(stream, [], 1), int)
        with pytest.raises(ConcurrencyConflict):
            await store.append(stream, [], 0)
        assert await store.read_all(after=last) == []

    # --- reads ----------------------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("backwards", "limit", "from_revision", "expected"),
        [
            pytest.param(False, None, None, "012345", id="forwards"),
            pytest.param(True, None, None, "543210", id="backwards"),
            pytest.param(False, 2, None, "01", id="forwards-limit"),
            pytest.param(True, 2, None, "54", id="backwards-limit"),
            pytest.param(False, None, 3, "345", id="forwards-from"),
            pytest.param(False, 1, 3, "3", id="forwards-from-limit"),
            pytest.param(True, None, 2, "210", id="backwards-from-inclusive"),
            pytest.param(True, 2, 4, "43", id="backwards-from-limit"),
            pytest.param(False, None, 5, "5", id="from-last"),
            pytest.param(False, None, 99, "", id="from-past-the-end"),
            pytest.param(True, None, 99, "543210", id="backwards-from-past-the-end"),
        ],
    )
    async def test_read_stream_directions_limits_and_start(
        self,
        store: EventStore,
        backwards: bool,
        limit: int | None,
        from_revision: int | None,
        expected: str,
    ) -> None:
        """Forwards and backwards, limited, from an inclusive revision."""
        stream = unique()
        await store.append(stream, [new(str(i)) for i in range(6)])
        read = await store.read_stream(
            stream, backwards=backwards, limit=limit, from_revision=from_revision
        )
        assert "".join(e.type for e in read) == expected
        assert all(int(e.type) == e.revision for e in read)

    @pytest.mark.parametrize(
        "backwards", [pytest.param(False, id="forwards"), pytest.param(True, id="backwards")]
    )
    async def test_missing_stream_is_not_found(self, store: EventStore, backwards: bool) -> None:
        """Reading a stream nobody wrote raises StreamNotFound naming it."""
        stream = unique()
        await store.append(stream + "-other", [new()])
        with pytest.raises(StreamNotFound) as caught:
            await store.read_stream(stream, backwards=backwards, limit=1)
        assert caught.value.stream == stream

    async def test_truncate_before_hides_the_oldest_for_good(self, store: EventStore) -> None:
        """``$tb``: reads start at the truncation point, which never moves back; appends go on."""
        stream = unique()
        await store.append(stream, [new(str(i)) for i in range(6)])
        await store.truncate_before(stream, 4)
        assert [e.revision for e in await store.read_stream(stream)] == [4, 5]
        assert [e.revision for e in await store.read_stream(stream, backwards=True)] == [5, 4]
        await store.truncate_before(stream, 2)  # lower: no effect
        assert [e.revision for e in await store.read_stream(stream, limit=1)] == [4]
        await store.append(stream, [new("6")], expected=5)  # the stream's revision is untouched
        assert [e.type for e in await store.read_stream(stream)] == ["4", "5", "6"]
        with pytest.raises(StreamNotFound):
            await store.truncate_before(unique(), 1)

    async def test_read_all_after_position_with_prefix_and_limit(self, store: EventStore) -> None:
        """The global log: exclusive start, prefix filter, limit, commit order."""
        tag = uuid.uuid4().hex[:8]
        mine, other = f"svc-{tag}-a", f"oth-{tag}-a"
        start = await store.append(unique("warmup"), [new()])
        await store.append(mine, [new("1")])
        await store.append(other, [new("x")])
        await store.append(f"svc-{tag}-b", [new("2")])
        await store.append(mine, [new("3")])
        found = await store.read_all(after=start, stream_prefix=f"svc-{tag}-")
        assert [e.type for e in found] == ["1", "2", "3"]
        assert [e.position for e in found] == sorted({e.position for e in found})
        assert all(e.position > start for e in found)
        limited = await store.read_all(after=start, stream_prefix=f"svc-{tag}-", limit=2)
        assert [e.type for e in limited] == ["1", "2"]
        resumed = await store.read_all(after=limited[-1].position, stream_prefix=f"svc-{tag}-")
        assert [e.type for e in resumed] == ["3"]
        everything = await store.read_all(after=start)
        assert [e.type for e in everything] == ["1", "x", "2", "3"]
        assert [e.type for e in await store.read_all(after=start, limit=1)] == ["1"]
        from_zero = await store.read_all()
        assert from_zero[0].position <= start
        assert [e.type for e in from_zero if e.position > start] == ["1", "x", "2", "3"]

    async def test_read_log_is_read_all_as_rows(self, store: EventStore) -> None:
        """``read_log`` (the bulk read a replay uses) gives ``read_all``'s events, field for field."""
        tag = uuid.uuid4().hex[:8]
        start = await store.append(unique("warmup"), [new()])
        for n in range(5):
            await store.append(f"svc-{tag}-{n % 2}", [new(str(n), f'{{"n": {n}}}'.encode())])
        await store.append(f"oth-{tag}", [new("x")])
        for prefix in (f"svc-{tag}-", None):
            for after, limit in ((start, 100), (start, 2), (None, 3)):
                expected = [
                    (e.position, e.stream, e.revision, e.type, e.data, e.recorded_at)
                    for e in await store.read_all(after=after, stream_prefix=prefix, limit=limit)
                ]
                rows = await read_log(store, after=after, stream_prefix=prefix, limit=limit)
                assert [(*row[:5], datetime.fromtimestamp(row[5], UTC)) for row in rows] == expected
        rows = await read_log(store, after=start, stream_prefix=f"svc-{tag}-", limit=100)
        assert [row[3] for row in rows] == ["0", "1", "2", "3", "4"]

    async def test_prefix_is_literal_and_case_sensitive(self, store: EventStore) -> None:
        """``_``/``%`` in a prefix are plain characters, case matters, and a shorter name is no match."""
        tag = f"lit-{uuid.uuid4().hex[:8]}-"
        prefix = tag + "a_b%"
        for stream in (tag + "aXbY-1", tag + "A_b%-1", tag + "a_b", prefix + "-1", tag + "a_b%c"):
            await store.append(stream, [new(stream)])
        found = await store.read_all(stream_prefix=prefix)
        assert [e.stream for e in found] == [prefix + "-1", tag + "a_b%c"]
        async with subscribed(store, stream_prefix=prefix) as subscription:
            items = await take(subscription, 3)
        assert [getattr(i, "stream", None) for i in items[:2]] == [prefix + "-1", tag + "a_b%c"]
        assert isinstance(items[2], CaughtUp)

    async def test_several_prefixes_keep_each_and_nothing_else(self, store: EventStore) -> None:
        """A tuple of prefixes keeps every stream that starts with any one of them, in commit order."""
        tag = f"multi-{uuid.uuid4().hex[:8]}-"
        for stream in (tag + "a-1", tag + "b-1", tag + "c-1", tag + "a-2"):
            await store.append(stream, [new(stream)])
        wanted = (tag + "a-", tag + "c-")
        found = await store.read_all(stream_prefix=wanted)
        assert [e.stream for e in found] == [tag + "a-1", tag + "c-1", tag + "a-2"]
        async with subscribed(store, stream_prefix=wanted) as subscription:
            items = await take(subscription, 4)
        assert [getattr(i, "stream", None) for i in items[:3]] == [
            tag + "a-1",
            tag + "c-1",
            tag + "a-2",
        ]
        assert isinstance(items[3], CaughtUp)

    # --- subscriptions -------------------------------------------------------------------------------

    async def test_subscribe_catch_up_then_live_without_gap_or_duplicate(
        self, store: EventStore
    ) -> None:
        """History (more than one page), CaughtUp once, then live: every event once, in commit order."""
        tag = f"sub-{uuid.uuid4().hex[:8]}-"
        history, during, live = 1200, 30, 10
        for chunk in range(history // 400):
            await store.append(tag + "h", [new(f"h{chunk * 400 + i}") for i in range(400)])
        await store.append(unique("noise"), [new("noise")])
        items: list[Item] = []
        async with subscribed(store, stream_prefix=tag) as subscription:
            items.append(await next_item(subscription))  # catch-up has begun
            appender = asyncio.create_task(append_one_by_one(store, tag + "d", "d", during))
            try:
                while not any(isinstance(i, CaughtUp) for i in items) or (
                    len(only_events(items)) < history + during
                ):
                    items.append(await next_item(subscription))
            finally:
                await appender
            await append_one_by_one(store, tag + "l", "l", live)
            while len(only_events(items)) < history + during + live:
                items.append(await next_item(subscription))
        markers = [i for i, item in enumerate(items) if isinstance(item, CaughtUp)]
        assert len(markers) == 1
        events = only_events(items)
        stored = await store.read_all(stream_prefix=tag)
        assert [e.id for e in events] == [e.id for e in stored]
        assert [e.type for e in events[:history]] == [f"h{i}" for i in range(history)]
        assert [e.type for e in events if e.type[0] == "d"] == [f"d{i}" for i in range(during)]
        assert [e.type for e in events[-live:]] == [f"l{i}" for i in range(live)]
        marker = items[markers[0]]
        before = items[markers[0] - 1]
        assert isinstance(marker, CaughtUp)
        assert isinstance(before, RecordedEvent)
        assert marker.position == before.position
        assert markers[0] >= history  # all history came before the marker

    async def test_subscribe_resumes_exclusively(self, store: EventStore) -> None:
        """Resuming after a position starts with the next event, not that one."""
        tag = f"res-{uuid.uuid4().hex[:8]}-"
        await store.append(tag + "x", [new("a"), new("b"), new("c")])
        events = await store.read_all(stream_prefix=tag)
        async with subscribed(store, after=events[0].position, stream_prefix=tag) as subscription:
            items = await take(subscription, 3)
            await store.append(tag + "x", [new("d")])
            (live,) = await take(subscription, 1)
        assert [getattr(i, "type", None) for i in items[:2]] == ["b", "c"]
        assert items[2] == CaughtUp(events[2].position)
        assert isinstance(live, RecordedEvent)
        assert live.type == "d"

    async def test_subscribe_from_the_head_is_caught_up_at_its_own_position(
        self, store: EventStore
    ) -> None:
        """Resuming from the last event: nothing to replay, CaughtUp carries the resume point."""
        tag = f"head-{uuid.uuid4().hex[:8]}-"
        last = await store.append(tag + "x", [new("a")])
        async with subscribed(store, after=last, stream_prefix=tag) as subscription:
            (first,) = await take(subscription, 1)
            await store.append(tag + "x", [new("b")])
            (second,) = await take(subscription, 1)
        assert first == CaughtUp(last)
        assert isinstance(second, RecordedEvent)
        assert second.type == "b"

    async def test_subscribe_filters_by_prefix(self, store: EventStore) -> None:
        """Other streams never appear, neither in catch-up nor live; an empty match is caught up at once."""
        tag = f"flt-{uuid.uuid4().hex[:8]}-"
        await store.append(unique("unrelated"), [new("no")])
        async with subscribed(store, stream_prefix=tag) as subscription:
            (first,) = await take(subscription, 1)
            await store.append(unique("unrelated"), [new("no")])
            await store.append(tag + "s", [new("yes")])
            await store.append(unique("unrelated"), [new("no")])
            await store.append(tag + "t", [new("yes too")])
            items = await take(subscription, 2)
        assert first == CaughtUp(None)
        assert [getattr(i, "type", None) for i in items] == ["yes", "yes too"]

    async def test_subscribe_without_prefix_sees_every_stream(self, store: EventStore) -> None:
        """No prefix: the whole log, in commit order."""
        start = await store.append(unique(), [new("before")])
        a, b = unique("a"), unique("b")
        await store.append(a, [new("1")])
        await store.append(b, [new("2")])
        async with subscribed(store, after=start) as subscription:
            items = await take(subscription, 3)
        assert [getattr(i, "stream", None) for i in items[:2]] == [a, b]
        assert isinstance(items[2], CaughtUp)

    async def test_cancelling_a_subscriber_is_clean(self, store: EventStore) -> None:
        """A cancelled consumer ends with CancelledError; the store and new subscriptions carry on."""
        tag = f"cancel-{uuid.uuid4().hex[:8]}-"
        await store.append(tag + "x", [new("a")])
        live = asyncio.Event()
        iterator = store.subscribe(stream_prefix=tag)

        async def consume() -> None:
            async for item in iterator:
                if isinstance(item, CaughtUp):
                    live.set()

        consumer = asyncio.create_task(consume())
        await asyncio.wait_for(live.wait(), WAIT)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(consumer, WAIT)
        await aclose(iterator)
        await store.append(tag + "x", [new("b")])
        async with subscribed(store, stream_prefix=tag) as again:
            items = await take(again, 3)
        assert [getattr(i, "type", None) for i in items] == ["a", "b", None]
        assert isinstance(items[2], CaughtUp)

    # --- retention and metadata ------------------------------------------------------------------

    async def test_metadata_defaults_set_and_clear(self, store: EventStore) -> None:
        """Never set: all None; set: read back; cleared: hidden events are readable again."""
        stream = unique("sys")
        assert (await store.get_stream_metadata(stream)).max_count is None
        assert (await store.get_stream_metadata(stream)).max_age_seconds is None
        await store.append(stream, [new(str(i)) for i in range(3)])
        await store.set_stream_metadata(stream, max_age_seconds=3600, max_count=1)
        metadata = await store.get_stream_metadata(stream)
        assert (metadata.max_age_seconds, metadata.max_count) == (3600, 1)
        assert [e.type for e in await store.read_stream(stream)] == ["2"]
        await store.set_stream_metadata(stream)
        metadata = await store.get_stream_metadata(stream)
        assert (metadata.max_age_seconds, metadata.max_count) == (None, None)
        assert [e.type for e in await store.read_stream(stream)] == ["0", "1", "2"]

    async def test_max_count_hides_older_events_from_stream_reads(self, store: EventStore) -> None:
        """Only the newest max_count events are readable, in both directions; read_all has them all."""
        stream = unique("sys")
        await store.set_stream_metadata(stream, max_count=2)
        for i in range(5):
            await store.append(stream, [new(str(i))])
        assert [e.type for e in await store.read_stream(stream)] == ["3", "4"]
        assert [e.type for e in await store.read_stream(stream, backwards=True)] == ["4", "3"]
        assert [e.type for e in await store.read_stream(stream, from_revision=0)] == ["3", "4"]
        assert (await store.get_stream_metadata(stream)).max_count == 2
        assert [e.type for e in await store.read_all(stream_prefix=stream)] == list("01234")

    async def test_max_age_hides_old_events(self, store: EventStore, clock: FakeClock) -> None:
        """Events older than max_age vanish from stream reads as the clock moves; read_all keeps them."""
        stream = unique("sys")
        await store.set_stream_metadata(stream, max_age_seconds=60)
        await store.append(stream, [new("old")])
        clock.advance(45)
        await store.append(stream, [new("new")])
        assert [e.type for e in await store.read_stream(stream)] == ["old", "new"]
        clock.advance(30)
        assert [e.type for e in await store.read_stream(stream)] == ["new"]
        assert [e.type for e in await store.read_stream(stream, backwards=True)] == ["new"]
        clock.advance(60)
        assert await store.read_stream(stream) == []
        assert (await store.get_stream_metadata(stream)).max_age_seconds == 60
        assert [e.type for e in await store.read_all(stream_prefix=stream)] == ["old", "new"]
        await store.append(stream, [new("newest")])
        assert [(e.type, e.revision) for e in await store.read_stream(stream)] == [("newest", 2)]

    # --- soft delete ------------------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "revive_with",
        [
            pytest.param(StreamState.ANY, id="any"),
            pytest.param(StreamState.NO_STREAM, id="no-stream"),
        ],
    )
    async def test_soft_delete_then_revive(self, store: EventStore, revive_with: Expected) -> None:
        """Deleted reads as not found, $all keeps the old events, and an append revives it at last+1."""
        stream = unique()
        await store.append(stream, [new("a"), new("b")])
        await store.delete_stream(stream)
        with pytest.raises(StreamNotFound):
            await store.read_stream(stream)
        assert [e.type for e in await store.read_all(stream_prefix=stream)] == ["a", "b"]
        await store.append(stream, [new("c")], revive_with)
        revived = await store.read_stream(stream)
        assert [(e.type, e.revision) for e in revived] == [("c", 2)]
        await store.append(stream, [new("d")], 2)
        assert [e.revision for e in await store.read_stream(stream)] == [2, 3]

    @pytest.mark.parametrize(
        ("expected", "revives"),
        [
            pytest.param(StreamState.STREAM_EXISTS, False, id="exists"),
            pytest.param(0, False, id="stale-revision"),
            pytest.param(1, True, id="last-revision"),
        ],
    )
    async def test_a_deleted_stream_counts_as_no_stream(
        self, store: EventStore, expected: Expected, revives: bool
    ) -> None:
        """After a soft delete only ANY, NO_STREAM and the last revision revive it; the rest conflict."""
        stream = unique()
        await store.append(stream, [new(), new()])
        await store.delete_stream(stream)
        if revives:
            await store.append(stream, [new("c")], expected)
            assert [(e.type, e.revision) for e in await store.read_stream(stream)] == [("c", 2)]
            return
        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append(stream, [new()], expected)
        assert caught.value.actual is None
        with pytest.raises(StreamNotFound):
            await store.read_stream(stream)

    async def test_delete_checks_expected_and_existence(self, store: EventStore) -> None:
        """A missing stream is not found; a stale expected revision conflicts; twice is a no-op.

        Deleting a deleted stream again with ``any`` succeeds and changes nothing, as on KurrentDB.
        """
        with pytest.raises(StreamNotFound):
            await store.delete_stream(unique())
        with pytest.raises(StreamNotFound):
            await store.delete_stream(unique(), 0)
        stream = unique()
        await store.append(stream, [new(), new()])
        with pytest.raises(ConcurrencyConflict):
            await store.delete_stream(stream, 0)
        assert len(await store.read_stream(stream)) == 2
        await store.delete_stream(stream, 1)
        await store.delete_stream(stream)
        with pytest.raises(StreamNotFound):
            await store.read_stream(stream)

    # --- health and lifecycle ---------------------------------------------------------------------------

    async def test_ping_measures_a_round_trip(self, store: EventStore) -> None:
        """Ping returns a small non-negative number of seconds."""
        assert 0 <= await store.ping() < WAIT

    @pytest.mark.parametrize(
        "operation",
        [
            pytest.param(lambda s: s.append(unique(), [new()]), id="append"),
            pytest.param(lambda s: s.read_stream(unique()), id="read_stream"),
            pytest.param(lambda s: s.read_all(), id="read_all"),
            pytest.param(lambda s: anext(s.subscribe()), id="subscribe"),
            pytest.param(lambda s: s.set_stream_metadata(unique(), max_count=1), id="set_metadata"),
            pytest.param(lambda s: s.get_stream_metadata(unique()), id="get_metadata"),
            pytest.param(lambda s: s.delete_stream(unique()), id="delete_stream"),
            pytest.param(lambda s: s.ping(), id="ping"),
        ],
    )
    async def test_closed_store_refuses_work(
        self, store: EventStore, operation: Callable[[EventStore], Awaitable[object]]
    ) -> None:
        """After close (twice is fine), every operation raises EventStoreUnavailable."""
        await store.append(unique(), [new()])
        await store.close()
        await store.close()
        with pytest.raises(EventStoreUnavailable):
            await asyncio.wait_for(operation(store), WAIT)

    async def test_close_completes_pending_appends(self, store: EventStore) -> None:
        """Appends already under way when close() is called complete before it returns."""
        stream = unique()
        appends = [asyncio.create_task(store.append(stream, [new(str(i))])) for i in range(20)]
        closing = asyncio.create_task(store.close())
        positions = await asyncio.wait_for(asyncio.gather(*appends), WAIT)
        await asyncio.wait_for(closing, WAIT)
        assert len(set(positions)) == 20

    async def test_close_ends_live_subscriptions(self, store: EventStore) -> None:
        """A subscriber waiting for live events is released by close() instead of hanging."""
        async with subscribed(store, stream_prefix=unique("quiet")) as subscription:
            assert await next_item(subscription) == CaughtUp(None)
            waiting = asyncio.create_task(next_item(subscription))
            await store.close()
            with pytest.raises((EventStoreUnavailable, StopAsyncIteration)):
                await waiting
