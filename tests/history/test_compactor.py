"""The compactor on a real SQLite store: rollups written, raw events gone, figures unchanged."""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.kurrentdb_standin import StandInServer
from tests.store.contract import FakeClock
from uptime_daemon import events
from uptime_daemon.clock import SystemClock
from uptime_daemon.config.model import CheckPolicy, Settings
from uptime_daemon.history.compactor import Compactor, oldest_raw
from uptime_daemon.projector import rollup, snapshot
from uptime_daemon.projector.runner import Projector
from uptime_daemon.projector.summary import summarize
from uptime_daemon.results import CheckKind, FailureReason, ProbeResult
from uptime_daemon.status import ServiceState, step
from uptime_daemon.store.kurrentdb import KurrentDBEventStore
from uptime_daemon.store.sqlite import SqliteEventStore
from uptime_daemon.transfer import export_jsonl, import_jsonl

START = datetime(2026, 5, 1, 0, 0, 7, tzinfo=UTC)
POLICY = CheckPolicy(interval_seconds=120, timeout_seconds=5, degraded_after_seconds=0.5)
DAYS = 3
EVERY = 2
"""Minutes between checks."""
CHECKS = DAYS * 1440 // EVERY


@pytest.fixture
def clock() -> FakeClock:
    found = FakeClock()
    found.current = START
    return found


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteEventStore]:
    opened = await SqliteEventStore.open(tmp_path / "events.db", clock_now=clock.now)
    yield opened
    await opened.close()


@pytest.fixture
async def kurrentdb(clock: FakeClock) -> AsyncIterator[KurrentDBEventStore]:
    server = StandInServer()
    await server.start()
    server.log.now = lambda: clock.now().timestamp()
    opened = await KurrentDBEventStore.open(server.url, timeout_seconds=5)
    yield opened
    await opened.close()
    await server.stop()


async def write_days(store: Any, clock: FakeClock, minutes: range, seed: int) -> None:
    """A check a minute of two services (``api`` from two locations, k = 1), outages included."""
    rng = random.Random(seed)
    states: dict[tuple[str, str], ServiceState] = {}
    for minute in minutes[::EVERY]:
        for name, where, of in (
            ("api", "eu", ("eu", "us")),
            ("api", "us", ("eu", "us")),
            ("db", "eu", ()),
        ):
            at = START + timedelta(
                minutes=minute, seconds=rng.uniform(0, 2) + (20 if where == "us" else 0)
            )
            ok = not (600 <= minute % 1440 < 640 and name == "db") and rng.random() > 0.02
            seconds = rng.uniform(0.01, 0.9)
            key = (name, where)
            outcome = step(
                states.get(key, ServiceState.initial()),
                ok=ok,
                response_seconds=seconds,
                at=at,
                policy=POLICY,
            )
            states[key] = outcome.state
            probe = ProbeResult(
                ok=ok, duration_seconds=seconds, failure=None if ok else FailureReason.TIMEOUT
            )
            clock.current = at + timedelta(seconds=seconds)
            event = events.status_changed(
                service=name,
                instance="test",
                location=where,
                kind=CheckKind.HTTP,
                scheduled_at=at,
                completed_at=at,
                outcome=outcome,
                probe=probe,
                interval_seconds=120,
                timeout_seconds=5,
                quorum=1,
                locations=of,
            )
            await store.append(events.stream_name(name), [event])


def new_projector(store: Any, path: Path | None = None) -> Projector:
    return Projector(
        store=store, clock=SystemClock(), default_gap_seconds=lambda _: 125.0, snapshot_path=path
    )


def compactor(store: Any, clock: FakeClock, services: list[str], days: int = 1) -> Compactor:
    settings = Settings.model_validate({"store": {"raw_retention_days": days}})
    return Compactor(
        store=store, now=clock.now, settings=settings, services=lambda: services, ready=lambda: True
    )


def records(projector: Projector) -> dict[str, Any]:
    found = {}
    for name, service in projector.state.services.items():
        encoded = snapshot.encode_record(service)
        encoded.pop("rolledThrough")
        found[name] = encoded
    return found


def figures(projector: Projector, now: datetime) -> list[Any]:
    return [
        summarize(service, now=now, hours=hours)
        for _, service in sorted(projector.state.services.items())
        for hours in (1, 24, 72, 2160)
    ]


async def test_compaction_keeps_every_figure_and_removes_the_raw_events(
    store: SqliteEventStore, clock: FakeClock
) -> None:
    """Two of three days rolled up: replay from zero over rollups + raw equals the raw replay."""
    await write_days(store, clock, range(DAYS * 1440), seed=1)
    now = clock.now() + timedelta(seconds=30)
    before = new_projector(store)
    await before.catch_up()
    raw = len(await store.read_all(stream_prefix="service-uptime-"))

    done = await compactor(store, clock, ["api", "db"]).compact()
    assert {each.service for each in done} == {"api", "db"}
    assert await store.scavenge() > 0.6 * raw  # two days of three: deleted for real
    left = await store.read_all(stream_prefix="service-uptime-")
    assert len(left) < 0.4 * raw
    assert len(await store.read_all(stream_prefix=rollup.ROLLUP_STREAM_PREFIX)) == 2

    after = new_projector(store)
    await after.catch_up()
    assert records(after) == records(before)
    assert figures(after, now) == figures(before, now)

    await before.catch_up()  # the live projection meets the rollups: nothing changes
    assert records(before) == records(after)


async def test_a_snapshot_taken_before_compaction_resumes_exactly(
    store: SqliteEventStore, clock: FakeClock, tmp_path: Path
) -> None:
    """Snapshot mid-history, compaction removes events it had not folded yet, restart: same."""
    await write_days(store, clock, range(1440 + 300), seed=2)
    early = new_projector(store, tmp_path / "snap.json")
    await early.catch_up()
    early.save_snapshot()
    await write_days(store, clock, range(1440 + 300, DAYS * 1440), seed=3)
    await compactor(store, clock, ["api", "db"]).compact()
    await store.scavenge()

    resumed = new_projector(store, tmp_path / "snap.json")
    resumed.load_snapshot()
    assert resumed.position is not None
    await resumed.catch_up()
    whole = new_projector(store)
    await whole.catch_up()
    assert records(resumed) == records(whole)
    assert records(whole)["db"]["folded"] == CHECKS


async def test_compaction_again_and_twice_at_once_writes_each_stretch_once(
    store: SqliteEventStore, clock: FakeClock
) -> None:
    """A second pass with nothing aged is a no-op; two compactors racing write one rollup."""
    await write_days(store, clock, range(DAYS * 1440), seed=4)
    first, second = compactor(store, clock, ["api", "db"]), compactor(store, clock, ["api", "db"])
    await asyncio.gather(first.compact(), second.compact())
    for name in ("api", "db"):  # the same id and expected revision: the second append is a no-op
        assert len(await store.read_stream(rollup.rollup_stream(name))) == 1
    assert await first.compact() == []
    clock.advance(86_400)
    assert {each.service for each in await first.compact()} == {"api", "db"}
    whole = new_projector(store)
    await whole.catch_up()
    rolled = [rollup.decode(e.data) for e in await store.read_stream(rollup.rollup_stream("db"))]
    assert [each.from_revision for each in rolled] == [0, rolled[0].through_revision + 1]
    assert whole.state.services["db"].folded == CHECKS


async def test_on_kurrentdb_truncated_events_still_in_all_are_skipped(
    kurrentdb: KurrentDBEventStore, clock: FakeClock
) -> None:
    """``$tb`` hides the rolled events at once; ``$all`` shows them until a scavenge.

    A replay from zero reads them after the rollups, and skips them.
    """
    await write_days(kurrentdb, clock, range(DAYS * 1440), seed=5)
    before = new_projector(kurrentdb)
    await before.catch_up()
    raw = await kurrentdb.read_stream(events.stream_name("db"))
    await compactor(kurrentdb, clock, ["api", "db"]).compact()
    kept = await kurrentdb.read_stream(events.stream_name("db"))
    assert 0 < len(kept) < 0.4 * len(raw)
    assert kept[-1].revision == raw[-1].revision
    after = new_projector(kurrentdb)
    await after.catch_up()
    assert records(after) == records(before)


async def test_a_compacted_log_exports_and_imports_with_the_same_figures(
    store: SqliteEventStore, clock: FakeClock, tmp_path: Path
) -> None:
    """Streams start past revision 0 after a scavenge: the target renumbers them from 0.

    A second import writes nothing, and the projection over the copy is the same.
    """
    await write_days(store, clock, range(DAYS * 1440), seed=6)
    await compactor(store, clock, ["api", "db"]).compact()
    await store.scavenge()
    source = new_projector(store)
    await source.catch_up()
    exported = io.StringIO()
    await export_jsonl(store, exported)
    lines = exported.getvalue().splitlines()
    assert any('"stream":"system-uptime-rollup-db"' in line for line in lines)
    target = await SqliteEventStore.open(tmp_path / "copy.db")
    try:
        await import_jsonl(target, lines)
        await import_jsonl(target, lines)  # idempotent: same ids, same renumbered revisions
        assert len(await target.read_all()) == len(lines)
        assert (await target.read_stream(events.stream_name("db"), limit=1))[0].revision == 0
        copy = new_projector(target)
        await copy.catch_up()
    finally:
        await target.close()
    assert records(copy) == records(source)


async def test_a_pass_over_services_with_nothing_aged_reads_nothing(
    store: SqliteEventStore, clock: FakeClock
) -> None:
    """A pass costs no store read for a service with nothing old enough.

    The projection knows each service's oldest raw check; those that have aged are still compacted.
    """
    await write_days(store, clock, range(DAYS * 1440), seed=7)
    projector = new_projector(store)
    await projector.catch_up()
    reads: list[str] = []
    original = store.read_stream

    async def counted(stream: str, **kwargs: Any) -> Any:
        reads.append(stream)
        return await original(stream, **kwargs)

    store.read_stream = counted  # type: ignore[method-assign]
    settings = Settings.model_validate({"store": {"raw_retention_days": DAYS + 1}})
    skipping = Compactor(
        store=store,
        now=clock.now,
        settings=settings,
        services=lambda: list(projector.state.services),
        ready=lambda: True,
        oldest_raw=oldest_raw(lambda: projector.state),
    )
    assert await skipping.compact() == []
    assert reads == []  # every service's first check is newer than the cutoff
    skipping.reload(Settings.model_validate({"store": {"raw_retention_days": 1}}))
    assert {each.service for each in await skipping.compact()} == {"api", "db"}
    await projector.catch_up()
    for name in ("api", "db"):
        record = projector.state.services[name]
        assert record.rolled_through is not None
        assert oldest_raw(lambda: projector.state)(name) == record.rolled_through
