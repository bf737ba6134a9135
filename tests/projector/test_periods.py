"""Packed periods and incidents read exactly as the lists they replace."""

from __future__ import annotations

import bisect
import copy
import struct
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uptime_daemon.projector.periods import Incident, Incidents, Period, Periods
from uptime_daemon.status import Status

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STEPS = st.lists(
    st.tuples(st.sampled_from(list(Status)), st.integers(1, 10**10)), min_size=0, max_size=30
)
"""Each period's state and length in microseconds; they follow one another."""
MOMENTS = st.lists(st.integers(-(10**9), 10**11).map(lambda m: T0 + timedelta(microseconds=m)))
FREEZES = st.lists(
    st.integers(-(10**9), 3 * 10**11).map(lambda m: T0 + timedelta(microseconds=m)), max_size=2
)
"""Moments to freeze the rows that ended before, in turn (none, one, or a second on top)."""


def _periods(steps: list[tuple[Status, int]]) -> list[Period]:
    found, at = [], T0
    for state, length in steps:
        end = at + timedelta(microseconds=length)
        found.append(Period(state, at, end))
        at = end
    return found


@given(steps=STEPS, moments=MOMENTS, cut=st.integers(-(10**9), 10**11), freezes=FREEZES)
def test_periods_read_as_the_list(
    steps: list[tuple[Status, int]], moments: list[datetime], cut: int, freezes: list[datetime]
) -> None:
    """Every read, the bisections, the snapshot's form and the cut equal the list's, frozen or not."""
    model = _periods(steps)
    packed = Periods(model)
    for moment in freezes:
        packed.freeze(moment, min_rows=1)
    assert packed == model
    assert len(packed) == len(model)
    assert list(packed) == model
    assert packed[1:-1] == model[1:-1]
    if model:
        assert (packed[0], packed[-1]) == (model[0], model[-1])
    for moment in moments:
        assert packed.ending_after(moment) == bisect.bisect_right(
            model, moment, key=lambda p: p.end
        )
        index = packed.starting_after(moment)
        assert index == bisect.bisect_right(model, moment, key=lambda p: p.start)
        assert list(packed.since(index)) == model[index:]
    assert packed.encoded() == [[p.state, p.start.timestamp(), p.end.timestamp()] for p in model]
    assert Periods.from_bytes(packed.to_bytes()) == model
    copied = copy.deepcopy(packed)
    horizon = T0 + timedelta(microseconds=cut)
    packed.drop_ended_before(horizon)
    while model and model[0].end < horizon:
        model.pop(0)
    assert packed == model
    assert copied == _periods(steps)  # the copy is its own
    packed.append(Period(Status.UP, T0 + timedelta(days=9), T0 + timedelta(days=10)))
    assert packed == [*model, Period(Status.UP, T0 + timedelta(days=9), T0 + timedelta(days=10))]


INCIDENTS = st.lists(
    st.tuples(st.integers(1, 10**9), st.integers(0, 10**9), st.integers(0, 10**6), st.booleans()),
    max_size=20,
)
"""Each incident's gap after the one before, length, unknown share, and whether it closed."""


def _incidents(steps: list[tuple[int, int, int, bool]]) -> list[Incident]:
    found, at = [], T0
    for gap, length, unknown, closed in steps:
        start = at + timedelta(microseconds=gap)
        end = start + timedelta(microseconds=length)
        down = timedelta(microseconds=max(0, length - unknown))
        found.append(
            Incident(start, end if closed else None, down, timedelta(microseconds=unknown))
        )
        at = end
    return found


@given(
    steps=INCIDENTS,
    cut=st.integers(0, 2 * 10**10),
    freezes=FREEZES,
    moment=st.integers(0, 2 * 10**10),
)
def test_incidents_read_as_the_list_and_the_last_is_written_to(
    steps: list[tuple[int, int, int, bool]], cut: int, freezes: list[datetime], moment: int
) -> None:
    """Reads and the cut equal the list's, frozen or not; the fold's writes to the last one stay."""
    model = _incidents(steps)
    packed = Incidents(copy.deepcopy(model))
    for at in freezes:
        packed.freeze(at, min_rows=1)
    assert packed == model
    assert len(packed) == len(model)
    assert packed[:] == model
    assert [packed[at] for at in range(len(model))] == model
    since = T0 + timedelta(microseconds=moment)
    shown = list(packed.ending_after(since))
    assert [i for i in model if i.end is None or i.end > since] == [
        i for i in shown if i.end is None or i.end > since
    ]  # all that ended after it, and only incidents of the list, in order
    assert all(i in model for i in shown)
    if model:
        last = packed[-1]
        last.down += timedelta(seconds=1)
        model[-1].down += timedelta(seconds=1)
        assert packed[-1] is last
        assert packed == model
    read = Incidents.from_bytes(packed.to_bytes())
    assert read == model
    if model:
        assert read[-1] is read[-1]  # the last one is an object again, for the fold to write to
    copied, before = copy.deepcopy(packed), copy.deepcopy(model)
    horizon = T0 + timedelta(microseconds=cut)
    packed.drop_ended_before(horizon)
    while model and model[0].end is not None and model[0].end < horizon:
        model.pop(0)
    assert packed == model
    if packed and packed[-1].end is not None:
        packed.append(Incident(T0 + timedelta(days=1000)))
        assert packed == [*model, Incident(T0 + timedelta(days=1000))]
    assert copied == before  # the copy is its own


@given(
    steps=STEPS,
    start=st.integers(-(10**9), 10**11),
    length=st.integers(0, 10**11),
    freezes=FREEZES,
)
def test_credit_adds_what_the_periods_made_would(
    steps: list[tuple[Status, int]], start: int, length: int, freezes: list[datetime]
) -> None:
    """The same float sums, in the same order, as adding each period's clipped seconds."""
    model = _periods(steps)
    lo = T0 + timedelta(microseconds=start)
    hi = lo + timedelta(microseconds=length)
    expected = dict.fromkeys(Status, 0.0)
    for period in model:
        begin, end = max(period.start, lo), min(period.end, hi)
        if period.state is not Status.UNKNOWN and end > begin:
            expected[period.state] += (end - begin).total_seconds()
    found = dict.fromkeys(Status, 0.0)
    packed = Periods(model)
    for moment in freezes:
        packed.freeze(moment, min_rows=1)
    packed.credit(found, lo, hi)
    assert found == expected


def test_bytes_that_are_not_packed_rows_are_refused() -> None:
    """A damaged snapshot is not used: ``ValueError``, which the snapshot reader reports."""
    whole = Periods(_periods([(Status.UP, 5), (Status.DOWN, 7)])).to_bytes()
    for bad in (b"", b"not zlib", whole[:-3], zlib.compress(b"\x02\x00\x00\x00\x09")):
        with pytest.raises(ValueError, match="packed"):
            Periods.from_bytes(bad)
    with pytest.raises(ValueError, match="unknown state"):
        Periods.from_bytes(zlib.compress(struct.pack("<IBqq", 1, 9, 0, 1)))
    with pytest.raises(ValueError, match="packed"):
        Incidents.from_bytes(whole)


DAY = timedelta(days=1)
TICK = timedelta(microseconds=1)
NINETY_DAYS = [
    Period(state, T0 + n * DAY + offset, T0 + n * DAY + end)
    for n in range(90)
    for state, offset, end in (
        (Status.UP, timedelta(0), timedelta(hours=23, minutes=55)),
        (Status.DOWN, timedelta(hours=23, minutes=55), DAY),
    )
]
"""90 days with a five-minute outage at the end of each."""
NINETY_OUTAGES = [
    Incident(p.start, p.end, p.end - p.start, timedelta(0))
    for p in NINETY_DAYS
    if p.state is Status.DOWN
]


def _frozen_ninety_days() -> tuple[Periods, Incidents]:
    """``NINETY_DAYS`` and their outages, 128 periods and 68 incidents of them frozen, in steps."""
    periods, packed = Periods(NINETY_DAYS), Incidents(NINETY_OUTAGES)
    cut = T0 + 60 * DAY
    periods.freeze(cut)
    packed.freeze(cut)
    assert (periods.frozen, packed.frozen) == (
        119,
        59,
    )  # the 60th outage ends at the cut: not before
    periods.freeze(cut + TICK)
    packed.freeze(cut + TICK)  # one more row is under ``FREEZE_ROWS``: left where it is
    assert (periods.frozen, packed.frozen) == (119, 59)
    periods.freeze(cut + 4 * DAY + TICK)
    packed.freeze(cut + 8 * DAY + TICK)  # frozen together with the rows frozen before
    assert (periods.frozen, packed.frozen) == (128, 68)
    return periods, packed


def _array_bytes(periods: Periods) -> int:
    return sum(getattr(periods, n).buffer_info()[1] for n in ("_states", "_starts", "_ends"))


def test_frozen_rows_take_a_fraction_of_the_memory_and_snapshot_as_before() -> None:
    """The arrays keep the 52 rows not frozen; the frozen 128 compress to under 4 bytes a row."""
    whole = Periods(NINETY_DAYS)
    periods, packed = _frozen_ninety_days()
    assert _array_bytes(periods) <= _array_bytes(whole) * 52 // 180 + 64
    assert periods._frozen is not None
    assert packed._frozen is not None
    assert len(periods._frozen.data) < 4 * 128
    assert len(packed._frozen.data) < 4 * 68
    assert periods.to_bytes() == whole.to_bytes()
    assert packed.to_bytes() == Incidents(NINETY_OUTAGES).to_bytes()


def test_windows_after_the_frozen_rows_do_not_thaw_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read from after the last frozen row must not decompress them; a longer one must.

    ``_Frozen.thaw`` is made to fail for the first; the second gets the list's answers.
    """
    periods, packed = _frozen_ninety_days()
    model, incidents = NINETY_DAYS, NINETY_OUTAGES
    now = T0 + 90 * DAY
    assert periods._frozen is not None
    with monkeypatch.context() as patched:
        patched.setattr(type(periods._frozen), "thaw", lambda _: pytest.fail("thawed"))
        totals = dict.fromkeys(Status, 0.0)
        periods.credit(totals, now - 26 * DAY, now)
        assert totals[Status.DOWN] == 26 * 300
        assert periods.ending_after(now - 26 * DAY) == 128
        assert periods.starting_after(now - 26 * DAY) == 129  # the 129th starts there
        assert list(periods.since(128)) == model[128:]
        assert periods[128] == model[128]
        assert len(list(packed.ending_after(now - 22 * DAY))) == 22
        periods.drop_ended_before(T0)  # nothing older than the first: nothing thawed either
    totals = dict.fromkeys(Status, 0.0)
    periods.credit(totals, T0, now)
    assert totals[Status.DOWN] == 90 * 300
    totals = dict.fromkeys(Status, 0.0)
    periods.credit(totals, T0 + 30 * DAY, now)  # from the middle of the frozen rows
    assert totals[Status.DOWN] == 60 * 300
    assert periods.ending_after(T0 + 30 * DAY) == 60
    assert periods.starting_after(T0 + 30 * DAY) == 61
    assert list(periods) == model
    assert list(packed.ending_after(T0)) == incidents
    assert (periods[3], packed[3]) == (model[3], incidents[3])


def test_cutting_frozen_rows() -> None:
    """Retention cuts among the frozen rows (thawed, cut, frozen again) or past all of them."""
    periods, packed = _frozen_ninety_days()
    periods.drop_ended_before(T0 + 10 * DAY + TICK)
    packed.drop_ended_before(T0 + 10 * DAY + TICK)
    assert list(periods) == NINETY_DAYS[20:]
    assert list(packed) == NINETY_OUTAGES[10:]
    assert (periods.frozen, packed.frozen) == (108, 58)
    periods.drop_ended_before(T0 + 70 * DAY + TICK)  # every frozen row ended before it
    packed.drop_ended_before(T0 + 70 * DAY + TICK)
    assert list(periods) == NINETY_DAYS[140:]
    assert list(packed) == NINETY_OUTAGES[70:]
    assert (periods.frozen, packed.frozen) == (0, 0)
