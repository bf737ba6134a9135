"""Helpers shared by the API tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

TargetState = dict[str, bool]
Client = TestClient[web.Request, web.Application]


async def fetch_json(client: Client, path: str, status: int = 200, method: str = "GET") -> Any:
    async with client.request(method, path) as response:
        body = await response.json()
        assert response.status == status, body
        return body


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        await asyncio.sleep(0.02)


async def web_checks(client: Client) -> int:
    summary = await fetch_json(client, "/uptime/summary?hours=1")
    (web_service,) = [s for s in summary["services"] if s["service"] == "web"]
    return int(web_service["checks"]["total"])
