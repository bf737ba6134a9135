"""Two locations in their own network namespaces, a real partition between one and the target.

Each daemon runs in a namespace (``ip netns``) joined to this one by a veth pair; the KurrentDB
stand-in and the target listen on addresses of this namespace's veth ends, so both locations reach
both. Cutting a location off the target is a ``prohibit`` route inside its namespace: the kernel
refuses the connection, exactly as a broken network path would. Needs root (CI runs as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import DaemonProcess
from tests.kurrentdb_standin import ThreadedStandIn
from tests.polling import wait_until

IP = shutil.which("ip") or ""
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not IP, reason="network namespaces need root and iproute2's ip"
)
TARGET_PORT = 18_080


def _ip(*args: str) -> None:
    subprocess.run([IP, *args], check=True, capture_output=True, timeout=30)


@dataclass
class Location:
    """One vantage point: a namespace, its address, and the root side of its link."""

    name: str
    netns: str
    address: str
    gateway: str

    def exec_prefix(self) -> tuple[str, ...]:
        return (IP, "netns", "exec", self.netns)

    def cut_off(self, address: str) -> None:
        """The kernel refuses every connection from here to ``address``."""
        _ip("netns", "exec", self.netns, "ip", "route", "add", "prohibit", f"{address}/32")


@dataclass
class Network:
    eu: Location
    us: Location
    target: str
    store: str


@pytest.fixture
def network() -> Iterator[Network]:
    """Namespaces eu (10.231.1.0/24) and us (10.231.2.0/24); target and store in this one."""
    tag = f"{os.getpid() % 100_000}"
    made: list[Location] = []
    try:
        for index, name in ((1, "eu"), (2, "us")):
            location = Location(name, f"ud-{name}-{tag}", f"10.231.{index}.2", f"10.231.{index}.1")
            outside, inside = f"ud{name}{tag}o", f"ud{name}{tag}i"
            _ip("netns", "add", location.netns)
            made.append(location)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", location.netns)
            _ip("addr", "add", f"{location.gateway}/24", "dev", outside)
            _ip("addr", "add", f"10.231.{index}.100/24", "dev", outside)
            _ip("link", "set", outside, "up")
            run = ("netns", "exec", location.netns, "ip")
            _ip(*run, "addr", "add", f"{location.address}/24", "dev", inside)
            _ip(*run, "link", "set", inside, "up")
            _ip(*run, "link", "set", "lo", "up")
            _ip(*run, "route", "add", "default", "via", location.gateway)
        yield Network(made[0], made[1], target="10.231.1.100", store="10.231.2.100")
    finally:
        for location in made:  # deleting a namespace deletes its end of the veth, and so the pair
            subprocess.run([IP, "netns", "del", location.netns], check=False, timeout=30)


def _start_daemon(tmp_path: Path, location: Location, store_url: str, target: str) -> DaemonProcess:
    directory = tmp_path / location.name
    directory.mkdir()
    config = directory / "daemon.toml"
    config.write_text(
        f'environment = "test"\ninstance = "{location.name}-1"\nlocation = "{location.name}"\n'
        f'[server]\nhost = "{location.address}"\nport = 0\nshutdown_timeout_seconds = 5\n'
        f'[store]\nurl = "{store_url}"\n'
        '[log]\nlevel = "info"\nformat = "json"\n[scheduler]\njitter_seconds = 0\n'
        '[services.web]\nkind = "http"\n'
        f'url = "http://{target}:{TARGET_PORT}/"\ninterval_seconds = 0.5\ntimeout_seconds = 0.4\n'
        'locations = ["eu", "us"]\nquorum = 2\nfailures_before_down = 2\n',
        encoding="utf-8",
    )
    return DaemonProcess(config, prefix=location.exec_prefix())


def _service(daemon: DaemonProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"{daemon.url}/uptime/service/web?hours=1", timeout=10) as answer:  # noqa: S310 - a test namespace address
        found: dict[str, Any] = orjson.loads(answer.read())
    return found


def test_a_real_partition_is_degraded_and_cutting_both_is_down(
    network: Network, tmp_path: Path
) -> None:
    """K = 2 of 2 across namespaces: eu cut off → degraded (never down, no flapping); both → down."""
    standin = ThreadedStandIn(bind=network.store)
    standin.start()
    target = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(TARGET_PORT), "--bind", network.target],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    daemons: list[DaemonProcess] = []
    try:
        daemons = [
            _start_daemon(tmp_path, location, standin.url, network.target)
            for location in (network.eu, network.us)
        ]
        eu, us = daemons
        wait_until(lambda: _service(eu)["status"] == "up", within=20, what="web up from both")
        network.eu.cut_off(network.target)

        def partial() -> dict[str, Any]:
            found = _service(us)
            statuses = {k: v["status"] for k, v in found["locations"].items()}
            return found if statuses == {"eu": "down", "us": "up"} else {}

        seen = wait_until(partial, within=20, what="eu down, us up")
        assert seen["status"] == "degraded"
        checks = seen["checks"]["total"]
        wait_until(lambda: _service(eu)["checks"]["total"] >= checks + 20, within=30)
        web = _service(eu)
        assert web["status"] == "degraded"
        assert web["incidents"] == []
        assert web["seconds"]["down"] == 0
        periods = [status for status in _timeline(eu) if status != "unknown"]
        assert "down" not in periods, "below quorum: never down"
        assert periods.count("degraded") == 1, "no flapping"

        network.us.cut_off(network.target)
        cut = _service(us)["checks"]["total"]

        def down_now() -> dict[str, Any]:
            found = _service(us)
            return found if found["status"] == "down" else {}

        down = wait_until(down_now, within=20, what="web down once both are cut off")
        # Down within failures_before_down intervals of us's side: at most 2 more checks from each.
        assert down["checks"]["total"] - cut <= 2 * 2 + 2
        assert len(down["incidents"]) == 1
    finally:
        for daemon in daemons:
            daemon.stop()
        target.kill()
        target.wait(timeout=10)
        standin.close()


def _timeline(daemon: DaemonProcess) -> list[str]:
    with urllib.request.urlopen(f"{daemon.url}/uptime/timeline/web?hours=1", timeout=10) as answer:  # noqa: S310 - a test namespace address
        return [p["status"] for p in orjson.loads(answer.read())["periods"]]
