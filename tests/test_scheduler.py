"""The scheduler: first runs at start, no pile-up behind a hanging target, bounded stop, reload."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from tests.polling import until
from uptime_daemon.clock import EPOCH, SystemClock
from uptime_daemon.config.model import CheckPolicy, HttpService, SchedulerSettings
from uptime_daemon.scheduler import (
    TALLY_SECONDS,
    CheckScheduler,
    GridTrigger,
    Tally,
    grid_phase_seconds,
    on_tick,
)

FAST = CheckPolicy(interval_seconds=0.05, timeout_seconds=0.05)


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


async def test_a_hanging_check_never_piles_up(caplog: pytest.LogCaptureFixture) -> None:
    """While one run hangs, later runs of that service are skipped: at most one in flight.

    Each skip is counted; the log says so once per ``TALLY_SECONDS``, and APScheduler's own line
    for each skip is not passed on (a storm of skips must not become a storm of log lines).
    """
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

    skips: list[int] = []
    s = scheduler(run, {"hang": FAST}, on_skip=lambda: skips.append(1))
    caplog.set_level(logging.WARNING)
    s.start()
    try:
        with capture_logs() as logs:
            await until(lambda: s.skipped_runs >= 5)
        assert peak["hang"] == 1
        assert s.inflight == 1
        assert len(skips) >= 5  # what uptime_scheduler_skipped_runs_total counts
        said = [e for e in logs if e["event"] == "check_skipped_still_running"]
        assert len(said) == 1  # the first at once; the next only TALLY_SECONDS later
        assert (said[0]["service"], said[0]["count"]) == ("hang", 1)
        assert not [r for r in caplog.records if r.name.startswith("apscheduler")]
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


def test_grid_trigger_never_drifts_however_the_jitter_falls() -> None:
    """Run k is in [phase + k × interval, + jitter): jitter never accumulates into the period."""
    phase = datetime(2026, 1, 1, tzinfo=UTC)
    trigger = GridTrigger(phase=phase, interval_seconds=60, jitter_seconds=1, rng=random.Random(7))
    fire = trigger.get_next_fire_time(None, phase - timedelta(seconds=30))
    for k in range(1000):
        assert fire is not None
        offset = (fire - phase).total_seconds() - 60 * k
        assert 0 <= offset < 1, (k, offset)
        fire = trigger.get_next_fire_time(fire, fire)


def test_grid_trigger_moves_on_from_a_run_exactly_on_its_grid_point() -> None:
    """Float and microsecond rounding must never schedule the same slot twice."""
    phase = datetime(2026, 1, 1, tzinfo=UTC)
    trigger = GridTrigger(
        phase=phase, interval_seconds=0.05, jitter_seconds=0, rng=random.Random(1)
    )
    fires = [phase]
    for _ in range(2000):
        nxt = trigger.get_next_fire_time(fires[-1], fires[-1])
        assert nxt is not None
        fires.append(nxt)
    gaps = {round((b - a).total_seconds(), 4) for a, b in itertools.pairwise(fires)}
    assert gaps == {0.05}


async def test_steady_state_runs_are_spread_over_the_interval() -> None:
    """After the first runs, services fire evenly across each interval, not in a start-up burst."""
    starts: list[float] = []

    async def run(_name: str, _at: datetime) -> None:
        starts.append(time.monotonic())

    services = {f"s{i}": CheckPolicy(interval_seconds=1, timeout_seconds=1) for i in range(200)}
    s = scheduler(run, services)  # 200 first runs spread over only 0.4 s (500 a second)
    began = time.monotonic()
    s.start()
    try:
        await until(lambda: bool(starts) and starts[-1] - began > 3.2, within=15)
    finally:
        await s.stop(1)
    steady = [t - began for t in starts if 1.2 <= t - began < 3.2]  # two whole seconds
    bins = Counter(int((t % 1) * 10) for t in steady)
    assert len(steady) >= 300
    assert min(bins.get(b, 0) for b in range(10)) >= len(steady) / 10 / 3, bins


def test_on_tick_moves_a_moment_on_to_the_next_multiple_of_the_tick_exactly() -> None:
    tick = timedelta(milliseconds=50)
    on_grid = EPOCH + timedelta(days=20_000, milliseconds=350)
    assert on_tick(on_grid, tick) == on_grid
    assert on_tick(on_grid + timedelta(microseconds=1), tick) == on_grid + tick
    assert on_tick(on_grid - timedelta(microseconds=1), tick) == on_grid
    assert on_tick(on_grid + timedelta(microseconds=1), timedelta(0)) == on_grid + timedelta(
        microseconds=1
    )


def test_a_ticked_trigger_fires_on_the_tick_grid_inside_its_slot() -> None:
    """Every fire is a multiple of the tick, at most one tick after slot + jitter, and its slot's."""
    phase = EPOCH + timedelta(seconds=1_780_000_000.123457)  # off any tick
    trigger = GridTrigger(
        phase=phase,
        interval_seconds=60,
        jitter_seconds=1,
        tick_seconds=0.05,
        rng=random.Random(11),
    )
    fire = trigger.get_next_fire_time(None, phase + timedelta(seconds=30))
    for k in range(1, 2000):
        assert fire is not None
        slot = phase + timedelta(seconds=60 * k)
        assert (fire - EPOCH) % timedelta(milliseconds=50) == timedelta(0), fire
        assert slot <= fire < slot + timedelta(seconds=1.05), (k, fire)
        assert trigger.slot_of(fire) == slot
        fire = trigger.get_next_fire_time(fire, fire)


def test_jitter_and_tick_must_leave_room_in_the_interval() -> None:
    with pytest.raises(ValueError, match="less than the interval"):
        GridTrigger(
            phase=EPOCH,
            interval_seconds=1,
            jitter_seconds=0.5,
            tick_seconds=0.5,
            rng=random.Random(1),
        )


async def _run_until(
    run: Callable[[str, datetime], Awaitable[None]],
    services: dict[str, CheckPolicy],
    settings: SchedulerSettings,
    done: Callable[[], bool],
) -> None:
    """A real scheduler of ``services``, started and stopped once ``done``."""
    s = CheckScheduler(run=run, settings=settings, services=services, clock=SystemClock())
    s.start()
    try:
        await until(done, within=15)
    finally:
        await s.stop(1)


async def test_runs_due_close_together_start_together_on_the_tick() -> None:
    """The point of the tick: runs of many services share a wake-up instead of one each.

    Without it, runs start at uniformly random instants (about 40 % within 40 ms after a multiple
    of 100 ms); with a 100 ms tick nearly all do, unless the loop itself is that late. Each
    service's first run is left out: the start-up spread is not on ticks (see the next test).
    """
    starts: list[float] = []
    seen: set[str] = set()

    async def run(name: str, _at: datetime) -> None:
        if name in seen:
            starts.append(time.time())
        seen.add(name)

    services = {f"s{i}": CheckPolicy(interval_seconds=2, timeout_seconds=1) for i in range(100)}
    settings = SchedulerSettings(jitter_seconds=0.2, tick_seconds=0.1)
    await _run_until(run, services, settings, lambda: len(starts) >= 200)
    after_tick = [(t * 1000) % 100 for t in starts]
    assert sum(ms < 40 for ms in after_tick) >= 0.9 * len(starts), sorted(after_tick)


async def test_first_runs_keep_their_start_up_spread_off_the_ticks() -> None:
    """A burst of first connections is what a small server drops: they stay spread, not ticked.

    200 first runs spread over 0.4 s (500 a second) with a 0.5 s tick: on ticks they would all
    start in one or two wake-ups; spread, they fill most 10 ms steps of those 0.4 s.
    """
    starts: list[float] = []

    async def run(_name: str, _at: datetime) -> None:
        starts.append(time.monotonic())

    services = {f"s{i}": CheckPolicy(interval_seconds=60, timeout_seconds=1) for i in range(200)}
    settings = SchedulerSettings(jitter_seconds=0, tick_seconds=0.5)
    await _run_until(run, services, settings, lambda: len(starts) >= 200)
    steps = {int((t - min(starts)) * 100) for t in starts}
    assert len(steps) >= 15, sorted(steps)


def test_grid_phase_comes_from_the_name_and_spreads_services() -> None:
    """The phase is a function of the name (every replica agrees) and fills the interval evenly."""
    assert grid_phase_seconds("api", 60) == grid_phase_seconds("api", 60)
    assert grid_phase_seconds("api", 60) != grid_phase_seconds("web", 60)
    phases = [grid_phase_seconds(f"s{i}", 60) for i in range(6000)]
    assert all(0 <= p < 60 for p in phases)
    per_ten_seconds = Counter(int(p // 10) for p in phases)
    assert sorted(per_ten_seconds) == list(range(6))
    assert max(per_ten_seconds.values()) < 1.15 * 1000  # ~1000 each: no clumping


def test_a_run_is_labelled_with_its_slot_not_its_jittered_time() -> None:
    """A jittered run maps back to its grid point; the off-grid first run to the slot just passed."""
    phase = datetime(2026, 1, 1, tzinfo=UTC)
    trigger = GridTrigger(phase=phase, interval_seconds=60, jitter_seconds=5, rng=random.Random(3))
    fire = trigger.get_next_fire_time(None, phase + timedelta(seconds=61))
    for k in range(2, 500):
        assert fire is not None
        assert trigger.slot_of(fire) == phase + timedelta(seconds=60 * k)
        fire = trigger.get_next_fire_time(fire, fire)
    first_at_start = phase + timedelta(seconds=60 * 7 + 42.5)
    assert trigger.slot_of(first_at_start) == phase + timedelta(seconds=60 * 7)


async def test_replicas_label_their_checks_with_the_same_slots() -> None:
    """Two schedulers (two replicas, different jitter draws, started apart) agree on every slot."""
    policy = CheckPolicy(interval_seconds=0.2, timeout_seconds=0.1)
    services = dict.fromkeys(("api", "web", "db"), policy)
    seen: list[set[tuple[str, datetime]]] = [set(), set()]

    def recorder(index: int) -> Callable[[str, datetime], Awaitable[None]]:
        async def run(name: str, slot: datetime) -> None:
            seen[index].add((name, slot))

        return run

    settings = SchedulerSettings(jitter_seconds=0.01)
    replicas = [
        CheckScheduler(
            run=recorder(i),
            settings=settings,
            services=services,
            clock=SystemClock(),
            rng=random.Random(i),
        )
        for i in range(2)
    ]
    replicas[0].start()
    await until(lambda: len(seen[0]) >= 3)
    replicas[1].start()
    try:
        await until(lambda: len(seen[0] & seen[1]) >= 15, within=15)
    finally:
        for replica in replicas:
            await replica.stop(1)
    for name, slot in seen[0] | seen[1]:
        offset = (slot - EPOCH).total_seconds() - grid_phase_seconds(name, 0.2)
        assert abs(offset / 0.2 - round(offset / 0.2)) < 1e-3, (name, slot)


def _http(host: str, path: str) -> HttpService:
    return HttpService.model_validate({"kind": "http", "url": f"http://{host}/{path}"})


def test_the_start_up_spread_is_sized_to_the_busiest_host_and_the_slots() -> None:
    """First runs never offer a host more than its slots get through (50 ms a probe assumed)."""
    one_host = {f"s{i}": _http("shared.example:8080", f"s{i}") for i in range(1000)}
    many_hosts = {f"s{i}": _http(f"h{i}.example", "") for i in range(1000)}

    def spread(services: dict[str, HttpService], **settings: float) -> float:
        return CheckScheduler(
            run=lambda *_: None,  # type: ignore[arg-type]
            settings=SchedulerSettings(jitter_seconds=1.0, **settings),
            services=services,
            clock=SystemClock(),
        ).start_up_spread_seconds

    assert spread(many_hosts) == 1000 / 500  # the overall cap alone
    assert spread(one_host) == 1000 / (16 * 20)  # 16 slots on the shared host
    assert spread(one_host, per_host_concurrency=4) == 1000 / (4 * 20)
    assert spread(many_hosts, max_concurrency=10) == 1000 / (10 * 20)
    assert spread({"a": _http("x", "")}) == 1.0  # never less than the jitter


def test_a_tally_says_how_often_and_to_whom_at_most_once_per_period() -> None:
    clock = [100.0]
    tally = Tally("check_shed_too_late", lambda: clock[0])
    with capture_logs() as logs:
        tally.note("a")  # the first is said at once
        for i in range(50):
            clock[0] += TALLY_SECONDS / 100
            tally.note(f"s{i % 7}")
        clock[0] += TALLY_SECONDS  # the next one after a whole period says all since the last
        tally.note("z")
    said = [(e["count"], e["services"], e["since_seconds"]) for e in logs]
    assert said == [
        (1, ["a"], None),
        (51, ["s0", "s1", "s2", "s3", "s4"], round(TALLY_SECONDS * 1.5, 1)),
    ]
    assert all(e["log_level"] == "warning" for e in logs)
