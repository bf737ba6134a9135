"""CORS in-process: preflights, the echoed origin, errors a page can read, never credentials."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from tests.api.helpers import Client, TargetState
from uptime_daemon.api import create_web_app, openapi_document
from uptime_daemon.api.keys import SETTINGS
from uptime_daemon.config.live import LiveSettings
from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.config.model import Settings
from uptime_daemon.daemon import build_app

APP = "http://localhost:5173"
OTHER = "http://127.0.0.1:3000"
READ, OPERATOR = "read-token-123", "operator-token-456"
ALLOW_ORIGIN = "Access-Control-Allow-Origin"
ALLOW_CREDENTIALS = "Access-Control-Allow-Credentials"
MakeClient = Callable[..., Awaitable[Client]]
MakeSettings = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, target: tuple[TestServer, TargetState]) -> MakeSettings:
    def make(origins: list[str], **auth: Any) -> Settings:
        server, _ = target
        return settings_from_mapping(
            {
                "store": {"url": f"sqlite:///{tmp_path / 'events.db'}"},
                "scheduler": {"enabled": False},
                "server": {"allowed_origins": origins, "auth": auth},
                "services": {
                    "web": {
                        "kind": "http",
                        "url": str(server.make_url("/ok")),
                        "interval_seconds": 30,
                    }
                },
            },
            source="test",
            environ={},
        )

    return make


@pytest.fixture
def make_client(
    aiohttp_client: Callable[..., Awaitable[Client]], make_settings: MakeSettings
) -> MakeClient:
    """The daemon's app with ``server.allowed_origins = origins`` and ``server.auth = auth``."""

    async def make(origins: list[str], **auth: Any) -> Client:
        settings = make_settings(origins, **auth)
        return await aiohttp_client(build_app(settings, base_url="http://127.0.0.1:9"))

    return make


def _preflight(origin: str, method: str, headers: str = "") -> dict[str, str]:
    asked = {"Access-Control-Request-Headers": headers} if headers else {}
    return {"Origin": origin, "Access-Control-Request-Method": method, **asked}


def _access_control(response: web.StreamResponse | Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def _vary(response: Any) -> set[str]:
    return {v.strip().lower() for v in response.headers.get("Vary", "").split(",") if v.strip()}


@pytest.mark.parametrize(
    ("method", "path", "methods"),
    [
        pytest.param("POST", "/api/uptime/check", "POST", id="seed-check"),
        pytest.param("POST", "/uptime/check", "POST", id="check"),
        pytest.param("GET", "/api/uptime/summary", "GET, HEAD", id="seed-summary"),
        pytest.param("GET", "/uptime/service/web", "GET, HEAD", id="service"),
        pytest.param("GET", "/api/health/comprehensive", "GET, HEAD", id="seed-health"),
        pytest.param("POST", "/maintenance", "GET, HEAD, POST", id="maintenance"),
        pytest.param("DELETE", "/maintenance/m-1", "DELETE", id="maintenance-delete"),
        pytest.param("GET", "/streams", "GET, HEAD", id="streams"),
        pytest.param("GET", "/status/data", "GET, HEAD", id="status-data"),
        pytest.param("GET", "/api/openapi.json", "GET, HEAD", id="openapi"),
    ],
)
async def test_a_preflight_from_a_listed_origin_is_answered_without_a_token(
    make_client: MakeClient, method: str, path: str, methods: str
) -> None:
    """Before the access check (every token required): the route's methods and the safe headers."""
    client = await make_client(
        [OTHER, APP], operator_tokens=[OPERATOR], read_tokens=[READ], protect_reads=True
    )
    headers = _preflight(APP, method, "authorization,content-type,x-forwarded-for,cookie")
    async with client.options(path, headers=headers) as response:
        assert response.status == 204, await response.text()
        assert _access_control(response) == {
            "Access-Control-Allow-Origin": APP,
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
        }
        assert "origin" in _vary(response)
        assert "access-control-request-headers" in _vary(response)


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param("http://evil.example", id="unlisted"),
        pytest.param("null", id="null"),
        pytest.param("https://localhost:5173", id="other-scheme"),
        pytest.param("http://localhost:5174", id="other-port"),
        pytest.param("http://localhost:5173.evil.example", id="listed-as-prefix"),
        pytest.param("http://evil.localhost:5173", id="listed-as-suffix"),
    ],
)
async def test_a_preflight_from_an_unlisted_origin_is_a_403_with_no_cors_header(
    make_client: MakeClient, origin: str
) -> None:
    """Exact match only: no pattern, no ``null``; nothing about methods or headers is told."""
    client = await make_client([APP])
    headers = _preflight(origin, "POST", "authorization")
    async with client.options("/api/uptime/check", headers=headers) as response:
        assert response.status == 403
        assert (await response.json())["error"] == "origin_not_allowed"
        assert _access_control(response) == {}


async def test_a_preflight_for_an_unknown_path_is_a_404(make_client: MakeClient) -> None:
    client = await make_client([APP])
    for path in ("/uptime/nothing-here", "/nowhere"):
        async with client.options(path, headers=_preflight(APP, "GET")) as response:
            assert response.status == 404, path
            assert (await response.json())["error"] == "not_found"
            assert "Access-Control-Allow-Methods" not in response.headers


async def test_a_preflight_for_a_method_the_path_does_not_take_is_a_405(
    make_client: MakeClient,
) -> None:
    client = await make_client([APP])
    async with client.options("/uptime/summary", headers=_preflight(APP, "DELETE")) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET, HEAD"
        body = await response.json()
        assert body["error"] == "method_not_allowed"
        assert "Access-Control-Allow-Methods" not in response.headers


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/metrics", id="metrics"),
        pytest.param("/ws/health", id="websocket"),
        pytest.param("/", id="status-page"),
        pytest.param("/api/docs", id="swagger-ui"),
    ],
)
async def test_paths_outside_the_api_are_not_served_cross_origin(
    make_client: MakeClient, path: str
) -> None:
    """A preflight there is a plain OPTIONS (405), and no answer names an origin."""
    client = await make_client([APP])
    async with client.options(path, headers=_preflight(APP, "GET")) as response:
        assert response.status == 405
        assert _access_control(response) == {}
    async with client.get("/metrics", headers={"Origin": APP}) as response:
        assert response.status == 200
        assert _access_control(response) == {}
        assert "origin" not in _vary(response)


async def test_preflights_do_not_spend_the_check_rate_limit(make_client: MakeClient) -> None:
    """The bucket holds one check; a dozen preflights later the check still runs, the next is 429."""
    client = await make_client([APP], operator_tokens=[OPERATOR], checks_per_minute=1)
    for _ in range(12):
        headers = _preflight(APP, "POST", "authorization")
        async with client.options("/api/uptime/check?service=web", headers=headers) as response:
            assert response.status == 204
    token = {"Origin": APP, "Authorization": f"Bearer {OPERATOR}"}
    async with client.post("/api/uptime/check?service=web", headers=token) as response:
        assert response.status == 200, await response.text()
        assert response.headers[ALLOW_ORIGIN] == APP
    async with client.post("/api/uptime/check?service=web", headers=token) as response:
        assert response.status == 429
        assert response.headers[ALLOW_ORIGIN] == APP
        assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]


async def test_a_listed_origin_is_echoed_with_vary_and_without_credentials(
    make_client: MakeClient,
) -> None:
    client = await make_client([OTHER, APP])
    async with client.get("/api/uptime/summary?hours=24", headers={"Origin": APP}) as response:
        assert response.status == 200
        assert response.headers[ALLOW_ORIGIN] == APP
        assert ALLOW_CREDENTIALS not in response.headers  # the token travels in Authorization
        exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"Retry-After", "WWW-Authenticate", "Allow", "ETag"} <= exposed
        assert "origin" in _vary(response)
        assert (await response.json())["services"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "http://evil.example"}, id="unlisted"),
        pytest.param({}, id="no-origin"),
    ],
)
async def test_an_unlisted_or_missing_origin_gets_no_cors_header_but_vary(
    make_client: MakeClient, headers: dict[str, str]
) -> None:
    """The server still answers (CORS stops the page reading it); a cache keeps the two apart."""
    client = await make_client([APP])
    async with client.get("/uptime/summary?hours=24", headers=headers) as response:
        assert response.status == 200
        assert _access_control(response) == {}
        assert "origin" in _vary(response)


async def test_without_allowed_origins_nothing_changes(make_client: MakeClient) -> None:
    """Same-origin only, as before CORS: a preflight is a 405 and no header is added."""
    client = await make_client([])
    async with client.options("/uptime/summary", headers=_preflight(APP, "GET")) as response:
        assert response.status == 405
    async with client.get("/uptime/summary", headers={"Origin": APP}) as response:
        assert response.status == 200
        assert _access_control(response) == {}
        assert "origin" not in _vary(response)


@pytest.mark.parametrize(
    ("method", "path", "auth", "headers", "status"),
    [
        pytest.param("GET", "/uptime/summary?hours=nope", {}, {}, 400, id="400-bad-query"),
        pytest.param("GET", "/uptime/summary", {"protect_reads": True}, {}, 401, id="401"),
        pytest.param(
            "POST",
            "/uptime/check",
            {"operator_tokens": [OPERATOR], "read_tokens": [READ]},
            {"Authorization": f"Bearer {READ}"},
            403,
            id="403-read-token",
        ),
        pytest.param("GET", "/uptime/service/nope", {}, {}, 404, id="404-unknown-service"),
        pytest.param("GET", "/uptime/nothing-here", {}, {}, 404, id="404-no-route"),
        pytest.param("DELETE", "/uptime/summary", {}, {}, 405, id="405"),
    ],
)
async def test_errors_carry_the_cors_headers_so_the_page_can_read_them(
    make_client: MakeClient,
    method: str,
    path: str,
    auth: dict[str, Any],
    headers: dict[str, str],
    status: int,
) -> None:
    client = await make_client([APP], **auth)
    async with client.request(method, path, headers={"Origin": APP, **headers}) as response:
        assert response.status == status
        assert response.content_type == "application/json"
        assert (await response.json())["error"]
        assert response.headers[ALLOW_ORIGIN] == APP
        assert "Access-Control-Expose-Headers" in response.headers
        assert "origin" in _vary(response)


async def test_a_500_carries_the_cors_headers(
    aiohttp_client: Callable[..., Awaitable[Client]], make_settings: MakeSettings
) -> None:
    """A bug in a handler still answers JSON a listed page can read (the middlewares alone)."""

    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = create_web_app(registry=CollectorRegistry())
    app[SETTINGS] = LiveSettings(make_settings([APP]))
    app.router.add_get("/uptime/broken", broken)
    client = await aiohttp_client(app)
    with capture_logs() as logs:
        async with client.get("/uptime/broken", headers={"Origin": APP}) as response:
            assert response.status == 500
            assert (await response.json())["error"] == "internal_error"
            assert response.headers[ALLOW_ORIGIN] == APP
    assert [e["event"] for e in logs] == ["request_failed"]


async def test_a_route_that_answers_options_itself_gets_the_preflight(
    aiohttp_client: Callable[..., Awaitable[Client]], make_settings: MakeSettings
) -> None:
    """socket.io's kind of route (every method, its own CORS): the middleware stays out of it."""

    async def engine(request: web.Request) -> web.Response:
        return web.Response(text=f"engine saw {request.method}")

    app = create_web_app(registry=CollectorRegistry())
    app[SETTINGS] = LiveSettings(make_settings([APP]))
    app.router.add_route("*", "/engine/", engine)
    client = await aiohttp_client(app)
    async with client.options("/engine/", headers=_preflight(APP, "POST")) as response:
        assert response.status == 200
        assert await response.text() == "engine saw OPTIONS"
        assert _access_control(response) == {}


@pytest.mark.parametrize(
    "origins",
    [
        pytest.param(["*"], id="star"),
        pytest.param([APP, "*"], id="star-beside-a-listed-origin"),
    ],
)
async def test_star_answers_any_origin_and_never_with_credentials(
    make_client: MakeClient, origins: list[str]
) -> None:
    client = await make_client(origins, operator_tokens=[OPERATOR])
    for origin in (APP, "http://anyone.example", "null"):
        headers = _preflight(origin, "POST", "authorization")
        async with client.options("/uptime/check", headers=headers) as response:
            assert response.status == 204
            assert response.headers[ALLOW_ORIGIN] == "*"
            assert ALLOW_CREDENTIALS not in response.headers
            assert response.headers["Access-Control-Allow-Headers"] == "Authorization"
        async with client.get("/uptime/summary", headers={"Origin": origin}) as response:
            assert response.status == 200
            assert response.headers[ALLOW_ORIGIN] == "*"
            assert ALLOW_CREDENTIALS not in response.headers
            assert "origin" not in _vary(response)  # the same answer for every origin
        async with client.post("/uptime/check", headers={"Origin": origin}) as response:
            assert response.status == 401
            assert response.headers[ALLOW_ORIGIN] == "*"
            assert ALLOW_CREDENTIALS not in response.headers


async def test_a_reload_changes_the_answer_at_the_next_request(make_client: MakeClient) -> None:
    client = await make_client([APP])
    live = client.app[SETTINGS]

    async def allowed(origin: str) -> str | None:
        async with client.get("/uptime/summary", headers={"Origin": origin}) as response:
            assert response.status == 200
            return response.headers.get(ALLOW_ORIGIN)

    assert await allowed(APP) == APP
    assert await allowed(OTHER) is None
    live.reload(
        live.current.model_copy(
            update={"server": live.current.server.model_copy(update={"allowed_origins": (OTHER,)})}
        )
    )
    assert await allowed(APP) is None
    assert await allowed(OTHER) == OTHER
    async with client.options("/uptime/summary", headers=_preflight(APP, "GET")) as response:
        assert response.status == 403


def test_the_openapi_document_says_how_browsers_may_call_it() -> None:
    description = openapi_document()["info"]["description"]
    assert "server.allowed_origins" in description
    assert "ALLOWED_ORIGINS" in description


@pytest.mark.parametrize(
    "origins", [pytest.param([], id="none-listed"), pytest.param([APP], id="app-listed")]
)
async def test_a_write_from_a_foreign_page_is_refused_before_it_runs(
    make_client: MakeClient, origins: list[str]
) -> None:
    """A "simple" cross-site POST (no preflight) cannot declare maintenance or run checks.

    With no operator token configured these writes are otherwise open, so without this a page on
    any site could silence alerts through a visitor's browser on the daemon's machine.
    """
    client = await make_client(origins)
    foreign = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    window = '{"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z", "reason": "x"}'
    async with client.post("/maintenance", data=window, headers=foreign) as response:
        assert response.status == 403
        assert (await response.json())["error"] == "origin_not_allowed"
    async with client.get("/maintenance") as response:
        assert (await response.json())["windows"] == []
    async with client.post("/api/uptime/check?service=web", headers=foreign) as response:
        assert response.status == 403
    async with client.get("/uptime/service/web") as response:
        assert (await response.json())["checks"]["total"] == 0


async def test_writes_from_the_daemons_own_page_listed_origins_and_non_browsers_run(
    make_client: MakeClient,
) -> None:
    """The same host (the status page's own origin), a listed origin, and no Origin at all pass."""
    client = await make_client([APP])
    own = f"http://{client.server.host}:{client.server.port}"
    for headers in ({"Origin": own}, {"Origin": APP}, {}):
        async with client.post("/uptime/check?service=web", headers=headers) as response:
            assert response.status == 200, (headers, await response.text())
            assert (await response.json())["checks"], headers


@pytest.mark.parametrize(
    ("origin", "host", "forwarded", "own"),
    [
        pytest.param("http://127.0.0.1:8080", "127.0.0.1:8080", "", True, id="same"),
        pytest.param("http://127.0.0.1:8081", "127.0.0.1:8080", "", False, id="other-port"),
        pytest.param("https://127.0.0.1:8080", "127.0.0.1:8080", "", False, id="other-scheme"),
        pytest.param("https://status.example", "status.example", "https", True, id="tls-proxy"),
        pytest.param("https://status.example:443", "status.example", "https", True, id="tls-443"),
        pytest.param("http://status.example", "status.example", "", True, id="default-port"),
        pytest.param("https://evil.example", "status.example", "https", False, id="other-host"),
        pytest.param("http://x:99999", "x", "", False, id="bad-port"),
    ],
)
def test_the_daemons_own_origin(origin: str, host: str, forwarded: str, own: bool) -> None:
    """One rule for "a page of this daemon" (CORS writes and socket.io): host, port and scheme.

    The scheme may be the one a TLS proxy says it served (a browser cannot set X-Forwarded-Proto).
    """
    from aiohttp.test_utils import make_mocked_request  # noqa: PLC0415

    from uptime_daemon.api.cors import is_own_origin  # noqa: PLC0415

    headers = {"Host": host, **({"X-Forwarded-Proto": forwarded} if forwarded else {})}
    assert (
        is_own_origin(origin, make_mocked_request("POST", "/uptime/check", headers=headers)) is own
    )
