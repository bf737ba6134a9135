"""Start checks on time with APScheduler, never let a slow target pile up probes, stop in bounded time.

One job per service (``max_instances=1``, ``coalesce``, jitter, a misfire grace of one interval).
Each service runs on its own fixed grid of *slots*, ``epoch + phase + k × interval``, with its phase
derived from a hash of its name: every replica of a location computes the same slots, so they
label a check of one slot with the same ``scheduledAt`` and the same event id (DESIGN §9), while
10,000 services at 60 s still spread into a steady ~167 runs/s. A run fires at its slot plus a
fresh jitter that never accumulates (APScheduler's ``IntervalTrigger`` adds the interval to the
previous, jittered, run time: its grid drifts by half the jitter per run); the check is labelled
with its slot, not with the jittered time. The first run of each service still comes at start,
spread over a short window so a small config sees its first results within a second; it is a
late run of the service's latest slot. Runs start on a coarse grid of *ticks* (``tick_seconds``,
50 ms by default): the runs that fall due within one tick start together, so the daemon wakes
once per tick for all of them (and their probes, appends and projection batch alike) rather than
once per run; each run is still labelled with its slot. The first runs at start are not put on
ticks: their spread is sized so that no host gets a burst of connections (a small server's listen
backlog drops one, and the probe then waits a second for the SYN's retry). Each run is our own tracked task behind a global
semaphore: APScheduler's executor cannot wait for coroutines on shutdown, so we do.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog
from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from uptime_daemon.clock import EPOCH, MICROSECOND, Clock, from_micros, to_micros
from uptime_daemon.config.model import CheckPolicy, SchedulerSettings

log = structlog.get_logger(__name__)

RunCheck = Callable[[str, datetime], Awaitable[object]]
"""``run(service_name, slot)``: the scheduler's only view of what a check does."""


FIRST_RUNS_PER_SECOND: Final = 500
"""Start-up spread: at most about this many first runs per second."""
PROBES_PER_SLOT_SECOND: Final = 20
"""Start-up spread: what one concurrency slot is assumed to get through per second (a 50 ms
probe). The first round offers a host about ``per_host_concurrency`` × this many checks a second,
and the whole daemon ``max_concurrency`` × this many, so the probes of the first round queue
briefly for their slots rather than all at once."""
GRID_TOLERANCE: Final = 1e-3
"""Share of an interval by which a run may sit below its grid point and still count as on it."""
TALLY_SECONDS: Final = 10.0
"""Skipped or shed runs are logged at most this often (each line with how many, and to whom)."""
TALLY_SERVICES: Final = 5
"""... naming at most this many services (the first ones since the last line)."""
MAX_JITTER_FRACTION: Final = 0.1
"""Jitter never exceeds this share of a service's interval, so short intervals stay regular."""
MAX_TICK_FRACTION: Final = 0.05
"""A service's tick never exceeds this share of its interval: jitter and tick together stay well
inside one interval, so a run always finds its own slot."""


def on_tick(moment: datetime, tick: timedelta) -> datetime:
    """``moment``, or the first multiple of ``tick`` since the epoch after it (exact, in µs)."""
    step = tick // MICROSECOND
    if step <= 0:
        return moment
    return from_micros(-(-to_micros(moment) // step) * step)


def grid_phase_seconds(service: str, interval_seconds: float) -> float:
    """Where in its interval a service's slots fall, from a hash of its name (not random).

    The same on every replica and across restarts; uniform over the interval, so services spread.
    """
    digest = hashlib.blake2b(service.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * interval_seconds


def _not_ours_twice(record: logging.LogRecord) -> bool:
    """Drop APScheduler's own line for a skipped or missed run: ``Tally`` says it, counted."""
    message = str(record.msg)
    return not (message.startswith('Execution of job "%s" skipped') or " was missed by " in message)


APSCHEDULER_LOGGERS: Final = ("apscheduler.scheduler", "apscheduler.executors.default")
"""Where APScheduler reports each skipped (max instances) and missed (misfire) run."""


class Tally:
    """A warning said at most once per ``every_seconds``: how often it happened since, and to whom.

    Skipped and shed runs come in storms exactly when the daemon is behind (hundreds a second); a
    line each would spend the CPU it lacks on logging. The counters stay exact
    (``uptime_scheduler_skipped_runs_total``, ``uptime_checks_inconclusive_total{reason="shed"}``);
    the log says that it happens, how often, and to whom.
    """

    __slots__ = ("_count", "_event", "_every", "_monotonic", "_said_at", "_services")

    def __init__(
        self, event: str, monotonic: Callable[[], float], *, every_seconds: float = TALLY_SECONDS
    ) -> None:
        """Nothing is said before the first ``note``, which is said at once."""
        self._event = event
        self._monotonic = monotonic
        self._every = every_seconds
        self._said_at: float | None = None
        self._count = 0
        self._services: list[str] = []

    def note(self, service: str) -> None:
        """One more occurrence, for ``service``: said now if the last line is old enough."""
        self._count += 1
        if len(self._services) < TALLY_SERVICES and service not in self._services:
            self._services.append(service)
        now = self._monotonic()
        if self._said_at is not None and now - self._said_at < self._every:
            return
        log.warning(
            self._event,
            service=self._services[0],
            services=self._services,
            count=self._count,
            since_seconds=None if self._said_at is None else round(now - self._said_at, 1),
        )
        self._said_at, self._count, self._services = now, 0, []


class GridTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """Fires at ``phase + k × interval`` plus a fresh jitter in ``[0, jitter)``, never drifting.

    With a ``tick``, each fire time is moved on to the next multiple of it since the epoch, so runs
    of many services due close together share one wake-up.
    """

    __slots__ = ("_interval", "_jitter", "_phase", "_rng", "_tick")

    def __init__(
        self,
        *,
        phase: datetime,
        interval_seconds: float,
        jitter_seconds: float,
        rng: random.Random,
        tick_seconds: float = 0.0,
    ) -> None:
        """Jitter and tick must add up to less than the interval (the scheduler caps them)."""
        if not (jitter_seconds >= 0 and 0 <= tick_seconds < interval_seconds - jitter_seconds):
            msg = (
                f"jitter {jitter_seconds} s and tick {tick_seconds} s must add up to less than "
                f"the interval {interval_seconds} s"
            )
            raise ValueError(msg)
        self._phase = phase
        self._interval = interval_seconds
        self._jitter = jitter_seconds
        self._rng = rng
        self._tick = timedelta(seconds=tick_seconds)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """The grid point after the previous run's (which may be jittered or off the grid), or now."""
        if previous_fire_time is None:
            slot = math.ceil((now - self._phase).total_seconds() / self._interval)
        else:
            # The jitter is below one interval, so flooring finds the slot the previous run was in;
            # the tolerance keeps a run exactly on its grid point (float and microsecond rounding)
            # from landing one slot early and being scheduled again.
            elapsed = (previous_fire_time - self._phase).total_seconds()
            slot = math.floor(elapsed / self._interval + GRID_TOLERANCE) + 1
        jitter = self._rng.uniform(0, self._jitter) if self._jitter else 0
        return on_tick(self._slot_time(slot) + timedelta(seconds=jitter), self._tick)

    def slot_of(self, fire_time: datetime) -> datetime:
        """The slot a run fired at ``fire_time`` belongs to: the latest grid point at or before it.

        A jittered run finds its own slot (the jitter is below a tenth of the interval); the
        off-grid first run at start finds the slot that just passed.
        """
        elapsed = (fire_time - self._phase).total_seconds()
        return self._slot_time(math.floor(elapsed / self._interval + GRID_TOLERANCE))

    def _slot_time(self, slot: int) -> datetime:
        """Grid point ``slot``: one expression, so every replica rounds it alike."""
        return self._phase + timedelta(seconds=slot * self._interval)

    def __repr__(self) -> str:
        """How APScheduler names the trigger in its logs."""
        tick = self._tick.total_seconds()
        return (
            f"GridTrigger(interval={self._interval:g}s, jitter={self._jitter:g}s, tick={tick:g}s)"
        )


class CheckScheduler:
    """Fires ``run`` for each service on its interval."""

    def __init__(
        self,
        *,
        run: RunCheck,
        settings: SchedulerSettings,
        services: Mapping[str, CheckPolicy],
        clock: Clock,
        on_lateness: Callable[[float], None] | None = None,
        on_skip: Callable[[], None] | None = None,
        on_missed: Callable[[], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Prepare jobs; nothing fires before ``start``."""
        self._run = run
        self._settings = settings
        self._services = dict(services)
        self._clock = clock
        self._on_lateness = on_lateness
        self._on_skip = on_skip
        self._on_missed = on_missed
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._submitted: dict[str, datetime] = {}
        self._triggers: dict[str, GridTrigger] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._stopped = False
        self.skipped_runs = 0
        """Runs not started because the previous run of that service was still going."""
        self.missed_runs = 0
        """Runs not started because the daemon came to them later than their misfire grace."""
        self._skips = Tally("check_skipped_still_running", clock.monotonic)
        self._sheds = Tally("check_shed_too_late", clock.monotonic)

    @property
    def running(self) -> bool:
        """Whether jobs are being fired."""
        return self._scheduler is not None and bool(self._scheduler.running)

    @property
    def inflight(self) -> int:
        """Checks currently running."""
        return len(self._inflight)

    def start(self) -> None:
        """Schedule every service; first runs are spread over a short start-up window."""
        for name in APSCHEDULER_LOGGERS:  # idempotent: a filter is added once
            logging.getLogger(name).addFilter(_not_ours_twice)
        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=asyncio.get_running_loop())
        scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)
        scheduler.add_listener(self._on_missed_run, EVENT_JOB_MISSED)
        self._scheduler = scheduler
        now = self._clock.now()
        spread = self.start_up_spread_seconds
        for name, policy in self._services.items():
            self._add_job(name, policy, now, spread)
        scheduler.start()
        log.info("scheduler_started", services=len(self._services))

    @property
    def start_up_spread_seconds(self) -> float:
        """How long the first runs are spread over (each service's at most its interval).

        At most ``FIRST_RUNS_PER_SECOND`` a second overall, at most what ``max_concurrency`` slots
        get through, and for the busiest host at most what its ``per_host_concurrency`` slots do.
        """
        settings = self._settings
        per_host: dict[str, int] = {}
        for policy in self._services.values():
            if (host := getattr(policy, "host_key", None)) is not None:
                per_host[host] = per_host.get(host, 0) + 1
        busiest = max(per_host.values(), default=0)
        return max(
            settings.jitter_seconds,
            len(self._services) / FIRST_RUNS_PER_SECOND,
            len(self._services) / (settings.max_concurrency * PROBES_PER_SLOT_SECOND),
            busiest / (settings.per_host_concurrency * PROBES_PER_SLOT_SECOND),
        )

    def _add_job(self, name: str, policy: CheckPolicy, now: datetime, spread: float) -> None:
        assert self._scheduler is not None  # noqa: S101 - only called after start()
        interval = policy.interval_seconds
        tick = min(self._settings.tick_seconds, interval * MAX_TICK_FRACTION)
        first = now + timedelta(seconds=self._rng.uniform(0, min(interval, spread)))
        trigger = self._triggers[name] = GridTrigger(
            phase=EPOCH + timedelta(seconds=grid_phase_seconds(name, interval)),
            interval_seconds=interval,
            jitter_seconds=min(self._settings.jitter_seconds, interval * MAX_JITTER_FRACTION),
            rng=self._rng,
            tick_seconds=tick,
        )
        self._scheduler.add_job(
            self._fire,
            # Explicit: without it APScheduler derives the first run from the trigger, one grid
            # step away; the first check should come at start.
            next_run_time=first,  # not on a tick: the start-up spread is sized for the hosts
            trigger=trigger,
            args=(name,),
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, round(interval)),
            replace_existing=True,
        )

    def reschedule(self, services: Mapping[str, CheckPolicy]) -> None:
        """Apply a reloaded service set: add new jobs, drop removed ones, re-time changed ones."""
        old = self._services
        self._services = dict(services)
        if self._scheduler is None:
            return
        now = self._clock.now()
        spread = self.start_up_spread_seconds
        for name in old.keys() - services.keys():
            self._scheduler.remove_job(name)
            self._triggers.pop(name, None)
        for name, policy in services.items():
            previous = old.get(name)
            if previous is None or previous.interval_seconds != policy.interval_seconds:
                self._add_job(name, policy, now, spread)
        log.info("scheduler_rescheduled", services=len(services))

    def _on_submitted(self, event: JobSubmissionEvent) -> None:
        """Remember when the run was due; the job itself cannot see it."""
        self._submitted[event.job_id] = event.scheduled_run_times[-1]

    def _on_skipped(self, event: JobSubmissionEvent) -> None:
        """A run was due while the previous one still ran: count it, drop it (no pile-up)."""
        self.skipped_runs += 1
        self._submitted.pop(event.job_id, None)
        if self._on_skip is not None:
            self._on_skip()
        self._skips.note(event.job_id)

    def _on_missed_run(self, event: JobEvent) -> None:
        """A run came due longer ago than its misfire grace: the daemon was that late; shed it."""
        self.missed_runs += 1
        if self._on_missed is not None:
            self._on_missed()
        self._sheds.note(event.job_id)

    async def _fire(self, name: str) -> None:
        started = self._clock.now()
        scheduled = self._submitted.pop(name, started)
        lateness = max(0.0, (started - scheduled).total_seconds())
        if self._on_lateness is not None:
            self._on_lateness(lateness)
        trigger = self._triggers.get(name)
        slot = scheduled if trigger is None else trigger.slot_of(scheduled)
        task = asyncio.create_task(self._guarded(name, slot), name=f"check-{name}")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        # Shielded: APScheduler cancels its job coroutines on shutdown; our bounded stop decides.
        try:
            await asyncio.shield(task)  # keeps the job "running", so max_instances=1 stops pile-ups
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                return  # our stop gave up on this check (logged there), not a failed job
            raise

    async def _guarded(self, name: str, scheduled: datetime) -> None:
        async with self._semaphore:
            try:
                await self._run(name, scheduled)
            except Exception:  # a bug of ours in one check must not stop the others
                log.exception("check_crashed", service=name)

    async def stop(self, timeout_seconds: float) -> None:
        """Stop firing, let in-flight checks finish for up to ``timeout_seconds``, cancel the rest.

        Idempotent: the serve loop stops the scheduler early (while the server can still answer
        self-probes) and the cleanup context calls it again.
        """
        if self._stopped:
            return
        self._stopped = True
        scheduler = (
            self._scheduler if self._scheduler is not None and self._scheduler.running else None
        )
        if scheduler is not None:
            scheduler.pause()  # no new runs; the jobs of running checks stay alive until they end
        pending: set[Any] = set(self._inflight)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=timeout_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.sleep(0)  # let the jobs see their checks end before APScheduler goes
        if scheduler is not None:
            scheduler.shutdown(wait=False)  # nothing left for it to cancel (and log as an error)
        log.info("scheduler_stopped", cancelled_checks=len(pending))
