"""Helpers shared by the API tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.polling import until

TargetState = dict[str, bool]
Client = TestClient[web.Request, web.Application]


async def fetch_json(client: Client, path: str, status: int = 200, method: str = "GET") -> Any:
    async with client.request(method, path) as response:
        body = await response.json()
        assert response.status == status, body
        return body


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll ``check`` until it holds (the shared ``tests.polling.until``)."""
    await until(check, within=within, interval=0.02)


async def web_checks(client: Client) -> int:
    summary = await fetch_json(client, "/uptime/summary?hours=1")
    (web_service,) = [s for s in summary["services"] if s["service"] == "web"]
    return int(web_service["checks"]["total"])
