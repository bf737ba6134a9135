"""The seeds' stream API: paged browsing, details, events, and the private user-data streams."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.api.helpers import Client, TargetState
from uptime_daemon.api import models
from uptime_daemon.api.keys import STORE
from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.daemon import build_app

READ = {"Authorization": "Bearer reader-token-0123456789"}
OPERATOR = {"Authorization": "Bearer operator-token-0123456789"}
SERVICES = ("alpha", "bravo", "charlie", "delta", "web")


def _settings(tmp_path: Path, url: str, *, user_data: bool) -> Any:
    return settings_from_mapping(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'events.db'}"},
            "scheduler": {"enabled": False},
            "projector": {"snapshot_interval_seconds": 3600},
            "server": {
                "auth": {
                    "read_tokens": [READ["Authorization"].split()[1]],
                    "operator_tokens": [OPERATOR["Authorization"].split()[1]],
                }
            },
            "streams": {"user_data": user_data},
            "services": {name: {"kind": "http", "url": url} for name in SERVICES},
        },
        source="test",
        environ={},
    )


@pytest.fixture(params=[True], ids=["user-data-on"])
async def streams_client(
    request: pytest.FixtureRequest,
    aiohttp_client: Callable[..., Awaitable[Client]],
    tmp_path: Path,
    target: tuple[TestServer, TargetState],
) -> Client:
    server, _ = target
    settings = _settings(tmp_path, str(server.make_url("/ok")), user_data=request.param)
    return await aiohttp_client(build_app(settings, base_url="http://127.0.0.1:9"))


@pytest.fixture
async def closed_client(
    aiohttp_client: Callable[..., Awaitable[Client]],
    tmp_path: Path,
    target: tuple[TestServer, TargetState],
) -> Client:
    server, _ = target
    settings = _settings(tmp_path, str(server.make_url("/ok")), user_data=False)
    return await aiohttp_client(build_app(settings, base_url="http://127.0.0.1:9"))


async def call(
    client: Client,
    method: str,
    path: str,
    *,
    status: int,
    json: object = None,
    headers: dict[str, str] | None = None,
) -> Any:
    async with client.request(
        method, path, json=json, headers=READ if headers is None else headers
    ) as response:
        body = await response.json()
        assert response.status == status, body
        assert response.content_type == "application/json"
        return body


def profile(
    user: str = "user123", event_id: str | None = "evt_1", **changes: Any
) -> dict[str, Any]:
    """The seeds' ``UserDataUpdated`` payload."""
    data: dict[str, Any] = {
        "userId": user,
        "type": "profile",
        "category": "personal",
        "data": {"name": "John Doe"},
        "isPublic": False,
    }
    if event_id is not None:
        data["eventId"] = event_id
    return {**data, **changes}


async def _check_all(client: Client) -> None:
    await call(client, "POST", "/uptime/check", status=200, headers=OPERATOR)


# --- browsing ---------------------------------------------------------------------------------------


async def test_browse_pages_cover_every_stream_once_with_a_total(streams_client: Client) -> None:
    """``?limit&offset`` page through one ordered list; every page says the same total."""
    await _check_all(streams_client)
    whole = await call(streams_client, "GET", "/api/streams/browse?limit=1000", status=200)
    names = [s["name"] for s in whole["streams"]]
    assert names[: len(SERVICES)] == [f"service-uptime-{n}" for n in SERVICES]
    assert "system-health-check" not in names or names.index("system-health-check") >= len(SERVICES)
    assert whole["total"] == len(names)
    paged: list[str] = []
    for offset in range(0, whole["total"] + 2, 2):
        page = await call(
            streams_client, "GET", f"/api/streams/browse?limit=2&offset={offset}", status=200
        )
        assert page["total"] == whole["total"]
        assert (page["limit"], page["offset"]) == (2, offset)
        paged += [s["name"] for s in page["streams"]]
    assert paged == names
    ours = await call(streams_client, "GET", "/streams?limit=1000", status=200)
    assert ours == whole


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("limit=0", "limit", id="limit-zero"),
        pytest.param("limit=1001", "limit", id="limit-too-big"),
        pytest.param("offset=-1", "offset", id="negative-offset"),
        pytest.param("page=2", "page", id="unknown-parameter"),
        pytest.param("limit=5&limit=6", "limit", id="repeated"),
    ],
)
async def test_browse_refuses_what_it_cannot_honour(
    streams_client: Client, query: str, field: str
) -> None:
    """Paging parameters are honoured or refused by name, never silently ignored."""
    body = await call(streams_client, "GET", f"/api/streams/browse?{query}", status=400)
    assert body["field"] == field


async def test_details_give_extent_count_and_retention(streams_client: Client) -> None:
    """Revision range, event count, first and newest event, and ``$maxAge``/``$maxCount``."""
    await _check_all(streams_client)
    await _check_all(streams_client)
    store = streams_client.app[STORE]
    await store.set_stream_metadata("service-uptime-web", max_age_seconds=86_400)
    stored = await store.read_stream("service-uptime-web")
    body = await call(streams_client, "GET", "/api/streams/service-uptime-web/details", status=200)
    details = models.StreamDetails.model_validate(body)
    assert details.first_revision == stored[0].revision
    assert details.last_revision == stored[-1].revision
    assert details.event_count == len(stored)
    assert details.created == stored[0].recorded_at.replace(
        microsecond=stored[0].recorded_at.microsecond // 1000 * 1000
    )
    assert details.last_event.event_id == str(stored[-1].id)
    assert details.last_event.event_type == "ServiceStatusChanged"
    assert body["metadata"] == {"$maxAge": 86_400, "$maxCount": None}
    assert body == await call(
        streams_client, "GET", "/streams/service-uptime-web/details", status=200
    )


async def test_details_of_a_missing_stream_is_404(streams_client: Client) -> None:
    """A stream that does not exist, or is not ours to show, is a 404 naming the stream."""
    for path in ("/api/streams/service-uptime-nope/details", "/api/streams/other-x/details"):
        body = await call(streams_client, "GET", path, status=404)
        assert body["field"] == "name"


async def test_seed_events_path_answers_as_ours(streams_client: Client) -> None:
    """``GET /api/streams/{name}/events?limit=100&direction=forwards`` is our endpoint."""
    await _check_all(streams_client)
    seed = await call(
        streams_client,
        "GET",
        "/api/streams/service-uptime-web/events?limit=100&direction=forwards",
        status=200,
    )
    ours = await call(
        streams_client,
        "GET",
        "/streams/service-uptime-web/events?limit=100&direction=forwards",
        status=200,
    )
    assert seed == ours
    assert [e["eventType"] for e in seed["events"]][-1] == "ServiceStatusChanged"


# --- user-data streams ------------------------------------------------------------------------------


async def test_user_data_is_off_unless_enabled(closed_client: Client) -> None:
    """With ``[streams] user_data`` off, writes and reads say how to turn it on; nothing is stored."""
    body = await call(
        closed_client,
        "POST",
        "/api/streams/create",
        json={
            "streamName": "user-user123-profile",
            "eventType": "UserDataUpdated",
            "eventData": profile(),
        },
        headers=OPERATOR,
        status=404,
    )
    assert body["error"] == "user_data_disabled"
    assert "user_data" in body["message"]
    body = await call(closed_client, "GET", "/api/streams/user-user123-profile/events", status=404)
    assert body["error"] == "user_data_disabled"
    listing = await call(closed_client, "GET", "/api/streams/browse?limit=1000", status=200)
    assert not [s for s in listing["streams"] if s["kind"] == "user"]


async def test_create_then_append_then_read_back(streams_client: Client) -> None:
    """The seeds' create and append store ``UserDataUpdated`` with revision 0, 1 and a timestamp."""
    created = await call(
        streams_client,
        "POST",
        "/api/streams/create",
        json={
            "streamName": "user-user123-profile",
            "eventType": "UserDataUpdated",
            "eventData": profile(),
        },
        headers=OPERATOR,
        status=201,
    )
    assert (created["revision"], created["duplicate"], created["clientEventId"]) == (
        0,
        False,
        "evt_1",
    )
    appended = await call(
        streams_client,
        "POST",
        "/api/streams/user-user123-profile/events",
        json={
            "eventType": "UserDataUpdated",
            "eventData": profile(event_id=None, data={"name": "Jane"}),
        },
        headers=OPERATOR,
        status=201,
    )
    assert appended["revision"] == 1
    assert appended["clientEventId"].startswith("evt_")
    events = await call(
        streams_client, "GET", "/api/streams/user-user123-profile/events", status=200
    )
    first, second = events["events"]
    assert first["eventType"] == "UserDataUpdated"
    assert first["data"]["userId"] == "user123"
    assert first["data"]["timestamp"].endswith("Z")
    assert second["data"]["data"] == {"name": "Jane"}
    assert second["eventId"] == appended["eventId"]


async def test_a_repeated_event_id_is_stored_once(streams_client: Client) -> None:
    """Retrying a write is safe: the same ``eventId`` is 200 ``duplicate``; other data is 409."""
    path = "/api/streams/user-u-1-activity/events"
    data = profile("u-1", "evt_retry", type="activity")
    body = {"eventType": "UserDataUpdated", "eventData": data}
    first = await call(streams_client, "POST", path, json=body, headers=OPERATOR, status=201)
    again = await call(streams_client, "POST", path, json=body, headers=OPERATOR, status=200)
    assert again["duplicate"] is True
    assert (again["eventId"], again["revision"]) == (first["eventId"], first["revision"])
    changed = {**body, "eventData": {**data, "category": "other"}}
    conflict = await call(streams_client, "POST", path, json=changed, headers=OPERATOR, status=409)
    assert conflict["error"] == "idempotency_conflict"
    stored = await streams_client.app[STORE].read_stream("user-u-1-activity")
    assert len(stored) == 1


async def test_concurrent_retries_store_one_event(streams_client: Client) -> None:
    """Ten copies of one write racing each other: one event, one 201, nine duplicates."""
    path = "/api/streams/user-racer-loans/events"
    body = {"eventType": "UserDataUpdated", "eventData": profile("racer", "evt_race", type="loans")}

    async def post() -> int:
        async with streams_client.post(path, json=body, headers=OPERATOR) as response:
            return response.status

    statuses = await asyncio.gather(*(post() for _ in range(10)))
    assert sorted(statuses) == [200] * 9 + [201]
    assert len(await streams_client.app[STORE].read_stream("user-racer-loans")) == 1


async def test_create_of_an_existing_stream_is_409(streams_client: Client) -> None:
    """``create`` means a new stream; a second one with another ``eventId`` is refused."""
    body = {
        "streamName": "user-user123-offers",
        "eventType": "UserDataUpdated",
        "eventData": profile(type="offers"),
    }
    await call(
        streams_client, "POST", "/api/streams/create", json=body, headers=OPERATOR, status=201
    )
    body["eventData"] = profile(type="offers", event_id="evt_2")
    conflict = await call(
        streams_client, "POST", "/api/streams/create", json=body, headers=OPERATOR, status=409
    )
    assert conflict["error"] == "stream_exists"


@pytest.mark.parametrize(
    ("stream", "event_type", "data", "status", "field"),
    [
        pytest.param(
            "service-uptime-web", "UserDataUpdated", profile(), 403, "streamName", id="ours"
        ),
        pytest.param(
            "system-maintenance", "UserDataUpdated", profile(), 403, "streamName", id="system"
        ),
        pytest.param(
            "user-user123-wishes", "UserDataUpdated", profile(), 400, "streamName", id="type"
        ),
        pytest.param(
            "user-profile", "UserDataUpdated", profile(), 400, "streamName", id="seed-example"
        ),
        pytest.param(
            "user-bob-profile", "UserDataUpdated", profile(), 400, "eventData.userId", id="user"
        ),
        pytest.param(
            "user-user123-loans", "UserDataUpdated", profile(), 400, "eventData.type", id="suffix"
        ),
        pytest.param(
            "user-user123-profile", "UserCreated", profile(), 400, "eventType", id="etype"
        ),
        pytest.param(
            "user-user123-profile",
            "UserDataUpdated",
            profile(data="not an object"),
            400,
            "eventData.data",
            id="data",
        ),
        pytest.param(
            "user-user123-profile",
            "UserDataUpdated",
            profile(event_id="evt with spaces"),
            400,
            "eventData.eventId",
            id="event-id",
        ),
    ],
)
async def test_bad_writes_are_refused_and_store_nothing(
    streams_client: Client, stream: str, event_type: str, data: Any, status: int, field: str
) -> None:
    """The daemon's streams are 403; a malformed name or payload is a 400 naming the field."""
    store = streams_client.app[STORE]
    before = await store.read_all()
    body = await call(
        streams_client,
        "POST",
        "/api/streams/create",
        json={"streamName": stream, "eventType": event_type, "eventData": data},
        headers=OPERATOR,
        status=status,
    )
    assert body["field"] == field
    assert await store.read_all() == before
    if status == 403:
        body = await call(
            streams_client,
            "POST",
            f"/api/streams/{stream}/events",
            json={"eventType": event_type, "eventData": data},
            headers=OPERATOR,
            status=403,
        )
        assert body["error"] == "read_only_stream"


async def test_user_streams_are_private(streams_client: Client) -> None:
    """Writes need an operator token; reads and listings need a token; the status page never shows them."""
    body = {
        "streamName": "user-secret-preferences",
        "eventType": "UserDataUpdated",
        "eventData": profile("secret", type="preferences"),
    }
    await call(streams_client, "POST", "/api/streams/create", json=body, headers={}, status=401)
    await call(streams_client, "POST", "/api/streams/create", json=body, headers=READ, status=403)
    await call(
        streams_client, "POST", "/api/streams/create", json=body, headers=OPERATOR, status=201
    )
    for path in (
        "/api/streams/user-secret-preferences/events",
        "/streams/user-secret-preferences/details",
        "/api/streams/system-user-streams/events",
    ):
        await call(streams_client, "GET", path, headers={}, status=401)
        await call(streams_client, "GET", path, headers=READ, status=200)
    listed = await call(streams_client, "GET", "/api/streams/browse?limit=1000", status=200)
    assert listed["streams"][-1] == {
        "name": "user-secret-preferences",
        "kind": "user",
        "lastRevision": 0,
        "lastPosition": listed["streams"][-1]["lastPosition"],
    }
    page = await call(
        streams_client,
        "GET",
        f"/api/streams/browse?limit=1&offset={listed['total'] - 1}",
        status=200,
    )
    assert [s["name"] for s in page["streams"]] == ["user-secret-preferences"]
    async with streams_client.get("/status/data") as response:
        assert response.status == 200
        assert "secret" not in await response.text()


async def test_user_streams_are_never_listed_without_a_token(
    aiohttp_client: Callable[..., Awaitable[Client]],
    tmp_path: Path,
    target: tuple[TestServer, TargetState],
) -> None:
    """With reads open (no read tokens), the listing still hides user streams from the anonymous."""
    server, _ = target
    settings = settings_from_mapping(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'events.db'}"},
            "scheduler": {"enabled": False},
            "server": {"auth": {"operator_tokens": [OPERATOR["Authorization"].split()[1]]}},
            "streams": {"user_data": True},
            "services": {"web": {"kind": "http", "url": str(server.make_url("/ok"))}},
        },
        source="test",
        environ={},
    )
    client = await aiohttp_client(build_app(settings, base_url="http://127.0.0.1:9"))
    body = {
        "streamName": "user-anon-profile",
        "eventType": "UserDataUpdated",
        "eventData": profile("anon"),
    }
    await call(client, "POST", "/api/streams/create", json=body, headers=OPERATOR, status=201)
    anonymous = await call(client, "GET", "/api/streams/browse", headers={}, status=200)
    assert "user-anon-profile" not in [s["name"] for s in anonymous["streams"]]
    holder = await call(client, "GET", "/api/streams/browse", headers=OPERATOR, status=200)
    assert holder["total"] == anonymous["total"] + 1
    await call(client, "GET", "/api/streams/user-anon-profile/events", headers={}, status=401)
