"""Two locations on one KurrentDB (the stand-in), real daemon processes: one truth, k-of-n.

The target is cut off from one location by giving that location's daemon a dead address (the
network-namespace partition test does it with real routes); every figure is checked against the
raw events in the store.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import DaemonProcess, free_port, get_json, start_http_target
from tests.kurrentdb_standin import ThreadedStandIn
from tests.polling import wait_until


def _service(port: int) -> str:
    return (
        "[scheduler]\njitter_seconds = 0\n"
        f'[services.web]\nkind = "http"\nurl = "http://127.0.0.1:{port}/"\n'
        'interval_seconds = 0.5\ntimeout_seconds = 0.4\nlocations = ["eu", "us"]\nquorum = 2\n'
    )


def _dead_port() -> int:
    port = free_port()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    return port


def test_a_one_location_outage_is_degraded_and_both_down_is_down(
    daemon_factory: Callable[..., DaemonProcess], standin: ThreadedStandIn, tmp_path: Path
) -> None:
    """Two of two: us cut off → degraded, us down, never down, no flapping; both cut → down.

    Both daemons answer alike, and every figure matches the raw events in the store.
    """
    port = free_port()
    target = start_http_target(port, tmp_path)
    try:
        env = {"KURRENTDB_URL": standin.url}
        eu = daemon_factory(
            _service(port), env={**env, "UPTIME_LOCATION": "eu", "UPTIME_INSTANCE": "eu-1"}
        )
        us = daemon_factory(
            _service(_dead_port()), env={**env, "UPTIME_LOCATION": "us", "UPTIME_INSTANCE": "us-1"}
        )

        def partial_outage_seen() -> dict[str, Any]:
            web = get_json(f"{eu.url}/uptime/service/web?hours=1")
            statuses = {k: v["status"] for k, v in web["locations"].items()}
            return dict(web) if statuses == {"eu": "up", "us": "down"} else {}

        web = wait_until(partial_outage_seen, within=20, what="eu up, us down")
        assert web["status"] == "degraded"
        assert web["quorum"] == {"k": 2, "n": 2, "locations": ["eu", "us"]}
        assert web["incidents"] == []
        assert web["seconds"]["down"] == 0
        # Let both keep checking for a while: still no down, no flapping.
        wait_until(
            lambda: get_json(f"{eu.url}/uptime/service/web?hours=1")["checks"]["total"] >= 30
        )
        periods = get_json(f"{us.url}/uptime/timeline/web?hours=1")["periods"]
        assert "down" not in {p["status"] for p in periods}
        assert [p["status"] for p in periods if p["status"] != "unknown"][-1] == "degraded"
        us_own = get_json(f"{eu.url}/uptime/timeline/web?hours=1&location=us")
        assert us_own["location"] == "us"
        assert us_own["periods"][-1]["status"] == "down"

        target.kill()
        target.wait(timeout=10)

        def both_down() -> dict[str, Any]:
            found = get_json(f"{us.url}/uptime/service/web?hours=1")
            return dict(found) if found["status"] == "down" else {}

        down = wait_until(both_down, within=20, what="the service down once eu sees it too")
        assert len(down["incidents"]) == 1
        metrics = urllib.request.urlopen(f"{eu.url}/metrics", timeout=10).read().decode()  # noqa: S310
        assert 'uptime_service_up{service="web"} 0.0' in metrics
        assert 'uptime_location_up{location="eu",service="web"} 0.0' in metrics
    finally:
        target.kill()
        target.wait(timeout=10)
    assert eu.stop() == 0
    assert us.stop() == 0

    # Independently from the raw events: who wrote what, and each check counted once.
    records = [r for r in standin.records("service-uptime-web") if r.type == "ServiceStatusChanged"]
    payloads = [orjson.loads(r.data) for r in records]
    assert {(p["location"], p["instance"]) for p in payloads} == {("eu", "eu-1"), ("us", "us-1")}
    assert all(
        p["schemaVersion"] == 2 and p["quorum"] == {"k": 2, "of": ["eu", "us"]} for p in payloads
    )
    checks = {(p["location"], p["scheduledAt"]) for p in payloads}
    summary = subprocess.run(
        [sys.executable, "-m", "uptime_daemon", "--config", str(eu.config), "summary", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "KURRENTDB_URL": standin.url, "UPTIME_LOCATION": "eu"},
    )
    (web,) = [s for s in orjson.loads(summary.stdout)["services"] if s["service"] == "web"]
    assert web["checks"]["total"] == len(checks)
    for location in ("eu", "us"):
        mine = {c for c in checks if c[0] == location}
        assert web["locations"][location]["checks"]["total"] == len(mine)
