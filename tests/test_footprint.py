"""A daemon loads the drivers of what it watches, not of every kind it could watch.

The database drivers (asyncpg, aiomysql, redis), the KurrentDB client with gRPC and protobuf,
dnspython and the socket.io server with its clients are each megabytes of modules; a daemon that
watches HTTP services on the embedded store needs none of them (22 MiB of its heap at start,
measured with tracemalloc, before they were loaded on first use).
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.conftest import DaemonProcess, get_json

ON_FIRST_USE = ("asyncpg", "aiomysql", "redis", "kurrentdbclient", "grpc", "dns", "socketio")
"""Top-level packages only a check of that kind (or a socket.io client) loads."""

HTTP_ONLY = """
[defaults]
interval_seconds = 1
[services.web]
kind = "http"
url = "/health"
"""


def test_the_run_command_imports_no_driver() -> None:
    """What ``uptime-daemon run`` imports before it reads a config: none of the drivers."""
    code = (
        "import sys\n"
        "import uptime_daemon.cli\n"
        "from uptime_daemon.daemon import serving, wiring\n"
        "from uptime_daemon.config.load import settings_from_mapping\n"
        "settings_from_mapping({'services': {'x': {'kind': 'http', 'url': 'http://127.0.0.1:9/'}}}, source='t', environ={})\n"
        f"print(' '.join(m for m in {ON_FIRST_USE!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == []


def _libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text(encoding="utf-8")


def test_a_running_daemon_loads_a_driver_only_when_asked(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """Compiled parts show in the process's memory map: none until a check or client needs one."""
    daemon = daemon_factory(HTTP_ONLY)
    daemon.wait_for_log(
        lambda e: e.get("event") == "probe_completed" and e.get("service") == "web", timeout=30
    )
    assert get_json(f"{daemon.url}/health")["status"] == "ok"
    maps = _libraries(daemon.proc.pid)
    assert "cygrpc" not in maps  # grpcio
    assert "/asyncpg/" not in maps
    assert "/engineio/" not in maps
    # The socket.io feed still answers: its server is made at the first request.
    with urllib.request.urlopen(  # noqa: S310 - the daemon's loopback URL
        f"{daemon.url}/socket.io/?EIO=4&transport=polling", timeout=10
    ) as response:
        assert response.status == 200
        assert response.read().startswith(b"0{")  # engine.io's open packet


def test_the_offline_commands_load_no_server_probes_or_api() -> None:
    """``replay``, ``export``, ``compact``… import neither aiohttp nor the API nor the probes."""
    heavy = ("aiohttp", "uptime_daemon.api", "uptime_daemon.probes", "uptime_daemon.daemon.wiring")
    code = (
        "import sys, uptime_daemon.cli, uptime_daemon.daemon.offline; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert loaded == ""
