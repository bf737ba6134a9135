"""The SQLite adapter: the shared contract plus what only an embedded file can show."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.store.contract import EventStoreContract, FakeClock, new, unique
from uptime_daemon.errors import EventStoreUnavailable, InvalidArgument
from uptime_daemon.store import RecordedEvent, StreamState, read_log
from uptime_daemon.store.sqlite import SqliteEventStore, sqlite_path_from_url
from uptime_daemon.store.sqlite.reads import LITERAL_IDS


class TestSqliteContract(EventStoreContract):
    """The contract against a fresh database file."""

    @pytest.fixture
    async def store(self, tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteEventStore]:
        store = await SqliteEventStore.open(tmp_path / "events.db", clock_now=clock.now)
        yield store
        await store.close()


async def test_data_survives_reopen_and_positions_are_never_reused(tmp_path: Path) -> None:
    """Reopening keeps events; after scavenging the tail, new positions still grow."""
    path = tmp_path / "events.db"
    store = await SqliteEventStore.open(path)
    await store.append("system-x", [new() for _ in range(3)])
    await store.set_stream_metadata("system-x", max_count=1)
    last = await store.append("system-x", [new()])
    assert await store.scavenge() == 3
    await store.close()
    reopened = await SqliteEventStore.open(path)
    try:
        assert [e.revision for e in await reopened.read_stream("system-x")] == [3]
        assert await reopened.append("other", [new()]) > last
    finally:
        await reopened.close()


async def test_group_commit_batches_concurrent_appends(tmp_path: Path) -> None:
    """Two hundred concurrent appends land in far fewer transactions."""
    store = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        positions = await asyncio.gather(*(store.append(unique(), [new()]) for _ in range(200)))
        assert len(set(positions)) == 200
        assert store.transactions < 50
    finally:
        await store.close()


async def test_conflict_in_a_batch_does_not_undo_its_neighbours(tmp_path: Path) -> None:
    """In one group commit, the conflicting append fails alone."""
    store = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        stream = unique()
        await store.append(stream, [new()])
        results = await asyncio.gather(
            store.append(unique(), [new()]),
            store.append(stream, [new()], StreamState.NO_STREAM),
            store.append(unique(), [new()]),
            return_exceptions=True,
        )
        assert isinstance(results[0], int)
        assert isinstance(results[2], int)
        assert not isinstance(results[1], int)
    finally:
        await store.close()


async def test_reads_are_not_blocked_by_an_open_write_transaction(tmp_path: Path) -> None:
    """Another connection holding the write lock does not stop reads (WAL)."""
    path = tmp_path / "events.db"
    store = await SqliteEventStore.open(path)
    await store.append("s", [new()])
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("INSERT INTO streams (name, last_revision) VALUES ('z', 0)")
        assert len(await asyncio.wait_for(store.read_stream("s"), 5)) == 1
        assert await asyncio.wait_for(store.ping(), 5) >= 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        await store.close()


async def test_unwritable_database_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    """A path that cannot be a database (a directory stands there) gives EventStoreUnavailable."""
    target = tmp_path / "events.db"
    target.mkdir()
    with pytest.raises(EventStoreUnavailable):
        await SqliteEventStore.open(target)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        pytest.param("sqlite:///var/events.db", Path("var/events.db"), id="relative"),
        pytest.param("sqlite:////srv/events.db", Path("/srv/events.db"), id="absolute"),
    ],
)
def test_sqlite_urls(url: str, path: Path) -> None:
    """Three slashes relative, four absolute."""
    assert sqlite_path_from_url(url) == path


@pytest.mark.parametrize("url", ["sqlite://x.db", "sqlite:///", "postgres:///x"])
def test_bad_sqlite_urls(url: str) -> None:
    """Anything else is an InvalidArgument."""
    with pytest.raises(InvalidArgument):
        sqlite_path_from_url(url)


async def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    """Empty stream names and zero limits are caller errors, not store failures."""
    store = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        with pytest.raises(InvalidArgument):
            await store.append("", [new()])
        with pytest.raises(InvalidArgument):
            await store.read_all(limit=0)
        same = new()
        with pytest.raises(InvalidArgument):
            await store.append("dup", [same, same])
    finally:
        await store.close()


async def test_a_prefix_of_many_streams_pages_exactly(tmp_path: Path) -> None:
    """Past ``LITERAL_IDS`` matching streams the prefix is kept in Python.

    The same pages, limits, subscription and rows as a filter of the whole log, across the scan's
    chunks.
    """
    store = await SqliteEventStore.open(tmp_path / "many.db")
    try:
        for round_ in range(3):
            for i in range(LITERAL_IDS + 44):
                await store.append(f"svc-{i}", [new(f"r{round_}")])
                if i % 7 == 0:
                    await store.append(f"other-{i}", [new("x")])
        everything = await store.read_all()
        wanted = [e for e in everything if e.stream.startswith("svc-")]
        assert len(wanted) == 3 * (LITERAL_IDS + 44)
        paged, after = [], None
        while page := await store.read_all(after=after, stream_prefix="svc-", limit=250):
            paged += page
            after = page[-1].position
        assert paged == wanted
        rows = await read_log(store, after=wanted[5].position, stream_prefix="svc-", limit=999)
        assert [r[0] for r in rows] == [e.position for e in wanted[6:1005]]
        seen = []
        async with asyncio.timeout(10):
            async for item in store.subscribe(stream_prefix=("svc-", "nothing-")):
                if not isinstance(item, RecordedEvent):
                    break
                seen.append(item)
        assert seen == wanted
        assert await store.read_all(stream_prefix="svc-9999") == []
    finally:
        await store.close()
