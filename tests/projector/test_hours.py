"""``Hours``: packed hours read and written exactly as a plain dict of buckets would be."""

from __future__ import annotations

import copy
import functools
import gc
import operator
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from uptime_daemon.projector import hours as hours_module
from uptime_daemon.projector.fold import HISTOGRAM_BUCKETS
from uptime_daemon.projector.hours import HourBucket, Hours

HOURS = st.integers(min_value=-5, max_value=40)
COUNTS = st.integers(min_value=0, max_value=2**32 - 1 - 60)
"""Up to what an hour can count (``hours.COUNT_CODE``), less the writes a run may add to it."""


def _copy(bucket: HourBucket) -> HourBucket:
    return HourBucket(
        list(bucket.checks),
        list(bucket.seconds),
        bucket.response_sum_seconds,
        dict(bucket.histogram),
        bucket.inconclusive,
    )


BUCKETS = st.builds(
    HourBucket,
    checks=st.lists(COUNTS, min_size=3, max_size=3),
    seconds=st.lists(st.floats(0, 3600), min_size=4, max_size=4),
    response_sum_seconds=st.floats(0, 1e6),
    histogram=st.dictionaries(st.integers(0, HISTOGRAM_BUCKETS - 1), COUNTS, max_size=12),
    inconclusive=COUNTS,
)

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), HOURS, st.integers(0, 2), st.floats(0, 10)),
        st.tuples(st.just("set"), HOURS, BUCKETS),
        st.tuples(st.just("pack"), HOURS),
        st.tuples(st.just("prune"), HOURS),
    ),
    max_size=60,
)


def _apply(hours: Hours, model: dict[int, HourBucket], operation: tuple[object, ...]) -> None:
    match operation:
        case ("write", int(hour), int(kind), float(seconds)):
            bucket = hours.bucket(hour)
            bucket.checks[kind] += 1
            bucket.seconds[kind] += seconds
            bucket.histogram[kind * 7] = bucket.histogram.get(kind * 7, 0) + 1
            bucket.inconclusive += kind
            expected = model.setdefault(hour, HourBucket())
            expected.checks[kind] += 1
            expected.seconds[kind] += seconds
            expected.histogram[kind * 7] = expected.histogram.get(kind * 7, 0) + 1
            expected.inconclusive += kind
        case ("set", int(hour), HourBucket() as bucket):
            hours[hour] = _copy(bucket)
            model[hour] = _copy(bucket)
        case ("pack", int(hour)):
            hours.pack(hour)
        case ("prune", int(hour)):
            hours.prune(hour)
            for old in [h for h in model if h < hour]:
                del model[old]


def _window(model: dict[int, HourBucket], first: int, last: int) -> tuple[object, ...]:
    """What ``add_window`` must give, summed from the model in ascending hour order."""
    counts, histogram = [0, 0, 0], [0] * HISTOGRAM_BUCKETS
    inside = [model[hour] for hour in sorted(model) if first <= hour <= last]
    for bucket in inside:
        for kind in range(3):
            counts[kind] += bucket.checks[kind]
        for index, count in bucket.histogram.items():
            histogram[index] += count
    response = functools.reduce(operator.add, (b.response_sum_seconds for b in inside), 0.0)
    return counts, histogram, response, sum(b.inconclusive for b in inside)


@settings(max_examples=300, deadline=None)
@given(OPERATIONS, HOURS, HOURS)
def test_packed_hours_read_as_a_dict_of_buckets(
    operations: list[tuple[object, ...]], first: int, last: int
) -> None:
    hours, model = Hours(), dict[int, HourBucket]()
    for operation in operations:
        _apply(hours, model, operation)
        assert len(hours) == len(model)
    assert hours.items() == sorted(model.items(), key=operator.itemgetter(0))
    assert list(hours) == sorted(model)
    for hour in range(-6, 42):
        assert hours.get(hour) == model.get(hour)
        assert (hour in hours) == (hour in model)
        expected = model.get(hour)
        assert hours.response(hour) == (
            None
            if expected is None
            else (expected.response_sum_seconds, sum(expected.histogram.values()))
        )
    counts, histogram = [0, 0, 0], [0] * HISTOGRAM_BUCKETS
    response, inconclusive = hours.add_window(first, last, counts, histogram)
    assert (counts, histogram, response, inconclusive) == _window(model, first, last)


@settings(max_examples=200, deadline=None)
@given(OPERATIONS, HOURS)
def test_equal_however_the_hours_are_kept(operations: list[tuple[object, ...]], cut: int) -> None:
    """Packed or open, the same buckets are equal; a copy is equal and independent."""
    hours, model = Hours(), dict[int, HourBucket]()
    for operation in operations:
        _apply(hours, model, operation)
    unpacked = Hours()
    for hour, bucket in model.items():
        unpacked[hour] = _copy(bucket)
    assert hours == unpacked
    copied = copy.deepcopy(hours)
    copied.pack(cut)
    assert copied == hours
    if model:
        copied.bucket(min(model)).checks[0] += 1
        assert copied != hours
        assert hours.items() == sorted(model.items(), key=operator.itemgetter(0))
    assert not any(hours_module._NONE_PACKED)  # the shared empty arrays stayed empty
    assert Hours.from_bytes(Hours().to_bytes(), indexes=HISTOGRAM_BUCKETS) == Hours()


def test_a_reading_of_a_packed_hour_changes_nothing() -> None:
    hours = Hours()
    hours.bucket(3).checks[0] = 5
    hours.pack(10)
    hours.get(3).checks[0] = 99  # type: ignore[union-attr]
    assert hours.get(3) == HourBucket(checks=[5, 0, 0])
    hours.bucket(3).checks[0] += 1  # writing reopens it
    hours.pack(10)
    assert hours.get(3) == HourBucket(checks=[6, 0, 0])


def test_packed_hours_are_nothing_the_collector_walks() -> None:
    """A thousand packed hours are as many objects for the cyclic collector as one packed hour."""

    def tracked(hours: Hours) -> int:
        seen, todo = 0, [hours]
        while todo:  # everything reachable from the record's hours (none refers back)
            found = [
                o for o in gc.get_referents(*todo) if gc.is_tracked(o) and not isinstance(o, type)
            ]
            seen += len(found)
            todo = found
        return seen

    one, thousand = Hours(), Hours()
    for hours, count in ((one, 1), (thousand, 1000)):
        for hour in range(count):
            bucket = hours.bucket(hour)
            bucket.checks[0] = 60
            bucket.histogram[20] = 60
    assert tracked(thousand) >= 3000  # open: a bucket, its lists and its dict an hour
    one.pack(1000)
    thousand.pack(1000)
    assert tracked(thousand) == tracked(one)


def test_records_with_nothing_packed_share_their_empty_arrays() -> None:
    """Ten thousand young records are not eighty thousand arrays for the collector to walk."""

    def arrays(hours: Hours) -> set[int]:
        return {id(o) for o in gc.get_referents(hours) if isinstance(o, array) and gc.is_tracked(o)}

    young, other, packed = Hours(), Hours(), Hours()
    assert arrays(young) == arrays(other) == arrays(copy.deepcopy(young))
    assert len(arrays(young)) == 8  # the packed columns (the cold days' index is bytes, or none)
    packed.bucket(3).checks[0] = 1
    packed.pack(10)
    assert not arrays(packed) & arrays(young)  # its own columns, once it packed an hour
    assert len(Hours()) == 0
    assert not any(hours_module._NONE_PACKED)
    loaded = Hours.from_bytes(packed.to_bytes(), indexes=HISTOGRAM_BUCKETS)
    assert loaded == packed
    assert not arrays(loaded) & arrays(young)
