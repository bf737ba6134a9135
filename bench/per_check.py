"""Per-check costs the daemon added in the issue-19/18 work, measured in-process.

* ``status_changed_us``: building one check's event (``events.status_changed``), best of 5 × 20,000;
  with ``--compare-events FILE`` also the same for another version of ``events.py`` (e.g.
  ``git show REV:src/uptime_daemon/events.py > /tmp/old_events.py``), after checking both give the
  same bytes;
* ``loop_lag_cpu_percent``: the CPU of the loop-lag monitor (``loop_lag.LoopLag``, 20 wake-ups a
  second) as a share of one core: an idle loop with it for ``--seconds``, minus one without.

One JSON line with the machine; nothing is asserted.

    python bench/per_check.py --compare-events /tmp/old_events.py
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import time
import timeit
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from _common import emit, machine

from uptime_daemon import events
from uptime_daemon.config.model import CheckPolicy
from uptime_daemon.loop_lag import LoopLag
from uptime_daemon.results import CheckKind, ProbeResult
from uptime_daemon.status import INITIAL, step


def _load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("compared_events", path)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["compared_events"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _build_us(module: ModuleType, kwargs: dict[str, Any]) -> float:
    runs = timeit.repeat(lambda: module.status_changed(**kwargs), number=20_000, repeat=5)
    return round(min(runs) / 20_000 * 1e6, 2)


async def _cpu_over(seconds: float, *, with_monitor: bool) -> float:
    lag = LoopLag(time.monotonic)
    task = asyncio.create_task(lag.run()) if with_monitor else None
    before = time.process_time()
    await asyncio.sleep(seconds)  # the measurement window itself
    spent = time.process_time() - before
    if task is not None:
        task.cancel()
    return spent


def main() -> None:
    """Measure and print one line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare-events", help="another events.py to time beside this one")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    kwargs: dict[str, Any] = {
        "service": "web",
        "instance": "a",
        "location": "default",
        "kind": CheckKind.HTTP,
        "scheduled_at": at,
        "completed_at": at,
        "outcome": step(INITIAL, ok=True, response_seconds=0.01, at=at, policy=CheckPolicy()),
        "probe": ProbeResult(ok=True, duration_seconds=0.01, detail="200 OK", http_status=200),
        "interval_seconds": 30,
        "timeout_seconds": 5,
    }
    figures: dict[str, Any] = {"status_changed_us": _build_us(events, kwargs)}
    if args.compare_events:
        other = _load(args.compare_events)
        figures["same_bytes"] = (
            other.status_changed(**kwargs).data == events.status_changed(**kwargs).data
        )
        figures["compared_status_changed_us"] = _build_us(other, kwargs)
    with_monitor = asyncio.run(_cpu_over(args.seconds, with_monitor=True))
    without = asyncio.run(_cpu_over(args.seconds, with_monitor=False))
    figures["loop_lag_cpu_percent"] = round((with_monitor - without) / args.seconds * 100, 3)
    emit("per_check", **figures, machine=machine())


if __name__ == "__main__":
    main()
