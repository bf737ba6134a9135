"""The daemon as a user runs it: a subprocess, real sockets, real signals."""

from __future__ import annotations

import functools
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from tests.conftest import DaemonProcess, free_port, start_http_target, stored_events

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


def _raw_exchange(url: str, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` as is on a fresh connection; the answer's status line, headers and body."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):  # the daemon closes the connection after such an error
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (x.partition(":") for x in lines)}
    return status, headers, body


MALFORMED: dict[str, bytes] = {
    "request-line-10kB": b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "header-10kB": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 10_000 + b"\r\n\r\n",
    "not-http": b"\x16\x03\x01\x02\x00\x01\r\n\r\n",
    "body-not-gzip": b"POST /maintenance HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
    b"Content-Length: 4\r\n\r\nabcd",
}


def test_malformed_http_is_a_json_400_and_one_quiet_log_line(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """What aiohttp cannot parse (before any middleware) is our JSON 400, logged without a traceback."""
    daemon = daemon_factory()
    for name, request in MALFORMED.items():
        status, headers, body = _raw_exchange(daemon.url, request)
        assert status.split()[1] == "400", (name, status, body)
        assert headers["content-type"].startswith("application/json"), (name, headers, body)
        answer = orjson.loads(body)
        assert answer == {"error": "bad_request", "message": answer["message"], "field": None}
        assert "aaaa" not in answer["message"]  # the request's bytes are not echoed back

    def malformed(lines: list[dict[str, Any]]) -> bool:
        seen = sum(1 for e in lines if e.get("event") == "http_request_malformed")
        return seen == len(MALFORMED)

    daemon.wait_until(malformed)
    address = urlsplit(daemon.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(b"POST /maintenance HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        sock.shutdown(socket.SHUT_WR)  # and hang up with the body cut short
        assert sock.recv(65536) == b""
    daemon.wait_for_log(lambda e: e.get("event") == "client_disconnected")
    assert daemon.stop() == 0
    for entry in daemon.lines:  # a client's mistake is no error of ours, and shows no traceback
        assert "exception" not in entry, entry
        assert entry["level"] != "error", entry


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
    first = daemon_factory()
    port = first.url.rsplit(":", 1)[1]
    config = first.config.parent / "second.toml"
    config.write_text(first.config.read_text().replace("port = 0", f"port = {port}"))
    done = subprocess.run(
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


def _completed(service: str, entry: dict[str, object]) -> bool:
    return entry.get("event") == "probe_completed" and entry.get("service") == service


def test_self_monitoring_writes_the_seed_events(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """A fresh daemon writes StreamCreated and a ServiceStatusChanged for http, websocket and database."""
    daemon = daemon_factory(SELF_SERVICES)
    for service in ("http", "websocket", "database"):
        daemon.wait_for_log(functools.partial(_completed, service))
    assert daemon.stop() == 0
    rows = [(e.stream, e.type, e.data) for e in stored_events(tmp_path / "events.db")]
    for service in ("http", "websocket", "database"):
        mine = [
            (kind, orjson.loads(data))
            for stream, kind, data in rows
            if stream == f"service-uptime-{service}"
        ]
        assert mine[0][0] == "StreamCreated"
        checks = [data for kind, data in mine if kind == "ServiceStatusChanged"]
        assert checks, service
        assert checks[0]["serviceName"] == service
        assert checks[0]["status"] == "up", checks[0]
        assert list(checks[0])[:6] == [
            "serviceName",
            "status",
            "timestamp",
            "duration",
            "metadata",
            "eventId",
        ]


def test_killed_target_goes_down_then_comes_back(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """Kill the target: down after failures_before_down checks; restart it: back up."""
    port = free_port()
    target = start_http_target(port, tmp_path)
    try:
        daemon = daemon_factory(
            f"""
[services.web]
kind = "http"
url = "http://127.0.0.1:{port}/"
interval_seconds = 0.3
timeout_seconds = 0.3
failures_before_down = 2
"""
        )

        def changed_to(status: str) -> Callable[[dict[str, object]], bool]:
            return lambda e: (
                e.get("event") == "service_status_changed" and e.get("status") == status
            )

        daemon.wait_for_log(changed_to("up"))
        target.kill()
        target.wait(timeout=10)
        down = daemon.wait_for_log(changed_to("down"))
        before = daemon.lines[: daemon.lines.index(down)]
        failures = [
            e
            for e in before
            if e.get("event") == "probe_completed"
            and e.get("service") == "web"
            and e.get("ok") is False
        ]
        assert down["reason"] == "connection_refused"
        assert len(failures) == 2  # the transition happened exactly at the second failure
        target = start_http_target(port, tmp_path)
        back = daemon.wait_for_log(
            lambda e: changed_to("up")(e) and e.get("previous_status") == "down"
        )
        assert back["previous_status"] == "down"
        assert daemon.stop() == 0
    finally:
        target.kill()
        target.wait(timeout=10)
