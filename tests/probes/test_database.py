"""The database probe and the start-up connection test, against an in-memory store and the real SQLite one."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tests.probes.fakes import FakeStore
from uptime_daemon.clock import SystemClock
from uptime_daemon.config.model import DatabaseService
from uptime_daemon.errors import EventStoreError, EventStoreUnavailable, StreamNotFound
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.database import CONNECTION_TEST_STREAM, connection_test, probe_database
from uptime_daemon.probes.round_trip import HEALTH_CHECK_EVENT
from uptime_daemon.results import FailureReason, Phase
from uptime_daemon.store import NewEvent
from uptime_daemon.store.sqlite import SqliteEventStore

HEALTH = "system-health-check"


def database(**options: object) -> DatabaseService:
    return DatabaseService.model_validate({"kind": "database", **options})


async def test_round_trip_writes_one_event_and_reads_it_back(
    ctx: ProbeContext, fake_store: FakeStore
) -> None:
    """A check appends one fresh HealthCheckPerformed event with a timestamp and reads it back."""
    result = await probe_database(database(), ctx)
    assert result.ok, result.detail
    assert {Phase.WRITE, Phase.READ} <= set(result.phases)
    [event] = fake_store.streams[HEALTH]
    assert event.type == HEALTH_CHECK_EVENT
    assert uuid.UUID(str(event.id)).version == 4
    assert "timestamp" in orjson.loads(event.data)
    assert ("read_stream", HEALTH) in fake_store.calls


async def test_retention_metadata_is_set_only_when_it_differs(
    ctx: ProbeContext, fake_store: FakeStore
) -> None:
    """The first check sets $maxAge/$maxCount; later ones leave matching metadata alone."""
    service = database(max_age_seconds=600, max_count=5)
    for _ in range(3):
        assert (await probe_database(service, ctx)).ok
    assert fake_store.calls.count(("set_stream_metadata", HEALTH)) == 1
    metadata = fake_store.metadata[HEALTH]
    assert (metadata.max_age_seconds, metadata.max_count) == (600, 5)


async def test_another_writer_on_the_stream_is_not_a_failure(
    ctx: ProbeContext, fake_store: FakeStore
) -> None:
    """Another daemon's event landing after ours does not hide ours from the read-back."""
    fake_store.intruder = NewEvent(id=uuid.uuid4(), type=HEALTH_CHECK_EVENT, data=b"{}")
    result = await probe_database(database(), ctx)
    assert result.ok, result.detail


async def test_a_lost_write_is_a_store_error(ctx: ProbeContext, fake_store: FakeStore) -> None:
    """A store that acknowledges an append it did not keep fails the check."""
    fake_store.lose_writes = True
    fake_store.intruder = NewEvent(id=uuid.uuid4(), type=HEALTH_CHECK_EVENT, data=b"{}")
    result = await probe_database(database(), ctx)
    assert result.failure is FailureReason.STORE_ERROR
    assert "not read back" in result.detail


@pytest.mark.parametrize(
    ("method", "error"),
    [
        pytest.param(
            "append",
            EventStoreUnavailable("kurrentdb://admin:changeit@db:2113 unreachable"),
            id="append-unavailable",
        ),
        pytest.param("get_stream_metadata", EventStoreUnavailable("down"), id="metadata-down"),
        pytest.param("read_stream", StreamNotFound(HEALTH), id="read-back-missing"),
    ],
)
async def test_store_failures_are_results_not_exceptions(
    ctx: ProbeContext, fake_store: FakeStore, method: str, error: EventStoreError
) -> None:
    """Any store error is a store_error result naming the error class; a password never shows."""
    fake_store.fail[method] = error
    result = await probe_database(database(), ctx)
    assert result.failure is FailureReason.STORE_ERROR
    assert result.detail.startswith(type(error).__name__)
    assert "changeit" not in result.detail


async def test_connection_test_soft_deletes_its_stream(fake_store: FakeStore) -> None:
    """connection-test is written, read back, then soft-deleted (and can be revived next start)."""
    result = await connection_test(fake_store, SystemClock())
    assert result.ok, result.detail
    assert [call for call in fake_store.calls if call[1] == CONNECTION_TEST_STREAM] == [
        ("append", CONNECTION_TEST_STREAM),
        ("read_stream", CONNECTION_TEST_STREAM),
        ("delete_stream", CONNECTION_TEST_STREAM),
    ]
    assert CONNECTION_TEST_STREAM in fake_store.deleted


async def test_connection_test_reports_an_unavailable_store(fake_store: FakeStore) -> None:
    """A store that cannot be written makes the start-up test fail with store_error."""
    fake_store.fail["append"] = EventStoreUnavailable("connection refused")
    result = await connection_test(fake_store, SystemClock())
    assert result.failure is FailureReason.STORE_ERROR
    assert "EventStoreUnavailable" in result.detail


async def test_sqlite_round_trip_keeps_the_stream_temporary(
    ctx: ProbeContext, store: SqliteEventStore
) -> None:
    """Against the real store: each check round-trips and $maxCount keeps the stream short."""
    real = ProbeContext(
        session=ctx.session, clock=ctx.clock, store=store, self_base_url=ctx.self_base_url
    )
    service = database(max_count=3, max_age_seconds=600)
    for _ in range(5):
        result = await probe_database(service, real)
        assert result.ok, result.detail
    metadata = await store.get_stream_metadata(HEALTH)
    assert (metadata.max_count, metadata.max_age_seconds) == (3, 600)
    assert len(await store.read_stream(HEALTH)) == 3


async def test_sqlite_closed_store_is_store_error(
    ctx: ProbeContext, store: SqliteEventStore
) -> None:
    """Against the real store: an unavailable store is a store_error result, not an exception."""
    real = ProbeContext(
        session=ctx.session, clock=ctx.clock, store=store, self_base_url=ctx.self_base_url
    )
    await store.close()
    result = await probe_database(database(), real)
    assert result.failure is FailureReason.STORE_ERROR
    assert "EventStoreUnavailable" in result.detail


async def test_sqlite_connection_test_never_tombstones(store: SqliteEventStore) -> None:
    """Against the real store: run twice, connection-test is soft-deleted each time and revived."""
    for _ in range(2):
        result = await connection_test(store, SystemClock())
        assert result.ok, result.detail
        with pytest.raises(StreamNotFound):
            await store.read_stream(CONNECTION_TEST_STREAM)
    events = await store.read_all(stream_prefix=CONNECTION_TEST_STREAM)
    assert [e.revision for e in events] == [0, 1]  # a tombstone would have refused the second run
