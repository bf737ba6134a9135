"""Our bugs are JSON 500s with their traceback in the log, whether the middleware or the protocol sees them."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from tests.api.helpers import Client
from uptime_daemon.api.errors import JsonErrorAppRunner, error_middleware


class HandlerBugError(Exception):
    """What the buggy handler raises."""


async def buggy(_request: web.Request) -> web.Response:
    raise HandlerBugError("a bug of ours")


def _app(*, with_middleware: bool) -> web.Application:
    app = web.Application(middlewares=[error_middleware] if with_middleware else [])
    app.router.add_get("/bug", buggy)
    return app


async def test_a_handler_bug_is_a_json_500_and_logs_its_traceback(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> None:
    """The middleware answers ``field: null`` and logs the exception (a server error keeps it)."""
    client = await aiohttp_client(_app(with_middleware=True))
    with capture_logs() as logs:
        async with client.get("/bug") as response:
            assert response.status == 500
            body = await response.json()
    assert body == {"error": "internal_error", "message": body["message"], "field": None}
    (failed,) = [e for e in logs if e["event"] == "request_failed"]
    assert failed["log_level"] == "error"
    assert failed["exc_info"] is True  # log.exception: the traceback of the exception in flight


@pytest.fixture
async def bare_url() -> AsyncIterator[str]:
    """An app without our middleware, served as the daemon serves: the protocol sees the bug."""
    runner = JsonErrorAppRunner(_app(with_middleware=False), access_log=None)
    await runner.setup()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        site = web.SockSite(runner, sock)
        await site.start()
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            await runner.cleanup()


async def test_a_bug_past_every_middleware_is_a_json_500_with_its_traceback(bare_url: str) -> None:
    """The protocol's last-resort 500 is our JSON too, and the exception is logged, not swallowed."""
    with capture_logs() as logs:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{bare_url}/bug") as response,
        ):
            assert response.status == 500
            assert response.content_type == "application/json"
            body = await response.json()
    assert body == {"error": "internal_error", "message": body["message"], "field": None}
    (failed,) = [e for e in logs if e["event"] == "request_failed"]
    assert failed["log_level"] == "error"
    assert isinstance(failed["exc_info"], HandlerBugError)
