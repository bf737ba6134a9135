"""The daemon against KurrentDB (the wire-compatible stand-in): self-monitoring and a store outage."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.conftest import DaemonProcess, get_json
from tests.kurrentdb_standin import ThreadedStandIn
from tests.polling import wait_until

SERVICES = """
[defaults]
interval_seconds = 1
[scheduler]
jitter_seconds = 0
[services.http]
kind = "http"
url = "/health"
[services.database]
kind = "database"
"""


def _checks(lines: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    return [e for e in lines if e.get("event") == "probe_completed" and e.get("service") == service]


def test_daemon_on_kurrentdb_monitors_itself(
    daemon_factory: Callable[..., DaemonProcess], standin: ThreadedStandIn
) -> None:
    """With KURRENTDB_URL set, events go to KurrentDB and the API reports from them."""
    daemon = daemon_factory(SERVICES, env={"KURRENTDB_URL": standin.url})
    daemon.wait_until(
        lambda lines: len(_checks(lines, "http")) >= 3 and len(_checks(lines, "database")) >= 3
    )
    health = get_json(f"{daemon.url}/health/kurrentdb")
    assert health["backend"] == "kurrentdb"
    assert health["connected"] is True
    assert health["lastAppendPosition"] > 0
    assert "127.0.0.1" in health["url"]

    def three_http_checks() -> dict[str, Any]:
        summary = get_json(f"{daemon.url}/uptime/summary?hours=1")
        found = {s["service"]: s for s in summary["services"]}
        return found if found["http"]["checks"]["total"] >= 3 else {}

    by_name = wait_until(three_http_checks, what="three http checks in the summary")
    assert by_name["http"]["status"] == "up"
    assert by_name["database"]["status"] == "up"
    assert daemon.stop() == 0
    records = standin.records("service-uptime-http")
    assert records[0].type == "StreamCreated"
    stored = [orjson.loads(r.data) for r in records if r.type == "ServiceStatusChanged"]
    assert len(stored) == len(_checks(daemon.lines, "http"))
    assert all(s["serviceName"] == "http" for s in stored)
    assert standin.records("system-health-check")
    assert standin.server.log.soft_deleted("connection-test")


@pytest.mark.slow
def test_thirty_second_store_outage_loses_and_duplicates_nothing(
    daemon_factory: Callable[..., DaemonProcess], standin: ThreadedStandIn
) -> None:
    """Stop the store for 30 s while checks run every second: every check's event lands exactly once, in order."""
    daemon = daemon_factory(SERVICES, env={"KURRENTDB_URL": standin.url})
    daemon.wait_until(lambda lines: len(_checks(lines, "http")) >= 2)
    standin.stop()
    stopped = time.monotonic()
    before = len(_checks(daemon.lines, "http"))
    seconds = int(
        os.environ.get("UPTIME_OUTAGE_SECONDS", "30")
    )  # docs/reliability.md ran it at 120
    daemon.wait_until(
        lambda lines: len(_checks(lines, "http")) >= before + seconds, timeout=seconds * 2
    )
    outage = time.monotonic() - stopped
    standin.start()
    daemon.wait_for_log(lambda e: e.get("event") == "spool_drained", timeout=60)
    assert daemon.stop() == 0
    assert outage >= seconds - 1
    checks = _checks(daemon.lines, "http")
    stored = [
        orjson.loads(r.data)
        for r in standin.records("service-uptime-http")
        if r.type == "ServiceStatusChanged"
    ]
    assert len(stored) == len(checks)
    assert len({s["eventId"] for s in stored}) == len(stored)
    scheduled = [s["scheduledAt"] for s in stored]
    assert scheduled == sorted(scheduled)
    assert len(set(scheduled)) == len(scheduled)
    assert any(e.get("event") == "store_unavailable_spooling" for e in daemon.lines)
    figure = f"outage {outage:.0f} s: {len(checks)} checks, {len(stored)} events stored, each once, in order"
    print(figure)  # noqa: T201 - the figure docs/reliability.md quotes
