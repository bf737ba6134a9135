"""The composition root: every part of one daemon, built from ``Settings`` and started in order.

Each long-lived resource has one aiohttp cleanup context, in dependency order — this daemon's files
(locks) → store → outage spool → projector → checks (HTTP client session, check runner,
scheduler) — and aiohttp tears them down in reverse: the scheduler stops first (in-flight checks
finish, bounded), then the session, the projector folds what they wrote and saves its snapshot, the
spool flushes what it can, the store closes, completing queued appends, and the file locks go
last. Nothing starts until the app's start-up runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from typing import Final

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, disable_created_metrics

from uptime_daemon import __version__
from uptime_daemon.alerting import channels
from uptime_daemon.alerting.heartbeat import Heartbeat
from uptime_daemon.alerting.message import Delivery, Message
from uptime_daemon.alerting.notifier import Notifier
from uptime_daemon.api import create_web_app
from uptime_daemon.api.keys import (
    CLOCK,
    HEALTH,
    PROJECTOR,
    RUN_CHECKS,
    SETTINGS,
    SPOOL,
    STARTED,
    STORE,
    SUMMARY_CACHE,
    CheckOutcome,
    Started,
)
from uptime_daemon.api.metrics_endpoint import METRICS_SOURCES
from uptime_daemon.api.summary_cache import SummaryCache
from uptime_daemon.clock import Clock, SystemClock
from uptime_daemon.cluster import Membership
from uptime_daemon.config.live import LiveSettings
from uptime_daemon.config.model import NotificationChannel, Settings
from uptime_daemon.daemon.build import (
    database_path,
    new_projector,
    notifier_path,
    open_store,
    snapshot_path,
    spool_path,
)
from uptime_daemon.daemon.declared import DeclaredWindows
from uptime_daemon.daemon.exclusive import exclusive
from uptime_daemon.daemon.health import ComponentHealth
from uptime_daemon.daemon.reload import Reloader
from uptime_daemon.daemon.sharing import Sharing
from uptime_daemon.daemon.supervisor import Supervisor
from uptime_daemon.errors import EventStoreError, EventStoreUnavailable
from uptime_daemon.history.compactor import Compactor, oldest_raw
from uptime_daemon.loop_lag import LoopLag
from uptime_daemon.metrics import Metrics
from uptime_daemon.probes import PROBERS
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.database import connection_test
from uptime_daemon.probes.session import make_client_session
from uptime_daemon.projector.collector import ProjectionCollector
from uptime_daemon.redact import redact
from uptime_daemon.runner import CheckReport, CheckRunner, UnknownService
from uptime_daemon.scheduler import CheckScheduler
from uptime_daemon.store.instrumented import InstrumentedStore
from uptime_daemon.store.spool import OutageBuffer, Spool

log = structlog.get_logger(__name__)

ONE_DAEMON_PER_SQLITE: Final = (
    "the embedded SQLite store serves one daemon; to run several, point them all at one "
    "KurrentDB (README: Running several daemons)"
)
ONE_DAEMON_PER_STATE_FILE: Final = (
    "each daemon needs its own spool and snapshot: give this one another `instance` name or set "
    "store.spool_path / projector.snapshot_path"
)


class Daemon:
    """One daemon's parts. ``app`` serves them; its cleanup contexts open and close them."""

    def __init__(
        self,
        settings: Settings,
        *,
        base_url: str,
        clock: Clock | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        """Wire everything; nothing is opened or started until ``app`` starts up."""
        # `_created` series double the lines of every labelled counter and histogram (a quarter of
        # a 10,000-service scrape) and no alert or dashboard of ours reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated
        self.settings = LiveSettings(settings)
        self.clock: Clock = clock or SystemClock()
        self.supervisor = supervisor or Supervisor()
        self.base_url = base_url
        self._holder = f"uptime-daemon instance {settings.instance!r}"
        registry = CollectorRegistry(auto_describe=True)
        self.metrics = Metrics(
            registry,
            version=__version__,
            per_service_histograms=settings.metrics.per_service_histograms,
        )
        self.health = ComponentHealth(self.settings, self.clock)
        self.reloader = Reloader(self.settings, self.metrics)
        self.scheduler: CheckScheduler | None = None
        self.sharing: Sharing | None = None
        self.membership: Membership | None = None
        self.notifier: Notifier | None = None
        self._buffer: OutageBuffer | None = None
        self.app = app = create_web_app(
            registry=registry,
            live_health_interval_seconds=settings.server.live_health_interval_seconds,
        )
        app[METRICS_SOURCES].append(self.metrics.services)
        app[SETTINGS] = self.settings
        app[CLOCK] = self.clock
        app[SUMMARY_CACHE] = summary = SummaryCache(monotonic=self.clock.monotonic)
        app.on_cleanup.append(lambda _app: summary.close())
        app[STARTED] = Started(monotonic=time.monotonic(), version=__version__)
        app[HEALTH] = self.health
        app.cleanup_ctx.extend(
            (self._files, self._store, self._spool, self._projector, self._alerting, self._checks)
        )

    async def stop_checks(self) -> None:
        """Stop scheduling and let in-flight checks finish (bounded); idempotent."""
        if self.scheduler is not None:
            await self.scheduler.stop(self.settings.current.server.shutdown_timeout_seconds)

    # --- cleanup contexts, in start-up order -------------------------------------------------------

    async def _files(self, _app: web.Application) -> AsyncIterator[None]:
        """Claim this daemon's files (an embedded store, the spool, the snapshot) for its whole life.

        Claimed first and released last, so a second daemon on the same files is refused before
        it touches anything.
        """
        settings = self.settings.current
        database = database_path(settings.store)
        with contextlib.ExitStack() as held:
            if database is not None:
                try:
                    held.enter_context(
                        exclusive(database, holder=self._holder, why=ONE_DAEMON_PER_SQLITE)
                    )
                except OSError as exc:  # a read-only or missing directory: the store is unusable
                    msg = f"sqlite: cannot use {database}: {exc.strerror or exc}"
                    raise EventStoreUnavailable(msg) from exc
            for path in (spool_path(settings), snapshot_path(settings), notifier_path(settings)):
                held.enter_context(
                    exclusive(path, holder=self._holder, why=ONE_DAEMON_PER_STATE_FILE)
                )
            yield

    async def _store(self, app: web.Application) -> AsyncIterator[None]:
        settings = self.settings.current
        inner = await open_store(settings.store)
        store = InstrumentedStore(inner, now=self.clock.now, on_append=self.metrics.observe_append)
        app[STORE] = self.health.store = store
        log.info("store_opened", backend=inner.backend, url=redact(settings.store.url))
        yield
        await inner.close()
        log.info("store_closed")

    async def _spool(self, app: web.Application) -> AsyncIterator[None]:
        """The outage spool and its flusher; at shutdown, flush what can be flushed in bounded time."""
        settings = self.settings.current
        spool = await Spool.open(spool_path(settings), max_events=settings.store.spool_max_events)
        app[SPOOL] = spool
        self._buffer = buffer = OutageBuffer(app[STORE], spool)
        self.metrics.watch_spool(lambda: spool.depth, lambda: spool.dropped)
        task = asyncio.create_task(buffer.run(), name="spool-flusher")
        self.supervisor.watch(task)
        log.info("spool_opened", path=str(spool.path), events=spool.depth)
        yield
        if spool.depth:
            await buffer.drain(settings.server.shutdown_timeout_seconds)
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await spool.close()
        log.info("spool_closed", events=spool.depth)

    async def _projector(self, app: web.Application) -> AsyncIterator[None]:
        """Load the snapshot, follow the store in a supervised task, snapshot again on the way out."""
        settings = self.settings.current
        projector = new_projector(settings, app[STORE], self.clock)
        projector.load_snapshot()
        app[PROJECTOR] = self.health.projector = projector
        self.reloader.register(projector)
        app[METRICS_SOURCES].append(ProjectionCollector(projector, self.clock))
        task = asyncio.create_task(projector.run(), name="projector")
        self.supervisor.watch(task)
        compactor = Compactor(
            store=app[STORE],
            now=self.clock.now,
            settings=settings,
            services=lambda: list(projector.state.services),
            ready=projector.caught_up.is_set,
            oldest_raw=oldest_raw(lambda: projector.state),
        )
        self.reloader.register(compactor)
        compacting = asyncio.create_task(compactor.run(), name="compactor")
        self.supervisor.watch(compacting)
        declared = DeclaredWindows(self.settings, app[STORE], projector, self.clock)
        self.reloader.register(declared)
        declaring = asyncio.create_task(declared.run(), name="maintenance-declared")
        self.supervisor.watch(declaring)
        log.info("projector_started", position=projector.position)
        yield
        for running in (declaring, compacting, task):
            running.cancel()
            with suppress(asyncio.CancelledError):
                await running
        # The last in-flight checks may have appended after the subscription's last delivery: fold
        # them too, so the shutdown checkpoint covers everything written (bounded; the next start
        # would anyway).
        try:
            async with asyncio.timeout(settings.server.shutdown_timeout_seconds):
                await projector.catch_up()
        except (TimeoutError, EventStoreError) as exc:
            log.warning("projector_final_catch_up_incomplete", error=str(exc) or "timeout")
        projector.save_snapshot()
        projector.close()
        log.info("projector_stopped", position=projector.position)

    async def _alerting(self, app: web.Application) -> AsyncIterator[None]:
        """Notifications and the outgoing heartbeat, with their own HTTP client session."""
        settings, projector = self.settings.current, app[PROJECTOR]
        session = aiohttp.ClientSession(headers={"User-Agent": f"uptime-daemon/{__version__}"})

        async def deliver(message: Message, channel: NotificationChannel) -> Delivery:
            ttl = self.settings.current.alerting.alert_ttl_seconds
            return await channels.deliver(
                message, channel, session=session, now=self.clock.now(), alert_ttl_seconds=ttl
            )

        self.notifier = notifier = Notifier(
            settings=self.settings,
            store=app[STORE],
            state=lambda: projector.state,
            caught_up=projector.caught_up,
            clock=self.clock,
            deliver=deliver,
            base_url=self.base_url,
            checkpoint_path=notifier_path(settings),
            on_settled=self.metrics.count_notification,
            transitions=lambda: projector.transitions,
        )
        heartbeat = Heartbeat(
            self.settings,
            session,
            self.health.ready,
            on_beat=lambda ok: self.metrics.count_heartbeat(ok=ok),
        )
        tasks = [
            asyncio.create_task(notifier.run(), name="notifier"),
            asyncio.create_task(heartbeat.run(), name="heartbeat"),
        ]
        for task in tasks:
            self.supervisor.watch(task)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            notifier.save_checkpoint()
            await session.close()

    async def _checks(self, app: web.Application) -> AsyncIterator[None]:
        """HTTP client session, check runner and scheduler: one unit, torn down scheduler first."""
        settings, store, buffer = self.settings.current, app[STORE], self._buffer
        if buffer is None:
            raise RuntimeError("the spool's context must start before the checks'")
        session = make_client_session()
        # The loop's own lateness, for telling a target's timeout from ours (``loop_lag``); it
        # lives exactly as long as the checks that read it.
        lag = LoopLag(self.clock.monotonic)
        self.metrics.watch_loop_lag(lag.cumulative_seconds)
        lagging = asyncio.create_task(lag.run(), name="loop-lag")
        self.supervisor.watch(lagging)
        try:
            runner = CheckRunner(
                settings=settings,
                store=store,
                appender=buffer,
                probers=PROBERS,
                context=ProbeContext(
                    session=session, clock=self.clock, store=store, self_base_url=self.base_url
                ),
                clock=self.clock,
                on_check=self._observe,
                lag=lag,
            )
            self.reloader.register(runner)

            async def run_now(service: str | None) -> Sequence[CheckOutcome]:
                names = [service] if service is not None else list(runner.services)
                try:
                    return await asyncio.gather(*(runner.run_check(name) for name in names))
                except UnknownService as exc:
                    raise LookupError(str(exc)) from exc

            app[RUN_CHECKS] = run_now
            result = await connection_test(store, self.clock)
            log.info("connection_test", ok=result.ok, detail=result.detail, reason=result.failure)
            scheduler = CheckScheduler(
                run=runner.run_slot,
                settings=settings.scheduler,
                services={},
                clock=self.clock,
                on_lateness=self.metrics.observe_lateness,
                on_skip=self.metrics.count_skipped_run,
                on_missed=self.metrics.count_missed_run,
            )
            self.scheduler = self.health.scheduler = scheduler
            self.sharing = sharing = Sharing(self.settings, scheduler, runner)
            self.reloader.register(sharing)
            async with self._membership(app, sharing):
                owned = sharing.start()
                for name in owned:
                    await runner.try_prepare(name)
                scheduler.reschedule(owned)
                if settings.scheduler.enabled:
                    scheduler.start()
                yield
                await self.stop_checks()
        finally:
            lagging.cancel()
            with suppress(asyncio.CancelledError):
                await lagging
            await session.close()

    @contextlib.asynccontextmanager
    async def _membership(self, app: web.Application, sharing: Sharing) -> AsyncIterator[None]:
        """In a cluster: heartbeat and follow the members; alone: nothing.

        Waits (at most one member lifetime) to know the members before taking a share, so a new
        member does not probe everything first; announces leaving on the way out.
        """
        cluster = self.settings.current.cluster
        if cluster is None:
            yield
            return
        known = asyncio.Event()

        def changed(members: tuple[str, ...]) -> None:
            known.set()
            sharing.members_changed(members)

        settings = self.settings.current
        self.membership = membership = Membership(
            store=app[STORE],
            clock=self.clock,
            instance=settings.instance,
            location=settings.location,
            heartbeat_seconds=cluster.heartbeat_seconds,
            ttl_seconds=cluster.member_ttl_seconds,
            on_change=changed,
        )
        self.health.membership = membership
        task = asyncio.create_task(membership.run(), name="cluster-membership")
        self.supervisor.watch(task)
        with suppress(TimeoutError):  # the store may be down: start alone, share once it answers
            async with asyncio.timeout(cluster.member_ttl_seconds):
                await known.wait()
        sharing.members = membership.members
        log.info("cluster_joined", members=list(sharing.members), location=settings.location)
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            await membership.leave()

    def _observe(self, report: CheckReport) -> None:
        status = report.outcome.status
        changed_to = status.value if report.outcome.changed and status is not None else None
        self.metrics.observe_probe(
            report.service,
            report.kind.value,
            report.result,
            changed_to=changed_to,
            slot_wait_seconds=report.slot_wait_seconds,
            inconclusive=report.inconclusive,
        )


def build_app(
    settings: Settings,
    *,
    base_url: str,
    clock: Clock | None = None,
    supervisor: Supervisor | None = None,
) -> web.Application:
    """The daemon's aiohttp application (in-process tests serve it with aiohttp's test server)."""
    return Daemon(settings, base_url=base_url, clock=clock, supervisor=supervisor).app
