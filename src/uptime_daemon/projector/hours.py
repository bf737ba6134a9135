"""A record's hourly buckets: the open hours as objects, the closed ones packed in arrays.

A record keeps one bucket per hour for ``projector.retention_days`` (2,160 at 90 days). As objects
(a slotted bucket, two lists, a histogram dict, their floats) one hour cost ~800 bytes and three
objects for the cyclic collector to walk: 16 GiB and a full collection of ~9 s at 10,000 services
with 90 days held (``bench/history_memory.py``: 798 bytes, 3.09 objects, 17.6 ms for 20 services).
So only the hours the fold still writes to are objects (``open``: the current hour and the one
before, which the next check's time is credited to); the fold packs every older hour into eight
``array``s per record — 133 bytes an hour with a check a minute, and eight objects for the collector
however many hours they hold (none of its own while it holds none: ``_NONE_PACKED``).

A packed hour is still writable: ``bucket`` moves it back into ``open`` (a late inconclusive check,
a rollup's hours, a location split off), and the next ``pack`` closes it again. Which hours are
open is not part of the record's value: two ``Hours`` are equal when they hold equal buckets for the
same hours, however those are kept, and every figure read from them (``add_window``,
``response``) is summed hour by hour in ascending order, so it is the same either way.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
import struct
import sys
import zlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

HOUR_CODE: Final = "i"
"""Hours since the epoch: 32-bit signed (year 1 to 9999 is −17 M to 70 M)."""
COUNT_CODE: Final = "I"
"""Counts: 32-bit unsigned (a check every millisecond is 3.6 M an hour)."""
INDEX_CODE: Final = "B"
"""Histogram bucket indexes: under 256 (``fold.HISTOGRAM_BUCKETS`` is 72)."""
_CHECK_KINDS: Final = 3
_STATES: Final = 4
_HEADER: Final = struct.Struct("<II")
"""``to_bytes``: rows, then histogram entries; the columns follow, little-endian, then zlib."""
PACK_LEVEL: Final = 1
"""zlib's level for ``to_bytes``: snapshots 4 × smaller than the buckets as JSON, 5 × faster made."""


@dataclass(slots=True)
class HourBucket:
    """One hour of one service: check counts, seconds per state, response-time histogram."""

    checks: list[int] = field(default_factory=lambda: [0, 0, 0])
    """Checks whose verdict was up, degraded, down."""
    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    """Seconds up, degraded, down, unknown (time-weighted)."""
    response_sum_seconds: float = 0.0
    histogram: dict[int, int] = field(default_factory=dict)
    """Sparse: bucket index → count."""
    inconclusive: int = 0
    """Checks that concluded nothing (the daemon could not keep up): in no other figure."""


_COLUMNS: Final = (HOUR_CODE, COUNT_CODE, "d", "d", COUNT_CODE, "q", INDEX_CODE, COUNT_CODE)
"""The packed rows' arrays, by type code, in ``_ARRAYS`` order: the hours; their checks (3 a row:
up, degraded, down); their seconds (4 a row: up, degraded, down, unknown); response sums;
inconclusive counts; where each row's histogram ends (absolute); the histograms' indexes and counts."""
_ARRAYS: Final = (
    "_hours",
    "_checks",
    "_seconds",
    "_response",
    "_inconclusive",
    "_ends",
    "_index",
    "_count",
)
"""The attributes of ``Hours`` that hold them, in the same order."""
_NONE_PACKED: Final = tuple(array(code) for code in _COLUMNS)
"""The arrays of every ``Hours`` with no row packed yet, shared: never changed (``_own_arrays``)."""


class Hours:
    """Hour (since the epoch) → ``HourBucket``: ``open`` ones as objects, closed ones packed.

    The fold writes through ``open`` (``open.get(hour)``, then ``bucket(hour)`` when it is not
    there); everything else reads through ``get``, ``items``, ``add_window`` and ``response``. An
    hour is in ``open`` or packed, never both.
    """

    __slots__ = (
        "_base",
        "_checks",
        "_count",
        "_ends",
        "_hours",
        "_inconclusive",
        "_index",
        "_response",
        "_seconds",
        "open",
    )
    # The packed rows (``_ARRAYS``, set by ``_use``).
    _hours: array[int]
    _checks: array[int]
    _seconds: array[float]
    _response: array[float]
    _inconclusive: array[int]
    _ends: array[int]
    _index: array[int]
    _count: array[int]

    def __init__(self) -> None:
        """No hours: no packed row, and the shared empty arrays until the first is packed."""
        self.open: dict[int, HourBucket] = {}
        self._use(_NONE_PACKED)
        self._base = 0
        """The absolute position of ``_index[0]``: dropping the oldest rows moves it, not ``_ends``."""

    def _use(self, arrays: Iterable[array[Any]]) -> None:
        """Keep the packed rows in ``arrays`` (``_COLUMNS`` order)."""
        for name, column in zip(_ARRAYS, arrays, strict=True):
            setattr(self, name, column)

    def _arrays(self) -> list[array[Any]]:
        """The packed rows' arrays, in ``_COLUMNS`` order."""
        return [getattr(self, name) for name in _ARRAYS]

    def _own_arrays(self) -> None:
        """Arrays of its own, empty, before a first row is packed (or read from bytes).

        Until then a record shares ``_NONE_PACKED``, which nothing may change: the cyclic collector
        tracks every ``array``, and a daemon whose records hold no closed hour yet (one started
        within the hour, or with a short retention) would otherwise keep eight empty ones per
        record for it to walk at each full collection — 80,000 of the ~435,000 objects it walked
        at 10,000 services (``bench/scale.py``, 2026-12-07).
        """
        self._use(tuple(array(code) for code in _COLUMNS))

    # --- the fold's side -------------------------------------------------------------------------

    def bucket(self, hour: int) -> HourBucket:
        """The hour's bucket to write to: open, reopened from the packed rows, or new."""
        bucket = self.open.get(hour)
        if bucket is None:
            row = self._row(hour)
            if row is None:
                bucket = HourBucket()
            else:
                bucket = self._read(row)
                self._delete(row, row + 1)
            self.open[hour] = bucket
        return bucket

    def pack(self, before: int) -> None:
        """Pack every open hour older than ``before``."""
        closed = [hour for hour in self.open if hour < before]
        if not closed:
            return
        closed.sort()
        for hour in closed:
            self._insert(hour, self.open.pop(hour))

    def prune(self, oldest: int) -> None:
        """Drop every hour older than ``oldest``."""
        for hour in [h for h in self.open if h < oldest]:
            del self.open[hour]
        rows = bisect.bisect_left(self._hours, oldest)
        if rows:
            self._delete(0, rows)

    def __setitem__(self, hour: int, bucket: HourBucket) -> None:
        """Make ``bucket`` the hour's (open until the next ``pack``)."""
        row = self._row(hour)
        if row is not None:
            self._delete(row, row + 1)
        self.open[hour] = bucket

    # --- reading -------------------------------------------------------------------------------

    def get(self, hour: int) -> HourBucket | None:
        """The hour's bucket, for reading (a packed hour is a copy: writing to it changes nothing)."""
        bucket = self.open.get(hour)
        if bucket is not None:
            return bucket
        row = self._row(hour)
        return None if row is None else self._read(row)

    def items(self) -> list[tuple[int, HourBucket]]:
        """Every hour and its bucket (packed ones as copies), in ascending hour order."""
        found = [(hour, self._read(row)) for row, hour in enumerate(self._hours)]
        if self.open:
            found.extend(self.open.items())
            found.sort(key=operator.itemgetter(0))
        return found

    def values(self) -> list[HourBucket]:
        """Every bucket, in ascending hour order (packed ones as copies)."""
        return [bucket for _, bucket in self.items()]

    def __iter__(self) -> Iterator[int]:
        """The hours, ascending."""
        return iter(sorted([*self._hours, *self.open]))

    def __len__(self) -> int:
        """How many hours are held."""
        return len(self._hours) + len(self.open)

    def __contains__(self, hour: object) -> bool:
        """Whether the hour is held."""
        return isinstance(hour, int) and (hour in self.open or self._row(hour) is not None)

    def __eq__(self, other: object) -> bool:
        """The same hours with equal buckets, however each side keeps them."""
        if not isinstance(other, Hours):
            return NotImplemented
        return len(self) == len(other) and self.items() == other.items()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        """Hours held, open and packed."""
        return f"Hours(open={sorted(self.open)}, packed={len(self._hours)})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Hours:
        """An independent copy (its open buckets copied, its arrays copied)."""
        copied = Hours()
        copied.open = {
            hour: HourBucket(
                list(b.checks),
                list(b.seconds),
                b.response_sum_seconds,
                dict(b.histogram),
                b.inconclusive,
            )
            for hour, b in self.open.items()
        }
        copied._base = self._base
        if not self._hours:  # nothing packed: the copy shares the empty arrays too
            return copied
        copied._use(tuple(column[:] for column in self._arrays()))
        return copied

    def add_window(
        self, first: int, last: int, counts: list[int], histogram: list[int]
    ) -> tuple[float, int]:
        """Add hours ``first`` to ``last`` (inclusive) to ``counts`` and ``histogram``.

        ``counts`` is up, degraded, down; ``histogram`` is dense (index → count). Returns the
        hours' response-time sum and inconclusive count. The sum is taken hour by hour in ascending order, whichever hours are packed.
        """
        lo = bisect.bisect_left(self._hours, first)
        hi = bisect.bisect_right(self._hours, last)
        inconclusive = 0
        responses: list[tuple[int, float]] = []
        if hi > lo:
            checks = self._checks
            for kind in range(_CHECK_KINDS):
                counts[kind] += sum(
                    checks[lo * _CHECK_KINDS + kind : hi * _CHECK_KINDS : _CHECK_KINDS]
                )
            inconclusive += sum(self._inconclusive[lo:hi])
            start, end = self._start(lo) - self._base, self._ends[hi - 1] - self._base
            for index, count in zip(self._index[start:end], self._count[start:end], strict=True):
                histogram[index] += count
            responses.extend(zip(self._hours[lo:hi], self._response[lo:hi], strict=True))
        opened = [(hour, b) for hour, b in self.open.items() if first <= hour <= last]
        for hour, b in opened:
            counts[0] += b.checks[0]
            counts[1] += b.checks[1]
            counts[2] += b.checks[2]
            inconclusive += b.inconclusive
            for index, count in b.histogram.items():
                histogram[index] += count
            responses.append((hour, b.response_sum_seconds))
        if opened and hi > lo:
            responses.sort(key=operator.itemgetter(0))
        return functools.reduce(operator.add, (r for _, r in responses), 0.0), inconclusive

    def response(self, hour: int) -> tuple[float, int] | None:
        """The hour's response-time sum and how many checks it is of, if the hour is held."""
        bucket = self.open.get(hour)
        if bucket is not None:
            return bucket.response_sum_seconds, sum(bucket.histogram.values())
        row = self._row(hour)
        if row is None:
            return None
        start, end = self._start(row) - self._base, self._ends[row] - self._base
        return self._response[row], sum(self._count[start:end])

    def to_bytes(self) -> bytes:
        """The packed hours as bytes (``from_bytes`` reads them); the open ones are not in them."""
        rows, entries = len(self._hours), len(self._index)
        sizes = array(COUNT_CODE, [self._ends[row] - self._start(row) for row in range(rows)])
        columns: list[array[Any]] = [
            self._hours,
            self._checks,
            self._seconds,
            self._response,
            self._inconclusive,
            sizes,
            self._index,
            self._count,
        ]
        if sys.byteorder == "big":  # pragma: no cover - the format is little-endian everywhere
            columns = [column[:] for column in columns]
            for column in columns:
                column.byteswap()
        raw = _HEADER.pack(rows, entries) + b"".join(column.tobytes() for column in columns)
        return zlib.compress(raw, PACK_LEVEL)

    @classmethod
    def from_bytes(cls, data: bytes, *, indexes: int) -> Hours:
        """What ``to_bytes`` wrote; ``ValueError`` for anything else (histogram indexes below ``indexes``)."""
        try:
            raw = zlib.decompress(data)
        except zlib.error as exc:
            raise ValueError(f"packed hours: {exc}") from exc
        if len(raw) < _HEADER.size:
            raise ValueError("packed hours: truncated")
        rows, entries = _HEADER.unpack_from(raw)
        hours = cls()
        if rows or entries:
            hours._own_arrays()
        sizes = array(COUNT_CODE)
        columns: list[tuple[array[Any], int]] = [
            (hours._hours, rows),
            (hours._checks, rows * _CHECK_KINDS),
            (hours._seconds, rows * _STATES),
            (hours._response, rows),
            (hours._inconclusive, rows),
            (sizes, rows),
            (hours._index, entries),
            (hours._count, entries),
        ]
        offset = _HEADER.size
        for column, items in columns:
            end = offset + items * column.itemsize
            if end > len(raw):
                raise ValueError("packed hours: truncated")
            column.frombytes(raw[offset:end])
            if sys.byteorder == "big":  # pragma: no cover
                column.byteswap()
            offset = end
        if offset != len(raw):
            raise ValueError("packed hours: trailing bytes")
        if any(later <= earlier for earlier, later in itertools.pairwise(hours._hours)):
            raise ValueError("packed hours: hours not ascending")
        if sum(sizes) != entries or (entries and max(hours._index) >= indexes):
            raise ValueError("packed hours: histogram out of range")
        hours._ends = array("q", itertools.accumulate(sizes))
        return hours

    # --- the packed rows -----------------------------------------------------------------------

    def _row(self, hour: int) -> int | None:
        row = bisect.bisect_left(self._hours, hour)
        if row < len(self._hours) and self._hours[row] == hour:
            return row
        return None

    def _start(self, row: int) -> int:
        """Where the row's histogram starts (absolute)."""
        return self._ends[row - 1] if row else self._base

    def _read(self, row: int) -> HourBucket:
        start, end = self._start(row) - self._base, self._ends[row] - self._base
        return HourBucket(
            checks=self._checks[row * _CHECK_KINDS : (row + 1) * _CHECK_KINDS].tolist(),
            seconds=self._seconds[row * _STATES : (row + 1) * _STATES].tolist(),
            response_sum_seconds=self._response[row],
            histogram=dict(zip(self._index[start:end], self._count[start:end], strict=True)),
            inconclusive=self._inconclusive[row],
        )

    def _insert(self, hour: int, bucket: HourBucket) -> None:
        if not self._hours:  # no row: every array is empty, shared or not
            self._own_arrays()
        row = bisect.bisect_left(self._hours, hour)
        entries = sorted(bucket.histogram.items())
        indexes = array(INDEX_CODE, [index for index, _ in entries])
        counts = array(COUNT_CODE, [count for _, count in entries])
        if row == len(self._hours):  # the usual case: newer than every packed hour
            self._hours.append(hour)
            self._checks.extend(bucket.checks)
            self._seconds.extend(bucket.seconds)
            self._response.append(bucket.response_sum_seconds)
            self._inconclusive.append(bucket.inconclusive)
            self._index.extend(indexes)
            self._count.extend(counts)
            self._ends.append((self._ends[-1] if self._ends else self._base) + len(entries))
            return
        start = self._start(row)
        self._hours.insert(row, hour)
        self._checks[row * _CHECK_KINDS : row * _CHECK_KINDS] = array(COUNT_CODE, bucket.checks)
        self._seconds[row * _STATES : row * _STATES] = array("d", bucket.seconds)
        self._response.insert(row, bucket.response_sum_seconds)
        self._inconclusive.insert(row, bucket.inconclusive)
        local = start - self._base
        self._index[local:local] = indexes
        self._count[local:local] = counts
        self._ends.insert(row, start + len(entries))
        for later in range(row + 1, len(self._ends)):
            self._ends[later] += len(entries)

    def _delete(self, lo: int, hi: int) -> None:
        """Remove rows ``lo`` to ``hi`` (exclusive)."""
        start, end = self._start(lo), self._ends[hi - 1]
        del self._hours[lo:hi]
        del self._checks[lo * _CHECK_KINDS : hi * _CHECK_KINDS]
        del self._seconds[lo * _STATES : hi * _STATES]
        del self._response[lo:hi]
        del self._inconclusive[lo:hi]
        del self._index[start - self._base : end - self._base]
        del self._count[start - self._base : end - self._base]
        del self._ends[lo:hi]
        removed = end - start
        if lo == 0:
            self._base += removed  # the later rows' ends stay where they are
        else:
            for later in range(lo, len(self._ends)):
                self._ends[later] -= removed
