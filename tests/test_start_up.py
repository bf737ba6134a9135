"""Start-up against one shared host: the per-host limit keeps the monitor from causing an outage.

150 services, all on one target that serves one request at a time in 20 ms (50 a second, listen
backlog 5: a small single-worker application). A daemon that sends the first round as fast as it
can queues requests at the target past their 1 s deadline; with ``per_host_concurrency`` the queue
stays in the daemon, outside the deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import DaemonProcess

SERVICES = 150
WORK_SECONDS = 0.02


class _Serial(BaseHTTPRequestHandler):
    busy = threading.Lock()

    def do_GET(self) -> None:
        with self.busy:  # one at a time, as a single-worker application serves
            time.sleep(WORK_SECONDS)  # the target's own work, not a wait for a condition
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Serial)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _first_round(
    daemon_factory: Callable[..., DaemonProcess], target: str, per_host: int
) -> list[dict[str, Any]]:
    services = "".join(
        f'[services.s{i}]\nkind = "http"\nurl = "{target}/s{i}"\n' for i in range(SERVICES)
    )
    daemon = daemon_factory(
        f"[scheduler]\njitter_seconds = 0\nper_host_concurrency = {per_host}\n"
        "[defaults]\ninterval_seconds = 60\ntimeout_seconds = 1\n" + services
    )

    def done(lines: list[dict[str, Any]]) -> bool:
        return bool(sum(e.get("event") == "probe_completed" for e in lines) >= SERVICES)

    daemon.wait_until(done, timeout=60)
    assert daemon.stop() == 0
    return daemon.lines


def test_with_the_per_host_limit_no_first_check_fails(
    daemon_factory: Callable[..., DaemonProcess], target: str
) -> None:
    """Every one of the 150 first checks succeeds: the target answered each within its deadline."""
    lines = _first_round(daemon_factory, target, per_host=8)
    probes = [e for e in lines if e.get("event") == "probe_completed"]
    assert [e for e in probes if not e["ok"]] == []
    assert not [
        e for e in lines if e.get("event") == "service_status_changed" and e["status"] == "down"
    ]


def test_without_it_the_first_round_times_out_and_stays_pending(
    daemon_factory: Callable[..., DaemonProcess], target: str
) -> None:
    """The same start with no limit: first checks time out at the target.

    Being a new service's first failures, they are pending, not down: no service opens its
    history with an outage. (A service whose next slot comes soon after start is checked again
    meanwhile; a second timeout in a row then is a confirmed outage by the usual rule, which is
    what this overload without the limit really does to the target.)
    """
    lines = _first_round(daemon_factory, target, per_host=10_000)
    first: dict[str, dict[str, Any]] = {}
    for entry in lines:
        if entry.get("event") == "probe_completed":
            first.setdefault(entry["service"], entry)
    failed = [e for e in first.values() if not e["ok"]]
    assert failed, "the scenario must overload the target without the limit"
    assert {e["reason"] for e in failed} == {"timeout"}
    assert {e["status"] for e in failed} == {None}  # no service opens its history down
