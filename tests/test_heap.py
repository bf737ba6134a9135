"""Once caught up, the ``run`` command sets its long-lived heap aside from the cyclic collector."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

from structlog.testing import capture_logs

from tests.conftest import DaemonProcess
from uptime_daemon.daemon import heap


async def test_the_heap_is_frozen_only_once_caught_up() -> None:
    before = gc.get_freeze_count()
    caught_up = asyncio.Event()
    settling = asyncio.create_task(heap.settle_after(caught_up))
    for _ in range(3):  # turns of the loop: it must still be waiting
        await asyncio.sleep(0)
    assert not settling.done()
    assert gc.get_freeze_count() == before
    try:
        with capture_logs() as logs:
            caught_up.set()
            frozen = await settling
        assert frozen > before  # everything alive, less what reference counting has freed since
        assert gc.get_freeze_count() > before
        assert [e["frozen_objects"] for e in logs if e["event"] == "heap_settled"] == [frozen]
    finally:
        gc.unfreeze()  # the test process keeps collecting its own cycles


def test_a_running_daemon_settles_its_heap_after_catching_up(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    caught_up = daemon.wait_for_log(lambda e: e.get("event") == "projector_caught_up")
    settled = daemon.wait_for_log(lambda e: e.get("event") == "heap_settled")
    assert settled["frozen_objects"] > 10_000  # the daemon's modules and state, at the least
    assert daemon.lines.index(settled) > daemon.lines.index(caught_up)
