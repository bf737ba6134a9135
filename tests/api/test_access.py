"""Access control: bearer roles, /metrics basic auth, the check rate limit; nothing secret echoed."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.api.helpers import Client, TargetState
from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.daemon import build_app

READ, OPERATOR = "read-token-123", "operator-token-456"
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def make_client(
    aiohttp_client: Callable[..., Awaitable[Client]],
    tmp_path: Path,
    target: tuple[TestServer, TargetState],
) -> MakeClient:
    async def make(auth: dict[str, Any], environ: dict[str, str] | None = None) -> Client:
        server, _ = target
        settings = settings_from_mapping(
            {
                "store": {"url": f"sqlite:///{tmp_path / 'events.db'}"},
                "scheduler": {"enabled": False},
                "server": {"auth": auth},
                "services": {
                    "web": {
                        "kind": "http",
                        "url": str(server.make_url("/ok")),
                        "interval_seconds": 30,
                    }
                },
            },
            source="test",
            environ=environ or {},
        )
        return await aiohttp_client(build_app(settings, base_url="http://127.0.0.1:9"))

    return make


async def _status(
    client: Client, method: str, path: str, token: str | None = None, **headers: str
) -> int:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with client.request(method, path, headers=headers) as response:
        body = await response.text()
        assert READ not in body
        assert OPERATOR not in body
        if response.status >= 400:  # every error body: the documented three keys
            assert set(await response.json()) == {"error", "message", "field"}, body
        if response.status == 401:
            assert "WWW-Authenticate" in response.headers
            assert (await response.json())["error"] == "unauthorized"
        return response.status


async def test_everything_is_open_without_tokens(make_client: MakeClient) -> None:
    """No tokens configured: the (loopback-bound) API is open, as before."""
    client = await make_client({})
    assert await _status(client, "POST", "/uptime/check?service=web") == 200
    assert await _status(client, "GET", "/streams") == 200


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        pytest.param(None, 401, id="no-token"),
        pytest.param("wrong", 401, id="unknown-token"),
        pytest.param(READ, 403, id="read-token"),
        pytest.param(OPERATOR, 200, id="operator-token"),
    ],
)
async def test_running_checks_needs_an_operator(
    make_client: MakeClient, token: str | None, expected: int
) -> None:
    """POST /uptime/check: 401 without a valid token, 403 with a read token, 200 for an operator."""
    client = await make_client({"read_tokens": [READ], "operator_tokens": [OPERATOR]})
    assert await _status(client, "POST", "/uptime/check?service=web", token) == expected
    assert await _status(client, "POST", "/api/uptime/check?service=web", token) == expected


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        pytest.param(None, 401, id="no-token"),
        pytest.param(READ, 403, id="read-token"),
        pytest.param(OPERATOR, 404, id="operator-token"),  # past the gate: no such window
    ],
)
async def test_maintenance_writes_need_an_operator(
    make_client: MakeClient, token: str | None, expected: int
) -> None:
    """Ending or cancelling a window is a write: the operator gate comes before the lookup."""
    client = await make_client({"read_tokens": [READ], "operator_tokens": [OPERATOR]})
    assert await _status(client, "POST", "/maintenance/mw-x/end", token) == expected
    assert await _status(client, "DELETE", "/maintenance/mw-x", token) == expected
    assert await _status(client, "GET", "/maintenance", token) == 200  # reads stay open


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        pytest.param(None, 401, id="no-token"),
        pytest.param("wrong", 401, id="unknown-token"),
        pytest.param(READ, 200, id="read-token"),
        pytest.param(OPERATOR, 200, id="operator-token"),
    ],
)
async def test_browsing_streams_needs_a_reader(
    make_client: MakeClient, token: str | None, expected: int
) -> None:
    """The /streams endpoints need a read (or operator) token once read tokens exist."""
    client = await make_client({"read_tokens": [READ], "operator_tokens": [OPERATOR]})
    assert await _status(client, "GET", "/streams", token) == expected
    assert await _status(client, "GET", "/streams/service-uptime-web/events", token) in {
        expected,
        404,
    }


async def test_protect_reads_closes_everything_but_health_and_metrics(
    make_client: MakeClient,
) -> None:
    """With protect_reads, only /health, /health/ready and /metrics answer without a token."""
    client = await make_client({"read_tokens": [READ], "protect_reads": True})
    for path in (
        "/uptime/summary",
        "/uptime/service/web",
        "/status/data",
        "/api/openapi.json",
        "/",
    ):
        assert await _status(client, "GET", path) == 401, path
        assert await _status(client, "GET", path, READ) == 200, path
    for path in ("/health", "/metrics"):
        assert await _status(client, "GET", path) == 200, path
    assert await _status(client, "GET", "/health/ready") in {200, 503}


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        pytest.param(None, 401, id="none"),
        pytest.param("prom:wrong", 401, id="wrong-password"),
        pytest.param("other:s3cret-metrics", 401, id="wrong-user"),
        pytest.param("prom:s3cret-metrics", 200, id="right"),
    ],
)
async def test_metrics_basic_auth(
    make_client: MakeClient, credentials: str | None, expected: int
) -> None:
    """/metrics behind HTTP Basic auth, as Prometheus' basic_auth sends it (password from the environment)."""
    client = await make_client(
        {"metrics_username": "prom"}, environ={"UPTIME_METRICS_PASSWORD": "s3cret-metrics"}
    )
    headers = (
        {}
        if credentials is None
        else {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
    )
    async with client.get("/metrics", headers=headers) as response:
        assert response.status == expected
        assert "s3cret-metrics" not in await response.text()
        if expected == 401:
            assert (await response.json())["field"] is None


async def test_check_runs_are_rate_limited(make_client: MakeClient) -> None:
    """Past checks_per_minute, POST /uptime/check is 429 with Retry-After."""
    client = await make_client({"checks_per_minute": 2})
    assert await _status(client, "POST", "/uptime/check?service=web") == 200
    assert await _status(client, "POST", "/uptime/check?service=web") == 200
    async with client.post("/uptime/check?service=web") as response:
        assert response.status == 429
        assert int(response.headers["Retry-After"]) >= 1
        body = await response.json()
    assert body == {"error": "rate_limited", "message": body["message"], "field": None}


async def test_tokens_come_from_the_environment(make_client: MakeClient) -> None:
    """UPTIME_OPERATOR_TOKENS (comma-separated) configures operators."""
    client = await make_client({}, environ={"UPTIME_OPERATOR_TOKENS": f"other, {OPERATOR}"})
    assert await _status(client, "POST", "/uptime/check?service=web") == 401
    assert await _status(client, "POST", "/uptime/check?service=web", OPERATOR) == 200
