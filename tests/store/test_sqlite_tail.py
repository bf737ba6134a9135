"""Live subscriptions from the commits held in memory: the same events as the file, fewer reads."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from tests.store.contract import new, next_item, subscribed, take
from uptime_daemon.errors import ConcurrencyConflict
from uptime_daemon.store import CaughtUp, RecordedEvent, StreamState
from uptime_daemon.store.sqlite import SqliteEventStore
from uptime_daemon.store.sqlite.head import TAIL_COMMITS, Commit, Tail


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    store = await SqliteEventStore.open(tmp_path / "events.db")
    yield store
    await store.close()


async def caught_up(subscription: AsyncIterator[RecordedEvent | CaughtUp]) -> int | None:
    """Skip what the subscription catches up on; the position it says it caught up at."""
    for _ in range(10_000):
        item = await next_item(subscription)
        if isinstance(item, CaughtUp):
            return item.position
    raise AssertionError("never caught up")


async def test_live_events_come_from_memory_exactly_as_the_file_holds_them(
    store: SqliteEventStore,
) -> None:
    """Batches with a conflict, a replayed append and an empty one: no read, nothing different."""
    await store.append("svc-a", [new()])
    replayed = [new("Replayed")]
    await store.append("svc-b", replayed)
    async with subscribed(store, stream_prefix="svc-") as subscription:
        start = await caught_up(subscription)
        reads = store.reads
        for n in range(5):
            await store.append("svc-a", [new(), new("Second", b'{"n": %d}' % n)])
            await store.append("other", [new()])
        outcomes = await asyncio.gather(
            store.append("svc-c", [new()]),
            store.append("svc-a", [new()], StreamState.NO_STREAM),  # conflicts: svc-a exists
            store.append("svc-b", replayed),  # stored already: its old position, nothing new
            store.append("svc-d", []),
            store.append("svc-e", [new(), new(), new()], StreamState.NO_STREAM),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], ConcurrencyConflict)
        expected = await store.read_all(after=start, stream_prefix="svc-")
        assert len(expected) == 5 * 2 + 1 + 3
        live = await take(subscription, len(expected))
        assert live == expected
        assert store.reads == reads + 1  # read_all's own read above; none by the subscription


async def test_a_subscriber_behind_the_commits_held_reads_the_file(
    store: SqliteEventStore,
) -> None:
    """More commits than are held while it does not look: every event once, from the file."""
    async with subscribed(store) as subscription:
        start = await caught_up(subscription)
        for _ in range(TAIL_COMMITS * 2):
            await store.append("svc-a", [new()])
        reads = store.reads
        expected = await store.read_all(after=start)
        live = await take(subscription, len(expected))
        assert live == expected
        assert store.reads > reads + 1
        # caught up with the file again, the next commit comes from memory
        reads = store.reads
        await store.append("svc-a", [new()])
        follows = await next_item(subscription)
        assert isinstance(follows, RecordedEvent)
        assert follows.position == expected[-1].position + 1
        assert store.reads == reads


def recorded(stream: str, position: int) -> RecordedEvent:
    return RecordedEvent(
        id=uuid4(),
        type="T",
        data=b"{}",
        metadata=b"",
        stream=stream,
        revision=0,
        position=position,
        recorded_at=datetime(2026, 12, 7, tzinfo=UTC),
    )


def test_the_tail_answers_only_for_positions_it_reaches_back_to() -> None:
    tail = Tail(size=2)
    assert tail.since(0, ()) is None
    one, two, three = recorded("a-1", 11), recorded("b-1", 12), recorded("a-2", 15)
    tail.add(Commit(10, 12, (one, two)))
    tail.add(Commit(12, 15, (three,)))  # 13 and 14 failed in their savepoints
    assert tail.since(9, ()) is None
    assert tail.since(10, ()) == ([one, two, three], 15)
    assert tail.since(11, ("a-",)) == ([three], 15)
    assert tail.since(15, ()) == ([], 15)
    tail.add(Commit(15, 16, (recorded("a-3", 16),)))  # the oldest is dropped
    assert tail.since(10, ()) is None
    assert tail.since(12, ("b-",)) == ([], 16)


def test_a_commit_after_a_gap_forgets_the_ones_before() -> None:
    """Positions written by someone else in between: the tail cannot answer for them."""
    tail = Tail()
    tail.add(Commit(10, 11, (recorded("a", 11),)))
    later = recorded("a", 14)
    tail.add(Commit(13, 14, (later,)))
    assert tail.since(11, ()) is None
    assert tail.since(13, ()) == ([later], 14)


async def test_a_row_written_by_another_connection_is_not_skipped(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    """An event another writer put between two commits reaches the subscriber, in order."""
    async with subscribed(store) as subscription:
        start = await caught_up(subscription)
        await store.append("svc-a", [new()])
        first = await next_item(subscription)
        assert isinstance(first, RecordedEvent)
        other = sqlite3.connect(tmp_path / "events.db")
        try:
            with other:
                other.execute(
                    "INSERT INTO events (stream_id, revision, id, type_id, metadata_id, "
                    "dictionary_id, data, recorded_at, digest_key, digest) "
                    "SELECT stream_id, revision + 1000, randomblob(16), type_id, metadata_id, "
                    "dictionary_id, data, recorded_at, digest_key, digest "
                    "FROM events ORDER BY position DESC LIMIT 1"
                )
        finally:
            other.close()
        await store.append("svc-a", [new()])
        expected = await store.read_all(after=start)
        assert len(expected) == 3
        assert [first, *await take(subscription, 2)] == expected


def test_the_tail_holds_a_bounded_number_of_events() -> None:
    """The oldest commits go past the bound; a commit bigger than it is not held at all."""
    tail = Tail(size=10, most_events=3)
    tail.add(Commit(0, 2, (recorded("a", 1), recorded("a", 2))))
    tail.add(Commit(2, 4, (recorded("a", 3), recorded("a", 4))))  # four held: the first goes
    assert tail.since(0, ()) is None
    assert tail.since(2, ()) is not None
    tail.add(Commit(4, 8, tuple(recorded("a", n) for n in range(5, 9))))
    assert tail.since(4, ()) is None
    after_the_big_one = recorded("a", 9)
    tail.add(Commit(8, 9, (after_the_big_one,)))
    assert tail.since(8, ()) == ([after_the_big_one], 9)


async def test_commits_are_held_only_while_someone_follows(store: SqliteEventStore) -> None:
    """No subscription, no commits held: an import pays for none of it."""
    tail = store._head.tail  # what the writer holds is the point of the test
    await store.append("svc-a", [new()])
    assert not tail.followed
    assert tail.since(0, ()) is None
    async with subscribed(store) as subscription:
        await caught_up(subscription)
        assert tail.followed
        last = await store.append("svc-a", [new()])
        held = tail.since(last - 1, ())
        assert held is not None
        assert [event.position for event in held[0]] == [last]
    assert not tail.followed
    after = await store.append("svc-a", [new()])
    assert tail.since(after - 1, ()) is None
