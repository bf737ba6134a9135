"""The fault suite: misbehaving targets, kill -9 mid-check, a flapping store. Nothing lost, nothing leaks."""

from __future__ import annotations

import asyncio
import re
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import astuple
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import DaemonProcess, stored_events
from tests.kurrentdb_standin import ThreadedStandIn
from tests.probes.net_servers import EvilPorts, evil_targets
from uptime_daemon.clock import SystemClock
from uptime_daemon.projector import snapshot
from uptime_daemon.projector.runner import Projector
from uptime_daemon.store.sqlite import SqliteEventStore


def _metric(base: str, name: str) -> float:
    text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()  # noqa: S310
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


@pytest.fixture
def evil() -> Iterator[EvilPorts]:
    """``tests/evil_targets.py`` in its own process."""
    with evil_targets() as ports:
        yield ports


EXPECTED = {
    "hang": "timeout",
    "trickle": "timeout",
    "huge": "body_too_large",
    "garbage": "protocol",
    "badtls": "tls",
    "wsclose": "closed",
}


def test_misbehaving_targets_are_down_with_their_reason_and_nothing_leaks(
    daemon_factory: Callable[..., DaemonProcess], evil: EvilPorts
) -> None:
    """Each target is classified down with its reason; open fds and tasks stay flat across rounds."""
    hang, trickle, huge, garbage, ws = astuple(evil)
    common = "interval_seconds = 0.6\ntimeout_seconds = 0.5\nfailures_before_down = 1\n"
    daemon = daemon_factory(
        "[scheduler]\njitter_seconds = 0\n"
        f'[services.hang]\nkind = "http"\nurl = "http://127.0.0.1:{hang}/"\n{common}'
        f'[services.trickle]\nkind = "http"\nurl = "http://127.0.0.1:{trickle}/trickle"\n{common}'
        f'[services.huge]\nkind = "http"\nurl = "http://127.0.0.1:{huge}/huge"\n{common}'
        f'[services.garbage]\nkind = "http"\nurl = "http://127.0.0.1:{garbage}/"\n{common}'
        f'[services.badtls]\nkind = "http"\nurl = "https://127.0.0.1:{garbage}/"\n{common}'
        f'[services.wsclose]\nkind = "websocket"\nurl = "ws://127.0.0.1:{ws}/ws"\n'
        'script = [{ send = "hi" }, { expect = "hi" }]\n' + common
    )

    def rounds(lines: list[dict[str, Any]]) -> Counter[str]:
        return Counter(e["service"] for e in lines if e.get("event") == "probe_completed")

    daemon.wait_until(lambda lines: min(rounds(lines)[s] for s in EXPECTED) >= 5, timeout=60)
    fds_early = _metric(daemon.url, "process_open_fds")
    tasks_early = _metric(daemon.url, "uptime_event_loop_tasks")
    daemon.wait_until(lambda lines: min(rounds(lines)[s] for s in EXPECTED) >= 25, timeout=120)
    fds_late = _metric(daemon.url, "process_open_fds")
    tasks_late = _metric(daemon.url, "uptime_event_loop_tasks")
    assert daemon.stop() == 0
    for service, reason in EXPECTED.items():
        seen = {
            e["reason"]
            for e in daemon.lines
            if e.get("event") == "probe_completed" and e.get("service") == service
        }
        assert seen == {reason}, (service, seen)
        assert any(
            e.get("event") == "service_status_changed"
            and e.get("service") == service
            and e.get("status") == "down"
            for e in daemon.lines
        )
    assert fds_late <= fds_early + 4, (fds_early, fds_late)
    assert tasks_late <= tasks_early + 4, (tasks_early, tasks_late)


async def _fresh_replay(database: Path) -> bytes:
    store = await SqliteEventStore.open(database)
    try:
        projector = Projector(store=store, clock=SystemClock(), default_gap_seconds=lambda _: 90.0)
        await projector.catch_up()
        return snapshot.encode(snapshot.Snapshot(projector.position, projector.state))
    finally:
        await store.close()


def test_kill_9_during_checks_then_restart_duplicates_nothing(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """SIGKILL mid-flight, restart: no event stored twice, and the projection equals a fresh replay."""
    body = (
        "[scheduler]\njitter_seconds = 0\n"
        '[services.http]\nkind = "http"\nurl = "/health"\ninterval_seconds = 0.2\n'
        '[services.database]\nkind = "database"\ninterval_seconds = 0.2\n'
    )
    first = daemon_factory(body)
    first.wait_until(lambda lines: sum(e.get("event") == "probe_completed" for e in lines) >= 30)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    second = daemon_factory(body)
    second.wait_until(lambda lines: sum(e.get("event") == "probe_completed" for e in lines) >= 30)
    assert second.stop() == 0
    database = tmp_path / "events.db"
    stored = stored_events(database)
    ids = [e.id for e in stored if e.stream.startswith("service-uptime-")]
    scheduled = [
        (e.stream, orjson.loads(e.data)["scheduledAt"])
        for e in stored
        if e.type == "ServiceStatusChanged"
    ]
    assert len(ids) == len(set(ids))
    assert len(scheduled) == len(set(scheduled))
    live = (tmp_path / "events.db.projection.json").read_bytes()
    assert (
        snapshot.decode(live).position
        == snapshot.decode(asyncio.run(_fresh_replay(database))).position
    )
    assert snapshot.encode(snapshot.decode(live)) == asyncio.run(_fresh_replay(database))


@pytest.mark.slow
def test_a_flapping_store_loses_and_duplicates_nothing(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """The store goes away and comes back every 2 s for 20 s: every check's event lands exactly once, in order."""
    standin = ThreadedStandIn()
    standin.start()
    try:
        daemon = daemon_factory(
            "[scheduler]\njitter_seconds = 0\n"
            '[services.http]\nkind = "http"\nurl = "/health"\ninterval_seconds = 0.5\n',
            env={"KURRENTDB_URL": standin.url},
        )
        daemon.wait_until(lambda lines: any(e.get("event") == "probe_completed" for e in lines))
        for _ in range(5):
            standin.stop()
            time.sleep(2)  # the outage is the scenario under test, not a wait for a result
            standin.start()
            time.sleep(2)
        daemon.wait_for_log(lambda e: e.get("event") == "spool_drained", timeout=90)
        assert daemon.stop() == 0
        checks = [
            e
            for e in daemon.lines
            if e.get("event") == "probe_completed" and e.get("service") == "http"
        ]
        stored = [
            orjson.loads(r.data)
            for r in standin.records("service-uptime-http")
            if r.type == "ServiceStatusChanged"
        ]
        assert len(stored) == len(checks)
        assert len({s["eventId"] for s in stored}) == len(stored)
        scheduled = [s["scheduledAt"] for s in stored]
        assert scheduled == sorted(scheduled)
    finally:
        standin.close()
