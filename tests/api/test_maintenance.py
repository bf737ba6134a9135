"""``/maintenance`` in-process: real SQLite store, real projector, a real loopback target.

An outage is made with real failed checks; a window declared over it afterwards must turn its
seconds into maintenance (and take its incident away), and cancelling the window must bring them
back — the figures are re-derived from the log, not patched.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestServer

from tests.api.helpers import Client, TargetState, eventually, fetch_json
from uptime_daemon.api import models


async def _post(client: Client, path: str, body: object, status: int, method: str = "POST") -> Any:
    async with client.request(method, path, json=body) as response:
        answer = await response.json()
        assert response.status == status, answer
        return answer


async def _outage(client: Client, state: TargetState) -> dict[str, Any]:
    """up, down (two failed checks), up again; the service's figures once the incident closed."""
    await fetch_json(client, "/uptime/check?service=web", method="POST")
    state["up"] = False
    for _ in range(2):
        await fetch_json(client, "/uptime/check?service=web", method="POST")
    state["up"] = True
    await fetch_json(client, "/uptime/check?service=web", method="POST")

    async def closed() -> bool:
        body = await fetch_json(client, "/uptime/service/web?hours=1")
        return bool(body["incidents"]) and not body["incidents"][0]["ongoing"]

    await eventually(closed)
    body: dict[str, Any] = await fetch_json(client, "/uptime/service/web?hours=1")
    return body


async def test_a_window_declared_after_the_outage_turns_it_into_maintenance(
    client: Client, target: tuple[TestServer, TargetState]
) -> None:
    """Retroactive: down seconds move to maintenance, the incident goes; cancel brings them back."""
    _, state = target
    before = await _outage(client, state)
    (incident,) = before["incidents"]
    assert before["seconds"]["down"] > 0
    assert before["seconds"]["maintenance"] == 0
    start = datetime.fromisoformat(incident["start"]) - timedelta(milliseconds=1)
    end = datetime.fromisoformat(incident["end"]) + timedelta(milliseconds=1)
    window = await _post(
        client,
        "/maintenance",
        {"services": ["web"], "start": start.isoformat(), "end": end.isoformat(), "reason": "db"},
        201,
    )
    models.MaintenanceWindowView.model_validate(window)
    assert window["state"] == "ended"
    assert window["source"] == "api"
    after = await fetch_json(client, "/uptime/service/web?hours=1")
    assert after["seconds"]["down"] == 0
    assert after["incidents"] == []
    assert after["seconds"]["maintenance"] >= before["seconds"]["down"]
    assert after["uptimeRatio"] == 1.0
    total = sum(after["seconds"].values())
    assert abs(total - 3600) < 1e-3  # the five figures still add up to the window
    timeline = await fetch_json(client, "/uptime/timeline/web?hours=1")
    assert "maintenance" in [p["status"] for p in timeline["periods"]]
    assert "down" not in [p["status"] for p in timeline["periods"]]
    listed = await fetch_json(client, "/maintenance")
    assert [w["id"] for w in listed["windows"]] == [window["id"]]

    cancelled = await _post(client, f"/maintenance/{window['id']}", {}, 200, method="DELETE")
    assert cancelled["state"] == "cancelled"
    again = await fetch_json(client, "/uptime/service/web?hours=1")
    assert again["seconds"]["down"] == before["seconds"]["down"]
    assert len(again["incidents"]) == 1


async def test_a_window_now_marks_the_service_and_ends_early(client: Client) -> None:
    """A window covering now: ``inMaintenance`` and the metric; ending it clears both."""
    now = datetime.now(UTC)
    window = await _post(
        client,
        "/maintenance",
        {
            "services": ["web"],
            "start": (now - timedelta(minutes=1)).isoformat(),
            "end": (now + timedelta(hours=1)).isoformat(),
        },
        201,
    )
    assert window["state"] == "active"
    service = await fetch_json(client, "/uptime/service/web?hours=1")
    assert service["inMaintenance"] is True
    async with client.get("/metrics") as response:
        assert 'uptime_service_in_maintenance{service="web"} 1.0' in await response.text()
    ended = await _post(client, f"/maintenance/{window['id']}/end", {"reason": "done"}, 200)
    assert ended["state"] == "ended"
    assert ended["endedAt"] is not None
    service = await fetch_json(client, "/uptime/service/web?hours=1")
    assert service["inMaintenance"] is False
    async with client.get("/metrics") as response:
        assert 'uptime_service_in_maintenance{service="web"} 0.0' in await response.text()


async def test_bad_windows_are_400s_naming_the_field(client: Client) -> None:
    """Unknown service, end before start, no zone, unknown field, not JSON: each a clear 400."""
    now = datetime.now(UTC)
    good = {"start": now.isoformat(), "end": (now + timedelta(hours=1)).isoformat()}
    cases: list[tuple[object, str | None]] = [
        ({**good, "services": ["nope"]}, "services"),
        ({**good, "end": (now - timedelta(hours=1)).isoformat()}, None),
        ({**good, "start": "2026-01-01T00:00:00"}, "start"),
        ({**good, "start": 1767225600}, "start"),
        ({**good, "end": "1767225600"}, "end"),  # a Unix time as text is not a date-time either
        ({**good, "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        answer = await _post(client, "/maintenance", body, 400)
        assert answer["error"] == "bad_request"
        if field is not None:
            assert answer["field"] == field, answer
    async with client.post("/maintenance", data=b"{not json") as response:
        assert response.status == 400
    assert (await fetch_json(client, "/maintenance"))["windows"] == []


async def test_unknown_windows_are_404_and_a_cancelled_one_cannot_end(client: Client) -> None:
    """404 for an unknown id; 409 for ending a cancelled window; cancelling twice is harmless."""
    await _post(client, "/maintenance/mw-nope/end", {}, 404)
    await _post(client, "/maintenance/mw-nope", {}, 404, method="DELETE")
    now = datetime.now(UTC)
    window = await _post(
        client,
        "/maintenance",
        {"start": now.isoformat(), "end": (now + timedelta(hours=1)).isoformat()},
        201,
    )
    assert window["services"] == []  # every service
    await _post(client, f"/maintenance/{window['id']}", {}, 200, method="DELETE")
    await _post(client, f"/maintenance/{window['id']}", {}, 200, method="DELETE")
    await _post(client, f"/maintenance/{window['id']}/end", {}, 409)
