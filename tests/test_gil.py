"""The ``run`` command shortens the interpreter's switch interval (the loop waits less on threads)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from structlog.testing import capture_logs

from tests.conftest import DaemonProcess
from uptime_daemon.daemon import gil


def test_tune_sets_the_switch_interval_and_says_what_it_was() -> None:
    was = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        with capture_logs() as logs:
            assert gil.tune() == gil.SWITCH_INTERVAL_SECONDS
        assert sys.getswitchinterval() == gil.SWITCH_INTERVAL_SECONDS
        assert [(e["seconds"], e["was"]) for e in logs] == [(gil.SWITCH_INTERVAL_SECONDS, 0.005)]
    finally:
        sys.setswitchinterval(was)


def test_a_running_daemon_has_set_its_switch_interval(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    tuned = daemon.wait_for_log(lambda e: e.get("event") == "switch_interval_tuned")
    assert tuned["seconds"] == gil.SWITCH_INTERVAL_SECONDS < tuned["was"]
