"""A probe whose deadline lapsed while the daemon itself was late is inconclusive, never ``down``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.probes.fakes import ManualClock
from uptime_daemon import events
from uptime_daemon.clock import SystemClock
from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.config.model import Settings
from uptime_daemon.loop_lag import LoopLag, overrun_explained
from uptime_daemon.metrics import Metrics
from uptime_daemon.probes import PROBERS
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.http import make_client_session
from uptime_daemon.projector.runner import INCONCLUSIVE, Projector
from uptime_daemon.projector.summary import summarize
from uptime_daemon.results import FailureReason, InconclusiveReason, ProbeResult
from uptime_daemon.runner import CheckRunner
from uptime_daemon.status import Status
from uptime_daemon.store.spool import OutageBuffer, Spool
from uptime_daemon.store.sqlite import SqliteEventStore

# --- the rule ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout_seconds", "lag_seconds", "inconclusive"),
    [
        pytest.param(0.5, 0.0, False, id="free-loop-is-the-targets-timeout"),
        pytest.param(0.5, 0.049, False, id="below-the-50ms-floor"),
        pytest.param(0.5, 0.05, True, id="at-the-50ms-floor"),
        pytest.param(0.1, 0.049, False, id="short-timeout-still-needs-the-floor"),
        pytest.param(5.0, 0.3, False, id="below-a-tenth-of-a-long-timeout"),
        pytest.param(5.0, 0.5, True, id="a-tenth-of-a-long-timeout"),
        pytest.param(0.5, 0.37, True, id="the-issue-run-370ms-of-lag"),
    ],
)
def test_the_rule(timeout_seconds: float, lag_seconds: float, inconclusive: bool) -> None:
    """Lag during the probe of at least max(50 ms, 10 % of its timeout) makes a timeout inconclusive."""
    assert (
        overrun_explained(timeout_seconds=timeout_seconds, lag_seconds=lag_seconds) is inconclusive
    )


# --- the lag counter --------------------------------------------------------------------------------


def test_lag_is_the_lateness_of_each_wake_including_the_stall_under_way() -> None:
    clock = ManualClock()
    lag = LoopLag(clock.monotonic, period_seconds=0.05)
    assert lag.cumulative_seconds() == 0.0  # not started: nothing is overdue
    lag.woke(clock.monotonic())
    clock.advance(0.05)
    lag.woke(clock.monotonic())  # on time
    assert lag.cumulative_seconds() == 0.0
    clock.advance(0.35)  # a stall: due at +0.05, still not woken at +0.35
    during = lag.cumulative_seconds()
    assert during == pytest.approx(0.3)
    lag.woke(clock.monotonic())  # the wake books exactly what was already reported
    assert lag.cumulative_seconds() == pytest.approx(during)
    clock.advance(0.06)
    lag.woke(clock.monotonic())
    assert lag.cumulative_seconds() == pytest.approx(0.31)
    assert lag.wakes == 3


async def test_the_monitor_sees_a_blocked_loop() -> None:
    lag = LoopLag(time.monotonic, period_seconds=0.02)
    task = asyncio.create_task(lag.run())
    try:
        await asyncio.sleep(0)  # let the monitor take its first reading
        before = lag.cumulative_seconds()
        time.sleep(0.2)  # noqa: ASYNC251 - the overload under test: the loop itself is blocked
        assert lag.cumulative_seconds() - before >= 0.15
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# --- the runner ---------------------------------------------------------------------------------------

TIMEOUT_SECONDS = 0.5


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    opened = await SqliteEventStore.open(tmp_path / "e.db")
    yield opened
    await opened.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_client_session() as client:
        yield client


@pytest.fixture
async def lag() -> AsyncIterator[LoopLag]:
    monitor = LoopLag(time.monotonic)
    task = asyncio.create_task(monitor.run())
    await asyncio.sleep(0)
    yield monitor
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    opened = await Spool.open(tmp_path / "spool.db", max_events=100)
    yield opened
    await opened.close()


def settings_for(url: str) -> Settings:
    return settings_from_mapping(
        {
            "services": {
                "web": {
                    "kind": "http",
                    "url": url,
                    "interval_seconds": 5,
                    "timeout_seconds": TIMEOUT_SECONDS,
                    "failures_before_down": 1,
                }
            }
        },
        source="test",
        environ={},
    )


def runner_for(
    url: str,
    store: SqliteEventStore,
    spool: Spool,
    session: aiohttp.ClientSession,
    lag: LoopLag,
) -> CheckRunner:
    clock = SystemClock()
    return CheckRunner(
        settings=settings_for(url),
        store=store,
        appender=OutageBuffer(store, spool),
        probers=PROBERS,
        context=ProbeContext(
            session=session, clock=clock, store=store, self_base_url="http://127.0.0.1:9"
        ),
        clock=clock,
        lag=lag,
    )


@pytest.fixture
async def healthy(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    """Answers in 0.1 s, well inside the 0.5 s deadline, whenever the loop lets it."""

    async def handler(_: web.Request) -> web.Response:
        await asyncio.sleep(0.1)  # the target's own response time, not a wait for a condition
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    server: TestServer = await aiohttp_server(app)
    return server


async def test_a_deadline_lapsed_in_our_own_stall_is_inconclusive_not_down(
    healthy: TestServer,
    store: SqliteEventStore,
    spool: Spool,
    session: aiohttp.ClientSession,
    lag: LoopLag,
) -> None:
    """The loop is blocked for 0.7 s mid-probe: the healthy target's answer could not be read.

    With ``failures_before_down = 1`` a timeout would make the service ``down`` at once; the check
    is stored as ``ServiceCheckInconclusive`` instead, and the status machine is not stepped.
    """
    runner = runner_for(str(healthy.make_url("/")), store, spool, session, lag)
    first = await runner.run_check("web")
    assert first.outcome.status is Status.UP
    asyncio.get_running_loop().call_later(0.05, time.sleep, 0.7)  # the overload itself
    report = await runner.run_check("web")
    assert report.result.failure is FailureReason.TIMEOUT
    assert report.inconclusive is InconclusiveReason.DAEMON_OVERLOADED
    assert report.lag_seconds >= 0.6
    assert (report.outcome.status, report.outcome.changed) == (Status.UP, False)
    assert report.event_type == events.EVENT_TYPE_CHECK_INCONCLUSIVE
    stored = await store.read_stream("service-uptime-web")
    assert [e.type for e in stored] == [
        events.EVENT_TYPE_STREAM_CREATED,
        events.EVENT_TYPE_STATUS_CHANGED,
        events.EVENT_TYPE_CHECK_INCONCLUSIVE,
    ]
    data = orjson.loads(stored[-1].data)
    assert "status" not in data
    assert "changed" not in data
    assert data["inconclusive"]["reason"] == "daemon_overloaded"
    assert data["inconclusive"]["lagMs"] >= 600
    assert data["probe"]["reason"] == "timeout"
    decoded = events.decode_check_inconclusive(stored[-1].data)
    assert (decoded.reason, decoded.probe_reason) == (
        InconclusiveReason.DAEMON_OVERLOADED,
        FailureReason.TIMEOUT,
    )
    # The projection: no time, no transition, and the newest check says why.
    for fold in ("catch_up", "handle"):
        projector = Projector(store=store, clock=SystemClock(), default_gap_seconds=lambda _: 15.0)
        if fold == "catch_up":
            await projector.catch_up()
        else:
            for event in stored:
                projector.handle(event)
        assert projector.decode_failures == 0
        assert projector.state.services["web"].status is Status.UP
        counted = summarize(
            projector.state.services["web"], now=decoded.timestamp + timedelta(seconds=1), hours=1
        ).checks
        assert (counted.total, counted.up, counted.inconclusive) == (1, 1, 1)  # shown apart
        last = projector.last_probe["web"]
        assert last.reason == INCONCLUSIVE
        assert "daemon_overloaded" in last.detail
    # The next check, on a free loop, continues the machine where the inconclusive one left it.
    after = await runner.run_check("web")
    assert (after.outcome.status, after.outcome.changed, after.inconclusive) == (
        Status.UP,
        False,
        None,
    )


async def test_a_restart_skips_inconclusive_checks(
    healthy: TestServer,
    store: SqliteEventStore,
    spool: Spool,
    session: aiohttp.ClientSession,
    lag: LoopLag,
) -> None:
    """Restored from a log ending in an inconclusive check, the machine resumes the verdict before it."""
    url = str(healthy.make_url("/"))
    before = runner_for(url, store, spool, session, lag)
    await before.run_check("web")
    asyncio.get_running_loop().call_later(0.05, time.sleep, 0.7)  # the overload itself
    assert (await before.run_check("web")).inconclusive is not None
    after = runner_for(url, store, spool, session, lag)
    await after.prepare("web")
    report = await after.run_check("web")
    assert (report.outcome.previous_status, report.outcome.changed) == (Status.UP, False)


async def test_a_hanging_target_on_a_free_loop_still_times_out(
    store: SqliteEventStore,
    spool: Spool,
    session: aiohttp.ClientSession,
    lag: LoopLag,
) -> None:
    """The control: the same deadline against a target that accepts and never answers is ``down``."""

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        runner = runner_for(f"http://127.0.0.1:{port}/", store, spool, session, lag)
        report = await runner.run_check("web")
    finally:
        server.close()
        await server.wait_closed()
    assert report.result.failure is FailureReason.TIMEOUT
    assert report.inconclusive is None
    assert report.lag_seconds < 0.05
    assert report.outcome.status is Status.DOWN
    assert report.event_type == events.EVENT_TYPE_STATUS_CHANGED


# --- metrics ------------------------------------------------------------------------------------------


def test_inconclusive_checks_are_counted_apart_from_failures() -> None:
    metrics = Metrics(CollectorRegistry(), version="test")
    timed_out = ProbeResult(ok=False, duration_seconds=0.8, failure=FailureReason.TIMEOUT)
    metrics.observe_probe(
        "web",
        "http",
        timed_out,
        changed_to=None,
        inconclusive=InconclusiveReason.DAEMON_OVERLOADED,
    )
    metrics.count_skipped_run()
    metrics.count_missed_run()

    def sample(name: str, **labels: str) -> float | None:
        found = metrics.registry.get_sample_value(name, labels)
        if found is not None:
            return found
        text = b"".join(
            metrics.services.pieces(openmetrics=False)
        ).decode()  # the per-service series
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return float(s.value)
        return None

    assert sample("uptime_checks_inconclusive_total", reason="daemon_overloaded") == 1
    assert sample("uptime_checks_inconclusive_total", reason="shed") == 2
    assert sample("uptime_scheduler_skipped_runs_total") == 1
    assert sample("uptime_probes_total", service="web", kind="http", result="inconclusive") == 1
    assert sample("uptime_probes_total", service="web", kind="http", result="timeout") is None


async def test_a_verdict_of_the_same_slot_is_never_dropped_as_a_duplicate(tmp_path: Path) -> None:
    """An HA partner (or this daemon after a restart) that concluded on the slot is still stored.

    Replicas write one slot's verdict under one id so it counts once; an inconclusive check of the
    slot must not take that id, or the verdict that follows would be dropped as its duplicate.
    """
    from datetime import UTC, datetime  # noqa: PLC0415

    from uptime_daemon.config.model import CheckPolicy  # noqa: PLC0415
    from uptime_daemon.results import CheckKind  # noqa: PLC0415
    from uptime_daemon.status import INITIAL, step  # noqa: PLC0415

    slot = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    done = datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC)
    timed_out = ProbeResult(
        ok=False, duration_seconds=0.9, failure=FailureReason.TIMEOUT, detail=""
    )
    answered = ProbeResult(ok=True, duration_seconds=0.1, detail="200 OK")
    common = {
        "service": "web",
        "instance": "a",
        "location": "default",
        "kind": CheckKind.HTTP,
        "scheduled_at": slot,
        "completed_at": done,
        "interval_seconds": 30,
        "timeout_seconds": 0.5,
    }
    outcome = step(INITIAL, ok=True, response_seconds=0.1, at=done, policy=CheckPolicy())
    verdict = events.status_changed(**common, outcome=outcome, probe=answered)  # type: ignore[arg-type]
    nothing = events.status_changed(
        **common,  # type: ignore[arg-type]
        outcome=outcome,  # not stored: an inconclusive check has none
        probe=timed_out,
        inconclusive=(InconclusiveReason.DAEMON_OVERLOADED, 0.4),
    )
    assert nothing.id != verdict.id
    store = await SqliteEventStore.open(tmp_path / "e.db")
    try:
        for event in (nothing, nothing, verdict):  # the inconclusive one retried, then the verdict
            await store.append("service-uptime-web", [event])
        stored = await store.read_stream("service-uptime-web")
    finally:
        await store.close()
    assert [e.type for e in stored] == ["ServiceCheckInconclusive", "ServiceStatusChanged"]
