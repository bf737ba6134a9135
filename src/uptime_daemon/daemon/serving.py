"""Serving: the listening socket, signals, the supervisor's stop, systemd readiness and watchdog.

The socket is bound before anything else so the daemon knows its own URL (self-monitoring works on
port 0 too). On SIGTERM or SIGINT: stop scheduling and wait (bounded) for in-flight checks while the
server still answers self-probes, then run the cleanup contexts (``wiring``). SIGHUP reloads.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from contextlib import suppress
from typing import Final

import structlog
from aiohttp import web

from uptime_daemon import __version__
from uptime_daemon.api.errors import JsonErrorAppRunner
from uptime_daemon.api.keys import PROJECTOR, STORE
from uptime_daemon.clock import Clock
from uptime_daemon.config.model import Settings
from uptime_daemon.daemon import heap
from uptime_daemon.daemon.supervisor import Supervisor
from uptime_daemon.daemon.systemd import SystemdNotifier
from uptime_daemon.daemon.wiring import Daemon

log = structlog.get_logger(__name__)

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
_WILDCARDS: Final = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104 - mapping, not binding


def loopback_host(host: str) -> str:
    """The address by which this machine reaches a server bound to ``host`` (wildcards → loopback)."""
    return _WILDCARDS.get(host, host)


def base_url(host: str, port: int) -> str:
    """``http://host:port`` of a server bound to ``host``, as reachable from this machine."""
    host = loopback_host(host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


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


async def _ready_and_watchdog(
    app: web.Application, notifier: SystemdNotifier, services: int
) -> None:
    """READY=1 once serving and caught up; then WATCHDOG=1 at half the manager's interval, forever."""
    if not notifier.enabled:
        await asyncio.Event().wait()
    await app[PROJECTOR].caught_up.wait()
    notifier.ready(f"serving {services} services")
    log.info("systemd_ready")
    interval = notifier.watchdog_interval_seconds
    if interval is None:
        await asyncio.Event().wait()
        return
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


async def serve(
    settings: Settings, *, clock: Clock | None = None, reload: Callable[[], Settings] | None = None
) -> int:
    """Run the daemon until SIGTERM/SIGINT; SIGHUP reloads via ``reload``; return the exit code."""
    heap.tune()
    sock = bind_socket(settings.server.host, settings.server.port)
    host, port = sock.getsockname()[:2]
    daemon = Daemon(settings, base_url=base_url(host, port), clock=clock, supervisor=Supervisor())
    supervisor, app = daemon.supervisor, daemon.app
    runner = JsonErrorAppRunner(  # aiohttp's own parse errors answer as JSON too
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.server.shutdown_timeout_seconds,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, supervisor.request_stop, signal.Signals(signum).name)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, daemon.reloader.reload, reload)
    try:
        await runner.setup()
        site = web.SockSite(runner, sock, shutdown_timeout=settings.server.shutdown_timeout_seconds)
        await site.start()
        notifier = SystemdNotifier()
        watchdog = asyncio.create_task(
            _ready_and_watchdog(app, notifier, len(settings.services)),
            name="systemd-watchdog",
        )
        supervisor.watch(watchdog)
        log.info(
            "daemon_started",
            version=__version__,
            url=daemon.base_url,
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
        # Finish in-flight checks while the server can still answer our own self-probes.
        await daemon.stop_checks()
    finally:
        # The handlers stay through cleanup: a repeated SIGTERM (a second `systemctl stop`, a test
        # harness, an impatient operator) must not kill the process between writing the checkpoint
        # and closing the store. The stop is already under way and bounded; SIGKILL still ends it.
        loop.remove_signal_handler(signal.SIGHUP)  # no reload into parts being torn down
        try:
            await runner.cleanup()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            with suppress(OSError):
                sock.close()
    log.info("daemon_stopped", failed=supervisor.failed)
    return EXIT_FAILURE if supervisor.failed else EXIT_OK
