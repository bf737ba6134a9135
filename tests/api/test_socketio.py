"""socket.io at ``/socket.io/``, namespace ``/ws/health``: real clients (python-socketio, npm's)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from tests.api.helpers import Client, TargetState
from tests.conftest import ROOT
from tests.polling import until
from uptime_daemon.api import socketio_feed
from uptime_daemon.api.keys import PROJECTOR, SETTINGS
from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.daemon import build_app

NAMESPACE = "/ws/health"
EVENTS = ("health_status", "service_status_change")
MESSAGE_TIMEOUT = 10.0
READ = "read-token-123"
NODE = shutil.which("node") or ""
NPM = shutil.which("npm") or ""
NODE_PACKAGE = ROOT / "tests/node"
HANDSHAKE = "/socket.io/?EIO=4&transport=polling"

MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def make_client(
    aiohttp_client: Callable[..., Awaitable[Client]],
    tmp_path: Path,
    target: tuple[TestServer, TargetState],
) -> MakeClient:
    """The daemon's app with ``[server]`` settings of the test's choosing; checks driven by the test."""

    async def make(**server: Any) -> Client:
        target_server, _ = target
        settings = settings_from_mapping(
            {
                "store": {"url": f"sqlite:///{tmp_path / 'events.db'}"},
                "scheduler": {"enabled": False},
                "projector": {"snapshot_interval_seconds": 3600},
                "server": server,
                "services": {
                    "web": {
                        "kind": "http",
                        "url": str(target_server.make_url("/ok")),
                        "interval_seconds": 30,
                        "failures_before_down": 2,
                    }
                },
            },
            source="test",
            environ={},
        )
        return await aiohttp_client(build_app(settings, base_url="http://127.0.0.1:9"))

    return make


class Received:
    """What a python-socketio client saw on the namespace, in order."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.disconnects: list[str] = []

    async def next(self, kind: str) -> dict[str, Any]:
        """The next event of ``kind`` (health_status repeats may come in between)."""
        while True:
            event, data = await asyncio.wait_for(self.events.get(), MESSAGE_TIMEOUT)
            if event == kind:
                return data


@contextlib.asynccontextmanager
async def python_client(
    client: Client,
    *,
    headers: dict[str, str] | None = None,
    transports: list[str] | None = None,
    namespace: str = NAMESPACE,
) -> AsyncIterator[Received]:
    """A python-socketio ``AsyncClient`` connected to ``namespace``; it never reconnects.

    ``headers`` go on every request, as a browser's ``extraHeaders`` do: python-socketio's own
    ``headers`` reach only the first request of the polling transport.
    """
    received = Received()
    async with aiohttp.ClientSession(headers=headers) as http:
        sio = socketio.AsyncClient(reconnection=False, http_session=http)
        for event in EVENTS:

            def put(data: dict[str, Any], event: str = event) -> None:
                received.events.put_nowait((event, data))

            sio.on(event, put, namespace=namespace)
        sio.on("disconnect", received.disconnects.append, namespace=namespace)
        await sio.connect(
            str(client.make_url("/")),
            transports=transports,
            namespaces=[namespace],
            wait_timeout=MESSAGE_TIMEOUT,
        )
        try:
            yield received
        finally:
            # Not waiting for the read loop: over polling it waits out a long poll the server
            # keeps open after the close (up to 30 s); closing the session ends it.
            await sio.eio.disconnect(abort=True)


async def _flip(
    client: Client, state: TargetState, *, up: bool, checks: int, token: str = READ
) -> None:
    """Run ``checks`` checks of ``web`` with the target up or down (the token for protect_reads)."""
    state["up"] = up
    for _ in range(checks):
        headers = {"Authorization": f"Bearer {token}"}
        async with client.post("/uptime/check?service=web", headers=headers) as response:
            assert response.status == 200, await response.text()


async def _plain_change(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = await ws.receive_json(timeout=MESSAGE_TIMEOUT)
        if message["type"] == "service_status_change":
            return message


@pytest.mark.parametrize(
    "transports",
    [
        pytest.param(None, id="polling-then-websocket"),
        pytest.param(["polling"], id="polling"),
        pytest.param(["websocket"], id="websocket"),
    ],
)
async def test_python_client_gets_the_plain_feeds_messages(
    client: Client, target: tuple[TestServer, TargetState], transports: list[str] | None
) -> None:
    """health_status on connect, then each transition: the very messages ``/ws/health`` sends."""
    _, state = target
    async with (
        python_client(client, transports=transports) as received,
        client.ws_connect("/ws/health") as ws,
    ):
        health = await received.next("health_status")
        await _flip(client, state, up=True, checks=1)
        up = await received.next("service_status_change")
        assert up == await _plain_change(ws)
        await _flip(client, state, up=False, checks=2)
        down = await received.next("service_status_change")
        assert down == await _plain_change(ws)
    assert health["type"] == "health_status"
    assert [s["service"] for s in health["services"]] == ["web"]
    assert {c["name"] for c in health["components"]} == {"store", "projector", "scheduler"}
    assert (up["type"], up["service"], up["status"]) == ("service_status_change", "web", "up")
    assert (down["status"], down["previousStatus"]) == ("down", "up")
    assert up["position"] < down["position"]


async def test_health_status_repeats_every_interval(make_client: MakeClient) -> None:
    """A connected client gets health_status again every ``live_health_interval_seconds``."""
    client = await make_client(live_health_interval_seconds=0.05)
    async with python_client(client) as received:
        timestamps = [(await received.next("health_status"))["timestamp"] for _ in range(3)]
    assert timestamps == sorted(set(timestamps))


async def test_only_the_feeds_namespace_is_served(client: Client) -> None:
    """The default namespace ``/`` is refused: the feed is ``/ws/health``, as the seeds name it."""
    with pytest.raises(socketio.exceptions.ConnectionError):
        async with python_client(client, namespace="/"):
            pass


# --- the npm socket.io-client --------------------------------------------------------------------


@pytest.fixture(scope="session")
def node_client() -> Path:
    """``tests/node/socketio_client.mjs`` with its locked socket.io-client installed (``npm ci``)."""
    if not (NODE and NPM):
        pytest.skip("nodejs and npm (Debian packages) not installed")
    installed = NODE_PACKAGE / "node_modules/.package-lock.json"
    lock = NODE_PACKAGE / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            [NPM, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=NODE_PACKAGE,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return NODE_PACKAGE / "socketio_client.mjs"


class NodeClient:
    """The Node.js client as a subprocess; its JSON lines read with a deadline."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    async def until(self, *events: str) -> list[dict[str, Any]]:
        """Read lines until each of ``events`` has been seen; return the lines read so far."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + MESSAGE_TIMEOUT
        while not set(events) <= {line["event"] for line in self.lines}:
            try:
                raw = await asyncio.wait_for(
                    self.process.stdout.readline(), max(0.0, deadline - time.monotonic())
                )
            except TimeoutError:
                raise AssertionError(
                    f"no {events} from node within the deadline: {self.lines}"
                ) from None
            assert raw, f"node exited before {events}: {self.lines} {await self._stderr()}"
            self.lines.append(json.loads(raw))
        return self.lines

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode()

    def first(self, event: str) -> dict[str, Any]:
        return next(line for line in self.lines if line["event"] == event)

    async def exit_code(self) -> int:
        return await asyncio.wait_for(self.process.wait(), MESSAGE_TIMEOUT)


@contextlib.asynccontextmanager
async def node(script: Path, client: Client, *args: str) -> AsyncIterator[NodeClient]:
    """Run the Node.js client against the app (``io(url)``, the seeds' call); kill it on the way out."""
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(script),
        str(client.make_url(NAMESPACE)),
        "--seconds",
        str(MESSAGE_TIMEOUT * 2),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield NodeClient(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.system
@pytest.mark.parametrize(
    ("auth", "args"),
    [
        pytest.param({}, (), id="open"),
        pytest.param(
            {"read_tokens": [READ], "protect_reads": True}, ("--token", READ), id="token-header"
        ),
    ],
)
async def test_the_npm_client_gets_both_events(
    node_client: Path,
    make_client: MakeClient,
    target: tuple[TestServer, TargetState],
    auth: dict[str, Any],
    args: tuple[str, ...],
) -> None:
    """``io('http://host:port/ws/health')`` as the seeds' front end: both events, over WebSocket."""
    _, state = target
    client = await make_client(auth=auth)
    async with node(node_client, client, *args) as feed:
        await feed.until("health_status", "upgrade")  # the upgrade carries the token too
        await _flip(client, state, up=True, checks=1)
        await feed.until("service_status_change", "done")
        assert await feed.exit_code() == 0
    health, change = (
        feed.first("health_status")["data"],
        feed.first("service_status_change")["data"],
    )
    assert feed.first("upgrade")["transport"] == "websocket"
    assert [s["service"] for s in health["services"]] == ["web"]
    assert (change["service"], change["status"]) == ("web", "up")
    assert change["type"] == "service_status_change"


@pytest.mark.system
async def test_the_npm_client_without_a_token_is_refused(
    node_client: Path, make_client: MakeClient
) -> None:
    """With ``protect_reads``, no token: a connect_error, and no feed event at all."""
    client = await make_client(auth={"read_tokens": [READ], "protect_reads": True})
    async with node(node_client, client) as feed:
        await feed.until("connect_error")
        assert await feed.exit_code() == 1
    assert not {"connect", *EVENTS} & {line["event"] for line in feed.lines}


# --- origins -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "origin", "accepted"),
    [
        pytest.param([], "http://evil.example", False, id="none-listed"),
        pytest.param(["http://localhost:5173"], "http://localhost:5173", True, id="listed"),
        pytest.param(["http://localhost:5173"], "http://localhost:3000", False, id="not-listed"),
        pytest.param(["*"], "https://anything.example", True, id="any"),
    ],
)
async def test_origins(
    make_client: MakeClient, allowed: list[str], origin: str, accepted: bool
) -> None:
    """A listed origin is let in and echoed (never with credentials); any other is a JSON 400.

    Over WebSocket too, where browsers apply no CORS of their own.
    """
    client = await make_client(allowed_origins=allowed)
    async with client.get(HANDSHAKE, headers={"Origin": origin}) as response:
        if accepted:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == origin
            assert "Access-Control-Allow-Credentials" not in response.headers
        else:
            assert response.status == 400
            assert "Access-Control-Allow-Origin" not in response.headers
            body = await response.json()
            assert body["error"] == "bad_request"
            assert origin in body["message"]
    connecting = python_client(client, headers={"Origin": origin}, transports=["websocket"])
    if accepted:
        async with connecting as received:
            await received.next("health_status")
    else:
        with pytest.raises(socketio.exceptions.ConnectionError):
            async with connecting:
                pass


async def test_same_origin_needs_no_listing(client: Client) -> None:
    """A page the daemon served itself (its own scheme://host:port) connects with nothing listed."""
    own = f"http://127.0.0.1:{client.port}"
    async with python_client(client, headers={"Origin": own}, transports=["websocket"]) as received:
        await received.next("health_status")


async def test_origins_follow_a_reload(client: Client) -> None:
    """``allowed_origins`` is read at each request: a reload lets a new origin in at once."""
    origin = "http://localhost:5173"
    async with client.get(HANDSHAKE, headers={"Origin": origin}) as response:
        assert response.status == 400
    live = client.app[SETTINGS]
    server = live.current.server.model_copy(update={"allowed_origins": (origin,)})
    live.reload(live.current.model_copy(update={"server": server}))
    async with client.get(HANDSHAKE, headers={"Origin": origin}) as response:
        assert response.status == 200


# --- tokens and errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("transports", [["polling"], ["websocket"]])
async def test_protect_reads_needs_a_bearer_token(
    make_client: MakeClient, transports: list[str]
) -> None:
    """As for ``/ws/health``: 401 (JSON) without a token, the feed with ``Authorization: Bearer``."""
    client = await make_client(auth={"read_tokens": [READ], "protect_reads": True})
    async with client.get(HANDSHAKE) as response:
        assert response.status == 401
        assert "WWW-Authenticate" in response.headers
        assert (await response.json())["error"] == "unauthorized"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        with pytest.raises(socketio.exceptions.ConnectionError):
            async with python_client(client, headers=headers, transports=transports):
                pass
    bearer = {"Authorization": f"Bearer {READ}"}
    async with python_client(client, headers=bearer, transports=transports) as received:
        await received.next("health_status")


async def test_a_cross_origin_page_with_a_token_passes_the_preflight(
    make_client: MakeClient,
) -> None:
    """With ``protect_reads``, a listed page's preflight (sent without a token) is answered.

    The handshake the page then sends with the token opens the feed.
    """
    page = "http://localhost:5173"
    client = await make_client(
        auth={"read_tokens": [READ], "protect_reads": True}, allowed_origins=[page]
    )
    preflight = {
        "Origin": page,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    async with client.options(HANDSHAKE, headers=preflight) as response:
        assert response.status < 300, await response.text()
        assert response.headers["Access-Control-Allow-Origin"] == page
        assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    with_token = {"Origin": page, "Authorization": f"Bearer {READ}"}
    async with client.get(HANDSHAKE, headers=with_token) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Access-Control-Allow-Origin"] == page


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        pytest.param("GET", "/socket.io/?EIO=3&transport=polling", 400, "version", id="eio3"),
        pytest.param("GET", "/socket.io/?EIO=4&transport=pigeon", 400, "transport", id="transport"),
        pytest.param("GET", "/socket.io/?EIO=4&transport=", 400, "transport", id="blank-transport"),
        pytest.param("POST", "/socket.io/?EIO=4&transport=polling", 400, "session", id="no-sid"),
        pytest.param("POST", f"{HANDSHAKE}&sid=gone", 404, "session", id="unknown-sid"),
        pytest.param("GET", f"{HANDSHAKE}&sid=gone", 404, "session", id="unknown-sid-get"),
    ],
)
async def test_engineio_errors_are_json(
    client: Client, method: str, path: str, status: int, message: str
) -> None:
    """engine.io's own refusals keep their status but carry the daemon's JSON error body."""
    async with client.request(method, path) as response:
        assert response.status == status
        assert response.content_type == "application/json"
        body = await response.json()
    assert body["error"] == ("bad_request" if status == 400 else "not_found")
    assert message in body["message"]


# --- slow clients and shutdown -------------------------------------------------------------------


async def test_a_client_too_far_behind_is_closed(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that stops reading is closed once more than the limit waits for it; others go on."""
    monkeypatch.setattr(socketio_feed, "LIVE_QUEUE_LIMIT", 3)
    client = await make_client(live_health_interval_seconds=0.05)
    async with client.get(HANDSHAKE) as response:
        sid = json.loads((await response.text())[1:])["sid"]
    polling = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
    listeners = client.app[PROJECTOR]._listeners
    with capture_logs() as logs:
        async with python_client(client, transports=["websocket"]) as reading:
            await reading.next("health_status")
            fed = len(listeners)
            async with client.post(polling, data=f"40{NAMESPACE},") as response:
                assert response.status == 200  # connected to the namespace; it never polls again
            await until(
                lambda: [e for e in logs if e["event"] == "socketio_client_too_slow"],
                what="the slow client being closed",
            )
            for _ in range(3):  # the client that reads is still fed
                await reading.next("health_status")
            assert reading.disconnects == []
            assert len(listeners) == fed  # the slow client's listener is gone
    async with client.get(polling) as response:
        assert response.status in {400, 404}  # its session is over (closing, or gone)


@pytest.mark.parametrize("transports", [["polling"], ["websocket"]])
async def test_shutdown_closes_clients(client: Client, transports: list[str]) -> None:
    """On shutdown every client is closed at once, and the server stops without waiting them out."""
    async with python_client(client, transports=transports) as received:
        await received.next("health_status")
        closing = asyncio.create_task(client.close())
        await until(lambda: received.disconnects, within=2.0, what="the client's disconnect")
        await asyncio.wait_for(closing, 5.0)  # not the 45 s of engine.io's ping timeout


@pytest.mark.system
async def test_shutdown_lets_the_npm_client_come_back(node_client: Path, client: Client) -> None:
    """socket.io-client sees its transport close (which it answers by reconnecting), not a kick."""
    async with node(node_client, client) as feed:
        await feed.until("health_status", "upgrade")
        closing = asyncio.create_task(client.close())
        await feed.until("disconnect")
        await asyncio.wait_for(closing, 5.0)
    assert feed.first("disconnect")["reason"] == "transport close"
