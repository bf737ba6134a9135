"""The scheduler: first runs at start, no pile-up behind a hanging target, bounded stop, reload."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

import pytest
from structlog.testing import capture_logs

from uptime_daemon.clock import SystemClock
from uptime_daemon.config.model import CheckPolicy, SchedulerSettings
from uptime_daemon.scheduler import CheckScheduler

FAST = CheckPolicy(interval_seconds=0.05, timeout_seconds=0.05)


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Poll ``condition`` until true or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.01)


def scheduler(
    run: Callable[[str, datetime], object], services: dict[str, CheckPolicy], **kw: object
) -> CheckScheduler:
    return CheckScheduler(
        run=run,  # type: ignore[arg-type]
        settings=SchedulerSettings(jitter_seconds=0.0),
        services=services,
        clock=SystemClock(),
        **kw,  # type: ignore[arg-type]
    )


async def test_every_service_runs_soon_after_start() -> None:
    """First runs happen at start, not one interval later."""
    calls: Counter[str] = Counter()

    async def run(name: str, _: datetime) -> None:
        calls[name] += 1

    s = scheduler(
        run, {"a": CheckPolicy(interval_seconds=3600), "b": CheckPolicy(interval_seconds=3600)}
    )
    s.start()
    try:
        await until(lambda: calls["a"] >= 1 and calls["b"] >= 1, within=5)
    finally:
        await s.stop(1)


async def test_a_hanging_check_never_piles_up() -> None:
    """While one run hangs, later runs of that service are skipped: at most one in flight."""
    in_flight = Counter[str]()
    peak = Counter[str]()
    release = asyncio.Event()

    async def run(name: str, _: datetime) -> None:
        in_flight[name] += 1
        peak[name] = max(peak[name], in_flight[name])
        try:
            await release.wait()
        finally:
            in_flight[name] -= 1

    s = scheduler(run, {"hang": FAST})
    s.start()
    try:
        await until(lambda: s.skipped_runs >= 5)
        assert peak["hang"] == 1
        assert s.inflight == 1
    finally:
        release.set()
        await s.stop(1)


async def test_stop_waits_for_quick_checks_and_cancels_stuck_ones() -> None:
    """A bounded stop: finished checks complete, a stuck one is cancelled at the bound."""
    outcome: dict[str, str] = {}
    started = asyncio.Event()

    async def run(name: str, _: datetime) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome[name] = "cancelled"
            raise

    s = scheduler(run, {"stuck": CheckPolicy(interval_seconds=3600)})
    s.start()
    await asyncio.wait_for(started.wait(), 5)
    begun = time.monotonic()
    with capture_logs() as logs:
        await s.stop(0.2)
    assert 0.2 <= time.monotonic() - begun < 2
    assert outcome == {"stuck": "cancelled"}
    assert any(e["event"] == "scheduler_stopped" and e["cancelled_checks"] == 1 for e in logs)


async def test_lateness_is_reported() -> None:
    """Every run reports how late it started (never negative)."""
    lateness: list[float] = []
    ran = asyncio.Event()

    async def run(_: str, __: datetime) -> None:
        ran.set()

    s = scheduler(run, {"a": CheckPolicy(interval_seconds=3600)}, on_lateness=lateness.append)
    s.start()
    try:
        await asyncio.wait_for(ran.wait(), 5)
    finally:
        await s.stop(1)
    assert lateness
    assert all(0 <= value < 5 for value in lateness)


async def test_a_crashing_check_is_logged_and_the_others_go_on() -> None:
    """A bug in one check is logged with its traceback; other services keep running."""
    calls: Counter[str] = Counter()

    async def run(name: str, _: datetime) -> None:
        calls[name] += 1
        if name == "bad":
            raise RuntimeError("boom")

    s = scheduler(run, {"bad": FAST, "good": FAST})
    with capture_logs() as logs:
        s.start()
        try:
            await until(lambda: calls["good"] >= 3 and calls["bad"] >= 3)
        finally:
            await s.stop(1)
    assert any(e["event"] == "check_crashed" and e["service"] == "bad" for e in logs)


async def test_reschedule_adds_and_removes_services() -> None:
    """After a reload, a removed service stops running and a new one starts."""
    calls: Counter[str] = Counter()

    async def run(name: str, _: datetime) -> None:
        calls[name] += 1

    s = scheduler(run, {"old": FAST})
    s.start()
    try:
        await until(lambda: calls["old"] >= 2)
        s.reschedule({"new": FAST})
        await until(lambda: calls["new"] >= 2)
        frozen = calls["old"]
        await until(lambda: calls["new"] >= 6)
        assert calls["old"] <= frozen + 1  # at most one run that was already due
    finally:
        await s.stop(1)
