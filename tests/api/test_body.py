"""A large summary goes out whole and unchanged though its head and body are written apart."""

from __future__ import annotations

import gzip
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from tests.api.helpers import Client, TargetState
from uptime_daemon.api import models
from uptime_daemon.api.body import HEAD_BYTES
from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.daemon import build_app

ORIGIN = "https://status.example.org"
SERVICES = 200  # a summary of this many is more than twice HEAD_BYTES


@pytest.fixture
async def many_services(
    aiohttp_client: Callable[..., Awaitable[Client]],
    tmp_path: Path,
    target: tuple[TestServer, TargetState],
) -> Client:
    """The daemon's app with 200 services and one allowed origin; bodies left as they came."""
    server, _ = target
    url = str(server.make_url("/ok"))
    config = settings_from_mapping(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'events.db'}"},
            "scheduler": {"enabled": False},
            "server": {"allowed_origins": [ORIGIN], "summary_max_age_seconds": 60},
            "services": {f"service-{i:03d}": {"kind": "http", "url": url} for i in range(SERVICES)},
        },
        source="test",
        environ={},
    )
    return await aiohttp_client(
        build_app(config, base_url="http://127.0.0.1:9"), auto_decompress=False
    )


async def test_a_large_summary_arrives_whole_with_every_header(many_services: Client) -> None:
    sent = {"Accept-Encoding": "identity", "Origin": ORIGIN}
    async with many_services.get("/uptime/summary?hours=1", headers=sent) as r:
        body = await r.read()
        headers = r.headers
    assert r.status == 200
    assert len(body) > 2 * HEAD_BYTES
    assert int(headers["Content-Length"]) == len(body)
    assert "Transfer-Encoding" not in headers
    assert headers["Content-Type"].startswith("application/json")
    summary = models.UptimeSummary.model_validate_json(body)
    assert len(summary.services) == SERVICES
    assert summary.model_dump_json(by_alias=True).encode() == body
    # What the middleware adds to other answers, set before the head went out.
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert {v.strip() for v in headers["Vary"].split(",")} >= {"Accept-Encoding", "Origin"}
    assert headers["Cache-Control"] == "no-cache"

    async with many_services.get(
        "/uptime/summary?hours=1", headers={"Accept-Encoding": "gzip", "Origin": ORIGIN}
    ) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert gzip.decompress(await r.read()) == body

    # Kept-alive connection: the next answer starts where this one ended.
    async with many_services.get("/uptime/summary?hours=1", headers=sent) as r:
        assert await r.read() == body
        assert r.headers["ETag"] == headers["ETag"]
    async with many_services.get(
        "/uptime/summary?hours=1", headers=sent | {"If-None-Match": headers["ETag"]}
    ) as r:
        assert (r.status, await r.read()) == (304, b"")
