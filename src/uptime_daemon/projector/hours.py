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

The daemon's projector also moves whole days before a record's last three hours out of memory into
a file beside its snapshot (``evict``, ``projector.cold``): 133 bytes an hour is still 2.7 GiB at 10,000
services holding 90 days. A record then keeps which days are there, compressed (``_cold_packed``: the
days, their blobs' ids and how many hours each, ~1.3 KB at 89 days as arrays, ~0.1 KB so), and
reads them when asked; a day written to again is read back first (``_reload``). Where a day is
kept is not part of the value either. ``add_window`` remembers the sums of the cold hours a window
took (``_memo``), so a window asked again reads nothing until its first hour or the cold days move.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
import struct
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import structlog

from uptime_daemon.projector import columns as columns_io
from uptime_daemon.projector.cold import ColdDaysError

if TYPE_CHECKING:
    from uptime_daemon.projector.cold import ColdDays

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
_COLD_HEADER: Final = struct.Struct("<I")
"""``cold_index``: days, then their three columns, little-endian."""
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
log = structlog.get_logger(__name__)

DAY_HOURS: Final = 24
_REPLAY: Final = "stop the daemon and run `uptime-daemon replay` to rebuild the projection"
_COLD_CODES: Final = (HOUR_CODE, "q", "H")
"""The cold days' arrays: the day (since the epoch), the blob's id, how many hours it holds."""
_COLD_LEVEL: Final = 9
"""zlib's level for ``_cold_packed`` (days and ids as differences: a record's days follow one another
and its blobs were put a pass of the projector apart; made once a day a record)."""
_MEMO_WINDOWS: Final = 4
"""Windows whose cold sums a record remembers (the summary's and the status page's)."""
_ANY_INDEX: Final = 256
"""What a cold day's histogram indexes are checked against (``INDEX_CODE``'s range): our own
bytes, read back."""


@dataclass(frozen=True, slots=True)
class _ColdSums:
    """What a window's cold hours add: checks, histogram, inconclusive, the response sum so far."""

    newest: int
    """The newest cold hour summed (hot hours after it continue ``response`` in order)."""
    counts: tuple[int, int, int]
    indexes: array[int]
    """The histogram's indexes, ascending, and their ``counts`` (arrays: ~40 bytes a window)."""
    histogram: array[int]
    inconclusive: int
    response: float


class Hours:
    """Hour (since the epoch) → ``HourBucket``: ``open`` ones as objects, closed ones packed.

    The fold writes through ``open`` (``open.get(hour)``, then ``bucket(hour)`` when it is not
    there); everything else reads through ``get``, ``items``, ``add_window`` and ``response``. An
    hour is in ``open`` or packed, never both.
    """

    __slots__ = (
        "_base",
        "_checks",
        "_cold",
        "_cold_packed",
        "_count",
        "_ends",
        "_hours",
        "_inconclusive",
        "_index",
        "_memo",
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
        self._cold: ColdDays | None = None
        self._cold_packed = b""
        """The days moved to ``_cold``, compressed (``_cold_index``, ``_keep_index``): b"" for none."""
        self._memo: dict[tuple[int, int], _ColdSums] | None = None

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
            if self._cold_packed:
                self._reload(hour // DAY_HOURS)
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
        if self._cold_packed:
            self._prune_cold(oldest)
        for hour in [h for h in self.open if h < oldest]:
            del self.open[hour]
        rows = bisect.bisect_left(self._hours, oldest)
        if rows:
            self._delete(0, rows)

    def __setitem__(self, hour: int, bucket: HourBucket) -> None:
        """Make ``bucket`` the hour's (open until the next ``pack``)."""
        if self._cold_packed:
            self._reload(hour // DAY_HOURS)
        row = self._row(hour)
        if row is not None:
            self._delete(row, row + 1)
        self.open[hour] = bucket

    # --- the cold days -------------------------------------------------------------------------

    def evict(self, cold: ColdDays, before_day: int) -> int:
        """Move every hour of the days before ``before_day`` to ``cold``, a blob a day: days moved."""
        self._cold = cold
        before = before_day * DAY_HOURS
        self.pack(before)  # an hour written late is open: the whole day goes, or none of it
        hours = self._hours
        if not hours or hours[0] >= before:
            return 0
        days, ids, rows = self._cold_index()
        end_row = bisect.bisect_left(hours, before)
        row = moved = 0
        while row < end_row:
            day = hours[row] // DAY_HOURS
            end = bisect.bisect_left(hours, (day + 1) * DAY_HOURS, row, end_row)
            at = bisect.bisect_left(days, day)
            days.insert(at, day)
            ids.insert(at, cold.put(self._pack_rows(row, end)))
            rows.insert(at, end - row)
            row, moved = end, moved + 1
        self._keep_index(days, ids, rows)
        self._delete(0, end_row)
        return moved

    def _cold_index(self) -> tuple[array[int], array[int], array[int]]:
        """The cold days, their blobs' ids and hours, ascending: new arrays, for this use only."""
        days, ids, rows = (array(code) for code in _COLD_CODES)
        if not self._cold_packed:
            return days, ids, rows
        raw, (count,) = columns_io.unzip(self._cold_packed, _COLD_HEADER, "cold days")
        columns_io.read(
            raw, _COLD_HEADER.size, [(c, count) for c in (days, ids, rows)], "cold days"
        )
        return (
            array(HOUR_CODE, itertools.accumulate(days)),
            array("q", itertools.accumulate(ids)),
            rows,
        )

    def _keep_index(self, days: array[int], ids: array[int], rows: array[int]) -> None:
        """Keep ``days``, ``ids`` and ``rows`` as the cold index, compressed."""
        self._memo = None
        if not days:
            self._cold_packed = b""
            return
        deltas = [
            array(column.typecode, [column[0], *map(operator.sub, column[1:], column)])
            for column in (days, ids)
        ]
        raw = _COLD_HEADER.pack(len(days)) + columns_io.join([*deltas, rows])
        self._cold_packed = zlib.compress(raw, _COLD_LEVEL)

    def attach(self, cold: ColdDays) -> None:
        """Read (and later write) the cold days through ``cold``."""
        self._cold = cold

    def cold_hours(self) -> int:
        """How many of the hours held are in cold days."""
        return sum(self._cold_index()[2]) if self._cold_packed else 0

    def cold_ids(self) -> array[int]:
        """The ids of the blobs this record's cold days are in (a new array)."""
        return self._cold_index()[1]

    @property
    def holds_cold_days(self) -> bool:
        """Whether any of its days are in the cold file (without reading the index)."""
        return bool(self._cold_packed)

    def cold_index(self) -> bytes:
        """Which days are cold, in which blob, how many hours each (``with_cold_index`` reads it)."""
        days, ids, rows = self._cold_index()
        return _COLD_HEADER.pack(len(days)) + columns_io.join([days, ids, rows])

    def with_cold_index(self, data: bytes) -> None:
        """Take ``cold_index``'s bytes (before any cold day is held); ``ValueError`` if not those."""
        if len(data) < _COLD_HEADER.size:
            raise ValueError("cold days: truncated")
        (days,) = _COLD_HEADER.unpack_from(data)
        columns = tuple(array(code) for code in _COLD_CODES)
        columns_io.read(data, _COLD_HEADER.size, [(c, days) for c in columns], "cold days")
        day_column, id_column, row_column = columns
        if any(later <= earlier for earlier, later in itertools.pairwise(day_column)):
            raise ValueError("cold days: days not ascending")
        if any(not 1 <= rows <= DAY_HOURS for rows in row_column) or any(i < 1 for i in id_column):
            raise ValueError("cold days: out of range")
        if days:
            self._keep_index(day_column, id_column, row_column)

    def _part(self, blob_id: int) -> Hours:
        """The cold day in blob ``blob_id``, read back (packed rows only)."""
        if self._cold is None:
            raise ColdDaysError("cold days held with no file to read them from")
        return Hours.from_bytes(self._cold.get(blob_id), indexes=_ANY_INDEX)

    def _cold_items(self) -> list[tuple[int, HourBucket]]:
        return [item for blob_id in self.cold_ids() for item in self._part(blob_id).items()]

    def _forget(self, lo: int, hi: int) -> None:
        """Let go of the cold days at indexes ``lo`` to ``hi`` (exclusive)."""
        if self._cold is None:
            raise ColdDaysError("cold days held with no file to release them in")
        days, ids, rows = self._cold_index()
        for blob_id in ids[lo:hi]:
            self._cold.release(blob_id)
        del days[lo:hi]
        del ids[lo:hi]
        del rows[lo:hi]
        self._keep_index(days, ids, rows)

    def _reload(self, day: int) -> None:
        """Bring the cold day back into the packed rows, if it is cold (it is to be written).

        A day the file cannot give back is dropped and logged rather than stopping the fold: the
        file is a cache of the log, and ``uptime-daemon replay`` rebuilds the lost hours.
        """
        days, ids, rows = self._cold_index()
        at = bisect.bisect_left(days, day)
        if at == len(days) or days[at] != day:
            return
        try:
            held = self._part(ids[at]).items()
        except (ColdDaysError, ValueError) as exc:
            log.error(  # noqa: TRY400 - the message says it all; no traceback wanted
                "cold_day_lost", day=day, hours=rows[at], error=str(exc), fix=_REPLAY
            )
            held = []
        self._forget(at, at + 1)
        for hour, bucket in held:
            self._insert(hour, bucket)

    def _prune_cold(self, oldest: int) -> None:
        """Let go of the cold days wholly older than ``oldest``; bring back the one it cuts into."""
        days = self._cold_index()[0]
        whole = bisect.bisect_left(days, oldest // DAY_HOURS)
        if whole:
            self._forget(0, whole)
        if whole < len(days) and days[whole] * DAY_HOURS < oldest:
            self._reload(days[whole])

    def _cold_sums(self, first: int, last: int) -> _ColdSums | None:
        """What the cold hours from ``first`` to ``last`` add, remembered per window."""
        key = (first, last)  # the window asked for: its cold part is that of the same days
        if self._memo is not None and (sums := self._memo.get(key)) is not None:
            return sums
        days, ids, _ = self._cold_index()
        last = min(last, (days[-1] + 1) * DAY_HOURS - 1)
        first = max(first, days[0] * DAY_HOURS)
        if first > last:
            return None
        counts = [0, 0, 0]
        histogram: Counter[int] = Counter()
        responses: list[tuple[int, float]] = []
        inconclusive = 0
        lo = bisect.bisect_left(days, first // DAY_HOURS)
        hi = bisect.bisect_right(days, last // DAY_HOURS)
        for blob_id in ids[lo:hi]:
            inconclusive += self._part(blob_id).add_packed(
                first, last, counts, histogram, responses
            )
        sums = _ColdSums(
            newest=responses[-1][0] if responses else first - 1,
            counts=(counts[0], counts[1], counts[2]),
            indexes=array(INDEX_CODE, sorted(histogram)),
            histogram=array(COUNT_CODE, [histogram[index] for index in sorted(histogram)]),
            inconclusive=inconclusive,
            response=functools.reduce(operator.add, (r for _, r in responses), 0.0),
        )
        if self._memo is None:
            self._memo = {}
        elif len(self._memo) >= _MEMO_WINDOWS:
            del self._memo[next(iter(self._memo))]
        self._memo[key] = sums
        return sums

    # --- reading -------------------------------------------------------------------------------

    def get(self, hour: int) -> HourBucket | None:
        """The hour's bucket, for reading (a packed hour is a copy: writing to it changes nothing)."""
        bucket = self.open.get(hour)
        if bucket is not None:
            return bucket
        row = self._row(hour)
        if row is not None:
            return self._read(row)
        return self._cold_get(hour) if self._cold_packed else None

    def _cold_get(self, hour: int) -> HourBucket | None:
        days, ids, _ = self._cold_index()
        at = bisect.bisect_left(days, hour // DAY_HOURS)
        if at == len(days) or days[at] != hour // DAY_HOURS:
            return None
        return self._part(ids[at]).get(hour)

    def items(self) -> list[tuple[int, HourBucket]]:
        """Every hour and its bucket (packed and cold ones as copies), in ascending hour order."""
        found = [(hour, self._read(row)) for row, hour in enumerate(self._hours)]
        if self.open or self._cold_packed:
            found.extend(self.open.items())
            if self._cold_packed:
                found.extend(self._cold_items())
            found.sort(key=operator.itemgetter(0))
        return found

    def values(self) -> list[HourBucket]:
        """Every bucket, in ascending hour order (packed ones as copies)."""
        return [bucket for _, bucket in self.items()]

    def __iter__(self) -> Iterator[int]:
        """The hours, ascending."""
        cold = [hour for hour, _ in self._cold_items()] if self._cold_packed else []
        return iter(sorted([*self._hours, *self.open, *cold]))

    def __len__(self) -> int:
        """How many hours are held."""
        return len(self._hours) + len(self.open) + self.cold_hours()

    def __contains__(self, hour: object) -> bool:
        """Whether the hour is held."""
        return isinstance(hour, int) and (
            hour in self.open
            or self._row(hour) is not None
            or (bool(self._cold_packed) and self._cold_get(hour) is not None)
        )

    def __eq__(self, other: object) -> bool:
        """The same hours with equal buckets, however each side keeps them."""
        if not isinstance(other, Hours):
            return NotImplemented
        return len(self) == len(other) and self.items() == other.items()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        """Hours held, open and packed."""
        return (
            f"Hours(open={sorted(self.open)}, packed={len(self._hours)}, cold={self.cold_hours()})"
        )

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
        if self._hours:  # else nothing packed: the copy shares the empty arrays too
            copied._use(tuple(column[:] for column in self._arrays()))
        if self._cold_packed:  # the copy holds the cold days in memory: it never shares a blob
            for hour, bucket in self._cold_items():
                copied._insert(hour, bucket)
        return copied

    def add_window(
        self, first: int, last: int, counts: list[int], histogram: list[int]
    ) -> tuple[float, int]:
        """Add hours ``first`` to ``last`` (inclusive) to ``counts`` and ``histogram``.

        ``counts`` is up, degraded, down; ``histogram`` is dense (index → count). Returns the
        hours' response-time sum and inconclusive count. The sum is taken hour by hour in
        ascending order, wherever the hours are kept.
        """
        responses: list[tuple[int, float]] = []
        inconclusive = self.add_packed(first, last, counts, histogram, responses)
        packed = bool(responses)
        opened = [(hour, b) for hour, b in self.open.items() if first <= hour <= last]
        for hour, b in opened:
            counts[0] += b.checks[0]
            counts[1] += b.checks[1]
            counts[2] += b.checks[2]
            inconclusive += b.inconclusive
            for index, count in b.histogram.items():
                histogram[index] += count
            responses.append((hour, b.response_sum_seconds))
        if opened and (packed or len(opened) > 1):  # open hours are in the order first written
            responses.sort(key=operator.itemgetter(0))
        cold = self._cold_sums(first, last) if self._cold_packed else None
        if cold is None:
            return functools.reduce(operator.add, (r for _, r in responses), 0.0), inconclusive
        for kind in range(_CHECK_KINDS):
            counts[kind] += cold.counts[kind]
        for index, count in zip(cold.indexes, cold.histogram, strict=True):
            histogram[index] += count
        inconclusive += cold.inconclusive
        if responses and responses[0][0] < cold.newest:  # a day read back, not packed again yet
            earlier: list[tuple[int, float]] = []
            days, ids, _ = self._cold_index()
            lo = bisect.bisect_left(days, first // DAY_HOURS)
            hi = bisect.bisect_right(days, last // DAY_HOURS)
            for blob_id in ids[lo:hi]:
                self._part(blob_id).add_packed(first, last, [0, 0, 0], Counter(), earlier)
            responses = sorted([*earlier, *responses], key=operator.itemgetter(0))
            return functools.reduce(operator.add, (r for _, r in responses), 0.0), inconclusive
        return functools.reduce(
            operator.add, (r for _, r in responses), cold.response
        ), inconclusive

    def add_packed(
        self,
        first: int,
        last: int,
        counts: list[int],
        histogram: list[int] | Counter[int],
        responses: list[tuple[int, float]],
    ) -> int:
        """Add the packed hours from ``first`` to ``last``; returns their inconclusive count.

        Their (hour, response sum) pairs go to ``responses``, ascending.
        """
        lo = bisect.bisect_left(self._hours, first)
        hi = bisect.bisect_right(self._hours, last)
        if hi <= lo:
            return 0
        checks = self._checks
        for kind in range(_CHECK_KINDS):
            counts[kind] += sum(checks[lo * _CHECK_KINDS + kind : hi * _CHECK_KINDS : _CHECK_KINDS])
        start, end = self._start(lo) - self._base, self._ends[hi - 1] - self._base
        for index, count in zip(self._index[start:end], self._count[start:end], strict=True):
            histogram[index] += count
        responses.extend(zip(self._hours[lo:hi], self._response[lo:hi], strict=True))
        return sum(self._inconclusive[lo:hi])

    def response(self, hour: int) -> tuple[float, int] | None:
        """The hour's response-time sum and how many checks it is of, if the hour is held."""
        bucket = self.open.get(hour)
        if bucket is not None:
            return bucket.response_sum_seconds, sum(bucket.histogram.values())
        row = self._row(hour)
        if row is None:
            cold = self._cold_get(hour) if self._cold_packed else None
            return (
                None if cold is None else (cold.response_sum_seconds, sum(cold.histogram.values()))
            )
        start, end = self._start(row) - self._base, self._ends[row] - self._base
        return self._response[row], sum(self._count[start:end])

    def to_bytes(self) -> bytes:
        """The packed hours as bytes (``from_bytes`` reads them); open and cold ones are not in them."""
        return self._pack_rows(0, len(self._hours))

    def _pack_rows(self, lo: int, hi: int) -> bytes:
        """Packed rows ``lo`` to ``hi`` (exclusive) as ``to_bytes`` writes them."""
        entries_from = self._start(lo) - self._base if hi > lo else 0
        entries_to = self._ends[hi - 1] - self._base if hi > lo else 0
        sizes = array(COUNT_CODE, [self._ends[row] - self._start(row) for row in range(lo, hi)])
        columns: list[array[Any]] = [
            self._hours[lo:hi],
            self._checks[lo * _CHECK_KINDS : hi * _CHECK_KINDS],
            self._seconds[lo * _STATES : hi * _STATES],
            self._response[lo:hi],
            self._inconclusive[lo:hi],
            sizes,
            self._index[entries_from:entries_to],
            self._count[entries_from:entries_to],
        ]
        raw = _HEADER.pack(hi - lo, entries_to - entries_from) + columns_io.join(columns)
        return zlib.compress(raw, PACK_LEVEL)

    @classmethod
    def from_bytes(cls, data: bytes, *, indexes: int) -> Hours:
        """What ``to_bytes`` wrote; ``ValueError`` for anything else (histogram indexes below ``indexes``)."""
        raw, (rows, entries) = columns_io.unzip(data, _HEADER, "packed hours")
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
        columns_io.read(raw, _HEADER.size, columns, "packed hours")
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
