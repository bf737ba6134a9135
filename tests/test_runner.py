"""One check end to end on the real store: probe → status → event → append."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
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

    async def handler(_: web.Request) -> web.Response:
        return web.Response(status=state["code"], text="ok")

    app.router.add_get("/", handler)
    server = await aiohttp_server(app)
    server.state = state  # type: ignore[attr-defined]
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


async def runner_for(
    settings: Settings, store: SqliteEventStore, session: aiohttp.ClientSession, spool_dir: Path
) -> CheckRunner:
    clock = SystemClock()
    context = ProbeContext(
        session=session, clock=clock, store=store, self_base_url="http://127.0.0.1:9"
    )
    spool = await Spool.open(spool_dir / f"spool-{uuid.uuid4().hex}.db", max_events=100)
    return CheckRunner(
        settings=settings,
        store=store,
        appender=OutageBuffer(store, spool),
        probers=PROBERS,
        context=context,
        clock=clock,
    )


async def test_first_check_creates_the_stream_then_appends_the_seed_event(
    tmp_path: Path, target: TestServer, session: aiohttp.ClientSession
) -> None:
    """StreamCreated once, then a ServiceStatusChanged whose stored JSON has the seed fields first."""
    store = await SqliteEventStore.open(tmp_path / "e.db")
    try:
        runner = await runner_for(settings_for(target), store, session, tmp_path)
        report = await runner.run_check("web")
        await runner.run_check("web")
        events = await store.read_stream("service-uptime-web")
    finally:
        await store.close()
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
    tmp_path: Path, target: TestServer, session: aiohttp.ClientSession
) -> None:
    """A re-run for the same scheduled time maps to the same event id: stored once."""
    store = await SqliteEventStore.open(tmp_path / "e.db")
    try:
        runner = await runner_for(settings_for(target), store, session, tmp_path)
        at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
        first = await runner.run_check("web", at)
        second = await runner.run_check("web", at)
        events = await store.read_stream("service-uptime-web")
    finally:
        await store.close()
    assert first.position == second.position
    assert len(events) == 2


async def test_restart_continues_the_streak(
    tmp_path: Path, target: TestServer, session: aiohttp.ClientSession
) -> None:
    """A new runner on the same store restores the status: no false transition after a restart."""
    settings = settings_for(target)
    store = await SqliteEventStore.open(tmp_path / "e.db")
    try:
        await (await runner_for(settings, store, session, tmp_path)).run_check("web")
        after_restart = await (await runner_for(settings, store, session, tmp_path)).run_check(
            "web"
        )
    finally:
        await store.close()
    assert after_restart.outcome.changed is False
    assert after_restart.outcome.previous_status is not None
    assert after_restart.outcome.streak_seconds > 0


async def test_down_after_two_failures_then_up(
    tmp_path: Path, target: TestServer, session: aiohttp.ClientSession
) -> None:
    """The stored statuses follow the status machine as the target fails and recovers."""
    store = await SqliteEventStore.open(tmp_path / "e.db")
    try:
        runner = await runner_for(settings_for(target), store, session, tmp_path)
        statuses = [(await runner.run_check("web")).outcome.status.value]
        target.state["code"] = 500  # type: ignore[attr-defined]
        statuses += [(await runner.run_check("web")).outcome.status.value for _ in range(2)]
        target.state["code"] = 200  # type: ignore[attr-defined]
        statuses.append((await runner.run_check("web")).outcome.status.value)
    finally:
        await store.close()
    assert statuses == ["up", "up", "down", "up"]


async def test_an_unreachable_store_spools_the_event(
    tmp_path: Path, target: TestServer, session: aiohttp.ClientSession
) -> None:
    """With the store gone, the check still runs and its event waits in the outage spool."""
    store = await SqliteEventStore.open(tmp_path / "e.db")
    runner = await runner_for(settings_for(target), store, session, tmp_path)
    await store.close()
    with capture_logs() as logs:
        report = await runner.run_check("web")
    assert report.result.ok
    assert report.position is None
    assert report.spooled is True
    assert report.store_error is None
    assert any(e["event"] == "store_unavailable_spooling" for e in logs)


async def test_status_changes_warn_only_when_on_call_should_look(
    tmp_path: Path, target: TestServer, session: aiohttp.ClientSession
) -> None:
    """A first 'up' is info (10,000 services starting are not 10,000 warnings); down is a warning."""
    store = await SqliteEventStore.open(tmp_path / "e.db")
    other = await SqliteEventStore.open(tmp_path / "other.db")
    runner = await runner_for(settings_for(target), store, session, tmp_path)
    fresh = await runner_for(settings_for(target), other, session, tmp_path)
    try:
        with capture_logs() as logs:
            await runner.run_check("web")  # first status: up
            target.state["code"] = 500  # type: ignore[attr-defined]
            await runner.run_check("web")
            await runner.run_check("web")  # second failure in a row: down
            await fresh.run_check("web")  # a service that is down from its first check
    finally:
        await store.close()
        await other.close()
    changes = [
        (e["log_level"], e["status"], e["previous_status"])
        for e in logs
        if e["event"] == "service_status_changed"
    ]
    assert changes == [("info", "up", None), ("warning", "down", "up"), ("warning", "down", None)]
