"""One check end to end on the real store: probe → status → event → append."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from uptime_daemon.clock import SystemClock
from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.config.model import Settings
from uptime_daemon.probes import PROBERS
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.http import make_client_session
from uptime_daemon.runner import CheckRunner
from uptime_daemon.store.spool import OutageBuffer, Spool
from uptime_daemon.store.sqlite import SqliteEventStore

SEED_KEYS = ["serviceName", "status", "timestamp", "duration", "metadata", "eventId"]


@pytest.fixture
async def target(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    app = web.Application()
    state = {"code": 200}
    server: TestServer

    async def handler(_: web.Request) -> web.Response:
        server.requests += 1  # type: ignore[attr-defined]
        return web.Response(status=state["code"], text="ok")

    app.router.add_get("/", handler)
    server = await aiohttp_server(app)
    server.state = state  # type: ignore[attr-defined]
    server.requests = 0  # type: ignore[attr-defined]
    return server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_client_session() as client:
        yield client


def settings_for(target: TestServer) -> Settings:
    return settings_from_mapping(
        {
            "services": {
                "web": {"kind": "http", "url": str(target.make_url("/")), "interval_seconds": 5}
            }
        },
        source="test",
        environ={},
    )


RunnerFactory = Callable[..., Awaitable[CheckRunner]]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    opened = await SqliteEventStore.open(tmp_path / "e.db")
    yield opened
    await opened.close()


@pytest.fixture
async def runners(
    tmp_path: Path, target: TestServer, session: aiohttp.ClientSession
) -> AsyncIterator[RunnerFactory]:
    """Build check runners on a store, each with its own outage spool (closed at the end)."""
    spools: list[Spool] = []

    async def make(
        store: SqliteEventStore, settings: Settings | None = None, *, spool_max_events: int = 100
    ) -> CheckRunner:
        clock = SystemClock()
        context = ProbeContext(
            session=session, clock=clock, store=store, self_base_url="http://127.0.0.1:9"
        )
        spool = await Spool.open(tmp_path / f"spool-{len(spools)}.db", max_events=spool_max_events)
        spools.append(spool)
        return CheckRunner(
            settings=settings or settings_for(target),
            store=store,
            appender=OutageBuffer(store, spool),
            probers=PROBERS,
            context=context,
            clock=clock,
        )

    yield make
    for spool in spools:
        await spool.close()


async def test_first_check_creates_the_stream_then_appends_the_seed_event(
    store: SqliteEventStore, runners: RunnerFactory
) -> None:
    """StreamCreated once, then a ServiceStatusChanged whose stored JSON has the seed fields first."""
    runner = await runners(store)
    report = await runner.run_check("web")
    await runner.run_check("web")
    events = await store.read_stream("service-uptime-web")
    assert [e.type for e in events] == [
        "StreamCreated",
        "ServiceStatusChanged",
        "ServiceStatusChanged",
    ]
    stored = orjson.loads(events[1].data)
    assert list(stored)[:6] == SEED_KEYS
    assert stored == dict(report.payload)
    assert stored["status"] == "up"
    assert stored["changed"] is True
    assert stored["probe"]["httpStatus"] == 200
    assert orjson.loads(events[2].data)["previousStatus"] == "up"


async def test_retrying_the_same_scheduled_check_does_not_double_count(
    store: SqliteEventStore, runners: RunnerFactory
) -> None:
    """A re-run for the same scheduled time maps to the same event id: stored once."""
    runner = await runners(store)
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    first = await runner.run_check("web", at)
    second = await runner.run_check("web", at)
    events = await store.read_stream("service-uptime-web")
    assert first.position == second.position
    assert len(events) == 2


async def test_restart_continues_the_streak(
    store: SqliteEventStore, runners: RunnerFactory
) -> None:
    """A new runner on the same store restores the status: no false transition after a restart."""
    await (await runners(store)).run_check("web")
    after_restart = await (await runners(store)).run_check("web")
    assert after_restart.outcome.changed is False
    assert after_restart.outcome.previous_status is not None
    assert after_restart.outcome.streak_seconds > 0


async def test_down_after_two_failures_then_up(
    store: SqliteEventStore, target: TestServer, runners: RunnerFactory
) -> None:
    """The stored statuses follow the status machine as the target fails and recovers."""
    runner = await runners(store)
    statuses = [(await runner.run_check("web")).outcome.status.value]
    target.state["code"] = 500  # type: ignore[attr-defined]
    statuses += [(await runner.run_check("web")).outcome.status.value for _ in range(2)]
    target.state["code"] = 200  # type: ignore[attr-defined]
    statuses.append((await runner.run_check("web")).outcome.status.value)
    assert statuses == ["up", "up", "down", "up"]


async def test_an_unreachable_store_spools_the_event(
    store: SqliteEventStore, runners: RunnerFactory
) -> None:
    """With the store gone, the check still runs and its event waits in the outage spool."""
    runner = await runners(store)
    await store.close()
    with capture_logs() as logs:
        report = await runner.run_check("web")
    assert report.result.ok
    assert report.position is None
    assert report.spooled is True
    assert report.store_error is None
    assert any(e["event"] == "store_unavailable_spooling" for e in logs)


async def test_a_full_spool_reports_the_event_dropped(
    store: SqliteEventStore, runners: RunnerFactory
) -> None:
    """Store unreachable and spool full: the check says its event was dropped, not spooled."""
    runner = await runners(store, spool_max_events=1)
    await runner.prepare("web")
    await store.close()
    kept = await runner.run_check("web")
    dropped = await runner.run_check("web")
    assert kept.spooled is True
    assert kept.store_error is None
    assert dropped.result.ok
    assert dropped.spooled is False
    assert dropped.position is None
    assert dropped.store_error is not None
    assert "dropped" in dropped.store_error


async def test_status_changes_warn_only_when_on_call_should_look(
    tmp_path: Path, store: SqliteEventStore, target: TestServer, runners: RunnerFactory
) -> None:
    """A first 'up' is info (10,000 services starting are not 10,000 warnings); down is a warning."""
    other = await SqliteEventStore.open(tmp_path / "other.db")
    runner = await runners(store)
    fresh = await runners(other)
    try:
        with capture_logs() as logs:
            await runner.run_check("web")  # first status: up
            target.state["code"] = 500  # type: ignore[attr-defined]
            await runner.run_check("web")
            await runner.run_check("web")  # second failure in a row: down
            await fresh.run_check("web")  # a service that is down from its first check
    finally:
        await other.close()
    changes = [
        (e["log_level"], e["status"], e["previous_status"])
        for e in logs
        if e["event"] == "service_status_changed"
    ]
    assert changes == [("info", "up", None), ("warning", "down", "up"), ("warning", "down", None)]


async def test_a_slot_already_stored_is_not_probed_again(
    store: SqliteEventStore, runners: RunnerFactory, target: TestServer
) -> None:
    """After a restart or a takeover the first run's slot may be stored already: no probe.

    No event either; the next slot is checked as usual.
    """
    slot = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    first = await runners(store)
    assert await first.run_slot("web", slot) is not None
    requests_before = target.requests  # type: ignore[attr-defined]
    taken_over = await runners(store)
    assert await taken_over.run_slot("web", slot) is None
    assert target.requests == requests_before  # type: ignore[attr-defined]
    assert await taken_over.run_slot("web", slot + timedelta(seconds=5)) is not None
    stored = [
        e for e in await store.read_stream("service-uptime-web") if e.type == "ServiceStatusChanged"
    ]
    assert len(stored) == 2
