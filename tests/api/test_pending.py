"""A new service's first failures: pending (no verdict) until failures_before_down confirm them."""

from __future__ import annotations

from aiohttp.test_utils import TestServer

from tests.api.helpers import Client, TargetState, eventually, fetch_json
from uptime_daemon.api.keys import PROJECTOR


async def test_a_first_failure_is_pending_then_confirmed_down(
    client: Client, target: tuple[TestServer, TargetState]
) -> None:
    """Shown and counted as unknown, never as down, no transition; the second failure is the outage."""
    _, state = target
    state["up"] = False
    first = await fetch_json(client, "/uptime/check?service=web", method="POST")
    (check,) = first["checks"]
    assert check["eventType"] == "ServiceCheckPending"
    await eventually(lambda: _folded(client, check["position"]))
    assert check["event"]["pending"] == {"failures": 1, "of": 2}
    service = await fetch_json(client, "/uptime/service/web?hours=1")
    assert service["status"] == "unknown"
    assert service["seconds"]["down"] == 0
    assert service["incidents"] == []
    second = await fetch_json(client, "/uptime/check?service=web", method="POST")
    (check,) = second["checks"]
    assert check["eventType"] == "ServiceStatusChanged"
    assert (check["event"]["status"], check["event"]["changed"]) == ("down", True)
    await eventually(lambda: _status_is(client, "down"))
    service = await fetch_json(client, "/uptime/service/web?hours=1")
    assert len(service["incidents"]) == 1


async def test_a_first_success_is_up_at_once(client: Client) -> None:
    """No confirmation is needed to say a service answers."""
    first = await fetch_json(client, "/uptime/check?service=web", method="POST")
    (check,) = first["checks"]
    assert (check["eventType"], check["event"]["status"]) == ("ServiceStatusChanged", "up")
    await eventually(lambda: _status_is(client, "up"))


async def _status_is(client: Client, status: str) -> bool:
    return bool((await fetch_json(client, "/uptime/service/web?hours=1"))["status"] == status)


async def _folded(client: Client, position: int) -> bool:
    """The projector has folded the event at ``position``."""
    folded = client.app[PROJECTOR].position
    return folded is not None and folded >= position
