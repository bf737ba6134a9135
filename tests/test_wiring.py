"""The composition root in process: what starts in which order, and what is torn down in reverse."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from uptime_daemon.api.keys import RUN_CHECKS
from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.daemon import Daemon
from uptime_daemon.daemon.build import snapshot_path, spool_path
from uptime_daemon.projector import snapshot
from uptime_daemon.store.sqlite import SqliteEventStore

START_ORDER = ["store_opened", "spool_opened", "projector_started", "connection_test"]
STOP_ORDER = ["scheduler_stopped", "projector_stopped", "spool_closed", "store_closed"]


async def test_start_up_and_cleanup_order(
    tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    """Store → spool → projector → checks at start; the reverse at cleanup.

    The checkpoint is written after the last check's event: the projector folds it before the store
    closes.
    """

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    target_app = web.Application()
    target_app.router.add_get("/", ok)
    target = await aiohttp_server(target_app)
    settings = settings_from_mapping(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'events.db'}"},
            "scheduler": {"jitter_seconds": 0},
            "services": {
                "web": {"kind": "http", "url": str(target.make_url("/")), "interval_seconds": 3600}
            },
        },
        source="test",
        environ={},
    )
    daemon = Daemon(settings, base_url="http://127.0.0.1:9")
    server = TestServer(daemon.app)
    with capture_logs() as logs:
        await server.start_server()
        started = [e["event"] for e in logs]
        assert daemon.health.store is not None, "the store is opened at start-up"
        assert daemon.scheduler is not None
        assert daemon.scheduler.running
        (report,) = await daemon.app[RUN_CHECKS]("web")
        assert report.position is not None
        await server.close()
    events = [e["event"] for e in logs]
    assert [e for e in started if e in START_ORDER] == START_ORDER
    assert "scheduler_started" in started[started.index("connection_test") :]
    assert [e for e in events if e in STOP_ORDER] == STOP_ORDER
    assert events.index("store_closed") == len(events) - 1, "the store closes last"

    reopened = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        newest = (await reopened.read_all())[-1].position
    finally:
        await reopened.close()
    stored = snapshot.read(snapshot_path(settings))
    checkpoint = None if stored is None else stored.position
    assert checkpoint == newest, "the shutdown checkpoint covers everything written"
    assert spool_path(settings).exists()
