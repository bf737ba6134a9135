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


def _periods(steps: list[tuple[Status, int]]) -> list[Period]:
    found, at = [], T0
    for state, length in steps:
        end = at + timedelta(microseconds=length)
        found.append(Period(state, at, end))
        at = end
    return found


@given(steps=STEPS, moments=MOMENTS, cut=st.integers(-(10**9), 10**11))
def test_periods_read_as_the_list(
    steps: list[tuple[Status, int]], moments: list[datetime], cut: int
) -> None:
    """Every read, the bisections, the snapshot's form and the cut equal the list's."""
    model = _periods(steps)
    packed = Periods(model)
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


@given(steps=INCIDENTS, cut=st.integers(0, 2 * 10**10))
def test_incidents_read_as_the_list_and_the_last_is_written_to(
    steps: list[tuple[int, int, int, bool]], cut: int
) -> None:
    """Reads and the cut equal the list's; the fold's writes to the last one stay."""
    model = _incidents(steps)
    packed = Incidents(copy.deepcopy(model))
    assert packed == model
    assert len(packed) == len(model)
    assert packed[:] == model
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


@given(steps=STEPS, start=st.integers(-(10**9), 10**11), length=st.integers(0, 10**11))
def test_credit_adds_what_the_periods_made_would(
    steps: list[tuple[Status, int]], start: int, length: int
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
    Periods(model).credit(found, lo, hi)
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
