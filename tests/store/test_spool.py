"""The outage spool: bounded, ordered, durable; flushed exactly once when the store returns."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.kurrentdb_standin import StandInServer
from tests.store.contract import new
from uptime_daemon.store import StreamState
from uptime_daemon.store.kurrentdb import KurrentDBEventStore
from uptime_daemon.store.spool import Delivered, OutageBuffer, Spool


async def test_fifo_survives_a_restart(tmp_path: Path) -> None:
    """What was spooled before a restart is still there, in order."""
    spool = await Spool.open(tmp_path / "spool.db", max_events=10)
    batches = [[new("a")], [new("b"), new("c")], [new("d")]]
    for i, batch in enumerate(batches):
        assert await spool.put(f"s-{i}", batch, StreamState.ANY if i else StreamState.NO_STREAM)
    await spool.close()
    reopened = await Spool.open(tmp_path / "spool.db", max_events=10)
    try:
        assert reopened.depth == 4
        entries = await reopened.peek()
        assert [e.stream for e in entries] == ["s-0", "s-1", "s-2"]
        assert entries[0].expected == StreamState.NO_STREAM
        assert [[x.id for x in e.events] for e in entries] == [[x.id for x in b] for b in batches]
        assert entries[1].events[1].data == batches[1][1].data
        await reopened.remove(entries[0])
        assert reopened.depth == 3
    finally:
        await reopened.close()


async def test_past_the_bound_drops_are_counted_and_logged(tmp_path: Path) -> None:
    """A full spool refuses new events loudly; what it holds is kept."""
    spool = await Spool.open(tmp_path / "spool.db", max_events=2)
    try:
        assert await spool.put("s", [new(), new()], StreamState.ANY)
        with capture_logs() as logs:
            assert not await spool.put("s", [new()], StreamState.ANY)
        assert spool.dropped == 1
        assert spool.depth == 2
        assert any(
            e["event"] == "spool_full_event_dropped" and e["log_level"] == "error" for e in logs
        )
    finally:
        await spool.close()


@pytest.fixture
async def standin() -> AsyncIterator[StandInServer]:
    server = StandInServer()
    await server.start()
    yield server
    await server.stop()


async def test_outage_is_spooled_then_flushed_in_order_exactly_once(
    standin: StandInServer, tmp_path: Path
) -> None:
    """Appends during an outage wait on disk; when the store returns they land once, in order."""
    store = await KurrentDBEventStore.open(standin.url, timeout_seconds=0.5)
    spool = await Spool.open(tmp_path / "spool.db", max_events=1000)
    buffer = OutageBuffer(store, spool)
    flusher = asyncio.create_task(buffer.run())
    try:
        sent = [new(f"e{i}") for i in range(25)]
        assert (await buffer.append("svc-a", [sent[0]])).delivered is Delivered.STORED
        await standin.stop()
        for event in sent[1:20]:
            assert (await buffer.append("svc-a", [event])).delivered is Delivered.SPOOLED
        assert spool.depth == 19
        await standin.start()
        for event in sent[20:]:
            await buffer.append("svc-a", [event])  # still spooled while the backlog drains
        assert await buffer.drain(30)
        stored = await store.read_stream("svc-a")
        assert [e.id for e in stored] == [e.id for e in sent]
        assert (await buffer.append("svc-a", [new()])).position is not None  # direct again
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await spool.close()
        await store.close()


async def test_replaying_an_already_stored_event_is_a_no_op(
    standin: StandInServer, tmp_path: Path
) -> None:
    """After a crash between append and spool removal, the replay deduplicates by event id."""
    store = await KurrentDBEventStore.open(standin.url, timeout_seconds=2)
    spool = await Spool.open(tmp_path / "spool.db", max_events=10)
    event = new()
    await store.append("svc-b", [event])
    await spool.put("svc-b", [event], StreamState.ANY)
    buffer = OutageBuffer(store, spool)
    flusher = asyncio.create_task(buffer.run())
    try:
        assert await buffer.drain(10)
        assert len(await store.read_stream("svc-b")) == 1
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await spool.close()
        await store.close()
