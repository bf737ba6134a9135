"""Maintenance windows as a fold: events in, covered time out; config kept in step; snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from uptime_daemon import maintenance
from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.errors import ConfigError
from uptime_daemon.maintenance import Maintenance, Window, covered_seconds, merge, outside
from uptime_daemon.projector.fold import Observation, ProjectionState, apply
from uptime_daemon.projector.snapshot import Snapshot, decode, encode
from uptime_daemon.projector.summary import summarize
from uptime_daemon.status import Status

T0 = datetime(2030, 1, 7, tzinfo=UTC)  # a Monday


def _window(**changes: object) -> Window:
    base: dict[str, object] = {
        "id": "w",
        "services": frozenset(),
        "start": T0,
        "end": T0 + timedelta(hours=1),
        "cron": None,
        "duration": None,
        "timezone": "UTC",
        "reason": "",
        "source": "api",
        "declared_at": T0,
        "declared_by": "one",
    }
    return Window(**{**base, **changes})  # type: ignore[arg-type]


def _fold(*windows: Window) -> Maintenance:
    state = Maintenance()
    for window in windows:
        event = maintenance.scheduled(window)
        state.apply(event.type, event.data)
    return state


def test_one_off_windows_cover_their_services_only() -> None:
    """A window for ``web`` covers web, not db; one with no services covers both."""
    state = _fold(_window(id="a", services=frozenset({"web"})))
    day = (T0 - timedelta(hours=1), T0 + timedelta(hours=5))
    assert state.intervals("web", *day) == [(T0, T0 + timedelta(hours=1))]
    assert state.intervals("db", *day) == []
    state = _fold(_window(id="all"))
    assert state.intervals("db", *day) == [(T0, T0 + timedelta(hours=1))]


def test_recurring_windows_follow_cron_in_their_zone() -> None:
    """Daily at 03:00 Berlin for 30 min: 02:00 UTC in winter, bounded by start/end."""
    state = _fold(
        _window(
            cron="0 3 * * *",
            duration=timedelta(minutes=30),
            timezone="Europe/Berlin",
            start=T0,
            end=T0 + timedelta(days=2),
        )
    )
    found = state.intervals("web", T0 - timedelta(days=3), T0 + timedelta(days=5))
    expected = [
        (T0 + timedelta(hours=2), T0 + timedelta(hours=2, minutes=30)),
        (T0 + timedelta(days=1, hours=2), T0 + timedelta(days=1, hours=2, minutes=30)),
    ]
    assert found == expected
    assert state.active("web", T0 + timedelta(hours=2, minutes=10))
    assert not state.active("web", T0 + timedelta(hours=2, minutes=30))


def test_ending_early_and_cancelling_are_events_too() -> None:
    """Ended: the window stops there; cancelled: it never counts; unknown ids change nothing."""
    state = _fold(_window())
    end = maintenance.ended("w", T0 + timedelta(minutes=20))
    state.apply(end.type, end.data)
    assert state.intervals("web", T0, T0 + timedelta(hours=2)) == [(T0, T0 + timedelta(minutes=20))]
    cancel = maintenance.cancelled("w")
    state.apply(cancel.type, cancel.data)
    assert state.intervals("web", T0, T0 + timedelta(hours=2)) == []
    other = maintenance.cancelled("nope")
    assert state.apply(other.type, other.data) is None


def test_malformed_events_raise_naming_the_field() -> None:
    """A missing end, a bad time, a non-object: MaintenanceDecodeError naming what is wrong."""
    state = Maintenance()
    bad = orjson.dumps({"windowId": "x", "start": "2030-01-01T00:00:00Z", "declaredAt": "x"})
    with pytest.raises(maintenance.MaintenanceDecodeError, match="declaredAt"):
        state.apply(maintenance.SCHEDULED, bad)
    with pytest.raises(maintenance.MaintenanceDecodeError, match="object"):
        state.apply(maintenance.SCHEDULED, b"[1]")


def test_interval_helpers() -> None:
    """Overlaps are merged; ``outside`` and ``covered_seconds`` complement each other."""
    hour = timedelta(hours=1)
    merged = merge([(T0 + hour, T0 + 2 * hour), (T0, T0 + hour), (T0 + 3 * hour, T0 + 4 * hour)])
    assert merged == [(T0, T0 + 2 * hour), (T0 + 3 * hour, T0 + 4 * hour)]
    lo, hi = T0 - hour, T0 + 5 * hour
    free = sum((b - a).total_seconds() for a, b in outside(lo, hi, merged))
    assert free + covered_seconds(lo, hi, merged) == (hi - lo).total_seconds()
    assert covered_seconds(lo, hi, merged) == 3 * 3600


def test_config_windows_are_declared_once_and_ended_when_removed() -> None:
    """config_changes: new → scheduled; the same again → nothing; removed → ended now."""
    settings = settings_from_mapping(
        {
            "services": {"web": {"kind": "http", "url": "http://127.0.0.1:9/"}},
            "maintenance": {
                "nightly": {"services": ["web"], "cron": "0 2 * * *", "duration_seconds": 600}
            },
        },
        source="test",
        environ={},
    )
    state = Maintenance()
    (event,) = maintenance.config_changes(state, dict(settings.maintenance), at=T0, instance="a")
    state.apply(event.type, event.data)
    assert state.windows["config:nightly"].cron == "0 2 * * *"
    later = T0 + timedelta(days=1)
    assert (
        maintenance.config_changes(state, dict(settings.maintenance), at=later, instance="b") == []
    )
    (gone,) = maintenance.config_changes(state, {}, at=later, instance="a")
    assert gone.type == maintenance.ENDED
    state.apply(gone.type, gone.data)
    assert state.windows["config:nightly"].ended_at == later


def test_summary_leaves_maintenance_out_and_keeps_the_window_whole() -> None:
    """Down for an hour, half of it maintenance: half the down seconds move, the sum stays."""
    projection = ProjectionState()
    for minutes, status in ((0, Status.UP), (60, Status.DOWN), (120, Status.UP)):
        at = T0 + timedelta(minutes=minutes)
        apply(projection, Observation("web", at, status, 0.01, 7200.0, slot=at))
    service = projection.services["web"]
    now = T0 + timedelta(minutes=180)
    planned = [(T0 + timedelta(minutes=60), T0 + timedelta(minutes=90))]
    summary = summarize(service, now=now, hours=3, maintenance=planned)
    assert summary.seconds[Status.DOWN] == 1800
    assert summary.maintenance_seconds == 1800
    assert sum(summary.seconds.values()) + summary.maintenance_seconds == 3 * 3600
    assert summary.uptime_ratio == 7200 / (7200 + 1800)
    (incident,) = summary.incidents
    assert incident.maintenance_seconds == 1800
    whole = summarize(service, now=now, hours=3, maintenance=[(T0 + timedelta(minutes=59), now)])
    assert whole.incidents == ()


def test_snapshots_keep_the_windows() -> None:
    """A projection with windows round-trips through its snapshot."""
    state = ProjectionState()
    state.maintenance = _fold(_window(services=frozenset({"web"}), reason="upgrade"))
    cancel = maintenance.ended("w", T0 + timedelta(minutes=5))
    state.maintenance.apply(cancel.type, cancel.data)
    back = decode(encode(Snapshot(7, state)))
    assert back.state.maintenance.windows == state.maintenance.windows


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"cron": "0 2 * * *"}, "cron needs duration_seconds"),
        ({"cron": "not a cron", "duration_seconds": 60}, "five fields"),
        ({"start": "2030-01-01T00:00:00Z"}, "start and end"),
        ({"start": "2030-01-01T01:00:00Z", "end": "2030-01-01T00:00:00Z"}, "after start"),
        ({"start": "2030-01-01T00:00:00", "end": "2030-01-01T01:00:00Z"}, "timezone"),
        ({"cron": "0 2 * * *", "duration_seconds": 60, "timezone": "Mars/Olympus"}, "time zone"),
        ({"services": ["nope"], "cron": "0 2 * * *", "duration_seconds": 60}, "no service"),
    ],
)
def test_bad_windows_in_config_name_the_problem(table: dict[str, object], message: str) -> None:
    """Every shape error is a ConfigError naming the table."""
    with pytest.raises(ConfigError, match="maintenance") as raised:
        settings_from_mapping(
            {
                "services": {"web": {"kind": "http", "url": "http://127.0.0.1:9/"}},
                "maintenance": {"w": table},
            },
            source="test",
            environ={},
        )
    assert message in str(raised.value)
