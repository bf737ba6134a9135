"""A leader change under a running daemon: the not-leader redirect, then the old leader gone.

Two stand-in nodes share one log (a replicated cluster, as the client sees it). Midway the leader
answers appends with "not leader, the leader is B"; later it stops altogether. The daemon must
follow to B, keep checking, lose nothing and store nothing twice: every check it completed is in
the log exactly once.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from kurrentdbclient.protos.v1 import gossip_pb2

from tests.conftest import DaemonProcess
from tests.kurrentdb_standin import Log, StandInServer
from tests.polling import wait_until

SERVICES = """
[defaults]
interval_seconds = 0.3
[scheduler]
jitter_seconds = 0
[services.http]
kind = "http"
url = "/health"
[services.database]
kind = "database"
"""


class TwoNodes:
    """Nodes A (leader at first) and B on one event loop thread, sharing one log."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.log = Log()
        self.a, self.b = StandInServer(self.log), StandInServer(self.log)
        self.call(self.a.start())
        self.call(self.b.start())
        self.view(leader=self.a)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def view(self, *, leader: StandInServer) -> None:
        """Both nodes' gossip names ``leader`` as leader and the other as follower."""
        members = [
            (
                "127.0.0.1",
                node.service.port,
                gossip_pb2.MemberInfo.Leader if node is leader else gossip_pb2.MemberInfo.Follower,
            )
            for node in (self.a, self.b)
        ]
        self.a.service.members = self.b.service.members = members

    @property
    def url(self) -> str:
        return (
            f"kurrentdb://127.0.0.1:{self.a.service.port},127.0.0.1:{self.b.service.port}?tls=false"
        )

    def status_events(self) -> list[dict[str, Any]]:
        async def snapshot() -> list[dict[str, Any]]:
            return [orjson.loads(r.data) for r in self.log.all if r.type == "ServiceStatusChanged"]

        found: list[dict[str, Any]] = self.call(snapshot())
        return found

    def close(self) -> None:
        self.call(self.a.stop(0))
        self.call(self.b.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def nodes() -> Iterator[TwoNodes]:
    cluster = TwoNodes()
    yield cluster
    cluster.close()


def _ready(daemon: DaemonProcess) -> bool:
    try:
        with urllib.request.urlopen(f"{daemon.url}/health/ready", timeout=5) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def test_the_daemon_follows_a_leader_change_and_loses_nothing(
    daemon_factory: Callable[..., DaemonProcess], nodes: TwoNodes
) -> None:
    """Redirected by the old leader, then with the old leader gone: no check lost or doubled."""
    daemon = daemon_factory(SERVICES, env={"KURRENTDB_URL": nodes.url})

    def stored() -> int:
        return len(nodes.status_events())

    wait_until(lambda: stored() >= 6, what="checks stored through A")
    nodes.view(leader=nodes.b)
    nodes.a.service.not_leader = ("127.0.0.1", nodes.b.service.port)
    before = stored()
    wait_until(lambda: stored() >= before + 6, within=20, what="checks stored through B")
    assert "BatchAppend" in nodes.b.service.calls, "the client followed the redirect to B"
    nodes.call(nodes.a.stop(0))
    after = stored()
    wait_until(lambda: stored() >= after + 6, within=30, what="checks with A gone")
    wait_until(lambda: _ready(daemon), within=30, what="ready again")
    assert daemon.stop() == 0
    completed = [e for e in daemon.lines if e.get("event") == "probe_completed"]
    events = nodes.status_events()
    checks = [(e["serviceName"], e["scheduledAt"]) for e in events]
    assert len(checks) == len(set(checks)), "no check stored twice"
    assert len(events) == len(completed), "every completed check is stored"
    assert [e for e in daemon.lines if e.get("level") in {"error", "critical"}] == []
