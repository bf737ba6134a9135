"""Fixtures for in-process API tests: the daemon's app on a real SQLite store, a loopback target."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.api.helpers import Client, TargetState
from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.daemon import build_app


@pytest.fixture
async def target(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> tuple[TestServer, TargetState]:
    """A loopback HTTP service whose health the test switches."""
    state: TargetState = {"up": True}

    async def ok(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, status=200 if state["up"] else 503)

    app = web.Application()
    app.router.add_get("/ok", ok)
    return await aiohttp_server(app), state


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[Client]],
    tmp_path: Path,
    target: tuple[TestServer, TargetState],
) -> Client:
    """The daemon's app with the scheduler off: the test drives checks through the API."""
    server, _ = target
    settings = settings_from_mapping(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'events.db'}"},
            "scheduler": {"enabled": False},
            "projector": {"snapshot_interval_seconds": 3600},
            "services": {
                "web": {
                    "kind": "http",
                    "url": str(server.make_url("/ok")),
                    "interval_seconds": 30,
                    "failures_before_down": 2,
                }
            },
        },
        source="test",
        environ={},
    )
    return await aiohttp_client(build_app(settings, base_url="http://127.0.0.1:9"))
