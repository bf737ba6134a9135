"""Membership against real stores: the embedded SQLite file and the real KurrentDB client on the stand-in.

Several ``Membership``s share one store as daemons share one cluster (on KurrentDB each has its own
client, as separate daemons would). Time-based expiry runs on a clock the test moves, so "expired"
and "not yet expired" are exact; everything else waits with ``until``, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.kurrentdb_standin import StandInServer
from tests.polling import until
from uptime_daemon.cluster import Membership
from uptime_daemon.cluster.members import (
    STREAM,
    MemberHeartbeat,
    alive,
    decode,
    heartbeat_event,
)
from uptime_daemon.cluster.membership import stream_max_age_seconds
from uptime_daemon.errors import EventStoreUnavailable
from uptime_daemon.store import CaughtUp, EventStore, NewEvent, RecordedEvent, StreamPrefix
from uptime_daemon.store.kurrentdb import KurrentDBEventStore
from uptime_daemon.store.sqlite import SqliteEventStore

US = "us-east"
HEARTBEAT_SECONDS = 0.1
TTL_SECONDS = 0.3
WITHIN = 15.0
"""Seconds any awaited condition may take before the test fails (a loaded 2-core machine)."""

OpenStore = Callable[[], Awaitable[EventStore]]


class ManualClock:
    """Wall time the test moves by hand; monotonic time is real (nothing here measures with it)."""

    def __init__(self) -> None:
        self.current = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()


@pytest.fixture
async def standin() -> AsyncIterator[StandInServer]:
    server = StandInServer()
    await server.start()
    yield server
    await server.stop(0)


@pytest.fixture(params=["sqlite", "kurrentdb"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """One store per member: on SQLite the one embedded file, on KurrentDB a client each."""
    opened: list[EventStore] = []
    server: StandInServer | None = None
    if request.param == "sqlite":
        shared = await SqliteEventStore.open(tmp_path / "events.db")
        opened.append(shared)

        async def open_one() -> EventStore:
            return shared

    else:
        server = StandInServer()
        await server.start()
        url = server.url

        async def open_one() -> EventStore:
            store = await KurrentDBEventStore.open(url, timeout_seconds=5)
            opened.append(store)
            return store

    yield open_one
    for store in opened:
        await store.close()
    if server is not None:
        await server.stop(0)


class Running:
    """Memberships whose ``run()`` is under way; each one's ``on_change`` calls are recorded."""

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.changes: dict[str, list[tuple[str, ...]]] = {}

    def start(self, membership: Membership) -> Membership:
        self.tasks[membership.instance] = asyncio.create_task(membership.run())
        return membership

    def recorder(self, instance: str) -> Callable[[tuple[str, ...]], None]:
        calls = self.changes.setdefault(instance, [])
        return calls.append

    async def crash(self, instance: str) -> None:
        """Cancel ``run()`` without leaving; it must not have died on its own before."""
        task = self.tasks.pop(instance)
        assert not task.done(), f"run() of {instance} ended by itself"
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def stop_all(self) -> None:
        for instance in list(self.tasks):
            await self.crash(instance)


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    group = Running()
    yield group
    await group.stop_all()


def member(
    store: EventStore,
    instance: str,
    running: Running,
    *,
    clock: Any = None,
    location: str = US,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ttl_seconds: float = TTL_SECONDS,
    on_change: Callable[[tuple[str, ...]], None] | None = None,
) -> Membership:
    return running.start(
        Membership(
            store=store,
            clock=clock or RealClock(),
            instance=instance,
            location=location,
            heartbeat_seconds=heartbeat_seconds,
            ttl_seconds=ttl_seconds,
            on_change=on_change or running.recorder(instance),
        )
    )


def seen(membership: Membership, now: datetime) -> tuple[str, ...]:
    """Who ``membership`` knows alive from the stream alone (``members`` always includes itself)."""
    return alive(membership.table, membership.location, now)


def views(*memberships: Membership) -> set[tuple[str, ...]]:
    """The distinct ``members`` answers of several memberships (one element when they agree)."""
    return {membership.members for membership in memberships}


def beat_at(membership: Membership, instance: str) -> datetime | None:
    """The ``at`` of the newest heartbeat of ``instance`` that ``membership`` has folded."""
    known = membership.table.members.get(instance)
    return None if known is None or known.heartbeat is None else known.heartbeat.at


async def sees(membership: Membership, clock: ManualClock, names: tuple[str, ...]) -> None:
    await until(
        lambda: seen(membership, clock.now()) == names,
        within=WITHIN,
        what=f"{membership.instance} sees {names}",
    )


async def heard(running: Running, instance: str, names: tuple[str, ...]) -> None:
    """``on_change`` of ``instance`` was last called with ``names``."""
    await until(
        lambda: running.changes.get(instance, [])[-1:] == [names],
        within=WITHIN,
        what=f"{instance} heard {names}",
    )


async def beaten(membership: Membership, names: tuple[str, ...], moment: datetime) -> None:
    """``membership`` has folded heartbeats of all ``names`` stamped ``moment``."""
    await until(
        lambda: all(beat_at(membership, name) == moment for name in names),
        within=WITHIN,
        what=f"{membership.instance} folded heartbeats of {names} at {moment}",
    )


async def test_members_see_each_other(open_store: OpenStore, running: Running) -> None:
    """Three daemons on one store each come to know all three, and ``on_change`` hears it."""
    clock = ManualClock()  # frozen: nobody can expire, so any flapping would be a bug
    names = ("a", "b", "c")
    members = [member(await open_store(), name, running, clock=clock) for name in names]
    for one in members:
        await sees(one, clock, names)
        await heard(running, one.instance, names)  # only once caught up
        assert one.caught_up
        assert one.members == names


async def test_members_of_other_locations_are_not_members(
    open_store: OpenStore, running: Running
) -> None:
    """A location's members are its own; the other location's are in the table, not in ``members``."""
    clock = ManualClock()
    a = member(await open_store(), "a", running, clock=clock)
    b = member(await open_store(), "b", running, clock=clock)
    x = member(await open_store(), "x", running, clock=clock, location="eu")
    await until(lambda: {"a", "b", "x"} <= set(a.table.members), within=WITHIN)
    await until(lambda: {"a", "b", "x"} <= set(x.table.members), within=WITHIN)
    await until(lambda: b.members == ("a", "b"), within=WITHIN)
    assert a.members == ("a", "b")
    assert x.members == ("x",)
    await heard(running, "x", ("x",))
    assert running.changes["x"] == [("x",)]  # never told of a or b


async def test_a_clean_leave_is_seen_at_once(open_store: OpenStore, running: Running) -> None:
    """``leave()`` removes the member from its peers' view long before its ttl could run out."""
    clock = ManualClock()  # frozen: expiry cannot explain the member going away
    a = member(await open_store(), "a", running, clock=clock)
    b = member(await open_store(), "b", running, clock=clock)
    c = member(await open_store(), "c", running, clock=clock)
    await until(lambda: views(a, b) == {("a", "b", "c")}, within=WITHIN)
    await running.crash("c")  # a clean stop: stop running, then announce it
    assert await c.leave()
    await until(lambda: views(a, b) == {("a", "b")}, within=WITHIN)
    await heard(running, "a", ("a", "b"))
    await heard(running, "b", ("a", "b"))
    assert "c" not in c.members


async def test_a_leave_racing_the_heartbeat_still_leaves(
    open_store: OpenStore, running: Running
) -> None:
    """Leaving while ``run()`` still ticks: no later heartbeat brings the member back."""
    clock = ManualClock()
    store = await open_store()
    a = member(store, "a", running, clock=clock)
    b = member(await open_store(), "b", running, clock=clock)
    await until(lambda: a.members == ("a", "b"), within=WITHIN)
    left_at = clock.now()
    assert await b.leave()
    await until(lambda: a.members == ("a",), within=WITHIN)
    for _ in range(3):  # were b's loop to heartbeat again, these later stamps would count
        clock.advance(0.01)
        await beaten(a, ("a",), clock.now())
    assert not running.tasks["b"].done()
    assert a.members == ("a",)
    stored = [decode(e.type, e.data) for e in await store.read_stream(STREAM)]
    assert [e for e in stored if e.instance == "b" and e.at > left_at] == []
    assert "b" not in b.members


async def test_a_crashed_member_expires_after_its_ttl(
    open_store: OpenStore, running: Running
) -> None:
    """No leave: peers keep the member exactly until its last heartbeat's ttl has passed."""
    clock = ManualClock()
    a = member(await open_store(), "a", running, clock=clock)
    b = member(await open_store(), "b", running, clock=clock)
    member(await open_store(), "c", running, clock=clock)
    await until(lambda: views(a, b) == {("a", "b", "c")}, within=WITHIN)
    await running.crash("c")
    last_beat = clock.now()
    # The survivors heartbeat at a later time, so only c's lifetime runs out below.
    clock.advance(TTL_SECONDS / 2)
    await beaten(a, ("a", "b"), clock.now())
    await beaten(b, ("a", "b"), clock.now())
    clock.current = last_beat + timedelta(seconds=TTL_SECONDS) - timedelta(milliseconds=1)
    assert views(a, b) == {("a", "b", "c")}
    clock.current = last_beat + timedelta(seconds=TTL_SECONDS)
    assert views(a, b) == {("a", "b")}
    # Nothing was written: the next heartbeat tick notices that time passed.
    await heard(running, "a", ("a", "b"))
    await heard(running, "b", ("a", "b"))


async def test_expiry_is_noticed_when_nothing_is_written(
    open_store: OpenStore, running: Running
) -> None:
    """Time passing alone changes the set: the heartbeat tick re-evaluates and tells ``on_change``.

    The observer cannot write (its appends fail), so after c crashes no event reaches it at all.
    """
    clock = ManualClock()
    store = await open_store()
    member(store, "c", running, clock=clock)
    a = member(MuteStore(await open_store()), "a", running, clock=clock)
    await heard(running, "a", ("a", "c"))
    await running.crash("c")
    written = len(await store.read_stream(STREAM))
    clock.current += timedelta(seconds=TTL_SECONDS) - timedelta(milliseconds=1)
    assert views(a) == {("a", "c")}
    clock.current += timedelta(milliseconds=1)
    assert views(a) == {("a",)}
    await heard(running, "a", ("a",))
    assert len(await store.read_stream(STREAM)) == written


class MuteStore:
    """A store whose writes all fail while its reads and subscriptions work."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def append(self, stream: str, events: Any, expected: Any = None) -> int:
        raise EventStoreUnavailable(f"muted: {stream}")

    async def set_stream_metadata(self, stream: str, **_retention: int | None) -> None:
        raise EventStoreUnavailable(f"muted: {stream}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_crashed_member_expires_in_real_time(
    open_store: OpenStore, running: Running
) -> None:
    """The same with the real clock and a 0.3 s ttl: c is gone from the others' view soon after."""
    a = member(await open_store(), "a", running)
    b = member(await open_store(), "b", running)
    member(await open_store(), "c", running)
    await until(lambda: "c" in a.members and "c" in b.members, within=WITHIN)
    await running.crash("c")
    await until(lambda: "c" not in a.members and "c" not in b.members, within=WITHIN)
    assert "c" in a.table.members  # known, expired: not forgotten before the stream's max age


async def test_the_stream_is_temporary(open_store: OpenStore, running: Running) -> None:
    """``$maxAge`` of the members stream is set at start: a few ttls, at least a minute."""
    store = await open_store()
    member(store, "a", running, heartbeat_seconds=1, ttl_seconds=40)
    await until(
        lambda: _max_age(store),
        within=WITHIN,
        what="members stream $maxAge set",
    )
    assert (await store.get_stream_metadata(STREAM)).max_age_seconds == 120
    assert stream_max_age_seconds(0.3) == 60
    assert stream_max_age_seconds(40) == 120
    assert stream_max_age_seconds(20.1) == 61


async def _max_age(store: EventStore) -> int | None:
    return (await store.get_stream_metadata(STREAM)).max_age_seconds


async def test_malformed_and_foreign_events_are_skipped(
    open_store: OpenStore, running: Running
) -> None:
    """A bad event in the stream is logged and skipped; a longer stream name is not ours."""
    store = await open_store()
    clock = ManualClock()
    ghost = heartbeat_event(MemberHeartbeat("ghost", US, clock.now(), clock.now(), 3600))
    with capture_logs() as logs:
        a = member(store, "a", running, clock=clock)
        await until(lambda: a.caught_up, within=WITHIN)
        await store.append(f"{STREAM}-old", [ghost])
        await store.append(STREAM, [NewEvent(uuid.uuid4(), "MemberHeartbeat", b'{"instance": 1}')])
        late = member(await open_store(), "b", running, clock=clock)  # seeds past the bad event
        await until(lambda: a.members == ("a", "b"), within=WITHIN)
        await until(lambda: late.members == ("a", "b"), within=WITHIN)
    assert "ghost" not in a.table.members
    invalid = [entry for entry in logs if entry["event"] == "cluster_member_event_invalid"]
    assert len(invalid) >= 2  # a, live; b, from its seed
    assert all("'schemaVersion'" in entry["error"] for entry in invalid)
    assert {entry["log_level"] for entry in invalid} == {"error"}
    assert not running.tasks["a"].done()


async def test_a_failing_listener_is_logged_not_raised(
    open_store: OpenStore, running: Running
) -> None:
    """``on_change`` raising never stops membership; later changes are still delivered."""
    clock = ManualClock()
    heard: list[tuple[str, ...]] = []

    def listener(members: tuple[str, ...]) -> None:
        heard.append(members)
        if len(heard) == 1:
            raise RuntimeError("listener bug")

    with capture_logs() as logs:
        a = member(await open_store(), "a", running, clock=clock, on_change=listener)
        await until(lambda: heard == [("a",)], within=WITHIN)
        member(await open_store(), "b", running, clock=clock)
        await until(lambda: heard[-1] == ("a", "b"), within=WITHIN)
    assert not running.tasks["a"].done()
    assert a.members == ("a", "b")
    failed = [entry for entry in logs if entry["event"] == "cluster_on_change_failed"]
    assert len(failed) == 1
    assert "listener bug" in failed[0]["error"]


async def test_the_first_subscription_resumes_after_the_seed(
    open_store: OpenStore, running: Running
) -> None:
    """The stream is read first and followed from its last event, not from the start of the log."""
    store = await open_store()
    for n in range(3):
        await store.append(f"service-uptime-other-{n}", [heartbeat_event(_beat(f"x{n}"))])
    spy = SubscribeSpy(store)
    clock = ManualClock()
    a = member(spy, "a", running, clock=clock)
    await until(lambda: a.caught_up, within=WITHIN)
    in_stream = await store.read_stream(STREAM)
    assert spy.afters
    assert spy.afters[0] is not None
    assert spy.afters[0] >= in_stream[0].position


def _beat(instance: str) -> MemberHeartbeat:
    moment = datetime(2026, 1, 5, tzinfo=UTC)
    return MemberHeartbeat(instance, US, moment, moment, 5)


class SubscribeSpy:
    """A store that records where each subscription starts, delegating everything to a real one."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.afters: list[int | None] = []

    def subscribe(
        self, *, after: int | None = None, stream_prefix: StreamPrefix = None
    ) -> AsyncIterator[RecordedEvent | CaughtUp]:
        self.afters.append(after)
        return self._store.subscribe(after=after, stream_prefix=stream_prefix)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.mark.parametrize(
    ("heartbeat_seconds", "ttl_seconds", "instance", "location"),
    [
        pytest.param(0.3, 0.3, "a", US, id="heartbeat-not-below-ttl"),
        pytest.param(0, 1, "a", US, id="zero-heartbeat"),
        pytest.param(1, 86_401, "a", US, id="ttl-over-a-day"),
        pytest.param(0.1, 0.3, "", US, id="empty-instance"),
        pytest.param(0.1, 0.3, "a", "", id="empty-location"),
    ],
)
def test_bad_settings_are_refused(
    heartbeat_seconds: float, ttl_seconds: float, instance: str, location: str
) -> None:
    with pytest.raises(ValueError, match=r"must be|need"):
        Membership(
            store=None,  # type: ignore[arg-type]
            clock=RealClock(),
            instance=instance,
            location=location,
            heartbeat_seconds=heartbeat_seconds,
            ttl_seconds=ttl_seconds,
        )


# --- outages (KurrentDB stand-in: stop and start the server) ------------------------------------


async def test_an_outage_does_not_end_run_and_membership_recovers(
    standin: StandInServer, running: Running
) -> None:
    """Store down: run() survives, peers expire from each other's view; back: they see each other."""
    clock = ManualClock()
    stores = [await KurrentDBEventStore.open(standin.url, timeout_seconds=1) for _ in range(2)]
    try:
        with capture_logs() as logs:
            a = member(stores[0], "a", running, clock=clock)
            b = member(stores[1], "b", running, clock=clock)
            await until(lambda: seen(a, clock.now()) == seen(b, clock.now()) == ("a", "b"))
            # Both caught up, and told so, before the outage: a member that has not caught up yet
            # stays silent (on purpose), which would make the rest of this test wait for nothing.
            await heard(running, "a", ("a", "b"))
            await heard(running, "b", ("a", "b"))
            await standin.stop(0)
            await until(
                lambda: (
                    {"cluster_subscription_lost", "cluster_heartbeat_failed"}
                    <= {entry["event"] for entry in logs}
                ),
                within=WITHIN,
            )
            clock.advance(TTL_SECONDS)  # no heartbeat can land: each sees the other expire
            assert seen(a, clock.now()) == seen(b, clock.now()) == ()
            assert a.members == ("a",)  # a running daemon still counts itself
            await heard(running, "a", ("a",))
            assert not running.tasks["a"].done()
            assert not running.tasks["b"].done()
            await standin.start()
            await until(
                lambda: seen(a, clock.now()) == seen(b, clock.now()) == ("a", "b"), within=30
            )
            await heard(running, "a", ("a", "b"))
        events = [entry["event"] for entry in logs]
        assert "cluster_heartbeat_recovered" in events
        assert events.count("cluster_heartbeat_failed") >= 1
    finally:
        await running.stop_all()
        for store in stores:
            await store.close()


async def test_run_started_during_an_outage_joins_when_the_store_returns(
    standin: StandInServer, running: Running
) -> None:
    clock = ManualClock()
    await standin.stop(0)
    store = await KurrentDBEventStore.open(standin.url, timeout_seconds=1)
    try:
        a = member(store, "a", running, clock=clock)
        await until(lambda: a._beat_failures >= 1, within=WITHIN)
        assert not a.caught_up
        assert running.tasks["a"].done() is False
        await standin.start()
        await until(lambda: a.caught_up and seen(a, clock.now()) == ("a",), within=30)
        assert (await store.get_stream_metadata(STREAM)).max_age_seconds == 60
    finally:
        await running.stop_all()
        await store.close()


async def test_leave_reports_a_store_it_cannot_reach(standin: StandInServer) -> None:
    """A leave that cannot be written says so; the peers will see the member expire instead."""
    store = await KurrentDBEventStore.open(standin.url, timeout_seconds=1)
    try:
        membership = Membership(
            store=store,
            clock=RealClock(),
            instance="a",
            location=US,
            heartbeat_seconds=HEARTBEAT_SECONDS,
            ttl_seconds=TTL_SECONDS,
        )
        await standin.stop(0)
        with capture_logs() as logs:
            assert await membership.leave() is False
        assert [entry["event"] for entry in logs] == ["cluster_leave_failed"]
    finally:
        await store.close()
