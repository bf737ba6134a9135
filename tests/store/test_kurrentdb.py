"""The KurrentDB adapter: the shared contract against the stand-in, over a real socket, plus faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from kurrentdbclient import AsyncKurrentDBClient
from kurrentdbclient.protos.v1 import gossip_pb2

from tests.kurrentdb_standin import StandInServer
from tests.store.contract import EventStoreContract, FakeClock, new
from uptime_daemon.errors import EventStoreUnavailable, StreamDeleted
from uptime_daemon.store import CaughtUp
from uptime_daemon.store.kurrentdb import KurrentDBEventStore, connection_uri


@pytest.fixture
async def standin() -> AsyncIterator[StandInServer]:
    server = StandInServer()
    await server.start()
    yield server
    await server.stop()


class TestKurrentDBContract(EventStoreContract):
    """The very same contract as SQLite, against the real client and the stand-in server."""

    @pytest.fixture
    async def store(
        self, standin: StandInServer, clock: FakeClock
    ) -> AsyncIterator[KurrentDBEventStore]:
        standin.log.now = lambda: clock.now().timestamp()
        opened = await KurrentDBEventStore.open(standin.url, timeout_seconds=5)
        yield opened
        await opened.close()


async def test_server_stop_is_unavailable_and_restart_recovers(standin: StandInServer) -> None:
    """A stopped server makes operations fail fast and cleanly; the same client works once it is back."""
    store = await KurrentDBEventStore.open(standin.url, timeout_seconds=2)
    try:
        await store.append("s-1", [new()])
        await standin.stop()
        with pytest.raises(EventStoreUnavailable):
            await store.append("s-1", [new()])
        with pytest.raises(EventStoreUnavailable):
            await store.ping()
        await standin.start()
        # gRPC may still be in its reconnect backoff: retry, as the outage spool does, with a deadline.
        deadline = time.monotonic() + 30
        while True:
            try:
                await store.append("s-1", [new()])
                break
            except EventStoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        assert len(await store.read_stream("s-1")) == 2
    finally:
        await store.close()


async def test_a_stalled_server_times_out(standin: StandInServer) -> None:
    """A server slower than the operation deadline is unavailable, within a bounded time."""
    store = await KurrentDBEventStore.open(standin.url, timeout_seconds=0.2)
    try:
        standin.service.stall_seconds = 1.0
        started = time.monotonic()
        with pytest.raises(EventStoreUnavailable):
            await store.read_stream("anything")
        assert time.monotonic() - started < 10
    finally:
        standin.service.stall_seconds = 0
        await store.close()


async def test_injected_unavailable_is_translated(standin: StandInServer) -> None:
    """An UNAVAILABLE status becomes our EventStoreUnavailable, with the cause chained."""
    store = await KurrentDBEventStore.open(standin.url, timeout_seconds=2)
    try:
        standin.service.unavailable = True
        with pytest.raises(EventStoreUnavailable) as caught:
            await store.append("s", [new()])
        assert caught.value.__cause__ is not None
    finally:
        standin.service.unavailable = False
        await store.close()


async def test_subscription_breaks_with_unavailable_when_the_server_stops(
    standin: StandInServer,
) -> None:
    """The client does not retry a broken subscription; we surface it for the projector to resubscribe."""
    store = await KurrentDBEventStore.open(standin.url, timeout_seconds=2)
    try:
        await store.append("sub-x", [new()])
        subscription = store.subscribe(stream_prefix="sub-")
        first = await asyncio.wait_for(anext(subscription), 5)
        assert not isinstance(first, CaughtUp)
        assert isinstance(await asyncio.wait_for(anext(subscription), 5), CaughtUp)
        await standin.stop(grace=0)
        with pytest.raises(EventStoreUnavailable):
            await asyncio.wait_for(anext(subscription), 10)
        await subscription.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_tombstoned_stream_is_deleted_for_good(standin: StandInServer) -> None:
    """A tombstone (never done by the daemon) makes reads and appends fail with StreamDeleted."""
    client = AsyncKurrentDBClient(standin.url)
    await client.connect()
    store = await KurrentDBEventStore.open(standin.url, timeout_seconds=2)
    try:
        await store.append("gone", [new()])
        await client.tombstone_stream("gone", current_version=0)
        with pytest.raises(StreamDeleted):
            await store.append("gone", [new()])
        with pytest.raises(StreamDeleted):
            await store.read_stream("gone")
    finally:
        await client.close()
        await store.close()


async def test_cluster_discovery_picks_the_leader() -> None:
    """``kurrentdb+discover://`` asks gossip and talks to the member that says it is leader."""
    leader = StandInServer()
    await leader.start()
    follower = StandInServer()
    await follower.start()
    try:
        view = [
            ("127.0.0.1", follower.service.port, gossip_pb2.MemberInfo.Follower),
            ("127.0.0.1", leader.service.port, gossip_pb2.MemberInfo.Leader),
            ("127.0.0.1", follower.service.port + 1, gossip_pb2.MemberInfo.Follower),
        ]
        follower.service.members = leader.service.members = view
        uri = f"kurrentdb+discover://localhost:{follower.service.port}?tls=false&MaxDiscoverAttempts=3"
        store = await KurrentDBEventStore.open(uri, timeout_seconds=2)
        try:
            await store.append("c-1", [new()])
        finally:
            await store.close()
        assert "Gossip.Read" in follower.service.calls
        assert "BatchAppend" in leader.service.calls
        assert "BatchAppend" not in follower.service.calls
    finally:
        await leader.stop()
        await follower.stop()


async def test_not_leader_redirects_to_the_leader() -> None:
    """A node that is no longer leader names the leader; the client follows and the append lands there."""
    old = StandInServer()
    await old.start()
    new_leader = StandInServer()
    await new_leader.start()
    try:
        old.service.members = [("127.0.0.1", old.service.port, gossip_pb2.MemberInfo.Leader)]
        old.service.not_leader = ("127.0.0.1", new_leader.service.port)
        uri = f"kurrentdb://127.0.0.1:{old.service.port},127.0.0.1:{new_leader.service.port}?tls=false"
        store = await KurrentDBEventStore.open(uri, timeout_seconds=2)
        try:
            await store.append("moved", [new()])
        finally:
            await store.close()
        assert [r.stream for r in new_leader.log.all] == ["moved"]
        assert old.log.all == []
    finally:
        await old.stop()
        await new_leader.stop()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param({}, "kurrentdb://db:2113?tls=false", id="insecure-default"),
        pytest.param(
            {"username": "admin", "password": "p@ss", "use_tls": True},
            "kurrentdb://admin:p%40ss@db:2113?tls=true",
            id="credentials-and-tls",
        ),
        pytest.param(
            {"use_tls": True, "verify_cert": False, "ca_file": "/etc/ca.pem"},
            "kurrentdb://db:2113?tls=true&tlsVerifyCert=false&tlsCaFile=%2Fetc%2Fca.pem",
            id="verification",
        ),
    ],
)
def test_connection_uri(settings: dict[str, object], expected: str) -> None:
    """Settings and KURRENTDB_* values become the client's URI options."""
    assert connection_uri("kurrentdb://db:2113", **settings) == expected  # type: ignore[arg-type]


def test_uri_options_already_present_win() -> None:
    """An explicit ?tls= in the URL is not overridden by use_tls."""
    assert (
        connection_uri("kurrentdb://db:2113?tls=true", use_tls=False)
        == "kurrentdb://db:2113?tls=true"
    )
