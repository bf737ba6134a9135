"""Replicas of one location share the services: real daemon processes on the KurrentDB stand-in.

Every figure is checked independently: the target notes each request with its time, each request
is mapped to the slot it served (the slot grid is a pure function of the service's name), and the
raw events in the store say what was written — so "probed once per slot", "taken over within the
bound" and "no slot invented" are counted, not inferred from the daemons' own answers.
"""

from __future__ import annotations

import collections
import http.server
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest

from tests.conftest import DaemonProcess, free_port, get_json
from tests.kurrentdb_standin import ThreadedStandIn
from tests.polling import wait_until
from uptime_daemon.scheduler import grid_phase_seconds

SERVICES = 12
INTERVAL = 1.0
HEARTBEAT = 0.2
TTL = 1.0


class Target:
    """One HTTP server for every service (``/s0`` … ``/s11``), noting each request and its time."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[tuple[str, float]] = []
        lock = threading.Lock()
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    requests.append((self.path.strip("/"), time.time()))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def per_slot(self, since: float, until: float) -> collections.Counter[tuple[str, int]]:
        """Requests per (service, slot) for slots that began within ``[since, until)``."""
        found: collections.Counter[tuple[str, int]] = collections.Counter()
        for name, at in list(self.requests):
            slot = _slot(name, at)
            if since <= _slot_start(name, slot) < until:
                found[(name, slot)] += 1
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _slot(name: str, at: float) -> int:
    return math.floor((at - grid_phase_seconds(name, INTERVAL)) / INTERVAL)


def _slot_start(name: str, slot: int) -> float:
    return grid_phase_seconds(name, INTERVAL) + slot * INTERVAL


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.close()


def _config(port: int) -> str:
    services = "".join(
        f'[services.s{i}]\nkind = "http"\nurl = "http://127.0.0.1:{port}/s{i}"\n'
        for i in range(SERVICES)
    )
    return (
        f"[defaults]\ninterval_seconds = {INTERVAL}\ntimeout_seconds = 0.5\n"
        "[scheduler]\njitter_seconds = 0\n"
        f"[cluster]\nheartbeat_seconds = {HEARTBEAT}\nmember_ttl_seconds = {TTL}\n" + services
    )


def _alive(daemon: DaemonProcess) -> list[str]:
    members = get_json(f"{daemon.url}/health/comprehensive")["members"]
    return sorted(m["instance"] for m in members if m["alive"])


def _events(standin: ThreadedStandIn) -> list[dict[str, Any]]:
    return [
        orjson.loads(record.data)
        for i in range(SERVICES)
        for record in standin.records(f"service-uptime-s{i}")
        if record.type == "ServiceStatusChanged"
    ]


def _event_slot(event: dict[str, Any]) -> tuple[str, int]:
    at = datetime.fromisoformat(event["scheduledAt"])
    name = event["serviceName"]
    return name, round((at.timestamp() - grid_phase_seconds(name, INTERVAL)) / INTERVAL)


@pytest.fixture
def replicas(
    daemon_factory: Callable[..., DaemonProcess], standin: ThreadedStandIn, target: Target
) -> Callable[[str], DaemonProcess]:
    def start(instance: str) -> DaemonProcess:
        env = {"KURRENTDB_URL": standin.url, "UPTIME_INSTANCE": instance}
        return daemon_factory(_config(target.port), env=env)

    return start


def test_three_replicas_probe_each_slot_once_and_take_over_a_killed_one(
    replicas: Callable[[str], DaemonProcess], standin: ThreadedStandIn, target: Target
) -> None:
    """Three replicas: each slot probed and stored once; SIGKILL one: the others carry on.

    Its services are probed again within the member lifetime plus one interval; nothing is
    invented, nothing flips.
    """
    daemons = {name: replicas(name) for name in ("r1", "r2", "r3")}
    wait_until(lambda: all(_alive(d) == ["r1", "r2", "r3"] for d in daemons.values()), within=20)
    settled = time.time() + 2 * INTERVAL  # jobs move within one interval of the members settling
    wait_until(lambda: time.time() > settled + 6 * INTERVAL, interval=0.1, what="six slots")
    window = target.per_slot(settled, settled + 5 * INTERVAL)
    assert len(window) == SERVICES * 5, "every service, every slot of the window"
    assert set(window.values()) == {1}, "probed once per slot: never by two replicas"
    owners = {e["serviceName"]: e["instance"] for e in _events(standin)}
    assert set(owners.values()) == {"r1", "r2", "r3"}, "the work is shared"

    victim = daemons.pop("r2")
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=10)
    killed = time.time()
    wait_until(lambda: all(_alive(d) == ["r1", "r3"] for d in daemons.values()), within=10)
    bound = killed + TTL + INTERVAL + HEARTBEAT
    wait_until(lambda: time.time() > bound + 5 * INTERVAL, interval=0.1, what="five slots more")
    after = target.per_slot(bound, bound + 4 * INTERVAL)
    assert len(after) == SERVICES * 4, "r2's services are probed again within the bound"
    assert set(after.values()) == {1}

    restarted = replicas("r2")
    wait_until(lambda: _alive(restarted) == ["r1", "r2", "r3"], within=20)
    for daemon in (*daemons.values(), restarted):
        assert daemon.stop() == 0

    events = _events(standin)
    slots = [_event_slot(e) for e in events]
    assert len(slots) == len(set(slots)), "no slot stored twice"
    probed = {(name, _slot(name, at)) for name, at in target.requests}
    # A late run (the first after a start or a takeover) may reach the target early in the next slot.
    invented = [(n, k) for n, k in slots if (n, k) not in probed and (n, k + 1) not in probed]
    assert invented == [], "no slot invented: every stored check was a request"
    assert {e["status"] for e in events} == {"up"}, "the target never failed"
    flips = [e for e in events if e["changed"] and e["previousStatus"] is not None]
    assert flips == [], "no spurious transition: every owner continued the status machine"
    # A service's very first check may be reported first by two members at once when ownership
    # moves while the first owner's first check is still in flight (both found no history); the
    # fold sees up followed by up, which is no change.
    firsts = collections.Counter(e["serviceName"] for e in events if e["changed"])
    assert set(firsts) == {f"s{i}" for i in range(SERVICES)}
