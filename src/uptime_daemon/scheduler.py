"""Start checks on time with APScheduler, never let a slow target pile up probes, stop in bounded time.

One interval job per service (``max_instances=1``, ``coalesce``, jitter, a misfire grace of one
interval). First runs are staggered so thousands of services do not fire in one instant, yet a small
config sees its first results within a second. Each run is our own tracked task behind a global
semaphore: APScheduler's executor cannot wait for coroutines on shutdown, so we do.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from uptime_daemon.clock import Clock
from uptime_daemon.config.model import CheckPolicy, SchedulerSettings

log = structlog.get_logger(__name__)

RunCheck = Callable[[str, datetime], Awaitable[object]]
"""``run(service_name, scheduled_at)``: the scheduler's only view of what a check does."""

FIRST_RUNS_PER_SECOND: Final = 500
"""Start-up spread: at most about this many first runs per second."""
MAX_JITTER_FRACTION: Final = 0.1
"""Jitter never exceeds this share of a service's interval, so short intervals stay regular."""


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
        rng: random.Random | None = None,
    ) -> None:
        """Prepare jobs; nothing fires before ``start``."""
        self._run = run
        self._settings = settings
        self._services = dict(services)
        self._clock = clock
        self._on_lateness = on_lateness
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._submitted: dict[str, datetime] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._stopped = False
        self.skipped_runs = 0
        """Runs not started because the previous run of that service was still going."""

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
        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=asyncio.get_running_loop())
        scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)
        self._scheduler = scheduler
        now = self._clock.now()
        for name, policy in self._services.items():
            self._add_job(name, policy, now)
        scheduler.start()
        log.info("scheduler_started", services=len(self._services))

    def _spread_seconds(self) -> float:
        return max(self._settings.jitter_seconds, len(self._services) / FIRST_RUNS_PER_SECOND)

    def _add_job(self, name: str, policy: CheckPolicy, now: datetime) -> None:
        assert self._scheduler is not None  # noqa: S101 - only called after start()
        interval = policy.interval_seconds
        first = now + timedelta(seconds=self._rng.uniform(0, min(interval, self._spread_seconds())))
        self._scheduler.add_job(
            self._fire,
            # Explicit: left to itself, APScheduler derives the first run from start_date when the
            # scheduler starts, and a start_date that has just slipped into the past yields
            # start_date + interval, silently skipping the first check.
            next_run_time=first,
            trigger=IntervalTrigger(
                seconds=interval,
                start_date=first,
                jitter=min(self._settings.jitter_seconds, interval * MAX_JITTER_FRACTION) or None,
                timezone=UTC,
            ),
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
        for name in old.keys() - services.keys():
            self._scheduler.remove_job(name)
        for name, policy in services.items():
            previous = old.get(name)
            if previous is None or previous.interval_seconds != policy.interval_seconds:
                self._add_job(name, policy, now)
        log.info("scheduler_rescheduled", services=len(services))

    def _on_submitted(self, event: JobSubmissionEvent) -> None:
        """Remember when the run was due; the job itself cannot see it."""
        self._submitted[event.job_id] = event.scheduled_run_times[-1]

    def _on_skipped(self, event: JobSubmissionEvent) -> None:
        """A run was due while the previous one still ran: count it, drop it (no pile-up)."""
        self.skipped_runs += 1
        self._submitted.pop(event.job_id, None)
        log.info("check_skipped_still_running", service=event.job_id)

    async def _fire(self, name: str) -> None:
        started = self._clock.now()
        scheduled = self._submitted.pop(name, started)
        lateness = max(0.0, (started - scheduled).total_seconds())
        if self._on_lateness is not None:
            self._on_lateness(lateness)
        task = asyncio.create_task(self._guarded(name, scheduled), name=f"check-{name}")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        # Shielded: APScheduler cancels its job coroutines on shutdown; our bounded stop decides.
        await asyncio.shield(task)  # keeps the job "running", so max_instances=1 stops pile-ups

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
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        pending: set[Any] = set(self._inflight)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=timeout_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        log.info("scheduler_stopped", cancelled_checks=len(pending))
