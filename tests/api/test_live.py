"""``WS /ws/health``: health on connect, transitions with positions, loss-free resume."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType
from aiohttp.test_utils import TestServer

from tests.api.helpers import Client, TargetState, fetch_json

MESSAGE_TIMEOUT = 10.0


async def _next(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next message of ``kind`` (health_status repeats may come in between)."""
    while True:
        message: dict[str, Any] = await ws.receive_json(timeout=MESSAGE_TIMEOUT)
        if message["type"] == kind:
            return message


async def _flip(client: Client, state: TargetState, *, up: bool, checks: int) -> None:
    state["up"] = up
    for _ in range(checks):
        await fetch_json(client, "/uptime/check?service=web", method="POST")


async def test_health_status_on_connect(client: Client) -> None:
    """The first message describes every service and component."""
    async with client.ws_connect("/ws/health") as ws:
        first = await ws.receive_json(timeout=MESSAGE_TIMEOUT)
    assert first["type"] == "health_status"
    assert [s["service"] for s in first["services"]] == ["web"]
    assert {c["name"] for c in first["components"]} == {"store", "projector", "scheduler"}


async def test_a_brief_snapshot_leaves_the_services_out(
    client: Client, target: tuple[TestServer, TargetState]
) -> None:
    """``?services=false``: status, position and components, no list; changes still arrive."""
    _, state = target
    async with client.ws_connect("/ws/health?services=false") as ws:
        first = await ws.receive_json(timeout=MESSAGE_TIMEOUT)
        assert first["type"] == "health_status"
        assert "services" not in first
        assert {c["name"] for c in first["components"]} == {"store", "projector", "scheduler"}
        assert first["status"] in {"ok", "degraded", "down"}
        await _flip(client, state, up=True, checks=1)
        change = await ws.receive_json(timeout=MESSAGE_TIMEOUT)
    assert (change["type"], change["service"], change["status"]) == (
        "service_status_change",
        "web",
        "up",
    )


async def test_transitions_arrive_live_with_positions(
    client: Client, target: tuple[TestServer, TargetState]
) -> None:
    """Up → down → up is announced as it is folded, each with its commit position."""
    _, state = target
    async with client.ws_connect("/ws/health") as ws:
        await _next(ws, "health_status")
        await _flip(client, state, up=True, checks=1)
        first = await _next(ws, "service_status_change")
        await _flip(client, state, up=False, checks=2)
        down = await _next(ws, "service_status_change")
        await _flip(client, state, up=True, checks=1)
        back = await _next(ws, "service_status_change")
    assert [m["status"] for m in (first, down, back)] == ["up", "down", "up"]
    assert first["position"] < down["position"] < back["position"]
    assert down["previousStatus"] == "up"
    assert down["event"]["changed"] is True


async def test_resume_from_position_misses_nothing(
    client: Client, target: tuple[TestServer, TargetState]
) -> None:
    """A client reconnecting with ``?from=`` gets every later transition once, in order."""
    _, state = target
    async with client.ws_connect("/ws/health") as ws:
        await _next(ws, "health_status")
        await _flip(client, state, up=True, checks=1)
        first = await _next(ws, "service_status_change")
    # While disconnected: two more transitions.
    await _flip(client, state, up=False, checks=2)
    await _flip(client, state, up=True, checks=1)
    async with client.ws_connect(f"/ws/health?from={first['position']}") as ws:
        # The backlog comes first, then the snapshot: nothing older arrives after the current state.
        missed = [await ws.receive_json(timeout=MESSAGE_TIMEOUT) for _ in range(2)]
        assert [m["type"] for m in missed] == ["service_status_change"] * 2
        snapshot = await ws.receive_json(timeout=MESSAGE_TIMEOUT)
        assert snapshot["type"] == "health_status"
        assert [s["status"] for s in snapshot["services"] if s["service"] == "web"] == ["up"]
        # A live transition after the backlog still arrives, once.
        await _flip(client, state, up=False, checks=2)
        live = await _next(ws, "service_status_change")
        extra = await _drain_changes(ws)
    assert [m["status"] for m in missed] == ["down", "up"]
    assert live["status"] == "down"
    positions = [m["position"] for m in (*missed, live)]
    assert positions == sorted(positions)
    assert len(set(positions)) == 3
    assert extra == []


async def _drain_changes(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """Changes that arrive within a short quiet period (there should be none)."""
    found: list[dict[str, Any]] = []
    while True:
        try:
            message = await ws.receive_json(timeout=0.3)
        except TimeoutError:
            return found
        if message["type"] == "service_status_change":
            found.append(message)


async def test_ping_pong_and_junk(client: Client) -> None:
    """``ping`` gets ``pong``; anything else gets an error message, not a disconnect."""
    async with client.ws_connect("/ws/health") as ws:
        await _next(ws, "health_status")
        await ws.send_str("ping")
        assert await _next_text(ws) == "pong"
        await ws.send_str("{not json")
        error = await _next(ws, "error")
        assert "ping" in error["message"]


async def _next_text(ws: aiohttp.ClientWebSocketResponse) -> str:
    while True:
        message = await ws.receive(timeout=MESSAGE_TIMEOUT)
        if message.type is WSMsgType.TEXT and not message.data.startswith("{"):
            return str(message.data)


async def test_oversize_client_message_closes_with_1009(client: Client) -> None:
    """A client message over the limit closes the socket with 'message too big'."""
    async with client.ws_connect("/ws/health") as ws:
        await _next(ws, "health_status")
        await ws.send_str("x" * 100_000)
        while True:
            message = await ws.receive(timeout=MESSAGE_TIMEOUT)
            if message.type in {WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING}:
                break
        assert ws.close_code == WSCloseCode.MESSAGE_TOO_BIG


@pytest.mark.parametrize("position", ["-5", str(2**63), "x"])
async def test_bad_from_is_a_400(client: Client, position: str) -> None:
    """A bad resume position (negative, past 64 bits, not a number): 400 before the upgrade.

    Never an upgraded socket that then stays silent; the body names the field.
    """
    async with client.get(f"/ws/health?from={position}") as response:
        assert response.status == 400
        assert (await response.json())["field"] == "from"
