"""One check end to end on the real store: probe → status → event → append."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from tests.probes.fakes import ManualClock
from uptime_daemon.clock import Clock, SystemClock
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
        store: SqliteEventStore,
        settings: Settings | None = None,
        *,
        spool_max_events: int = 100,
        clock: Clock | None = None,
    ) -> CheckRunner:
        clock = clock or SystemClock()
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
    statuses = [(await runner.run_check("web")).outcome.status]
    target.state["code"] = 500  # type: ignore[attr-defined]
    statuses += [(await runner.run_check("web")).outcome.status for _ in range(2)]
    target.state["code"] = 200  # type: ignore[attr-defined]
    statuses.append((await runner.run_check("web")).outcome.status)
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
            pending = await fresh.run_check("web")  # a new service's first failure: no verdict
            await fresh.run_check("web")  # confirmed: down from its start
    finally:
        await other.close()
    changes = [
        (e["log_level"], e["status"], e["previous_status"])
        for e in logs
        if e["event"] == "service_status_changed"
    ]
    assert changes == [("info", "up", None), ("warning", "down", "up"), ("warning", "down", None)]
    assert pending.outcome.status is None
    assert pending.event.type == "ServiceCheckPending"


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


def policy_settings(target: TestServer, location: str = "default", **policy: object) -> Settings:
    """One service ``web`` at ``target`` (5 s interval and timeout: credible for 15 s)."""
    service = {"kind": "http", "url": str(target.make_url("/")), "interval_seconds": 5, **policy}
    return settings_from_mapping(
        {"location": location, "services": {"web": service}}, source="test", environ={}
    )


async def _checks(
    runner: CheckRunner, target: TestServer, clock: ManualClock, codes: list[int]
) -> list[str]:
    """One check per HTTP status, 5 s apart on the clock; the statuses they concluded."""
    statuses = []
    for code in codes:
        clock.wall += timedelta(seconds=5)
        target.state["code"] = code  # type: ignore[attr-defined]
        status = (await runner.run_check("web")).outcome.status
        statuses.append("pending" if status is None else status.value)
    return statuses


async def test_a_success_before_a_restart_counts_towards_recovery(
    store: SqliteEventStore, target: TestServer, runners: RunnerFactory
) -> None:
    """Down, one good probe, restart: with successes_before_up = 2 the next good probe is the second."""
    clock = ManualClock()
    settings = policy_settings(target, successes_before_up=2, failures_before_down=1)
    before = await runners(store, settings, clock=clock)
    assert await _checks(before, target, clock, [500, 200]) == ["down", "down"]
    after = await runners(store, settings, clock=clock)
    assert await _checks(after, target, clock, [200]) == ["up"]
    (event,) = await store.read_stream("service-uptime-web", backwards=True, limit=1)
    stored = orjson.loads(event.data)
    assert (stored["previousStatus"], stored["status"], stored["changed"]) == ("down", "up", True)


async def test_a_failure_before_a_restart_counts_towards_the_outage(
    store: SqliteEventStore, target: TestServer, runners: RunnerFactory
) -> None:
    """Up, one failed probe, restart: with failures_before_down = 2 the next failure is the second."""
    clock = ManualClock()
    settings = policy_settings(target, failures_before_down=2)
    before = await runners(store, settings, clock=clock)
    assert await _checks(before, target, clock, [200, 500]) == ["up", "up"]
    after = await runners(store, settings, clock=clock)
    assert await _checks(after, target, clock, [500]) == ["down"]


async def test_a_streak_does_not_carry_across_unknown_time(
    store: SqliteEventStore, target: TestServer, runners: RunnerFactory
) -> None:
    """Stopped for longer than 2 × interval + timeout: the good probe before the stop no longer counts.

    The projector counts that time as unknown; the target may have failed and recovered meanwhile.
    """
    clock = ManualClock()
    settings = policy_settings(target, successes_before_up=2, failures_before_down=1)
    before = await runners(store, settings, clock=clock)
    assert await _checks(before, target, clock, [500, 200]) == ["down", "down"]
    clock.wall += timedelta(seconds=11)
    after = await runners(store, settings, clock=clock)
    await after.prepare("web")  # restored at start-up 11 s after the last check: still credible
    # ... but the first check completes 16 s after it, past the 15 s: that is what counts.
    assert await _checks(after, target, clock, [200, 200]) == ["down", "up"]


async def test_only_this_locations_checks_make_its_streak(
    store: SqliteEventStore, target: TestServer, runners: RunnerFactory
) -> None:
    """Another location's newer failures in the same stream do not reset this location's recovery."""
    clock = ManualClock()
    both = {"successes_before_up": 2, "failures_before_down": 1, "locations": ["eu", "us"]}
    eu = policy_settings(target, "eu", **both)
    us = policy_settings(target, "us", **both)
    eu_before = await runners(store, eu, clock=clock)
    assert await _checks(eu_before, target, clock, [500, 200]) == ["down", "down"]
    us_runner = await runners(store, us, clock=clock)
    assert await _checks(us_runner, target, clock, [500, 500]) == ["down", "down"]
    eu_after = await runners(store, eu, clock=clock)
    assert await _checks(eu_after, target, clock, [200]) == ["up"]


async def test_a_pending_count_survives_a_restart(
    store: SqliteEventStore, target: TestServer, runners: RunnerFactory
) -> None:
    """A new service's first failure is stored as pending; after a restart the next one confirms."""
    clock = ManualClock()
    settings = policy_settings(target, failures_before_down=2)
    before = await runners(store, settings, clock=clock)
    assert await _checks(before, target, clock, [500]) == ["pending"]
    (event,) = await store.read_stream("service-uptime-web", backwards=True, limit=1)
    assert event.type == "ServiceCheckPending"
    stored = orjson.loads(event.data)
    assert "status" not in stored
    assert stored["pending"] == {"failures": 1, "of": 2}
    assert stored["probe"]["reason"] == "http_status"
    after = await runners(store, settings, clock=clock)
    assert await _checks(after, target, clock, [500]) == ["down"]
    (event,) = await store.read_stream("service-uptime-web", backwards=True, limit=1)
    stored = orjson.loads(event.data)
    assert (stored["previousStatus"], stored["status"], stored["changed"]) == (None, "down", True)


async def test_a_busy_host_makes_probes_wait_for_a_slot_never_time_out(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    store: SqliteEventStore,
    runners: RunnerFactory,
) -> None:
    """Ten services on one host with per_host_concurrency = 2: at most two requests at once there.

    Each is answered in 0.3 s against a 0.5 s timeout, so all ten succeed although the last ones
    waited about a second for their slot; the wait is reported apart from the response time.
    """
    now_serving = 0
    most = 0

    async def slow(_: web.Request) -> web.Response:
        nonlocal now_serving, most
        now_serving += 1
        most = max(most, now_serving)
        try:
            await asyncio.sleep(0.3)  # the target's own response time, not a wait for a condition
            return web.Response(text="ok")
        finally:
            now_serving -= 1

    app = web.Application()
    app.router.add_get("/{name}", slow)
    server = await aiohttp_server(app)
    names = [f"s{i}" for i in range(10)]
    settings = settings_from_mapping(
        {
            "scheduler": {"per_host_concurrency": 2},
            "services": {
                name: {
                    "kind": "http",
                    "url": str(server.make_url(f"/{name}")),
                    "interval_seconds": 5,
                    "timeout_seconds": 0.5,
                }
                for name in names
            },
        },
        source="test",
        environ={},
    )
    runner = await runners(store, settings)
    reports = await asyncio.gather(*(runner.run_check(name) for name in names))
    assert most == 2
    assert [r.result.failure for r in reports] == [None] * 10
    assert all(r.result.duration_seconds < 0.5 for r in reports)
    waits = sorted(r.slot_wait_seconds for r in reports)
    assert waits[0] < 0.1
    assert waits[-1] > 0.8  # the last pair waited for four pairs before it
