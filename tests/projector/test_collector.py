"""The projection's metrics: restart-safe counters that never go backwards, NaN while unknown."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.probes.fakes import ManualClock
from uptime_daemon.projector.collector import ProjectionCollector
from uptime_daemon.projector.fold import Observation, apply
from uptime_daemon.projector.runner import Projector
from uptime_daemon.status import Status
from uptime_daemon.store.sqlite import SqliteEventStore


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_state_seconds_never_go_backwards_even_from_a_torn_read(tmp_path: Path) -> None:
    """A scrape in the metrics thread may read a service mid-update; the counter still only grows."""
    clock = ManualClock(wall=datetime(2026, 5, 1, tzinfo=UTC))
    store = await SqliteEventStore.open(tmp_path / "e.db")
    projector = Projector(store=store, clock=clock, default_gap_seconds=lambda _: 65.0)
    start = clock.wall - timedelta(minutes=10)
    for k in range(20):
        apply(
            projector.state,
            Observation("web", start + timedelta(seconds=30 * k), Status.UP, 0.01, 65.0),
        )
    registry = CollectorRegistry()
    registry.register(ProjectionCollector(projector, clock))
    up_seconds = ("uptime_service_state_seconds_total", (("service", "web"), ("state", "up")))
    first = samples(registry)
    assert math.isclose(first[up_seconds], 600.0)
    assert first[("uptime_service_up", (("service", "web"),))] == 1.0
    projector.state.services["web"].totals[0] -= 100.0  # what a read half-way through a fold sees
    clock.wall += timedelta(seconds=1)
    assert samples(registry)[up_seconds] >= first[up_seconds]
    clock.wall += timedelta(
        hours=1
    )  # no check for an hour: unknown, NaN, and the up total stops growing
    later = samples(registry)
    assert math.isnan(later[("uptime_service_up", (("service", "web"),))])
    assert later[up_seconds] >= first[up_seconds]
    await store.close()


async def test_the_ratio_metrics_mean_what_the_api_fields_of_the_same_name_mean(
    tmp_path: Path,
) -> None:
    """Up 10 min, degraded 10 min: availability (up or degraded) 1.0, uptime (up only) 0.5."""
    clock = ManualClock(wall=datetime(2026, 5, 1, tzinfo=UTC))
    store = await SqliteEventStore.open(tmp_path / "e.db")
    projector = Projector(store=store, clock=clock, default_gap_seconds=lambda _: 65.0)
    start = clock.wall - timedelta(minutes=20)
    for k in range(40):
        status = Status.UP if k < 20 else Status.DEGRADED
        apply(
            projector.state,
            Observation("web", start + timedelta(seconds=30 * k), status, 0.01, 65.0),
        )
    clock.wall = start + timedelta(minutes=20)
    registry = CollectorRegistry()
    registry.register(ProjectionCollector(projector, clock))
    found = samples(registry)
    labels = (("service", "web"), ("window", "1h"))
    assert math.isclose(found[("uptime_service_availability_ratio", labels)], 1.0)
    assert math.isclose(found[("uptime_service_uptime_ratio", labels)], 0.5, rel_tol=0.01)
    await store.close()
