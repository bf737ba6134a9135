"""The ``run`` command keeps its long-lived heap out of the collector's full collections."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

from structlog.testing import capture_logs

from tests.conftest import DaemonProcess
from tests.polling import until
from uptime_daemon.daemon.heap import Settler


class Clock:
    def __init__(self) -> None:
        self.value = 0.0

    def __call__(self) -> float:
        return self.value


async def test_settles_once_caught_up_then_after_slow_full_collections_and_renews() -> None:
    clock = Clock()
    before = gc.get_freeze_count()
    settler = Settler(clock, slow_seconds=0.0, renew_seconds=100.0)
    caught_up = asyncio.Event()
    running = asyncio.create_task(settler.run(caught_up))
    try:
        for _ in range(3):  # turns of the loop: it must still be waiting
            await asyncio.sleep(0)
        assert (settler.settled, gc.get_freeze_count()) == (0, before)
        with capture_logs() as logs:
            caught_up.set()
            await until(lambda: settler.settled == 1)
            assert gc.get_freeze_count() > before
            garbage: list[list[object]] = [[]]
            garbage[0].append(garbage)  # a cycle: only the collector frees it
            del garbage
            gc.collect()  # a full collection, "slow" at a threshold of 0: its survivors freeze
            await until(lambda: settler.settled == 2)
            gc.collect(generation=1)  # not a full collection: nothing happens
            for _ in range(3):
                await asyncio.sleep(0)
            assert settler.settled == 2
            clock.value = 100.0  # a renewal is due: the next slow one unfreezes instead
            gc.collect()
            await until(lambda: any(e["event"] == "heap_unfrozen" for e in logs))
            assert gc.get_freeze_count() == 0
            assert settler.settled == 2
        settled = [e for e in logs if e["event"] == "heap_settled"]
        assert len(settled) == 2
        assert settled[1]["collected"] >= 2  # the cycle above (a list holding itself, and its box)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        gc.unfreeze()  # the test process keeps collecting its own cycles
    assert settler._observe not in gc.callbacks  # the hook left with the task


def test_a_running_daemon_settles_its_heap_after_catching_up(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    caught_up = daemon.wait_for_log(lambda e: e.get("event") == "projector_caught_up")
    settled = daemon.wait_for_log(lambda e: e.get("event") == "heap_settled")
    assert settled["frozen_objects"] > 10_000  # the daemon's modules and state, at the least
    assert daemon.lines.index(settled) > daemon.lines.index(caught_up)
