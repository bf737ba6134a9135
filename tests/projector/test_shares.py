"""A log folded in shares by service, put together, is the log folded whole (``replay`` splits it).

On a real SQLite store holding what a replay meets: checks of several services, one of them from
two locations, rollups of compacted days, a maintenance window, and a corrupt event.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.history.test_compactor import START, compactor, new_projector, write_days
from tests.projector.test_runner import write_checks
from tests.store.contract import FakeClock
from uptime_daemon import maintenance
from uptime_daemon.projector import rollup, snapshot
from uptime_daemon.projector.runner import Projector, Share
from uptime_daemon.store import NewEvent
from uptime_daemon.store.sqlite import SqliteEventStore

DAYS = 2


async def _write_log(path: Path) -> None:
    clock = FakeClock()
    clock.current = START
    opened = await SqliteEventStore.open(path, clock_now=clock.now)
    try:
        await write_days(opened, clock, range(DAYS * 1440), seed=5)
        assert await compactor(opened, clock, ["api", "db"]).compact()
        await write_checks(opened, 60, seed=8, start=START + timedelta(days=DAYS))
        window = maintenance.Window(
            id="upgrade",
            services=frozenset({"a", "db"}),
            start=START + timedelta(days=DAYS, hours=1),
            end=START + timedelta(days=DAYS, hours=2),
            cron=None,
            duration=None,
            timezone="UTC",
            reason="upgrade",
            source="api",
            declared_at=START,
            declared_by="test",
        )
        await opened.append(maintenance.STREAM, [maintenance.scheduled(window)])
        corrupt = NewEvent(id=uuid.uuid4(), type="ServiceStatusChanged", data=b"{oops")
        await opened.append("service-uptime-b", [corrupt])
        await write_checks(opened, 30, seed=9, start=START + timedelta(days=DAYS, hours=3))
    finally:
        await opened.close()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The log, written once for the module (the tests only read it)."""
    path = tmp_path_factory.mktemp("shares") / "events.db"
    asyncio.run(_write_log(path))
    return path


@pytest.fixture
async def store(written: Path) -> AsyncIterator[SqliteEventStore]:
    opened = await SqliteEventStore.open(written)
    yield opened
    await opened.close()


def encoded(projector: Projector) -> bytes:
    return snapshot.encode(snapshot.Snapshot(projector.position, projector.state))


async def folded_in(store: SqliteEventStore, of: int, page_size: int) -> tuple[Projector, int]:
    """The shares folded one after the other, put together as ``split_replay`` does."""
    whole = new_projector(store)
    folded = 0
    for index in range(of):
        part = new_projector(store)
        folded += await part.catch_up(page_size, share=Share(index, of))
        assert part.position == (await store.read_all())[-1].position  # every row passed over
        whole.state.services |= part.state.services
        whole.decode_failures += part.decode_failures
        if index == 0:
            whole.state.maintenance = part.state.maintenance
            whole.position = part.position
    return whole, folded


@pytest.mark.parametrize("of", [2, 3])
@pytest.mark.parametrize("page_size", [7, 10_000])
async def test_the_shares_put_together_are_the_whole_log(
    store: SqliteEventStore, of: int, page_size: int
) -> None:
    whole = new_projector(store)
    with capture_logs():
        expected = await whole.catch_up(page_size)
        shared, folded = await folded_in(store, of, page_size)
    assert folded == expected
    assert shared.decode_failures == whole.decode_failures == 1
    assert encoded(shared) == encoded(whole)
    assert shared.state.maintenance.windows  # the window came through share 0


async def test_each_share_folds_only_its_services(store: SqliteEventStore) -> None:
    owners: dict[str, int] = {}
    for index in range(2):
        part = new_projector(store)
        with capture_logs():
            await part.catch_up(share=Share(index, 2))
        for name in part.state.services:
            assert name not in owners
            owners[name] = index
        assert bool(part.state.maintenance.windows) == (index == 0)
    assert set(owners) == {"api", "db", "a", "b", "c"}
    assert set(owners.values()) == {0, 1}  # these names do fall in both shares


def test_a_service_its_rollups_and_its_stream_creation_share_a_part() -> None:
    for name in ("api", "db", "a", "b", "c", "x-y", "ünï"):
        stream, rolled = f"service-uptime-{name}", rollup.rollup_stream(name)
        assert [Share(i, 3).holds(stream) for i in range(3)].count(True) == 1
        assert [Share(i, 3).holds(rolled) for i in range(3)] == [
            Share(i, 3).holds(stream) for i in range(3)
        ]
    assert Share(0, 2).holds(maintenance.STREAM)
    assert not Share(1, 2).holds(maintenance.STREAM)


@pytest.mark.parametrize(("index", "of"), [(2, 2), (-1, 2), (0, 0)])
def test_a_share_outside_its_count_is_refused(index: int, of: int) -> None:
    with pytest.raises(ValueError, match="needs 0 <= index < of"):
        Share(index, of)


async def test_a_share_is_not_folded_with_listeners(tmp_path: Path) -> None:
    store = await SqliteEventStore.open(tmp_path / "events.db")
    projector = new_projector(store)
    projector.add_listener(lambda _change: None)
    try:
        with pytest.raises(ValueError, match="without listeners"):
            await projector.catch_up(share=Share(0, 2))
    finally:
        await store.close()
