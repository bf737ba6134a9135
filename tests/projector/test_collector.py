"""The projection's metrics: restart-safe counters that never go backwards, NaN while unknown.

A service's lines are rendered again only when it changed, or ``REFRESH_SECONDS`` after the last time.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.probes.fakes import FakeStore, ManualClock
from uptime_daemon.projector.collector import REFRESH_SECONDS, ProjectionCollector
from uptime_daemon.projector.fold import Observation, apply
from uptime_daemon.projector.runner import Projector
from uptime_daemon.status import Status

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
GAP_SECONDS = 65.0


def samples(collector: ProjectionCollector) -> Samples:
    """One scrape's samples, by name and sorted labels (and the OpenMetrics form parses too)."""
    openmetrics = b"".join(collector.pieces(openmetrics=True)).decode() + "# EOF\n"
    list(openmetrics_families(openmetrics))  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(
            b"".join(collector.pieces(openmetrics=False)).decode()
        )
        for s in family.samples
    }


def projector(clock: ManualClock) -> Projector:
    return Projector(store=FakeStore(), clock=clock, default_gap_seconds=lambda _: GAP_SECONDS)


def check(
    target: Projector,
    service: str,
    at: datetime,
    status: Status = Status.UP,
    gap_seconds: float = GAP_SECONDS,
) -> None:
    apply(target.state, Observation(service, at, status, 0.01, gap_seconds))


def seconds(service: str, state: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("uptime_service_state_seconds_total", (("service", service), ("state", state)))


def up(service: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("uptime_service_up", (("service", service),))


def test_state_seconds_never_go_backwards_even_from_a_torn_read() -> None:
    """A scrape in the metrics thread may read a service mid-update; the counter still only grows."""
    clock = ManualClock(wall=datetime(2026, 5, 1, tzinfo=UTC))
    source = projector(clock)
    start = clock.wall - timedelta(minutes=10)
    for k in range(20):
        check(source, "web", start + timedelta(seconds=30 * k))
    collector = ProjectionCollector(source, clock)
    first = samples(collector)
    assert math.isclose(first[seconds("web", "up")], 600.0)
    assert first[up("web")] == 1.0
    source.state.services["web"].totals[0] -= 100.0  # what a read half-way through a fold sees
    clock.wall += timedelta(seconds=REFRESH_SECONDS)  # rendered again: from the torn totals
    assert samples(collector)[seconds("web", "up")] >= first[seconds("web", "up")]
    clock.wall += timedelta(hours=1)  # no check for an hour: unknown, NaN, up stops growing
    later = samples(collector)
    assert math.isnan(later[up("web")])
    assert later[seconds("web", "up")] >= first[seconds("web", "up")]


def test_the_ratio_metrics_mean_what_the_api_fields_of_the_same_name_mean() -> None:
    """Up 10 min, degraded 10 min: availability (up or degraded) 1.0, uptime (up only) 0.5."""
    clock = ManualClock(wall=datetime(2026, 5, 1, tzinfo=UTC))
    source = projector(clock)
    start = clock.wall - timedelta(minutes=20)
    for k in range(40):
        check(
            source,
            "web",
            start + timedelta(seconds=30 * k),
            Status.UP if k < 20 else Status.DEGRADED,
        )
    clock.wall = start + timedelta(minutes=20)
    found = samples(ProjectionCollector(source, clock))
    labels = (("service", "web"), ("window", "1h"))
    assert math.isclose(found[("uptime_service_availability_ratio", labels)], 1.0)
    assert math.isclose(found[("uptime_service_uptime_ratio", labels)], 0.5, rel_tol=0.01)


def test_a_folded_check_shows_at_the_next_scrape_and_an_unchanged_service_keeps_its_lines() -> None:
    """``web`` is checked between two scrapes, ``api`` is not: only ``web``'s figures move.

    ``api``'s time keeps running, but its lines are those of the last scrape until a check of its
    own, or ``REFRESH_SECONDS`` after they were rendered; then they catch up.
    """
    clock = ManualClock(wall=datetime(2026, 5, 1, tzinfo=UTC))
    source = projector(clock)
    credible = 5 * REFRESH_SECONDS  # no verdict goes stale in this test
    for service in ("api", "web"):
        check(source, service, clock.wall - timedelta(seconds=30), gap_seconds=credible)
    collector = ProjectionCollector(source, clock)
    first = samples(collector)
    assert first[seconds("web", "up")] == first[seconds("api", "up")] == 30.0

    clock.wall += timedelta(seconds=20)
    check(source, "web", clock.wall, Status.DOWN, gap_seconds=credible)
    second = samples(collector)
    assert second[up("web")] == 0.0
    assert second[("uptime_service_status", (("service", "web"), ("status", "down")))] == 1.0
    assert second[seconds("web", "up")] == 50.0
    assert second[up("api")] == 1.0
    assert second[seconds("api", "up")] == 30.0  # not rendered again: nothing happened to it

    clock.wall += timedelta(seconds=REFRESH_SECONDS - 20)
    third = samples(collector)
    assert third[seconds("api", "up")] == 30.0 + REFRESH_SECONDS
    assert third[seconds("web", "down")] == REFRESH_SECONDS - 20


def test_a_verdict_going_stale_shows_at_once_without_waiting_for_the_refresh() -> None:
    """Past its credibility (2 × interval + timeout) a status is unknown: NaN at the next scrape."""
    clock = ManualClock(wall=datetime(2026, 5, 1, tzinfo=UTC))
    source = projector(clock)
    credible = REFRESH_SECONDS / 3  # stale long before the lines are refreshed anyway
    check(source, "web", clock.wall, gap_seconds=credible)
    collector = ProjectionCollector(source, clock)
    assert samples(collector)[up("web")] == 1.0
    clock.wall += timedelta(seconds=credible - 1)
    assert samples(collector)[up("web")] == 1.0
    clock.wall += timedelta(seconds=2)
    assert math.isnan(samples(collector)[up("web")])


def test_counters_never_go_backwards_across_scrapes() -> None:
    """Scrapes between checks, flapping, silence and a clock step back: every total only grows."""
    clock = ManualClock(wall=datetime(2026, 5, 1, tzinfo=UTC))
    source = projector(clock)
    collector = ProjectionCollector(source, clock)
    statuses = (Status.UP, Status.DOWN, Status.DEGRADED, Status.UP)
    reported: Samples = {}
    for step in range(120):
        clock.wall += timedelta(seconds=(7, 13, 70, 2)[step % 4])
        if step % 5 != 4:  # every fifth step the services stay silent
            check(source, "web", clock.wall, statuses[step % len(statuses)])
        if step % 3 == 0:
            check(source, "api", clock.wall, statuses[(step // 3) % len(statuses)])
        if step == 60:
            clock.wall -= timedelta(seconds=30)  # the wall clock stepped back
        for key, value in samples(collector).items():
            if key[0].endswith("_total"):
                assert value >= reported.get(key, 0.0), key
                reported[key] = value
    assert reported[seconds("web", "down")] > 0


@pytest.mark.parametrize(
    "openmetrics", [pytest.param(False, id="text"), pytest.param(True, id="openmetrics")]
)
def test_counter_families_are_named_as_each_format_names_them(openmetrics: bool) -> None:
    """Prometheus text names a counter family after its samples (``_total``); OpenMetrics does not."""
    clock = ManualClock(wall=datetime(2026, 5, 1, tzinfo=UTC))
    source = projector(clock)
    check(source, "web", clock.wall)
    text = b"".join(ProjectionCollector(source, clock).pieces(openmetrics=openmetrics)).decode()
    family = "uptime_service_state_seconds" if openmetrics else "uptime_service_state_seconds_total"
    assert f"# TYPE {family} counter\n" in text
    assert 'uptime_service_state_seconds_total{service="web",state="up"} 0.0\n' in text
