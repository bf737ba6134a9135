"""The composition root: builds every component from ``Settings`` and owns the process lifecycle.

Resources live in aiohttp cleanup contexts, in dependency order (store → HTTP client session →
check runner → scheduler); aiohttp tears them down in reverse. The listening socket is bound before
anything else so the daemon knows its own URL (self-monitoring works on port 0 too). On SIGTERM or
SIGINT: stop scheduling and wait (bounded) for in-flight checks while the server still answers
self-probes, then close the server, then the session, then the store (which completes queued appends).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any, Final

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, disable_created_metrics

from uptime_daemon import __version__
from uptime_daemon.api import create_web_app
from uptime_daemon.api.keys import (
    BUFFER,
    CLOCK,
    COMPONENTS,
    PROJECTOR,
    RUN_CHECKS,
    SETTINGS,
    STARTED,
    STORE,
    SUMMARY_CACHE,
    Started,
)
from uptime_daemon.api.models import Component
from uptime_daemon.api.summary_cache import SummaryCache
from uptime_daemon.clock import Clock, SystemClock
from uptime_daemon.config.live import LiveSettings
from uptime_daemon.config.load import mask_url
from uptime_daemon.config.model import Settings
from uptime_daemon.errors import ConfigError, EventStoreError, EventStoreUnavailable
from uptime_daemon.metrics import Metrics
from uptime_daemon.notify import SystemdNotifier
from uptime_daemon.probes import PROBERS
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.database import connection_test
from uptime_daemon.probes.http import make_client_session
from uptime_daemon.projector.collector import ProjectionCollector
from uptime_daemon.projector.runner import Projector
from uptime_daemon.runner import CheckReport, CheckRunner, UnknownService
from uptime_daemon.scheduler import CheckScheduler
from uptime_daemon.store import EventStore
from uptime_daemon.store.instrumented import InstrumentedStore
from uptime_daemon.store.kurrentdb import KurrentDBEventStore, connection_uri
from uptime_daemon.store.spool import OutageBuffer, Spool
from uptime_daemon.store.sqlite import SqliteEventStore, sqlite_path_from_url

log = structlog.get_logger(__name__)

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1

BASE_URL = web.AppKey("base_url", str)
CHECK_RUNNER = web.AppKey("check_runner", CheckRunner)
SCHEDULER = web.AppKey("scheduler", CheckScheduler)
METRICS = web.AppKey("metrics", Metrics)


class Supervisor:
    """Root tasks must not die quietly: if one ends, the daemon stops with a failure status."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.reason = ""
        self.failed = False

    def request_stop(self, reason: str) -> None:
        """Ask the serve loop to shut down gracefully."""
        if not self.stop.is_set():
            self.reason = reason
            self.stop.set()

    def watch(self, task: asyncio.Task[None]) -> None:
        """Stop the daemon (exit 1) if ``task`` ends for any reason but cancellation."""

        def done(finished: asyncio.Task[None]) -> None:
            if finished.cancelled():
                return
            error = finished.exception()
            if error is not None:
                log.error(
                    "task_failed", task=finished.get_name(), error=repr(error), exc_info=error
                )
            else:
                log.error("task_exited_unexpectedly", task=finished.get_name())
            self.failed = True
            self.request_stop(f"root task {finished.get_name()} ended")

        task.add_done_callback(done)


SUPERVISOR = web.AppKey("supervisor", Supervisor)


async def open_store(settings: Settings) -> EventStore:
    """Open the configured event store adapter."""
    store = settings.store
    if store.url.startswith("sqlite:"):
        return await SqliteEventStore.open(sqlite_path_from_url(store.url))
    uri = connection_uri(
        store.url,
        username=store.username,
        password=None if store.password is None else store.password.get_secret_value(),
        use_tls=store.use_tls,
        verify_cert=store.verify_cert,
        ca_file=store.ca_file,
    )
    try:
        return await KurrentDBEventStore.open(uri, timeout_seconds=store.operation_timeout_seconds)
    except EventStoreUnavailable as exc:
        raise EventStoreUnavailable(f"{mask_url(uri)}: {exc}") from exc


def snapshot_path(settings: Settings) -> Path:
    """Where the projection snapshot lives unless configured: beside the SQLite file."""
    if settings.projector.snapshot_path is not None:
        return Path(settings.projector.snapshot_path)
    if settings.store.url.startswith("sqlite:"):
        database = sqlite_path_from_url(settings.store.url)
        return database.with_name(database.name + ".projection.json")
    return Path("var/uptime-daemon/projection.json")


def gap_seconds(settings: Settings, service: str) -> float:
    """How long a verdict stays credible: 2 × interval + timeout (defaults for unknown services)."""
    policy = settings.services.get(service, settings.defaults)
    return 2 * policy.interval_seconds + policy.timeout_seconds


def self_base_url(sock: socket.socket) -> str:
    """``http://host:port`` by which this daemon reaches its own server (wildcards → loopback)."""
    host, port = sock.getsockname()[:2]
    if host in {"0.0.0.0", ""}:  # noqa: S104 - recognising the wildcard, not binding it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen before the app is built, so the daemon knows its own port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)  # noqa: FBT003 - socket API
    except OSError:
        sock.close()
        raise
    return sock


def build_app(
    settings: Settings,
    *,
    base_url: str,
    clock: Clock | None = None,
    supervisor: Supervisor | None = None,
) -> web.Application:
    """Wire every component; nothing starts until the app's startup runs its cleanup contexts."""
    # `_created` series double the lines of every labelled counter and histogram (a quarter of a
    # 10,000-service scrape) and no alert or dashboard of ours reads them.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated
    registry = CollectorRegistry(auto_describe=True)
    app = create_web_app(
        registry=registry, live_health_interval_seconds=settings.server.live_health_interval_seconds
    )
    app[METRICS] = Metrics(registry, version=__version__)
    app[SETTINGS] = LiveSettings(settings)
    app[CLOCK] = clock or SystemClock()
    app[SUMMARY_CACHE] = SummaryCache(monotonic=app[CLOCK].monotonic)
    app[STARTED] = Started(monotonic=time.monotonic(), version=__version__)
    app[BASE_URL] = base_url
    app[SUPERVISOR] = supervisor or Supervisor()

    async def component_health() -> list[Component]:
        return await components(app)

    app[COMPONENTS] = component_health
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_spool_ctx)
    app.cleanup_ctx.append(_projector_ctx)
    app.cleanup_ctx.append(_checks_ctx)
    return app


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS].current
    inner = await open_store(settings)
    app[STORE] = InstrumentedStore(inner, now=app[CLOCK].now, on_append=app[METRICS].observe_append)
    log.info("store_opened", backend=inner.backend, url=mask_url(settings.store.url))
    yield
    await inner.close()
    log.info("store_closed")


def spool_path(settings: Settings) -> Path:
    """Where the outage spool lives unless configured: beside the SQLite file."""
    if settings.store.spool_path is not None:
        return Path(settings.store.spool_path)
    if settings.store.url.startswith("sqlite:"):
        database = sqlite_path_from_url(settings.store.url)
        return database.with_name(database.name + ".spool")
    return Path("var/uptime-daemon/spool.db")


async def _spool_ctx(app: web.Application) -> AsyncIterator[None]:
    """The outage spool and its flusher; at shutdown, flush what can be flushed in bounded time."""
    settings = app[SETTINGS].current
    spool = await Spool.open(spool_path(settings), max_events=settings.store.spool_max_events)
    buffer = OutageBuffer(app[STORE], spool)
    app[BUFFER] = buffer
    app[METRICS].watch_spool(lambda: spool.depth, lambda: spool.dropped)
    task = asyncio.create_task(buffer.run(), name="spool-flusher")
    app[SUPERVISOR].watch(task)
    yield
    if spool.depth:
        await buffer.drain(settings.server.shutdown_timeout_seconds)
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
    await spool.close()


async def _projector_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the snapshot, follow the store in a supervised task, snapshot again on the way out."""
    settings = app[SETTINGS].current
    projector = Projector(
        store=app[STORE],
        clock=app[CLOCK],
        default_gap_seconds=functools.partial(gap_seconds, settings),
        snapshot_path=snapshot_path(settings),
        snapshot_interval_seconds=settings.projector.snapshot_interval_seconds,
        retention_seconds=settings.projector.retention_days * 86_400,
    )
    projector.load_snapshot()
    app[PROJECTOR] = projector
    app[METRICS].registry.register(ProjectionCollector(projector, app[CLOCK]))
    task = asyncio.create_task(projector.run(), name="projector")
    app[SUPERVISOR].watch(task)
    yield
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
    # The last in-flight checks may have appended after the subscription's last delivery: fold them
    # too, so the shutdown checkpoint covers everything written (bounded; the next start would anyway).
    try:
        async with asyncio.timeout(settings.server.shutdown_timeout_seconds):
            await projector.catch_up()
    except (TimeoutError, EventStoreError) as exc:
        log.warning("projector_final_catch_up_incomplete", error=str(exc) or "timeout")
    projector.save_snapshot()


async def _checks_ctx(app: web.Application) -> AsyncIterator[None]:
    """HTTP client session, check runner and scheduler: one unit, torn down scheduler first."""
    settings, clock, store = app[SETTINGS].current, app[CLOCK], app[STORE]
    session = make_client_session()
    try:
        context = ProbeContext(
            session=session, clock=clock, store=store, self_base_url=app[BASE_URL]
        )
        metrics = app[METRICS]

        def observe(report: CheckReport) -> None:
            changed_to = report.outcome.status.value if report.outcome.changed else None
            metrics.observe_probe(
                report.service, report.kind.value, report.result, changed_to=changed_to
            )

        runner = CheckRunner(
            settings=settings,
            store=store,
            appender=app[BUFFER],
            probers=PROBERS,
            context=context,
            clock=clock,
            on_check=observe,
        )
        app[CHECK_RUNNER] = runner

        async def run_now(service: str | None) -> list[Mapping[str, Any]]:
            names = [service] if service is not None else list(runner.services)
            try:
                reports = await asyncio.gather(*(runner.run_check(name) for name in names))
            except UnknownService as exc:
                raise LookupError(str(exc)) from exc
            return [report.to_json() for report in reports]

        app[RUN_CHECKS] = run_now
        result = await connection_test(store, clock)
        log.info("connection_test", ok=result.ok, detail=result.detail, reason=result.failure)
        for name in settings.services:
            try:
                await runner.prepare(name)
            except EventStoreError as exc:
                log.warning("stream_prepare_failed", service=name, error=str(exc))
        scheduler = CheckScheduler(
            run=runner.run_check,
            settings=settings.scheduler,
            services=settings.services,
            clock=clock,
            on_lateness=metrics.observe_lateness,
            on_skip=metrics.count_skipped_run,
        )
        app[SCHEDULER] = scheduler
        if settings.scheduler.enabled:
            scheduler.start()
        yield
        await scheduler.stop(settings.server.shutdown_timeout_seconds)
    finally:
        await session.close()


async def _ready_and_watchdog(app: web.Application, notifier: SystemdNotifier) -> None:
    """READY=1 once serving and caught up; then WATCHDOG=1 at half the manager's interval, forever."""
    if not notifier.enabled:
        await asyncio.Event().wait()
    await app[PROJECTOR].caught_up.wait()
    notifier.ready(f"serving {len(app[SETTINGS].current.services)} services")
    log.info("systemd_ready")
    interval = notifier.watchdog_interval_seconds
    if interval is None:
        await asyncio.Event().wait()
        return
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


RESTART_ONLY: Final = ("server", "store", "projector", "scheduler")
"""Settings a reload cannot change in place (sockets, files, pools): kept, with a warning."""


async def reload_settings(app: web.Application, load: Callable[[], Settings]) -> bool:
    """Re-read the config: services are added, removed or re-timed; projection state is untouched.

    An invalid file is rejected and the running configuration kept (logged, and
    ``uptime_config_last_reload_successful`` drops to 0).
    """
    live, metrics = app[SETTINGS], app[METRICS]
    old = live.current
    try:
        new = load()
    except ConfigError as exc:
        log.error("config_reload_failed", error=str(exc))  # noqa: TRY400 - the message is the point
        metrics.observe_reload(ok=False)
        return False
    pinned = [key for key in RESTART_ONLY if getattr(new, key) != getattr(old, key)]
    if pinned:
        log.warning("config_reload_needs_restart", sections=pinned)
        new = new.model_copy(update={key: getattr(old, key) for key in pinned})
    live.current = new
    app[CHECK_RUNNER].replace_settings(new)
    if new.scheduler.enabled:
        app[SCHEDULER].reschedule(new.services)
    logging.getLogger().setLevel(new.log.level.upper())
    metrics.observe_reload(ok=True)
    log.info(
        "config_reloaded",
        added=sorted(new.services.keys() - old.services.keys()),
        removed=sorted(old.services.keys() - new.services.keys()),
        changed=sorted(
            n
            for n in new.services.keys() & old.services.keys()
            if new.services[n] != old.services[n]
        ),
    )
    return True


async def components(app: web.Application) -> list[Component]:
    """Health of the daemon's own parts, for readiness and ``/health/comprehensive``."""
    found: list[Component] = []
    try:
        async with asyncio.timeout(2.0):
            round_trip = await app[STORE].ping()
        failing = app[STORE].last_append_error
        if failing is None:
            detail = f"{app[STORE].backend}, {round_trip * 1000:.1f} ms"
            found.append(Component(name="store", ok=True, detail=detail))
        else:  # answers reads but refuses writes: a full or read-only disk, for instance
            found.append(Component(name="store", ok=False, detail=f"appends failing: {failing}"))
    except (TimeoutError, EventStoreError) as exc:
        found.append(
            Component(name="store", ok=False, detail=f"unreachable: {str(exc) or 'timeout'}")
        )
    projector = app.get(PROJECTOR)
    if projector is not None and projector.caught_up.is_set():
        found.append(
            Component(
                name="projector", ok=True, detail=f"caught up at position {projector.position}"
            )
        )
    else:
        found.append(Component(name="projector", ok=False, detail="catching up"))
    scheduler = app.get(SCHEDULER)
    if not app[SETTINGS].current.scheduler.enabled:
        found.append(Component(name="scheduler", ok=True, detail="disabled by configuration"))
    elif scheduler is not None and scheduler.running:
        found.append(
            Component(name="scheduler", ok=True, detail=f"{scheduler.inflight} checks in flight")
        )
    else:
        found.append(Component(name="scheduler", ok=False, detail="not running"))
    return found


async def serve(
    settings: Settings, *, clock: Clock | None = None, reload: Callable[[], Settings] | None = None
) -> int:
    """Run the daemon until SIGTERM/SIGINT; SIGHUP reloads via ``reload``; return the exit code."""
    sock = bind_socket(settings.server.host, settings.server.port)
    base_url = self_base_url(sock)
    supervisor = Supervisor()
    app = build_app(settings, base_url=base_url, clock=clock, supervisor=supervisor)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.server.shutdown_timeout_seconds,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, supervisor.request_stop, signal.Signals(signum).name)
    reloads: set[asyncio.Task[bool]] = set()
    if reload is not None:

        def on_hangup() -> None:
            task = asyncio.create_task(reload_settings(app, reload), name="reload")
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        await runner.setup()
        site = web.SockSite(runner, sock, shutdown_timeout=settings.server.shutdown_timeout_seconds)
        await site.start()
        notifier = SystemdNotifier()
        watchdog = asyncio.create_task(_ready_and_watchdog(app, notifier), name="systemd-watchdog")
        supervisor.watch(watchdog)
        log.info(
            "daemon_started",
            version=__version__,
            url=base_url,
            environment=settings.environment,
            services=len(settings.services),
            store=app[STORE].backend,
        )
        await supervisor.stop.wait()
        log.info("daemon_stopping", reason=supervisor.reason)
        notifier.stopping()
        watchdog.cancel()
        with suppress(asyncio.CancelledError):
            await watchdog
        if SCHEDULER in app:
            # Finish in-flight checks while the server can still answer our own self-probes.
            await app[SCHEDULER].stop(settings.server.shutdown_timeout_seconds)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        await runner.cleanup()
        with suppress(OSError):
            sock.close()
    log.info("daemon_stopped", failed=supervisor.failed)
    return EXIT_FAILURE if supervisor.failed else EXIT_OK
