"""The notifier's decisions, on a real SQLite store, with time driven by hand.

Two notifiers sharing one store stand for two daemons: what the log records (claims, outcomes)
and what reached the receiver are counted. The receiver here is a recording function, standing
in for the channels (which are tested against real receivers in ``test_channels.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.probes.fakes import ManualClock
from uptime_daemon import maintenance
from uptime_daemon.alerting.claims import (
    CLAIMED,
    DELIVERED,
    FAILED,
    SUPPRESSED,
    Claims,
    stream_name,
)
from uptime_daemon.alerting.message import Delivery, Message
from uptime_daemon.alerting.notifier import (
    FULL_SCAN_SECONDS,
    SCAN_SLICE,
    Cursor,
    Notifier,
    episode_openers,
    transitions,
)
from uptime_daemon.config.live import LiveSettings
from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.config.model import NotificationChannel, Settings
from uptime_daemon.projector.fold import Observation, ProjectionState, ServiceProjection, apply
from uptime_daemon.status import Status
from uptime_daemon.store.sqlite import SqliteEventStore

T0 = datetime(2030, 1, 1, tzinfo=UTC)
GAP = 3600.0  # verdicts stay credible: these tests are about transitions, not staleness


def _settings(channel: dict[str, Any] | None = None, **services: dict[str, Any]) -> Settings:
    target = {"kind": "http", "url": "http://127.0.0.1:9/"}
    return settings_from_mapping(
        {
            "instance": "one",
            "services": {name: {**target, **extra} for name, extra in services.items()},
            "notifications": {
                "hook": {"kind": "webhook", "url": "http://127.0.0.1:9/hook", **(channel or {})}
            },
            "alerting": {"lease_seconds": 30},
        },
        source="test",
        environ={},
    )


@dataclass
class Receiver:
    """Stands in for a channel: records each message; can fail or hang."""

    messages: list[Message] = field(default_factory=list)
    failures: int = 0
    hang: asyncio.Event | None = None
    called: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, message: Message, _channel: NotificationChannel) -> Delivery:
        self.messages.append(message)
        self.called.set()
        if self.hang is not None:
            await self.hang.wait()
        if self.failures:
            self.failures -= 1
            return Delivery(ok=False, detail="HTTP 503")
        return Delivery(ok=True, detail="HTTP 200")


@dataclass
class World:
    """One store, one projection, one clock: what every daemon of a cluster shares."""

    store: SqliteEventStore
    state: ProjectionState
    clock: ManualClock
    directory: Path

    def observe(self, service: str, status: Status, seconds: float) -> None:
        at = T0 + timedelta(seconds=seconds)
        apply(self.state, Observation(service, at, status, 0.01, GAP, slot=at))
        self.clock.wall = max(self.clock.wall, at)

    def at(self, seconds: float) -> None:
        self.clock.wall = T0 + timedelta(seconds=seconds)

    def notifier(
        self,
        settings: Settings,
        receiver: Receiver,
        *,
        instance: str = "one",
        checkpoint: str | None = None,
        moved: list[int] | None = None,
    ) -> Notifier:
        live = LiveSettings(settings.model_copy(update={"instance": instance}))
        caught_up = asyncio.Event()
        caught_up.set()
        return Notifier(
            settings=live,
            store=self.store,
            state=lambda: self.state,
            caught_up=caught_up,
            clock=self.clock,
            deliver=receiver,
            base_url="http://127.0.0.1:8080",
            checkpoint_path=None if checkpoint is None else self.directory / checkpoint,
            transitions=None if moved is None else lambda: moved[0],
        )

    async def types(self, stream: str) -> list[str]:
        return [event.type for event in await self.store.read_stream(stream)]

    async def last(self, stream: str) -> dict[str, Any]:
        (event,) = await self.store.read_stream(stream, backwards=True, limit=1)
        data: dict[str, Any] = orjson.loads(event.data)
        return data


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        yield World(store, ProjectionState(), ManualClock(wall=T0), tmp_path)
    finally:
        await store.close()


async def _steps(*notifiers: Notifier, rounds: int = 3) -> None:
    for _ in range(rounds):
        for notifier in notifiers:
            await notifier.step()


async def test_two_daemons_deliver_each_transition_once(world: World) -> None:
    """Both see the down and the up; one claim wins each; the receiver gets one of each."""
    settings = _settings(web={})
    receiver = Receiver()
    world.observe("web", Status.UP, 0)
    one, two = (
        world.notifier(settings, receiver),
        world.notifier(settings, receiver, instance="two"),
    )
    one.resume()
    two.resume()
    world.observe("web", Status.DOWN, 10)
    await _steps(one, two)
    world.observe("web", Status.UP, 70)
    await _steps(one, two)
    assert [(m.kind, m.at) for m in receiver.messages] == [
        ("down", T0 + timedelta(seconds=10)),
        ("up", T0 + timedelta(seconds=70)),
    ]
    down, up = receiver.messages
    assert down.key != up.key
    assert [(o.kind, o.at) for o in up.resolves] == [("down", down.at)]
    stream = stream_name("web", down.at, "down", "hook", 0)
    assert await world.types(stream) == [CLAIMED, DELIVERED]


async def test_the_services_are_passed_over_when_the_projection_says_a_status_moved(
    world: World,
) -> None:
    """A quiet projection costs no pass; a moved count, or the full-scan period, brings one."""
    moved = [0]
    receiver = Receiver()
    world.observe("web", Status.UP, 0)
    notifier = world.notifier(_settings(web={}), receiver, moved=moved)
    notifier.resume()
    await _steps(notifier)
    world.observe("web", Status.DOWN, 10)  # folded behind the count's back
    await _steps(notifier)
    assert receiver.messages == []
    moved[0] += 1  # as the projector counts a live check that changed a status
    await _steps(notifier)
    assert [m.kind for m in receiver.messages] == ["down"]
    world.observe("web", Status.UP, 70)  # again unannounced: the full pass finds it
    await _steps(notifier)
    assert [m.kind for m in receiver.messages] == ["down"]
    world.clock.advance(FULL_SCAN_SECONDS)
    await _steps(notifier)
    assert [m.kind for m in receiver.messages] == ["down", "up"]


async def test_a_pass_over_many_services_gives_the_loop_back_between_slices(
    world: World,
) -> None:
    """Every service's transition is planned, and other work runs while the pass goes on."""
    names = [f"svc-{n:04d}" for n in range(2 * SCAN_SLICE + 7)]
    for name in names:
        world.observe(name, Status.UP, 0)
    notifier = world.notifier(_settings(**{name: {} for name in names}), Receiver())
    notifier.resume()
    for name in names:
        world.observe(name, Status.DOWN, 10)
    ticks = 0

    async def beside() -> None:
        nonlocal ticks
        for _ in range(10):
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(beside())
    await asyncio.sleep(0)  # the other task has started and waits for its next turn
    started = ticks
    found = await notifier.scan()
    during = ticks - started
    await other
    assert found == len(names)
    assert notifier.pending == len(names)  # one decision per service, at its down
    assert during == 2  # one turn at each of the two slice boundaries, none inside a slice
    assert await notifier.scan() == 0  # nothing new: planned once


async def test_history_before_the_first_start_pages_nobody(world: World) -> None:
    """Without a checkpoint a notifier starts from the present: old transitions are not sent."""
    world.observe("web", Status.UP, 0)
    world.observe("web", Status.DOWN, 10)
    receiver = Receiver()
    notifier = world.notifier(_settings(web={}), receiver)
    notifier.resume()
    await _steps(notifier)
    assert receiver.messages == []
    world.observe("web", Status.UP, 20)
    await _steps(notifier)
    assert receiver.messages == []  # the outage was never announced: no orphan resolution


async def test_an_outage_shorter_than_min_down_is_recorded_as_suppressed(world: World) -> None:
    """Neither the down nor its end is sent; the log says why."""
    settings = _settings({"min_down_seconds": 60}, web={})
    receiver = Receiver()
    world.observe("web", Status.UP, 0)
    notifier = world.notifier(settings, receiver)
    notifier.resume()
    world.observe("web", Status.DOWN, 10)
    await _steps(notifier)
    world.observe("web", Status.UP, 40)
    world.at(75)
    await _steps(notifier)
    assert receiver.messages == []
    stream = stream_name("web", T0 + timedelta(seconds=10), "down", "hook", 0)
    assert await world.types(stream) == [SUPPRESSED]
    assert "30 s" in (await world.last(stream))["reason"]


async def test_a_long_enough_outage_is_sent_once_its_minimum_passed(world: World) -> None:
    """min_down: the down goes out at transition + min_down, not before."""
    settings = _settings({"min_down_seconds": 60}, web={})
    receiver = Receiver()
    world.observe("web", Status.UP, 0)
    notifier = world.notifier(settings, receiver)
    notifier.resume()
    world.observe("web", Status.DOWN, 10)
    world.at(69)
    await _steps(notifier)
    assert receiver.messages == []
    world.at(70)
    await _steps(notifier)
    assert [m.kind for m in receiver.messages] == ["down"]


async def test_a_child_is_held_back_while_its_parent_is_down(world: World) -> None:
    """depends_on: the child's down is suppressed naming the parent; no orphan up later."""
    settings = _settings(router={}, web={"depends_on": ["router"]})
    receiver = Receiver()
    for name in ("router", "web"):
        world.observe(name, Status.UP, 0)
    notifier = world.notifier(settings, receiver)
    notifier.resume()
    world.observe("router", Status.DOWN, 10)
    world.observe("web", Status.DOWN, 11)
    await _steps(notifier)
    assert [(m.service, m.kind) for m in receiver.messages] == [("router", "down")]
    child = stream_name("web", T0 + timedelta(seconds=11), "down", "hook", 0)
    assert (await world.last(child))["reason"] == "parent router is down"
    world.observe("router", Status.UP, 30)
    world.observe("web", Status.UP, 31)
    await _steps(notifier)
    assert [(m.service, m.kind) for m in receiver.messages] == [
        ("router", "down"),
        ("router", "up"),
    ]


async def test_a_maintenance_window_suppresses_and_names_itself(world: World) -> None:
    """A transition inside a window is recorded as suppressed with the window's reason."""
    settings = _settings(web={})
    receiver = Receiver()
    world.observe("web", Status.UP, 0)
    window = maintenance.Window(
        id="mw-1",
        services=frozenset({"web"}),
        start=T0,
        end=T0 + timedelta(hours=1),
        cron=None,
        duration=None,
        timezone="UTC",
        reason="database upgrade",
        source="api",
        declared_at=T0,
        declared_by="one",
    )
    event = maintenance.scheduled(window)
    world.state.maintenance.apply(event.type, event.data)
    notifier = world.notifier(settings, receiver)
    notifier.resume()
    world.observe("web", Status.DOWN, 10)
    await _steps(notifier)
    assert receiver.messages == []
    stream = stream_name("web", T0 + timedelta(seconds=10), "down", "hook", 0)
    assert (await world.last(stream))["reason"] == "maintenance window mw-1: database upgrade"


async def test_a_failed_delivery_is_retried_with_backoff_and_recorded(world: World) -> None:
    """503 → Failed in the log, retried after the backoff, then delivered: two attempts, one key."""
    settings = _settings(web={})
    receiver = Receiver(failures=1)
    world.observe("web", Status.UP, 0)
    notifier = world.notifier(settings, receiver)
    notifier.resume()
    world.observe("web", Status.DOWN, 10)
    await _steps(notifier)
    stream = stream_name("web", T0 + timedelta(seconds=10), "down", "hook", 0)
    assert await world.types(stream) == [CLAIMED, FAILED]
    world.at(14)
    await _steps(notifier)
    assert len(receiver.messages) == 1  # not before the backoff
    world.at(15)
    await _steps(notifier)
    assert await world.types(stream) == [CLAIMED, FAILED, CLAIMED, DELIVERED]
    first, second = receiver.messages
    assert first.key == second.key


async def test_a_silent_holder_is_taken_over_after_its_lease(world: World) -> None:
    """One daemon claims and hangs; the other takes over once the lease ran out, same key."""
    settings = _settings(web={})
    stuck, healthy = Receiver(hang=asyncio.Event()), Receiver()
    world.observe("web", Status.UP, 0)
    one = world.notifier(settings, stuck)
    two = world.notifier(settings, healthy, instance="two")
    one.resume()
    two.resume()
    world.observe("web", Status.DOWN, 10)
    hanging = asyncio.create_task(one.step())
    await asyncio.wait_for(stuck.called.wait(), 5)
    await _steps(two)
    assert healthy.messages == []  # the claim is held: the other daemon only watches
    world.at(10 + 30 + 1)
    await _steps(two)
    assert [m.kind for m in healthy.messages] == ["down"]
    assert healthy.messages[0].key == stuck.messages[0].key
    stream = stream_name("web", T0 + timedelta(seconds=10), "down", "hook", 0)
    assert await world.types(stream) == [CLAIMED, CLAIMED, DELIVERED]
    hanging.cancel()


async def test_a_restart_resumes_from_the_checkpoint(world: World) -> None:
    """A transition planned but not settled before a stop is handled after the restart."""
    settings = _settings({"min_down_seconds": 60}, web={})
    receiver = Receiver()
    world.observe("web", Status.UP, 0)
    first = world.notifier(settings, receiver, checkpoint="notifier.json")
    first.resume()
    world.observe("web", Status.DOWN, 10)
    await _steps(first)
    assert first.pending == 1
    first.save_checkpoint()
    second = world.notifier(settings, receiver, checkpoint="notifier.json")
    second.resume()
    world.at(70)
    await _steps(second)
    assert [m.kind for m in receiver.messages] == ["down"]


async def test_reminders_repeat_while_the_outage_lasts(world: World) -> None:
    """repeat_every_seconds: reminders 1 and 2, each once, then none after the end."""
    settings = _settings({"repeat_every_seconds": 60}, web={})
    receiver = Receiver()
    world.observe("web", Status.UP, 0)
    one, two = (
        world.notifier(settings, receiver),
        world.notifier(settings, receiver, instance="two"),
    )
    one.resume()
    two.resume()
    world.observe("web", Status.DOWN, 10)
    for seconds in (10, 70, 130):
        world.at(seconds)
        await _steps(one, two)
    world.observe("web", Status.UP, 150)
    world.at(200)
    await _steps(one, two)
    assert [(m.kind, m.reminder) for m in receiver.messages] == [
        ("down", 0),
        ("down", 1),
        ("down", 2),
        ("up", 0),
    ]


def test_transitions_skip_unknown_and_openers_count_once() -> None:
    """up, unknown, up is no change; down, degraded, down opens with down and degraded only."""
    service = ServiceProjection("web")
    state = ProjectionState(services={"web": service})
    for seconds, status, gap in (
        (0, Status.UP, 5.0),
        (100, Status.UP, GAP),  # 5 s after the first check: unknown until this one
        (110, Status.DOWN, GAP),
        (120, Status.DEGRADED, GAP),
        (130, Status.DOWN, GAP),
        (140, Status.UP, GAP),
    ):
        at = T0 + timedelta(seconds=seconds)
        apply(state, Observation("web", at, status, 0.01, gap, slot=at))
    found = transitions(service, Cursor(at=None, status=None))
    assert [(t.previous, t.status, int((t.at - T0).total_seconds())) for t in found] == [
        (None, Status.UP, 0),
        (Status.UP, Status.DOWN, 110),
        (Status.DOWN, Status.DEGRADED, 120),
        (Status.DEGRADED, Status.DOWN, 130),
        (Status.DOWN, Status.UP, 140),
    ]
    openers = episode_openers(service, T0 + timedelta(seconds=140))
    assert [(o.status, int((o.at - T0).total_seconds())) for o in openers] == [
        (Status.DOWN, 110),
        (Status.DEGRADED, 120),
    ]


async def test_claims_let_one_append_win(world: World) -> None:
    """The protocol alone: the first claim wins, a second with the same expectation loses."""
    message = Message(
        key="k",
        channel="hook",
        service="web",
        kind="down",
        status=Status.DOWN,
        previous_status=Status.UP,
        at=T0,
    )
    one, two = Claims(world.store, "one", 30), Claims(world.store, "two", 30)
    seen = await one.read("system-notification-x")
    assert await one.claim("system-notification-x", message, seen, T0) == 0
    assert await two.claim("system-notification-x", message, seen, T0) is None
    ledger = await two.read("system-notification-x")
    assert ledger.holder == "one"
    assert ledger.announced
    assert ledger.message is not None
    assert ledger.message.key == "k"
