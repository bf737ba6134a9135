"""The ``run`` command sets the collector for a daemon's heap (young collections far rarer)."""

from __future__ import annotations

import gc
from collections.abc import Callable

from structlog.testing import capture_logs

from tests.conftest import DaemonProcess
from uptime_daemon.daemon import heap


def test_tune_sets_the_young_threshold_and_keeps_the_older_ones() -> None:
    was = gc.get_threshold()
    try:
        gc.set_threshold(700, 11, 12)
        with capture_logs() as logs:
            assert heap.tune() == (heap.YOUNG_THRESHOLD, 11, 12)
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, 11, 12)
        assert [(e["thresholds"], e["was"]) for e in logs] == [
            ([heap.YOUNG_THRESHOLD, 11, 12], [700, 11, 12])
        ]
    finally:
        gc.set_threshold(*was)


def test_a_running_daemon_has_set_its_collector(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    tuned = daemon.wait_for_log(lambda e: e.get("event") == "gc_tuned")
    assert tuned["thresholds"][0] == heap.YOUNG_THRESHOLD > tuned["was"][0]
