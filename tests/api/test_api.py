"""The HTTP API in-process: real SQLite store, real loopback target, real projector."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from openapi_spec_validator import validate

from tests.api.helpers import Client, TargetState, eventually, fetch_json, web_checks
from uptime_daemon.api import models, openapi_document


async def test_health_is_live(client: Client) -> None:
    """``/health`` answers with the liveness model."""
    body = await fetch_json(client, "/health")
    models.Liveness.model_validate(body)
    assert body["status"] == "ok"


async def test_ready_once_projector_caught_up(client: Client) -> None:
    """Readiness turns 200 with every component ok."""

    async def ready() -> bool:
        async with client.get("/health/ready") as response:
            return response.status == 200

    await eventually(ready)
    body = await fetch_json(client, "/health/ready")
    assert body["ready"] is True
    assert {c["name"] for c in body["components"]} == {"store", "projector", "scheduler"}


async def test_check_then_summary_counts_it(client: Client) -> None:
    """A manual check is stored and then folded into the summary."""
    result = await fetch_json(client, "/uptime/check?service=web", method="POST")
    (check,) = result["checks"]
    assert check["stored"] is True
    assert check["event"]["serviceName"] == "web"
    assert check["event"]["status"] == "up"

    async def counted() -> bool:
        return await web_checks(client) == 1

    await eventually(counted)
    service = await fetch_json(client, "/uptime/service/web?hours=1")
    assert service["status"] == "up"
    assert service["configured"] is True
    assert service["responseTime"]["samples"] == 1


async def test_outage_shows_as_down_then_incident_closes(
    client: Client, target: tuple[TestServer, TargetState]
) -> None:
    """Two failed checks turn the service down; a good one ends the incident."""
    _, state = target
    await fetch_json(client, "/uptime/check?service=web", method="POST")
    state["up"] = False
    for _ in range(2):
        await fetch_json(client, "/uptime/check?service=web", method="POST")

    async def down() -> bool:
        body = await fetch_json(client, "/uptime/service/web?hours=1")
        return bool(body["status"] == "down")

    await eventually(down)
    state["up"] = True
    await fetch_json(client, "/uptime/check?service=web", method="POST")

    async def recovered() -> bool:
        body = await fetch_json(client, "/uptime/service/web?hours=1")
        return (
            body["status"] == "up"
            and len(body["incidents"]) == 1
            and not body["incidents"][0]["ongoing"]
        )

    await eventually(recovered)
    timeline = await fetch_json(client, "/uptime/timeline/web?hours=1")
    assert [p["status"] for p in timeline["periods"]] == ["unknown", "up", "down", "up"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        pytest.param("/uptime/summary?hours=0", "hours", id="zero-hours"),
        pytest.param("/uptime/summary?hours=abc", "hours", id="not-a-number"),
        pytest.param("/uptime/summary?hours=1.5", "hours", id="fractional"),
        pytest.param("/uptime/summary?hours=100000", "hours", id="beyond-ten-years"),
        pytest.param("/uptime/summary?hours=1&hours=2", "hours", id="repeated"),
        pytest.param("/uptime/summary?window=1", "window", id="unknown-parameter"),
        pytest.param("/uptime/service/web?hours=-1", "hours", id="negative"),
        pytest.param("/streams/service-uptime-web/events?limit=0", "limit", id="limit-zero"),
        pytest.param(
            "/streams/service-uptime-web/events?direction=up", "direction", id="bad-direction"
        ),
        pytest.param(
            f"/streams/service-uptime-web/events?fromRevision={2**63}",
            "fromRevision",
            id="revision-past-64-bits",
        ),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(client: Client, path: str, field: str) -> None:
    """Bad query parameters get 400 with a JSON body naming the field."""
    body = await fetch_json(client, path, status=400)
    models.ErrorBody.model_validate(body)
    assert body["field"] == field


@pytest.mark.parametrize(
    ("method", "path", "status", "error", "field"),
    [
        pytest.param("GET", "/uptime/service/nope", 404, "unknown_service", "name", id="service"),
        pytest.param("GET", "/uptime/timeline/nope", 404, "unknown_service", "name", id="timeline"),
        pytest.param(
            "POST", "/uptime/check?service=nope", 404, "unknown_service", "service", id="check"
        ),
        pytest.param(
            "GET", "/streams/service-uptime-nope/events", 404, None, "name", id="missing-stream"
        ),
        pytest.param(
            "GET", "/streams/user-123-profile/events", 404, None, "name", id="not-browsable"
        ),
        pytest.param("GET", "/nope", 404, "not_found", None, id="unknown-path"),
        pytest.param("DELETE", "/health", 405, "method_not_allowed", None, id="wrong-method"),
        pytest.param("GET", "/uptime/summary?hours=0", 400, "bad_request", "hours", id="bad-query"),
    ],
)
async def test_every_error_body_has_error_message_and_field(
    client: Client, method: str, path: str, status: int, error: str | None, field: str | None
) -> None:
    """Ours and aiohttp's own errors alike: the three documented keys, ``field`` null when none."""
    async with client.request(method, path) as response:
        assert response.status == status
        assert response.content_type == "application/json"
        body = await response.json()
        if status == 405:  # RFC 9110: a 405 says what is allowed
            assert "GET" in response.headers["Allow"]
    assert set(body) == {"error", "message", "field"}, body
    assert body["field"] == field
    if error is not None:
        assert body["error"] == error
    models.ErrorBody.model_validate(body)


async def test_store_health_reports_backend_and_appends(client: Client) -> None:
    """``/health/kurrentdb`` says which store, that it is connected, and the last append."""
    await fetch_json(client, "/uptime/check?service=web", method="POST")
    body = await fetch_json(client, "/health/kurrentdb")
    assert body["backend"] == "sqlite"
    assert body["connected"] is True
    assert body["roundTripMs"] >= 0
    assert body["appends"] >= 1
    assert body["lastAppendPosition"] is not None


async def test_streams_browse(client: Client) -> None:
    """The uptime stream is listed and readable backwards with a limit."""
    await fetch_json(client, "/uptime/check?service=web", method="POST")
    listing = await fetch_json(client, "/streams")
    names = [s["name"] for s in listing["streams"]]
    assert "service-uptime-web" in names
    page = await fetch_json(
        client, "/streams/service-uptime-web/events?limit=1&direction=backwards"
    )
    (event,) = page["events"]
    assert event["eventType"] == "ServiceStatusChanged"
    forwards = await fetch_json(client, "/streams/service-uptime-web/events?limit=1")
    assert forwards["events"][0]["eventType"] == "StreamCreated"


async def test_comprehensive_health(client: Client) -> None:
    """Every configured service and every component in one answer."""
    body = await fetch_json(client, "/health/comprehensive")
    models.ComprehensiveHealth.model_validate(body)
    assert [s["service"] for s in body["services"]] == ["web"]


async def test_openapi_document_is_valid_and_complete(client: Client) -> None:
    """The generated document validates and documents every route the app serves."""
    document = await fetch_json(client, "/api/openapi.json")
    validate(document)
    assert document == openapi_document() | {"paths": document["paths"]}
    error_body = document["components"]["schemas"]["ErrorBody"]
    assert set(error_body["required"]) == {
        "error",
        "message",
        "field",
    }  # field: present, maybe null
    assert {"type": "null"} in error_body["properties"]["field"]["anyOf"]
    served = {
        route.resource.canonical
        for route in client.app.router.routes()
        if route.resource is not None
        and not route.resource.canonical.startswith(("/api/", "/static"))
    }
    assert served <= set(document["paths"]), served - set(document["paths"])


async def test_swagger_ui_is_served_locally(client: Client) -> None:
    """``/api/docs`` loads its assets from this server only (no CDN)."""
    async with client.get("/api/docs") as response:
        assert response.status == 200
        page = await response.text()
    assert "http://" not in page
    assert "https://" not in page
    async with client.get("/api/docs/static/swagger-ui-bundle.js") as response:
        assert response.status == 200
        assert len(await response.read()) > 100_000


async def test_windows_beyond_retention_are_clamped(client: Client) -> None:
    """Asking for more history than is kept answers for the retention, and says so."""
    body = await fetch_json(client, "/uptime/summary?hours=8759")
    assert body["hours"] == 90 * 24
    assert body["services"][0]["window"]["hours"] == 90 * 24


async def test_the_status_page_says_what_the_newest_check_saw(
    client: Client, target: tuple[TestServer, TargetState]
) -> None:
    """``/status/service/web``: a good check's detail, then a failed one's reason and detail.

    ``/status/data``'s compact row carries the reason alone (left out while checks succeed).
    """
    _, state = target

    async def newest() -> tuple[str | None, str | None]:
        body = await fetch_json(client, "/status/service/web")
        return body["lastReason"], body["lastDetail"]

    await fetch_json(client, "/uptime/check?service=web", method="POST")
    await eventually(lambda: _is(newest, lambda seen: seen[0] is None and bool(seen[1])))
    state["up"] = False
    await fetch_json(client, "/uptime/check?service=web", method="POST")
    await eventually(lambda: _is(newest, lambda seen: seen[0] == "http_status"))
    _, detail = await newest()
    assert detail is not None
    assert "503" in detail
    page = await fetch_json(client, "/status/data")
    assert [s.get("lastReason") for s in page["services"] if s["service"] == "web"] == [
        "http_status"
    ]


async def _is(
    read: Callable[[], Awaitable[tuple[str | None, str | None]]],
    holds: Callable[[tuple[str | None, str | None]], bool],
) -> bool:
    return holds(await read())


@pytest.mark.parametrize(
    "path",
    [
        "/uptime/summary?hours=1",
        "/uptime/service/web?hours=1",
        "/uptime/timeline/web?hours=1",
        "/health/comprehensive",
        "/health/kurrentdb",
    ],
)
async def test_the_seeds_paths_answer_as_ours(client: Client, path: str) -> None:
    """``/api/uptime/*`` and ``/api/health/*`` are the same operations as the unprefixed paths."""
    ours = await fetch_json(client, path)
    seeds = await fetch_json(client, "/api" + path)
    assert set(seeds) == set(ours)  # the same shape ...

    def stable(body: dict[str, Any]) -> object:
        """What does not move with the clock between two requests."""
        services = body.get("services", [])
        periods = body.get("periods", [])
        return (
            body.get("status"),
            body.get("service"),
            body.get("backend"),
            [(x["service"], x["status"]) for x in services],
            [p["status"] for p in periods],
        )

    assert stable(seeds) == stable(ours)  # ... and the same answer


async def test_the_seeds_paths_are_in_the_openapi_document_and_keep_their_errors(
    client: Client,
) -> None:
    """Each seed path is documented (its own operation id); bad input and unknown names alike."""
    document = await fetch_json(client, "/api/openapi.json")
    assert "get" in document["paths"]["/api/uptime/summary"]
    assert "post" in document["paths"]["/api/uptime/check"]
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    body = await fetch_json(client, "/api/uptime/summary?hours=0", status=400)
    assert body["field"] == "hours"
    await fetch_json(client, "/api/uptime/service/nope", status=404)
    ready = await fetch_json(client, "/api/health")
    assert ready["status"] == "ok"
