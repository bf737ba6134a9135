"""The database probe and the start-up connection test, against the real embedded store."""

from __future__ import annotations

import pytest

from uptime_daemon.config.model import DatabaseService
from uptime_daemon.errors import StreamNotFound
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.database import CONNECTION_TEST_STREAM, connection_test, probe_database
from uptime_daemon.results import FailureReason, Phase
from uptime_daemon.store.sqlite import SqliteEventStore


async def test_round_trip_succeeds_and_keeps_the_stream_temporary(
    ctx: ProbeContext, store: SqliteEventStore
) -> None:
    """Each check writes one event, reads it back, and the stream carries retention metadata."""
    service = DatabaseService(kind="database", max_count=3, max_age_seconds=600)
    for _ in range(5):
        result = await probe_database(service, ctx)
        assert result.ok, result.detail
    assert {Phase.WRITE, Phase.READ} <= set(result.phases)
    metadata = await store.get_stream_metadata("system-health-check")
    assert (metadata.max_count, metadata.max_age_seconds) == (3, 600)
    assert len(await store.read_stream("system-health-check")) == 3


async def test_store_failure_is_store_error(ctx: ProbeContext, store: SqliteEventStore) -> None:
    """An unavailable store is a failed check with reason store_error, not an exception."""
    await store.close()
    result = await probe_database(DatabaseService(kind="database"), ctx)
    assert result.failure is FailureReason.STORE_ERROR
    assert "EventStoreUnavailable" in result.detail


async def test_connection_test_soft_deletes_and_can_run_again(
    store: SqliteEventStore, ctx: ProbeContext
) -> None:
    """connection-test is written, read back and soft-deleted: reusable on every start, never tombstoned."""
    for _ in range(2):
        result = await connection_test(store, ctx.clock)
        assert result.ok, result.detail
        with pytest.raises(StreamNotFound):
            await store.read_stream(CONNECTION_TEST_STREAM)
    events = await store.read_all(stream_prefix=CONNECTION_TEST_STREAM)
    assert [e.revision for e in events] == [0, 1]
