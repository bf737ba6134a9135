"""The daemon as a user runs it: a subprocess, real sockets, real signals."""

from __future__ import annotations

import signal
from collections.abc import Callable

import aiohttp
import pytest

from tests.conftest import DaemonProcess

SELF_SERVICES = """
[defaults]
interval_seconds = 1
[services.http]
kind = "http"
url = "/health"
json_assertions = [{ path = "status", equals = "ok" }]
[services.websocket]
kind = "websocket"
url = "/ws/health"
script = [{ expect_json = { type = "health_status" } }, { send = "ping" }, { expect = "pong", skip_unmatched = true }]
[services.database]
kind = "database"
"""


@pytest.mark.parametrize(
    "sig", [pytest.param(signal.SIGTERM, id="sigterm"), pytest.param(signal.SIGINT, id="sigint")]
)
async def test_serves_health_then_stops_cleanly(
    daemon_factory: Callable[..., DaemonProcess], sig: int
) -> None:
    """``/health`` answers JSON while running; a signal stops the daemon with exit status 0."""
    daemon = daemon_factory(SELF_SERVICES)
    async with aiohttp.ClientSession() as session, session.get(f"{daemon.url}/health") as response:
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "ok"
    assert body["environment"] == "test"
    assert daemon.stop(sig) == 0
    assert any(line.get("event") == "daemon_stopped" for line in daemon.lines)


async def test_unknown_path_is_a_json_404(daemon_factory: Callable[..., DaemonProcess]) -> None:
    """Even aiohttp's own errors come back as JSON."""
    daemon = daemon_factory()
    async with aiohttp.ClientSession() as session, session.get(f"{daemon.url}/nope") as response:
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"
    assert daemon.stop() == 0


def test_logs_are_json_lines_with_snake_case_events(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """Every line the daemon prints off a TTY is a JSON object with an event and a level."""
    daemon = daemon_factory(SELF_SERVICES)
    daemon.wait_for_log(lambda e: e.get("event") == "probe_completed")
    assert daemon.stop() == 0
    assert daemon.lines
    for entry in daemon.lines:
        assert entry.get("event") != "unparsed", entry
        assert entry["event"].replace("_", "").isalnum()
        assert entry["event"] == entry["event"].lower()
        assert entry["level"] in {"debug", "info", "warning", "error", "critical"}


def test_port_in_use_is_a_clear_error(daemon_factory: Callable[..., DaemonProcess]) -> None:
    """A second daemon on a busy port exits 1 with a readable message, not a traceback."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    first = daemon_factory()
    port = first.url.rsplit(":", 1)[1]
    config = first.config.parent / "second.toml"
    config.write_text(first.config.read_text().replace("port = 0", f"port = {port}"))
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "uptime_daemon", "--config", str(config), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert "address already in use" in done.stderr.lower()
    assert first.stop() == 0
