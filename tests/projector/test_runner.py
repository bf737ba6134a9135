"""The projector on the real store: live == replay, snapshot restarts, resubscription, bad events."""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.polling import until
from uptime_daemon import events
from uptime_daemon.clock import SystemClock
from uptime_daemon.config.model import CheckPolicy
from uptime_daemon.errors import EventStoreUnavailable
from uptime_daemon.projector import runner, snapshot
from uptime_daemon.projector.runner import SNAPSHOT_BUSY_SHARE, Projector, snapshot_spacing
from uptime_daemon.results import CheckKind, FailureReason, ProbeResult
from uptime_daemon.status import ServiceState, step
from uptime_daemon.store import CaughtUp, Digest, NewEvent, RecordedEvent, StreamPrefix
from uptime_daemon.store.sqlite import SqliteEventStore

T0 = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    opened = await SqliteEventStore.open(tmp_path / "events.db")
    yield opened
    await opened.close()


def projector(store: Any, path: Path | None = None) -> Projector:
    return Projector(
        store=store, clock=SystemClock(), default_gap_seconds=lambda _: 90.0, snapshot_path=path
    )


async def write_checks(
    store: SqliteEventStore,
    count: int,
    seed: int,
    start: datetime = T0,
    every: timedelta = timedelta(seconds=10),
) -> int:
    """Append ``count`` realistic checks across three services, one per ``every``.

    Returns the last position.
    """
    rng = random.Random(seed)
    states = {name: ServiceState.initial() for name in ("a", "b", "c")}
    policy = CheckPolicy(interval_seconds=30, timeout_seconds=5, degraded_after_seconds=0.5)
    position = 0
    for i in range(count):
        name = rng.choice(sorted(states))
        ok = rng.random() > 0.3
        seconds = rng.uniform(0.01, 1.0)
        at = start + every * i
        outcome = step(states[name], ok=ok, response_seconds=seconds, at=at, policy=policy)
        states[name] = outcome.state
        probe = ProbeResult(
            ok=ok, duration_seconds=seconds, failure=None if ok else FailureReason.TIMEOUT
        )
        event = events.status_changed(
            service=name,
            instance="test",
            location="default",
            kind=CheckKind.HTTP,
            scheduled_at=at,
            completed_at=at,
            outcome=outcome,
            probe=probe,
            interval_seconds=30,
            timeout_seconds=5,
        )
        position = await store.append(events.stream_name(name), [event])
    return position


def encoded(p: Projector) -> bytes:
    return snapshot.encode(snapshot.Snapshot(p.position, p.state))


def _snapshot_position(path: Path) -> int:
    stored = snapshot.read(path) if path.exists() else None
    return -1 if stored is None or stored.position is None else stored.position


@pytest.mark.parametrize("write_bytes", [runner.WRITE_BYTES, 1])
async def test_a_running_projectors_periodic_snapshot_is_the_state_at_its_position(
    store: SqliteEventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_bytes: int
) -> None:
    """Saved while it follows the store (sliced, written in a thread): what a replay to there gives.

    Written as it is encoded: in one write, or in one per slice.
    """
    monkeypatch.setattr(runner, "WRITE_BYTES", write_bytes)
    # A snapshot after every event: spaced out by its cost, the last events could all come within
    # the spacing after an earlier one, and nothing would be due again (seen once in CI).
    monkeypatch.setattr(runner, "SNAPSHOT_BUSY_SHARE", math.inf)
    path = tmp_path / "snapshot.json"
    await write_checks(store, 60, seed=3)
    live = Projector(
        store=store,
        clock=SystemClock(),
        default_gap_seconds=lambda _: 90.0,
        snapshot_path=path,
        snapshot_interval_seconds=0.0,
    )
    task = asyncio.create_task(live.run())
    try:
        await until(path.exists)
        await write_checks(store, 40, seed=4, start=T0 + timedelta(hours=1))
        await until(lambda: _snapshot_position(path) > 60)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    written = path.read_bytes()
    position = snapshot.decode(written).position
    assert position is not None
    replay = projector(store)
    while replay.position is None or replay.position < position:  # up to the snapshot's position
        page = await store.read_all(after=replay.position, limit=1)
        replay.handle(page[0])
    assert written == encoded(replay)


async def test_live_fold_equals_replay_from_zero(store: SqliteEventStore) -> None:
    """Events folded live as they arrive give byte-identical state to a replay from zero."""
    await write_checks(store, 100, seed=1)
    live = projector(store)
    task = asyncio.create_task(live.run())
    try:
        await until(live.caught_up.is_set)
        last = await write_checks(store, 150, seed=2, start=T0 + timedelta(hours=1))
        await until(lambda: live.position == last)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    replay = projector(store)
    assert await replay.catch_up() == 250
    assert encoded(replay) == encoded(live)


async def test_restart_from_snapshot_does_not_double_count(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    """A restart loads the snapshot, folds only newer events, and equals a full replay."""
    path = tmp_path / "projection.json"
    first = projector(store, path)
    await write_checks(store, 80, seed=3)
    await first.catch_up()
    first.save_snapshot()
    await write_checks(store, 40, seed=4, start=T0 + timedelta(hours=2))
    restarted = projector(store, path)
    restarted.load_snapshot()
    assert await restarted.catch_up() == 40
    full = projector(store)
    await full.catch_up()
    assert encoded(restarted) == encoded(full)


class BrokenOnce:
    """Fault injection: the first subscription dies after a few events, as a dropped connection does."""

    def __init__(self, inner: SqliteEventStore) -> None:
        self.inner = inner
        self.subscriptions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def subscribe(
        self, *, after: int | None = None, stream_prefix: StreamPrefix = None
    ) -> AsyncIterator[RecordedEvent | CaughtUp]:
        self.subscriptions += 1
        count = 0
        async for item in self.inner.subscribe(after=after, stream_prefix=stream_prefix):
            if self.subscriptions == 1 and count == 5:
                raise EventStoreUnavailable("connection reset (injected)")
            count += 1
            yield item


async def test_resubscribes_from_its_checkpoint_after_a_failure(store: SqliteEventStore) -> None:
    """A broken subscription is resumed from the last folded position: nothing lost, nothing twice."""
    last = await write_checks(store, 30, seed=5)
    flaky = BrokenOnce(store)
    live = projector(flaky)
    with capture_logs() as logs:
        task = asyncio.create_task(live.run())
        try:
            await until(lambda: live.position == last)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert flaky.subscriptions >= 2
    assert any(e["event"] == "projector_subscription_lost" for e in logs)
    replay = projector(store)
    await replay.catch_up()
    assert encoded(live) == encoded(replay)


async def test_a_corrupt_event_is_logged_and_skipped(store: SqliteEventStore) -> None:
    """One undecodable event does not stop the projection; it is counted and logged."""
    await write_checks(store, 5, seed=6)
    await store.append(
        "service-uptime-a", [NewEvent(id=uuid.uuid4(), type="ServiceStatusChanged", data=b"{oops")]
    )
    last = await write_checks(store, 5, seed=7, start=T0 + timedelta(hours=1))
    p = projector(store)
    with capture_logs() as logs:
        await p.catch_up()
    assert p.position == last
    assert p.decode_failures == 1
    assert any(
        e["event"] == "event_decode_failed" and e["stream"] == "service-uptime-a" for e in logs
    )


@pytest.mark.parametrize("digest", [None, events.check_digest], ids=["payloads", "digests"])
@pytest.mark.parametrize("page_size", [1, 7, 5000])
async def test_catch_up_equals_handling_each_event(
    tmp_path: Path, page_size: int, digest: Digest | None
) -> None:
    """``catch_up``'s bulk path ends where ``handle``, event by event, does.

    Same projection, newest probe per service, failures counted and checkpoint — seeds' events,
    pending checks, a corrupt event and two checks completed at one instant included; checks
    folded from their payloads, or from their digests (the store keeps them when given one).
    """
    store = await SqliteEventStore.open(tmp_path / "events.db", digest=digest)
    try:
        await _catch_up_equals_handling_each_event(store, page_size)
        rows = await store.read_digest_rows(after=None, stream_prefix=None, limit=999)
        assert any(row[7] is not None for row in rows) is (digest is not None)
    finally:
        await store.close()


async def _catch_up_equals_handling_each_event(store: SqliteEventStore, page_size: int) -> None:
    await write_checks(store, 40, seed=8)
    seed = b'{"serviceName":"c","status":"down","timestamp":"2026-02-01T00:09:00.000Z",'
    seed += b'"responseTime":12,"performanceGrade":"failed"}'
    await store.append(
        "service-uptime-c", [NewEvent(id=uuid.uuid4(), type="ServiceStatusChanged", data=seed)]
    )
    await store.append(
        "service-uptime-a",
        [NewEvent(id=uuid.uuid4(), type="ServiceStatusChanged", data=b'{"schemaVersion":2}')],
    )
    await write_checks(store, 40, seed=9, start=T0 + timedelta(minutes=7))
    tie = T0 + timedelta(hours=1)
    for n, detail in enumerate(("first", "second")):  # one completion time: the later one is newest
        check = events.status_changed(
            service="b",
            instance="test",
            location="default",
            kind=CheckKind.HTTP,
            scheduled_at=tie - timedelta(seconds=n),
            completed_at=tie,
            outcome=step(
                ServiceState.initial(),
                ok=True,
                response_seconds=0.1,
                at=tie,
                policy=CheckPolicy(interval_seconds=30, timeout_seconds=5),
            ),
            probe=ProbeResult(ok=True, duration_seconds=0.1, detail=detail),
            interval_seconds=30,
            timeout_seconds=5,
        )
        await store.append("service-uptime-b", [check])
    handled = projector(store)
    with capture_logs():
        for event in await store.read_all():
            handled.handle(event)
    assert handled.decode_failures == 1
    assert {"a", "b", "c"} <= handled.last_probe.keys()
    assert handled.last_probe["b"].detail == "second"
    caught_up = projector(store)
    with capture_logs():
        assert await caught_up.catch_up(page_size=page_size) == handled.events_applied
    assert encoded(caught_up) == encoded(handled)
    assert caught_up.last_probe == handled.last_probe
    assert caught_up.decode_failures == handled.decode_failures
    assert caught_up.last_event_recorded_at == handled.last_event_recorded_at


async def test_a_check_stored_twice_counts_once(store: SqliteEventStore, tmp_path: Path) -> None:
    """One check stored twice under two ids (an id cache that forgot, a re-import) counts once.

    The projection equals the one of the log that holds each check once.
    """
    await write_checks(store, 60, seed=5)
    once = projector(store)
    assert await once.catch_up() == 60
    doubled = await SqliteEventStore.open(tmp_path / "doubled.db")
    stored = await store.read_all(stream_prefix="service-uptime-")
    verdicts = sum(e.type == "ServiceStatusChanged" for e in stored)  # pending checks fold no time
    try:
        for event in stored:
            for event_id in (event.id, uuid.uuid4()):
                await doubled.append(
                    event.stream,
                    [
                        NewEvent(
                            id=event_id, type=event.type, data=event.data, metadata=event.metadata
                        )
                    ],
                )
        twice = projector(doubled)
        assert await twice.catch_up() == 120
    finally:
        await doubled.close()
    assert sum(s.repeated_checks for s in twice.state.services.values()) == verdicts
    for service in twice.state.services.values():
        assert service.folded == 2 * (service.folded - service.repeated_checks)
        service.repeated_checks = 0
        service.folded //= 2
    same_position = snapshot.Snapshot(None, twice.state), snapshot.Snapshot(None, once.state)
    assert snapshot.encode(same_position[0]) == snapshot.encode(same_position[1])


async def test_a_damaged_digest_is_logged_and_skipped(tmp_path: Path) -> None:
    """A digest the file lost bytes of is one decode failure, as a corrupt payload is."""
    store = await SqliteEventStore.open(tmp_path / "events.db", digest=events.check_digest)
    try:
        last = await write_checks(store, 12, seed=10)
        with sqlite3.connect(tmp_path / "events.db") as conn:
            conn.execute(
                "UPDATE events SET digest = substr(digest, 1, 7) WHERE position = "
                "(SELECT MIN(position) FROM events WHERE digest IS NOT NULL)"
            )
        p = projector(store)
        with capture_logs() as logs:
            assert await p.catch_up() == 12
        assert p.position == last
        assert p.decode_failures == 1
        assert [e["error"] for e in logs if e["event"] == "event_decode_failed"] == [
            "check digest is not one this build writes: unpack requires a buffer of 21 bytes"
        ]
    finally:
        await store.close()


async def test_transitions_move_with_every_status_change_and_only_then(
    store: SqliteEventStore,
) -> None:
    """Event by event: the count moves exactly when a service's status or ``since`` changed."""
    await write_checks(store, 200, seed=9)
    p = projector(store)
    changes = 0
    for event in await store.read_all(limit=1000):
        before = p.state.services.get(events.decode_status_changed(event.data).service)
        marker = None if before is None else (before.status, before.since)
        count = p.transitions
        p.handle(event)
        after = p.state.services[events.decode_status_changed(event.data).service]
        moved = marker != (after.status, after.since)
        assert p.transitions == count + moved, event.position
        changes += moved
    assert 10 < changes < 200  # the mix of ups and downs changes status often, not every time


def test_a_dear_snapshot_spaces_the_next_ones_out() -> None:
    """Snapshots keep their configured interval while cheap, and 1 % of the loop when dear."""
    assert snapshot_spacing(60.0, 0.05) == 60.0
    assert snapshot_spacing(60.0, 24.0) == pytest.approx(2400.0)
    assert snapshot_spacing(60.0, 24.0) * SNAPSHOT_BUSY_SHARE == pytest.approx(24.0)
