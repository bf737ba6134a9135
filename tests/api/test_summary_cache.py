"""The summary cache: exact when off, every check shown at once, only clock drift bounded by max age."""

from __future__ import annotations

import itertools
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from uptime_daemon.api import models, views
from uptime_daemon.api.summary_cache import FRAGMENT_SHARE, WINDOWS_KEPT, SummaryCache
from uptime_daemon.config.model import Settings
from uptime_daemon.projector.fold import Observation, ProjectionState, apply
from uptime_daemon.status import Status

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GAP = 65.0


class Monotonic:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


def settings(count: int, max_age: float, kind: str = "http") -> Settings:
    body = f"[server]\nsummary_max_age_seconds = {max_age}\n" + "".join(
        f'[services.s{i}]\nkind = "{kind}"\n'
        + ('url = "http://127.0.0.1:9/"\n' if kind == "http" else "")
        for i in range(count)
    )
    return Settings.model_validate(tomllib.loads(body))


def history(count: int) -> ProjectionState:
    """``count`` services checked every 30 s for an hour; s1 had a 5-minute outage."""
    state = ProjectionState()
    for i in range(count):
        for k in range(120):
            down = i == 1 and 40 <= k < 50
            status = Status.DOWN if down else Status.UP
            apply(state, Observation(f"s{i}", START + timedelta(seconds=30 * k), status, 0.02, GAP))
    return state


def check(state: ProjectionState, name: str, at: datetime, status: Status) -> None:
    apply(state, Observation(name, at, status, 0.03, GAP))


def parsed(body: bytes) -> dict[str, Any]:
    value = orjson.loads(body)
    assert isinstance(value, dict)
    return value


def by_name(body: bytes) -> dict[str, dict[str, Any]]:
    return {s["service"]: s for s in parsed(body)["services"]}


def test_uncached_answer_is_exactly_the_models_serialization() -> None:
    """With max age 0 the bytes are those of ``UptimeSummary`` at ``now``: one source of truth."""
    config, state = settings(3, 0), history(3)
    now = START + timedelta(hours=1, seconds=10)
    services = [
        views.service_uptime(config, state, name, hours=2, now=now)
        for name in views.service_names(config, state)
    ]
    expected = models.UptimeSummary(
        generated_at=now,
        hours=2,
        status=views.overall([s.status for s in services]),
        services=services,
    ).model_dump_json(by_alias=True)
    got = SummaryCache(monotonic=Monotonic()).render(config, state, hours=2, now=now)
    assert got.decode() == expected
    models.UptimeSummary.model_validate_json(got)


def test_a_new_check_shows_at_once_even_within_max_age() -> None:
    config, state, clock = settings(3, 60), history(3), Monotonic()
    cache = SummaryCache(monotonic=clock)
    now = START + timedelta(hours=1)
    before = by_name(cache.render(config, state, hours=2, now=now))
    check(state, "s0", now, Status.DOWN)
    after = by_name(cache.render(config, state, hours=2, now=now + timedelta(seconds=1)))
    assert after["s0"]["checks"]["total"] == before["s0"]["checks"]["total"] + 1
    assert after["s0"]["status"] == "down"
    assert after["s2"] == before["s2"]  # untouched and young: reused as it was


def test_a_quiet_service_lags_the_clock_by_at_most_its_share_of_max_age() -> None:
    """A part lives at most ``FRAGMENT_SHARE`` of the max age: the answer's own age makes up the rest.

    It is computed again at the next tick of its own grid (``phase + k × age``): reused until then,
    computed once that tick has passed, and the tick after comes a whole age later.
    """
    config, state, clock = settings(1, 8), history(1), Monotonic()
    part_age = 8 * FRAGMENT_SHARE
    cache = SummaryCache(monotonic=clock)
    first_at = START + timedelta(hours=1)

    def at(offset: float) -> dict[str, Any]:
        clock.value = 1000.0 + offset
        return by_name(
            cache.render(config, state, hours=2, now=first_at + timedelta(seconds=offset))
        )["s0"]

    first = at(0)
    computed = [0.0]
    previous = first
    for step in range(1, 161):  # 0.1 s steps over 16 s: a part age is 6 s
        offset = step * 0.1
        current = at(offset)
        if current != previous:
            computed.append(offset)
        assert offset - computed[-1] < part_age + 1e-9  # never older than its age
        previous = current
    gaps = [b - a for a, b in itertools.pairwise(computed[1:])]
    assert len(computed) >= 3
    assert all(abs(gap - part_age) < 0.1 + 1e-9 for gap in gaps)  # then once per age, on its grid


def test_a_service_going_stale_turns_unknown_at_once() -> None:
    """Past 2 × interval + timeout with no check the status is unknown, whatever the cache holds."""
    config, state, clock = settings(2, 60), history(2), Monotonic()
    cache = SummaryCache(monotonic=clock)
    last = START + timedelta(seconds=30 * 119)
    fresh = parsed(cache.render(config, state, hours=2, now=last + timedelta(seconds=10)))
    stale = parsed(cache.render(config, state, hours=2, now=last + timedelta(seconds=GAP + 1)))
    assert {s["status"] for s in fresh["services"]} == {"up"}
    assert {s["status"] for s in stale["services"]} == {"unknown"}
    assert (fresh["status"], stale["status"]) == ("ok", "degraded")


def test_first_expiries_are_spread_so_rebuilds_come_a_few_at_a_time() -> None:
    config, state, clock = settings(200, 1), history(200), Monotonic()
    cache = SummaryCache(monotonic=clock)
    now = START + timedelta(hours=1)
    cache.render(config, state, hours=2, now=now)
    assert cache.rebuilt == 200
    clock.value += FRAGMENT_SHARE / 2
    cache.render(config, state, hours=2, now=now + timedelta(seconds=0.5))
    assert 40 < cache.rebuilt - 200 < 160  # about half expired, not all at once


def test_expiries_stay_spread_after_every_part_was_computed_at_once() -> None:
    """After an idle spell every part is due: the rebuild computes them all, and then few at a time.

    Expiring each part one age after it was computed would keep them together, so every later
    rebuild would compute them all again (the event loop held for the whole summary each time).
    """
    config, state, clock = settings(200, 1), history(200), Monotonic()
    cache = SummaryCache(monotonic=clock)
    now = START + timedelta(hours=1)
    cache.render(config, state, hours=2, now=now)
    clock.value += 10  # idle: every part is older than its age
    cache.render(config, state, hours=2, now=now + timedelta(seconds=10))
    assert cache.rebuilt == 400
    per_step = []
    for step in range(1, 9):  # eight steps across one part age
        before = cache.rebuilt
        clock.value += FRAGMENT_SHARE / 8
        cache.render(config, state, hours=2, now=now + timedelta(seconds=10 + step / 8))
        per_step.append(cache.rebuilt - before)
    assert sum(per_step) == 200  # each part once per age
    assert max(per_step) < 60  # about 25 per step, never all 200 together


def test_a_reload_rebuilds_everything_and_windows_are_bounded() -> None:
    state, clock = history(2), Monotonic()
    cache = SummaryCache(monotonic=clock)
    now = START + timedelta(hours=1)
    first = by_name(cache.render(settings(2, 60), state, hours=2, now=now))
    reloaded = by_name(cache.render(settings(2, 60, kind="database"), state, hours=2, now=now))
    assert {s["kind"] for s in first.values()} == {"http"}
    assert {s["kind"] for s in reloaded.values()} == {"database"}
    config = settings(2, 60)
    for hours in range(1, 2 * WINDOWS_KEPT + 2):
        answer = parsed(cache.render(config, state, hours=hours, now=now))
        assert answer["hours"] == hours
        assert {s["window"]["hours"] for s in answer["services"]} == {hours}
    assert cache.windows == WINDOWS_KEPT
