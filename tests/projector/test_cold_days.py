"""Older days on disk beside the snapshot: the same figures as in memory, and safe across crashes."""

from __future__ import annotations

import sqlite3
import tempfile
from array import array
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from tests.projector.test_hours import _copy
from tests.projector.test_runner import T0, projector, write_checks
from uptime_daemon.clock import from_micros
from uptime_daemon.projector import cold as colds
from uptime_daemon.projector.cold import ColdDays, ColdDaysError
from uptime_daemon.projector.fold import HISTOGRAM_BUCKETS
from uptime_daemon.projector.hours import DAY_HOURS, HourBucket, Hours
from uptime_daemon.projector.runner import HOT_HOURS, WARM_HOURS, cold_before_day, records
from uptime_daemon.projector.summary import summarize
from uptime_daemon.store.sqlite import SqliteEventStore

HOURS = st.integers(min_value=-30, max_value=130)
"""Six days and a bit, across the epoch (days −2 to 5)."""
DAYS = st.integers(min_value=-3, max_value=6)
BUCKETS = st.builds(
    HourBucket,
    checks=st.lists(st.integers(0, 1000), min_size=3, max_size=3),
    seconds=st.lists(st.floats(0, 3600), min_size=4, max_size=4),
    response_sum_seconds=st.floats(0, 1e4),
    histogram=st.dictionaries(
        st.integers(0, HISTOGRAM_BUCKETS - 1), st.integers(1, 99), max_size=6
    ),
    inconclusive=st.integers(0, 50),
)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), HOURS, st.integers(0, 2), st.floats(0.001, 10)),
        st.tuples(st.just("set"), HOURS, BUCKETS),
        st.tuples(st.just("pack"), HOURS),
        st.tuples(st.just("prune"), HOURS),
        st.tuples(st.just("evict"), DAYS),
        st.tuples(st.just("flush")),
    ),
    max_size=50,
)
WINDOWS = st.lists(st.tuples(HOURS, HOURS).map(sorted), min_size=1, max_size=6)


def _write(hours: Hours, hour: int, kind: int, seconds: float) -> None:
    bucket = hours.bucket(hour)
    bucket.checks[kind] += 1
    bucket.seconds[kind] += seconds
    bucket.response_sum_seconds += seconds
    bucket.histogram[kind * 5] = bucket.histogram.get(kind * 5, 0) + 1
    bucket.inconclusive += kind


class Flusher:
    """Writes what ``cold`` holds as a projector does with each snapshot."""

    def __init__(self, cold: ColdDays, hours: Hours) -> None:
        self.cold, self.hours, self.first = cold, hours, True

    def __call__(self) -> None:
        keep = [self.hours.cold_ids()[:]] if self.first else None
        flush = self.cold.flush(keep)
        self.cold.write(flush)
        self.cold.flushed(flush)
        self.first = False


def _window(hours: Hours, first: int, last: int) -> tuple[list[int], list[int], float, int]:
    counts, histogram = [0, 0, 0], [0] * HISTOGRAM_BUCKETS
    response, inconclusive = hours.add_window(first, last, counts, histogram)
    return counts, histogram, response, inconclusive


def _same(hours: Hours, model: Hours, windows: list[list[int]]) -> None:
    assert hours == model
    assert len(hours) == len(model)
    assert list(hours) == list(model)
    for first, last in windows:
        expected = _window(model, first, last)
        assert _window(hours, first, last) == expected
        assert _window(hours, first, last) == expected  # the second time from what it kept
        for hour in (first, last):
            assert hours.get(hour) == model.get(hour)
            assert hours.response(hour) == model.response(hour)
            assert (hour in hours) == (hour in model)


@settings(max_examples=150, deadline=None)
@given(operations=OPERATIONS, windows=WINDOWS)
def test_days_moved_to_disk_read_exactly_as_held_in_memory(
    operations: list[tuple[object, ...]], windows: list[list[int]]
) -> None:
    """Any writes, packs, prunes, evictions and flushes: every figure equals the all-in-memory one.

    Summed response times too, to the last bit (the sum is taken hour by hour, ascending), and a
    window asked twice (the second from the sums kept) — then read back from the file alone, as a
    restarted daemon reads its snapshot.
    """
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "projection.hours.db"
        cold = ColdDays(path)
        hours, model = Hours(), Hours()
        flush = Flusher(cold, hours)
        for operation in operations:
            match operation:
                case ("write", int(hour), int(kind), float(seconds)):
                    _write(hours, hour, kind, seconds)
                    _write(model, hour, kind, seconds)
                case ("set", int(hour), HourBucket() as bucket):
                    hours[hour] = _copy(bucket)
                    model[hour] = _copy(bucket)
                case ("pack", int(hour)):
                    hours.pack(hour)
                    model.pack(hour)
                case ("prune", int(hour)):
                    hours.prune(hour)
                    model.prune(hour)
                case ("evict", int(day)):
                    hours.evict(cold, day)
                    assert all(hour >= day * DAY_HOURS for hour in hours.open)
                case ("flush",):
                    flush()
            _same(hours, model, windows)
        flush()
        cold.close()
        reopened = ColdDays(path)
        restored = Hours.from_bytes(hours.to_bytes(), indexes=HISTOGRAM_BUCKETS)
        for hour, bucket in hours.open.items():
            restored[hour] = _copy(bucket)
        restored.with_cold_index(hours.cold_index())
        restored.attach(reopened)
        assert reopened.missing(restored.cold_ids()) == 0
        _same(restored, model, windows)
        reopened.close()


def _day(day: int, checks: int = 1) -> Hours:
    hours = Hours()
    for hour in range(day * DAY_HOURS, (day + 1) * DAY_HOURS):
        for _ in range(checks):
            _write(hours, hour, 0, 0.125)
    hours.pack((day + 1) * DAY_HOURS)
    return hours


def test_a_window_asked_again_reads_nothing_until_its_cold_hours_change(tmp_path: Path) -> None:
    """Its cold sums are kept: a window whose blobs vanished still answers; another one cannot."""
    cold = ColdDays(tmp_path / "h.db")
    hours = Hours()
    for day in range(4):
        for hour, bucket in _day(day).items():
            hours[hour] = bucket
    assert hours.evict(cold, 3) == 3
    Flusher(cold, hours)()
    assert _window(hours, 5, 80)[0] == [76, 0, 0]
    with sqlite3.connect(cold.path) as connection:
        connection.execute("DELETE FROM days")
    assert _window(hours, 5, 80)[0] == [76, 0, 0]
    with pytest.raises(ColdDaysError):
        _window(hours, 6, 80)
    cold.close()


def test_a_released_blob_outlives_the_snapshot_that_still_names_it(tmp_path: Path) -> None:
    """Deleted with the second flush after its release, never the first.

    A crash's orphans go at the first write of the next projector.
    """
    path = tmp_path / "h.db"
    cold = ColdDays(path)
    cold.put(b"zero")  # written with no list of what to keep, then not kept by the next
    flush = cold.flush()
    cold.write(flush)
    cold.flushed(flush)
    first, second = cold.put(b"one"), cold.put(b"two")
    flush = cold.flush([array("q", [first, second])])
    cold.write(flush)
    cold.flushed(flush)
    cold.release(first)
    unwritten = cold.put(b"three")
    cold.release(unwritten)  # never reached the file: nothing to delete
    for expected in ({first, second}, {second}):  # after the next flush, and the one after
        flush = cold.flush()
        cold.write(flush)
        cold.flushed(flush)
        with sqlite3.connect(path) as connection:
            assert {row[0] for row in connection.execute("SELECT id FROM days")} == expected
    assert cold.missing([second, first]) == 1
    orphan = cold.put(b"four")  # written, but the snapshot naming it never was (a crash)
    cold.write(cold.flush())
    cold.close()
    restarted = ColdDays(path)
    assert restarted.put(b"five") > orphan
    flush = restarted.flush([array("q", [second])])
    restarted.write(flush)
    restarted.flushed(flush)
    assert restarted.missing([second, orphan]) == 1
    assert restarted.get(second) == b"two"
    writer = restarted._writer
    assert writer is not None
    for connection in (restarted._reader, writer):  # the ids' pages not kept
        assert connection.execute("SELECT count(*) FROM sqlite_temp_master").fetchone() == (0,)
    restarted.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    opened = await SqliteEventStore.open(tmp_path / "events.db")
    yield opened
    await opened.close()


async def test_a_snapshot_with_cold_days_restarts_into_the_same_projection(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    """Six days of checks: memory keeps a record's last hours and their day, the file the rest.

    A restart from them equals a replay from zero, over 90 days too; a file that lost a day is not
    trusted.
    """
    path = tmp_path / "projection.json"
    every = timedelta(minutes=7)
    await write_checks(store, 1200, seed=5, every=every)
    first = projector(store, path)
    await first.catch_up()
    first.save_snapshot()
    assert colds.path_beside(path).exists()
    for record in records(first.state):
        assert len(record.buckets.cold_ids()) > 0
        in_memory = len(record.buckets) - record.buckets.cold_hours()
        first_day = cold_before_day(record)
        assert in_memory == sum(1 for hour in record.buckets if hour // DAY_HOURS >= first_day)
        assert HOT_HOURS <= in_memory <= HOT_HOURS + DAY_HOURS - 1
        assert record.buckets.get(record.pruned_hour - 100) is not None
    await write_checks(store, 300, seed=6, start=T0 + every * 1200, every=every)
    await first.catch_up()
    first.save_snapshot()  # a day more moved out
    restarted = projector(store, path)
    restarted.load_snapshot()
    assert restarted.position == first.position
    full = projector(store)
    await full.catch_up()
    assert restarted.state.services == full.state.services
    now = T0 + every * 1500
    for name, record in full.state.services.items():
        assert summarize(restarted.state.services[name], now=now, hours=2160) == summarize(
            record, now=now, hours=2160
        )
    first.close()
    restarted.close()

    with sqlite3.connect(colds.path_beside(path)) as connection:
        connection.execute("DELETE FROM days WHERE id = (SELECT min(id) FROM days)")
    damaged = projector(store, path)
    damaged.load_snapshot()
    assert damaged.position is None  # folded from zero instead
    await damaged.catch_up()
    damaged.save_snapshot()
    assert damaged.state.services == full.state.services
    damaged.close()
    again = projector(store, path)
    again.load_snapshot()
    assert again.position == full.position
    assert again.state.services == full.state.services
    again.close()


def test_a_day_the_file_lost_is_dropped_and_logged_when_written_to(tmp_path: Path) -> None:
    """The fold goes on: a late check into a lost day, or the retention cutting into one."""
    cold = ColdDays(tmp_path / "h.db")
    hours = Hours()
    for day in range(4):
        for hour, bucket in _day(day).items():
            hours[hour] = bucket
    hours.evict(cold, 3)
    Flusher(cold, hours)()
    with sqlite3.connect(cold.path) as connection:
        connection.execute("DELETE FROM days")
    with capture_logs() as logs:
        _write(hours, 30, 2, 0.5)  # day 1
        hours.prune(5)  # cuts into day 0
    assert [(e["event"], e["day"]) for e in logs] == [("cold_day_lost", 1), ("cold_day_lost", 0)]
    assert hours.get(30) == HourBucket([0, 0, 1], [0.0, 0.0, 0.5, 0.0], 0.5, {10: 1}, 2)
    assert hours.get(80) == _day(3).get(80)
    assert len(hours.cold_ids()) == 1  # day 2, written to by nothing: a reader is told
    with pytest.raises(ColdDaysError, match="missing"):
        hours.get(50)
    cold.close()


async def test_older_transitions_are_frozen_and_read_as_a_replay_does(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    """45 days of flapping: what ended ``WARM_HOURS`` before is frozen by a snapshot's write and read.

    The state, every window's summary and the next snapshot equal a replay's from zero.
    """
    path = tmp_path / "projection.json"
    every = timedelta(minutes=40)
    await write_checks(store, 1620, seed=8, every=every)
    first = projector(store, path)
    await first.catch_up()
    first.save_snapshot()
    restarted = projector(store, path)
    restarted.load_snapshot()
    full = projector(store)
    await full.catch_up()
    for live in (first, restarted):
        for record in records(live.state):
            assert record.periods.frozen > 0
            assert record.incidents.frozen > 0
            days = len(record.buckets.cold_ids())
            assert days > 40
            assert len(record.buckets._cold_packed) < 4 * days  # 14 bytes a day as arrays
            before = from_micros((record.pruned_hour - WARM_HOURS) * 3_600_000_000)
            assert all(p.end >= before for p in record.periods[record.periods.frozen :])
        assert live.state.services == full.state.services
    await write_checks(store, 200, seed=9, start=T0 + every * 1620, every=every)
    for live in (restarted, full):
        await live.catch_up()
    now = T0 + every * 1820
    for name, record in full.state.services.items():
        for hours in (24, 720, 2160):
            assert summarize(restarted.state.services[name], now=now, hours=hours) == summarize(
                record, now=now, hours=hours
            )
    restarted.save_snapshot()
    again = projector(store, path)
    again.load_snapshot()
    assert again.position == full.position
    assert again.state.services == full.state.services
    for projection in (first, restarted, again):
        projection.close()
