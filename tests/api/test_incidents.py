"""Incidents over HTTP: observed down time and the time nobody was looking, said apart.

A scripted log with a stop in the middle of an outage, folded by the daemon's own projector from
the real SQLite store and served with an injected clock: ``/uptime/service``, ``/status/data`` and
the OpenAPI document must agree on what an incident's seconds are and which ones MTTR uses.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.api.helpers import Client, eventually, fetch_json
from uptime_daemon import events
from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.config.model import CheckPolicy
from uptime_daemon.daemon import build_app
from uptime_daemon.results import CheckKind, FailureReason, ProbeResult
from uptime_daemon.status import INITIAL, step
from uptime_daemon.store.sqlite import SqliteEventStore

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POLICY = CheckPolicy(interval_seconds=10, timeout_seconds=5)
"""Each verdict is credible for 2 × 10 s + 5 s = 25 s; down after two failures, up after one success."""
SCRIPT = [
    *((offset, True) for offset in range(0, 100, 10)),
    *((offset, False) for offset in range(100, 140, 10)),  # down at 110 s, last seen at 130 s
    # stopped: nothing from 130 s to 400 s (credible until 155 s)
    *((offset, False) for offset in (400, 410)),
    *((offset, True) for offset in range(420, 600, 10)),  # back up at 420 s
]
NOW = T0 + timedelta(seconds=600)
DOWN_SECONDS = (130 - 110) + 25 + (420 - 400)
UNKNOWN_SECONDS = 400 - (130 + 25)


@dataclass
class FixedWallClock:
    """The wall clock stands where the test puts it; durations are real."""

    wall: datetime

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return time.monotonic()


async def _write_script(path: Path) -> None:
    """The checks of ``SCRIPT`` through the status machine, appended as the runner would."""
    store = await SqliteEventStore.open(path)
    try:
        stream = events.stream_name("web")
        await store.append(stream, [events.stream_created("web", T0)])
        state = INITIAL
        for offset, ok in SCRIPT:
            at = T0 + timedelta(seconds=offset)
            probe = ProbeResult(
                ok=ok, duration_seconds=0.01, failure=None if ok else FailureReason.TIMEOUT
            )
            outcome = step(state, ok=ok, response_seconds=0.01, at=at, policy=POLICY)
            state = outcome.state
            event = events.status_changed(
                service="web",
                instance="scripted",
                location="default",
                kind=CheckKind.HTTP,
                scheduled_at=at,
                completed_at=at,
                outcome=outcome,
                probe=probe,
                interval_seconds=POLICY.interval_seconds,
                timeout_seconds=POLICY.timeout_seconds,
            )
            await store.append(stream, [event])
    finally:
        await store.close()


@pytest.fixture
async def scripted(aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path) -> Client:
    """The daemon over the scripted log, its clock at ``NOW``, checks off."""
    await _write_script(tmp_path / "events.db")
    settings = settings_from_mapping(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'events.db'}"},
            "scheduler": {"enabled": False},
            "server": {"summary_max_age_seconds": 0},
            "services": {
                "web": {
                    "kind": "http",
                    "url": "http://127.0.0.1:9/",
                    "interval_seconds": 10,
                    "timeout_seconds": 5,
                }
            },
        },
        source="test",
        environ={},
    )
    clock = FixedWallClock(NOW)
    return await aiohttp_client(build_app(settings, base_url="http://127.0.0.1:9", clock=clock))


async def _service(client: Client) -> dict[str, Any]:
    async def folded() -> bool:
        body = await fetch_json(client, "/uptime/service/web?hours=1")
        return bool(body["checks"]["total"] == len(SCRIPT))

    await eventually(folded)
    body: dict[str, Any] = await fetch_json(client, "/uptime/service/web?hours=1")
    return body


async def test_a_stop_mid_outage_is_unknown_time_not_down_time(scripted: Client) -> None:
    """``downSeconds`` is the window's down time; the stop is ``unknownSeconds``; MTTR uses down."""
    body = await _service(scripted)
    (incident,) = body["incidents"]
    assert incident["start"] == "2026-06-01T12:01:50.000Z"
    assert incident["end"] == "2026-06-01T12:07:00.000Z"
    assert incident["durationSeconds"] == pytest.approx(420 - 110)
    assert incident["downSeconds"] == pytest.approx(DOWN_SECONDS)
    assert incident["unknownSeconds"] == pytest.approx(UNKNOWN_SECONDS)
    assert incident["downSeconds"] == pytest.approx(body["seconds"]["down"])
    assert incident["secondsInWindow"] == pytest.approx(body["seconds"]["down"])
    assert body["mttrSeconds"] == pytest.approx(DOWN_SECONDS)
    assert body["longestOutageSeconds"] == pytest.approx(DOWN_SECONDS)
    assert body["longestOutageSeconds"] <= body["seconds"]["down"] + 1e-9
    # The window's unknown time: the 50 minutes before the first check, and the stop.
    assert body["seconds"]["unknown"] == pytest.approx(3000 + UNKNOWN_SECONDS)


async def test_the_status_page_shows_the_same_incident(scripted: Client) -> None:
    """The status page's figures (``/status/service/web``) carry the same split as the service's."""
    service = await _service(scripted)
    web = await fetch_json(scripted, "/status/service/web")
    (incident,) = web["incidents"]
    (same,) = service["incidents"]
    assert (incident["start"], incident["end"]) == (same["start"], same["end"])
    for key in ("durationSeconds", "downSeconds", "unknownSeconds", "secondsInWindow"):
        assert incident[key] == pytest.approx(same[key]), key


async def test_the_openapi_document_says_which_seconds_mttr_uses(scripted: Client) -> None:
    """The field descriptions (generated from the models) name the rule."""
    document = await fetch_json(scripted, "/api/openapi.json")
    schemas = document["components"]["schemas"]
    incident = schemas["Incident"]["properties"]
    assert {"durationSeconds", "downSeconds", "unknownSeconds"} <= set(
        schemas["Incident"]["required"]
    )
    assert "mttrSeconds" in incident["downSeconds"]["description"]
    assert "downSeconds + unknownSeconds" in incident["durationSeconds"]["description"]
    uptime = schemas["ServiceUptime"]["properties"]
    assert "downSeconds" in uptime["mttrSeconds"]["description"]
    assert "downSeconds" in uptime["longestOutageSeconds"]["description"]
