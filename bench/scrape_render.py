"""What rendering the per-service ``/metrics`` caches costs at 10,000 services, in CPU.

The projection's series (``projector.collector``) and the probe series (``metrics.ServiceSeries``)
of ``--services`` services with a few checks each: the first scrape (every service rendered), then
one after ``collector.REFRESH_SECONDS`` (every service's clock-driven figures stale, all rendered
again), and the probe series after one more probe each. CPU time of this process, best of
``--repeat``. To compare two trees, run it alternately with each on ``PYTHONPATH``:

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before/src python bench/scrape_render.py; python bench/scrape_render.py

Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from _common import emit, machine

from uptime_daemon.metrics import ServiceSeries
from uptime_daemon.projector.collector import REFRESH_SECONDS, ProjectionCollector
from uptime_daemon.projector.fold import ProjectionState, apply_check
from uptime_daemon.status import Status

T0 = datetime(2026, 12, 7, tzinfo=UTC)
CHECKS: int = 3


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at


class _Projector:
    """What the collector reads of a projector: its state and its lag."""

    def __init__(self, state: ProjectionState) -> None:
        self.state = state

    def lag_seconds(self) -> float:
        return 0.0


def _cpu_ms(work: Callable[[], object]) -> float:
    began = time.process_time()
    work()
    return (time.process_time() - began) * 1000


def once(services: int) -> dict[str, float]:
    """One pass over fresh caches: each scrape's CPU in milliseconds."""
    state = ProjectionState()
    for n in range(services):
        for k in range(CHECKS):
            at = T0 + timedelta(minutes=k)
            apply_check(state, f"s{n}", at, Status.UP, 0.04, 125.0, slot=at)
    clock = _Clock(T0 + timedelta(minutes=CHECKS))
    collector = ProjectionCollector(_Projector(state), clock)  # type: ignore[arg-type]
    series = ServiceSeries(histograms=False)
    figures = {"collector_first_ms": _cpu_ms(lambda: collector.pieces(openmetrics=False))}
    clock.at += timedelta(seconds=REFRESH_SECONDS + 1)
    figures["collector_refresh_ms"] = _cpu_ms(lambda: collector.pieces(openmetrics=False))
    for probe in range(2):
        for n in range(services):
            series.observe(f"s{n}", "http", "ok", 0.04, None)
        name = "series_first_ms" if probe == 0 else "series_again_ms"
        figures[name] = _cpu_ms(lambda: series.pieces(openmetrics=False))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = [once(args.services) for _ in range(args.repeat)]
    best = {name: round(min(run[name] for run in runs), 1) for name in runs[0]}
    emit("scrape_render", services=args.services, repeat=args.repeat, **best, **machine())


if __name__ == "__main__":
    main()
