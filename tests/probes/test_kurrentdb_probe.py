"""The KurrentDB probe: the real client against stand-in nodes (one, or a three-member cluster).

A cluster is three stand-ins sharing one log, each answering gossip with the same scripted view, as
a replicated cluster looks to a client. Stopping a member also marks it dead in the others' views,
as KurrentDB's gossip does (``is_alive`` false, its last state kept).
"""

from __future__ import annotations

import asyncio
import base64
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
import trustme
from kurrentdbclient.protos.v1 import gossip_pb2
from pydantic import ValidationError

from tests.kurrentdb_standin import Log, StandInServer
from tests.polling import until
from tests.probes.net_servers import evil_targets
from uptime_daemon.config.model import DatabaseService
from uptime_daemon.probes.base import ProbeContext
from uptime_daemon.probes.kurrentdb import Member, assess, probe_kurrentdb
from uptime_daemon.probes.round_trip import HEALTH_CHECK_EVENT
from uptime_daemon.results import FailureReason, Phase
from uptime_daemon.runner import probe_with_deadline

HEALTH = "system-health-check"
LEADER = gossip_pb2.MemberInfo.Leader
FOLLOWER = gossip_pb2.MemberInfo.Follower
ROUND_TRIP = r"round trip \d+\.\d ms"


def kurrentdb(url: str, **options: Any) -> DatabaseService:
    return DatabaseService.model_validate({"kind": "database", "url": url, **options})


class Cluster:
    """Three stand-in nodes on one log; node 0 leads until told otherwise."""

    def __init__(self) -> None:
        self.log = Log()
        self.nodes = [StandInServer(self.log) for _ in range(3)]

    async def start(self) -> None:
        for node in self.nodes:
            await node.start()
        self.elect(0)

    def endpoint(self, index: int) -> str:
        return f"127.0.0.1:{self.nodes[index].service.port}"

    @property
    def url(self) -> str:
        hosts = ",".join(self.endpoint(i) for i in range(3))
        return f"kurrentdb://{hosts}?tls=false"

    def discover_url(self, index: int) -> str:
        return f"kurrentdb+discover://{self.endpoint(index)}?tls=false"

    def elect(self, leader: int) -> None:
        """Every node's gossip names ``leader`` as leader and the others as followers."""
        members = [
            ("127.0.0.1", node.service.port, LEADER if i == leader else FOLLOWER)
            for i, node in enumerate(self.nodes)
        ]
        for node in self.nodes:
            node.service.members = members

    async def stop(self, index: int) -> None:
        """Stop a member; the others' gossip reports it dead."""
        await self.nodes[index].stop(0)
        for node in self.nodes:
            node.service.dead.add(("127.0.0.1", self.nodes[index].service.port))

    def writers(self) -> set[int]:
        """The members that took appends (the round trip's, and its metadata's)."""
        return {i for i, node in enumerate(self.nodes) if "BatchAppend" in node.service.calls}

    async def close(self) -> None:
        for node in self.nodes:
            await node.stop(0)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    started = Cluster()
    await started.start()
    yield started
    await started.close()


@pytest.fixture
async def node() -> AsyncIterator[StandInServer]:
    server = StandInServer()
    await server.start()
    yield server
    await server.stop(0)


# --- the verdict of a gossip view ------------------------------------------------------------


def _view(*members: tuple[int, bool]) -> list[Member]:
    return [
        Member(address="10.0.0.1", port=2113 + i, state=state, is_alive=alive)
        for i, (state, alive) in enumerate(members)
    ]


@pytest.mark.parametrize(
    ("members", "min_alive", "problem", "degraded"),
    [
        pytest.param(
            _view((LEADER, True), (FOLLOWER, True), (FOLLOWER, True)), None, None, None, id="all"
        ),
        pytest.param(
            _view((LEADER, True), (FOLLOWER, True), (FOLLOWER, False)),
            None,
            None,
            "1 of 3 members down",
            id="follower-dead",
        ),
        pytest.param(
            _view((LEADER, True), (FOLLOWER, True), (gossip_pb2.MemberInfo.ShuttingDown, True)),
            None,
            None,
            "1 of 3 members down",
            id="shutting-down",
        ),
        pytest.param(
            _view((LEADER, True), (FOLLOWER, True), (FOLLOWER, False)),
            3,
            "2 of 3 members alive, at least 3 required",
            None,
            id="too-few",
        ),
        pytest.param(
            _view((LEADER, True), (FOLLOWER, True), (FOLLOWER, False)),
            2,
            None,
            "1 of 3 members down",
            id="enough",
        ),
        pytest.param(
            _view((LEADER, False), (FOLLOWER, True), (FOLLOWER, True)),
            None,
            "no leader; 2 of 3 members alive",
            None,
            id="dead-leader",
        ),
        pytest.param(
            _view((LEADER, True), (LEADER, True), (FOLLOWER, True)),
            None,
            "2 leaders (10.0.0.1:2113, 10.0.0.1:2114); 3 of 3 members alive",
            None,
            id="two-leaders",
        ),
        pytest.param(_view((LEADER, True)), 1, None, None, id="single-node"),
    ],
)
def test_assess(
    members: list[Member], min_alive: int | None, problem: str | None, degraded: str | None
) -> None:
    """Down without one live leader or with too few alive; degraded with any member down."""
    health = assess(members, min_alive_members=min_alive)
    assert (health.problem, health.degraded) == (problem, degraded)


# --- one node ----------------------------------------------------------------------------------


async def test_a_single_node_round_trip(node: StandInServer, ctx: ProbeContext) -> None:
    """One event appended and read back, retention set once, gossip timed as the connect phase."""
    service = kurrentdb(node.url, max_age_seconds=600, max_count=5)
    for _ in range(2):
        result = await probe_kurrentdb(service, ctx)
        assert result.ok, result.detail
        assert re.fullmatch(
            rf"KurrentDB 127\.0\.0\.1:{node.service.port}: {ROUND_TRIP}", result.detail
        )
        assert set(result.phases) == {Phase.CONNECT, Phase.WRITE, Phase.READ}
        assert result.degraded is None
    events = node.log.streams[HEALTH].records
    assert [e.type for e in events] == [HEALTH_CHECK_EVENT] * 2
    assert "timestamp" in orjson.loads(events[0].data)
    assert node.log.metadata(HEALTH) == {"$maxAge": 600, "$maxCount": 5}
    assert len(node.log.streams[f"$${HEALTH}"].records) == 1, (
        "metadata written only when it differs"
    )
    assert node.service.calls.count("Gossip.Read") == 2


async def test_a_stopped_node_is_refused(node: StandInServer, ctx: ProbeContext) -> None:
    """Nothing listening: refused, at once, naming the node."""
    await node.stop(0)
    result = await probe_kurrentdb(kurrentdb(node.url), ctx)
    assert result.failure is FailureReason.CONNECTION_REFUSED, result.detail
    assert result.detail.startswith(f"gossip from 127.0.0.1:{node.service.port}: UNAVAILABLE")
    assert result.duration_seconds < 2


async def test_a_failing_round_trip_is_a_store_error(
    node: StandInServer, ctx: ProbeContext
) -> None:
    """A reachable server that refuses the round trip (the stream was tombstoned) is ``store_error``."""
    node.log.stream(HEALTH).tombstoned = True
    result = await probe_kurrentdb(kurrentdb(node.url), ctx)
    assert result.failure is FailureReason.STORE_ERROR, result.detail
    assert result.detail.startswith(f"round trip on 127.0.0.1:{node.service.port}: ")


def test_a_url_the_client_cannot_use_is_refused_at_load_without_its_password() -> None:
    """The client's URI parser refuses it (``+discover`` takes one host): a config error, masked."""
    url = "kurrentdb+discover://admin:s3cret@127.0.0.1:1,127.0.0.1:2"
    with pytest.raises(ValidationError, match="More than one target specified") as raised:
        kurrentdb(url)
    assert "s3cret" not in str(raised.value).split("input_value")[0]


# --- a three-member cluster --------------------------------------------------------------------


@pytest.mark.parametrize("named", ["all-hosts", "discover", "a-follower"])
async def test_a_healthy_cluster(cluster: Cluster, ctx: ProbeContext, named: str) -> None:
    """All three alive: up, the round trip on the leader, whichever member the URL names."""
    url = {
        "all-hosts": cluster.url,
        "discover": cluster.discover_url(2),
        "a-follower": f"kurrentdb://{cluster.endpoint(1)}?tls=false",
    }[named]
    result = await probe_kurrentdb(kurrentdb(url), ctx)
    assert result.ok, result.detail
    assert re.fullmatch(
        rf"KurrentDB cluster: leader {cluster.endpoint(0)}, 3 of 3 alive; {ROUND_TRIP}",
        result.detail,
    )
    assert result.degraded is None
    assert cluster.writers() == {0}


async def test_a_member_down_is_degraded(cluster: Cluster, ctx: ProbeContext) -> None:
    """A follower stopped while the leader serves: up, but degraded."""
    await cluster.stop(2)
    result = await probe_kurrentdb(kurrentdb(cluster.url), ctx)
    assert result.ok, result.detail
    assert result.degraded == "1 of 3 members down"
    assert result.detail.startswith(
        f"KurrentDB cluster: leader {cluster.endpoint(0)}, 2 of 3 alive"
    )


async def test_too_few_members_alive_is_down(cluster: Cluster, ctx: ProbeContext) -> None:
    """``min_alive_members = 3`` with one member stopped: down, reason ``cluster``, no round trip."""
    await cluster.stop(2)
    result = await probe_kurrentdb(kurrentdb(cluster.url, min_alive_members=3), ctx)
    assert result.failure is FailureReason.CLUSTER
    assert result.detail == "KurrentDB cluster: 2 of 3 members alive, at least 3 required"
    assert cluster.writers() == set()


async def test_a_stopped_leader_is_a_cluster_failure_until_another_leads(
    cluster: Cluster, ctx: ProbeContext
) -> None:
    """The leader stopped: ``cluster`` (the survivors' gossip still names it, dead) until an election.

    The URL lists the stopped leader first: the probe goes on to the next member for gossip.
    """
    await cluster.stop(0)
    result = await probe_kurrentdb(kurrentdb(cluster.url), ctx)
    assert result.failure is FailureReason.CLUSTER, result.detail
    assert result.detail == "KurrentDB cluster: no leader; 2 of 3 members alive"
    assert cluster.writers() == set()
    cluster.elect(1)
    result = await probe_kurrentdb(kurrentdb(cluster.url), ctx)
    assert result.ok, result.detail
    assert result.degraded == "1 of 3 members down"
    assert cluster.writers() == {1}


async def test_every_member_stopped_is_refused(cluster: Cluster, ctx: ProbeContext) -> None:
    """No member answers gossip: the connection's reason, not ``cluster`` (nobody said so)."""
    for index in range(3):
        await cluster.stop(index)
    result = await probe_kurrentdb(kurrentdb(cluster.url), ctx)
    assert result.failure is FailureReason.CONNECTION_REFUSED, result.detail
    assert result.detail.startswith(f"gossip from {cluster.endpoint(2)}: UNAVAILABLE")


# --- credentials and TLS: a TLS server that refuses every credential, as KurrentDB answers ------


@dataclass
class Refusing:
    port: int
    ca_file: Path
    authorizations: list[str]


@pytest.fixture
async def refusing(tmp_path: Path) -> AsyncIterator[Refusing]:
    """Gossip over TLS answering ``UNAUTHENTICATED "Unauthenticated"`` (KurrentDB's wrong-password answer)."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    seen: list[str] = []

    async def refuse(_request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        seen.append(dict(context.invocation_metadata()).get("authorization", ""))
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "Unauthenticated")
        raise AssertionError  # abort raises

    handler = grpc.method_handlers_generic_handler(
        "event_store.client.gossip.Gossip", {"Read": grpc.unary_unary_rpc_method_handler(refuse)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    credentials = grpc.ssl_server_credentials([(leaf.private_key_pem.bytes(), chain)])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    yield Refusing(port, ca_file, seen)
    await server.stop(None)


async def test_wrong_credentials_are_auth(refusing: Refusing, ctx: ProbeContext) -> None:
    """Credentials go over TLS as Basic auth; refused, the reason is ``auth`` and no password shows.

    The stand-in speaks neither TLS nor authentication, so this server stands for the refusal.
    """
    url = f"kurrentdb://admin:wrong-secret@127.0.0.1:{refusing.port}"
    result = await probe_kurrentdb(kurrentdb(url, ca_file=str(refusing.ca_file)), ctx)
    assert result.failure is FailureReason.AUTH, result.detail
    assert (
        result.detail == f"gossip from 127.0.0.1:{refusing.port}: UNAUTHENTICATED: Unauthenticated"
    )
    [authorization] = refusing.authorizations
    assert base64.b64decode(authorization.removeprefix("Basic ")) == b"admin:wrong-secret"


async def test_an_untrusted_certificate_is_tls(refusing: Refusing, ctx: ProbeContext) -> None:
    """Without the CA the handshake fails: ``tls``, and no credentials were sent."""
    url = f"kurrentdb://admin:changeit@127.0.0.1:{refusing.port}"
    result = await probe_kurrentdb(kurrentdb(url), ctx)
    assert result.failure is FailureReason.TLS, result.detail
    assert "CERTIFICATE_VERIFY_FAILED" in result.detail
    assert refusing.authorizations == []


def test_switching_verification_off_is_refused_at_load() -> None:
    """The KurrentDB client always verifies: ``verify_tls = false`` is a config error."""
    with pytest.raises(ValidationError, match="give ca_file"):
        kurrentdb("kurrentdb://admin:changeit@127.0.0.1:2113", verify_tls=False)


# --- a port that accepts and never speaks ------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """The "hang" target of ``tests/evil_targets.py``, in its own process (its sockets are not ours)."""
    with evil_targets() as ports:
        yield ports.hang


def _fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def _os_threads() -> int:
    return sum(1 for _ in Path("/proc/self/task").iterdir())


async def test_a_silent_port_is_the_callers_timeout_and_leaks_nothing(
    silent_port: int, ctx: ProbeContext
) -> None:
    """Each check ends at the caller's deadline; fds, threads and tasks stay flat over ten."""
    service = kurrentdb(
        f"kurrentdb://127.0.0.1:{silent_port}?tls=false", timeout_seconds=0.5, interval_seconds=1
    )
    await probe_with_deadline(probe_kurrentdb, service, ctx, ctx.clock)  # warm up gRPC's threads
    fds, threads, os_threads = _fds(), threading.active_count(), _os_threads()
    tasks = len(asyncio.all_tasks())
    for _ in range(10):
        started = time.monotonic()
        result = await probe_with_deadline(probe_kurrentdb, service, ctx, ctx.clock)
        assert time.monotonic() - started < 1.5
        assert result.failure is FailureReason.TIMEOUT, result.detail
    assert len(asyncio.all_tasks()) == tasks
    assert threading.active_count() == threads
    await until(lambda: _fds() <= fds + 2, within=5, what=f"fds back near {fds}")
    assert abs(_os_threads() - os_threads) <= 2


async def test_a_stalled_round_trip_is_the_callers_timeout(
    node: StandInServer, ctx: ProbeContext
) -> None:
    """A node that answers gossip but stalls the round trip: the caller's deadline, and a prompt close."""
    service = kurrentdb(node.url, timeout_seconds=0.5, interval_seconds=1)
    assert (await probe_kurrentdb(service, ctx)).ok
    node.service.stall_seconds = 30  # also stalls gossip: let gossip through first
    original = node.service._gossip

    async def prompt_gossip(context: grpc.aio.ServicerContext) -> gossip_pb2.ClusterInfo:
        stall, node.service.stall_seconds = node.service.stall_seconds, 0
        try:
            return await original(context)
        finally:
            node.service.stall_seconds = stall

    node.service._gossip = prompt_gossip  # type: ignore[method-assign]
    started = time.monotonic()
    result = await probe_with_deadline(probe_kurrentdb, service, ctx, ctx.clock)
    assert result.failure is FailureReason.TIMEOUT, result.detail
    assert time.monotonic() - started < 1.5
