"""A record's closed periods and incidents, packed in arrays of microseconds.

Held 90 days at one outage every day and a half (``bench/scale.py --history-days 89``), 10,000
services kept 1.46 M ``Period`` objects and 0.7 M incidents: with their datetimes and timedeltas
(48 bytes each, two or four apiece) ~390 MiB of the projection's ~490, and 2.4 M objects for the
cyclic collector to walk (a full collection 0.56 s). Packed, a period is 17 bytes (its state's
index, start and end in microseconds since the epoch) and a closed incident 32; the collector sees
a handful of arrays per record.

Both containers are read as the lists they replace: iteration, indexing, ``len``, equality with
any sequence of the same items (a ``Period`` or ``Incident`` is made when read: exactly the one
stored, times being whole microseconds). ``Periods`` only grows at its end and is cut at its
start. ``Incidents`` keeps its last incident as the object the fold writes to (the open one, or
the last closed one, whose end the fold may still set) and packs the closed ones before it.

Rows older than any window read often can be *frozen* (``freeze``): kept as one compressed blob
(``_Frozen``) instead of arrays, about a fifth of the size. Nothing reads differently; a read that
reaches them (a window longer than the scrapes' 30 days, a walk over every row) decompresses them
for that read, and one that does not (``credit``, ``ending_after``, ``starting_after``, ``since``
and ``Incidents.ending_after`` from a moment after the last of them) never touches them. At 90 days
held, an outage every ~33 hours, the two containers of a record went from ~5.5 KB to ~3.2 KB.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import struct
import zlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, overload

from uptime_daemon.clock import from_micros, to_micros
from uptime_daemon.projector import columns as columns_io
from uptime_daemon.status import Status

_STATES: Final = tuple(Status)
_STATE_INDEX: Final = {state: index for index, state in enumerate(_STATES)}
_MICROSECOND: Final = timedelta(microseconds=1)
_NO_ROWS: Final = (array("B"), array("q"), array("q"))
"""The arrays of every ``Periods`` with none packed: shared, never changed."""
_NO_INCIDENTS: Final = (array("q"), array("q"), array("q"), array("q"))
"""The arrays of every ``Incidents`` with none packed: shared, never changed."""
_COUNT: Final = struct.Struct("<I")
"""``to_bytes``: how many rows; the columns follow, little-endian, then zlib (level 1)."""
_STILL_OPEN: Final = -(2**63)
"""A packed incident's end while it has none (one left open before another: not made by the fold,
kept as it came)."""


def _row(incident: Incident) -> tuple[int, int, int, int]:
    """An incident as its packed row: start, end (or ``_STILL_OPEN``), down and unknown, in µs."""
    end = _STILL_OPEN if incident.end is None else to_micros(incident.end)
    return (
        to_micros(incident.start),
        end,
        incident.down // _MICROSECOND,
        incident.unknown // _MICROSECOND,
    )


def _incident(start: int, end: int, down: int, unknown: int) -> Incident:
    """The incident a packed row holds."""
    return Incident(
        from_micros(start),
        None if end == _STILL_OPEN else from_micros(end),
        timedelta(0, 0, down),
        timedelta(0, 0, unknown),
    )


def _pack(columns: Sequence[array[int]]) -> bytes:
    """Rows in ``columns`` (equal lengths) as ``to_bytes`` writes them."""
    return zlib.compress(_COUNT.pack(len(columns[0])) + columns_io.join(columns), 1)


def _unpack(data: bytes, codes: str) -> list[array[int]]:
    """``_pack``'s columns (``ValueError`` for anything else)."""
    raw, (rows,) = columns_io.unzip(data, _COUNT, "packed rows")
    columns = [array(code) for code in codes]
    columns_io.read(raw, _COUNT.size, [(column, rows) for column in columns], "packed rows")
    return columns


FREEZE_ROWS: Final = 8
"""``freeze`` leaves fewer rows than this where they are: each freeze packs the frozen rows again."""
FREEZE_LEVEL: Final = 9
"""zlib's level for frozen rows: they are compressed once, and kept for weeks."""
_PERIOD_CODES: Final = "Bqq"
_INCIDENT_CODES: Final = "qqqq"


@dataclass(frozen=True, slots=True)
class _Frozen:
    """A container's leading rows, compressed (``of``): how many, their first and last end (µs).

    Only closed rows are frozen, so ends ascend: ``last_end`` bounds every one of them.
    """

    data: bytes
    rows: int
    first_end: int
    last_end: int
    codes: str

    def thaw(self) -> list[array[int]]:
        """The rows' columns, new arrays."""
        return [
            array("q", itertools.accumulate(column)) if column.typecode == "q" else column
            for column in _unpack(self.data, self.codes)
        ]

    @classmethod
    def of(cls, columns: list[array[int]], codes: str) -> _Frozen | None:
        """``columns`` packed (``None`` for no rows); ``_ENDS`` says which holds the ends.

        Each column of times as its first value and the differences after it (whole hours and
        minutes of microseconds, mostly: they compress to about a fifth), at ``FREEZE_LEVEL``.
        """
        if not columns[0]:
            return None
        ends = columns[_ENDS[codes]]
        deltas = [
            array("q", [column[0], *map(operator.sub, column[1:], column)])
            if column.typecode == "q"
            else column
            for column in columns
        ]
        data = zlib.compress(_COUNT.pack(len(ends)) + columns_io.join(deltas), FREEZE_LEVEL)
        return cls(data, len(ends), ends[0], ends[-1], codes)


_ENDS: Final = {_PERIOD_CODES: 2, _INCIDENT_CODES: 1}
"""Which column holds the ends, by the container's codes."""


def _freeze(
    frozen: _Frozen | None, live: Sequence[array[int]], cut: int, codes: str
) -> tuple[_Frozen | None, list[array[int]]]:
    """``frozen``'s rows and the first ``cut`` of ``live`` frozen together, and the rest of ``live``.

    The rest are new arrays of their own size: cutting ``live`` in place would leave each one's
    freed tail between the records (at 10,000 services read from a snapshot, that kept most of what
    freezing saved in the heap).
    """
    columns = frozen.thaw() if frozen is not None else [array(code) for code in codes]
    for column, source in zip(columns, live, strict=True):
        column.extend(source[:cut])
    return _Frozen.of(columns, codes), [source[cut:] for source in live]


def _closed_before(ends: array[int], limit: int) -> int:
    """How many leading incidents ended before ``limit`` (µs).

    A walk, not a bisection: an incident packed while still open (``_STILL_OPEN``) stops it.
    """
    cut = 0
    while cut < len(ends) and ends[cut] != _STILL_OPEN and ends[cut] < limit:
        cut += 1
    return cut


def _frozen_rows(frozen: _Frozen | None) -> int:
    return 0 if frozen is None else frozen.rows


def _cut_frozen(frozen: _Frozen, limit: int) -> _Frozen | None:
    """``frozen`` without its rows that ended before ``limit`` (µs)."""
    columns = frozen.thaw()
    cut = bisect.bisect_left(columns[_ENDS[frozen.codes]], limit)
    for column in columns:
        del column[:cut]
    return _Frozen.of(columns, frozen.codes)


@dataclass(frozen=True, slots=True)
class Period:
    """A closed span of one state."""

    state: Status
    start: datetime
    end: datetime


@dataclass(slots=True)
class Incident:
    """From the check that turned a service down to the check that brought it back.

    Inside an incident the service is only ever down or unknown (any other verdict ends it), so the
    fold splits its time as it credits the service's seconds: ``down`` observed down, ``unknown``
    not looked at (a gap longer than the credibility window, the daemon stopped). Up to the last
    check folded they add up to the time since ``start``; for a closed incident, to ``end - start``.
    Kept on the incident rather than derived from the periods at query time, because periods older
    than the retention are pruned while an incident still open is not.
    """

    start: datetime
    end: datetime | None = None
    down: timedelta = timedelta(0)
    """Observed down time from ``start`` up to the last check folded (or ``end``)."""
    unknown: timedelta = timedelta(0)
    """Time without a credible verdict from ``start`` up to the last check folded (or ``end``)."""


def _credit(
    totals: dict[Status, float], rows: list[array[int]], lo_limit: int, hi_limit: int
) -> None:
    """``Periods.credit`` over the rows in ``rows`` (states, starts, ends)."""
    unknown = _STATE_INDEX[Status.UNKNOWN]
    states, starts, ends = rows
    for at in range(bisect.bisect_right(ends, lo_limit), len(states)):
        state = states[at]
        if state == unknown:
            continue
        lo, hi = max(starts[at], lo_limit), min(ends[at], hi_limit)
        if hi > lo:
            totals[_STATES[state]] += (hi - lo) / 1_000_000


class Periods(Sequence[Period]):
    """Closed periods in time order: states, starts and ends in arrays."""

    __slots__ = ("_ends", "_frozen", "_starts", "_states")

    def __init__(self, periods: Iterable[Period] = ()) -> None:
        """The periods, in order."""
        self._states, self._starts, self._ends = _NO_ROWS
        self._frozen: _Frozen | None = None
        """The oldest periods, compressed (``freeze``); the arrays hold the ones after them."""
        for period in periods:
            self.append(period)

    def _all(self) -> tuple[array[int], array[int], array[int]]:
        """Every row's columns, the frozen ones thawed (new arrays then: for reading only)."""
        if self._frozen is None:
            return self._states, self._starts, self._ends
        states, starts, ends = self._frozen.thaw()
        states.extend(self._states)
        starts.extend(self._starts)
        ends.extend(self._ends)
        return states, starts, ends

    def freeze(self, before: datetime, min_rows: int = FREEZE_ROWS) -> None:
        """Keep the periods that ended before ``before`` compressed (when ``min_rows`` or more)."""
        cut = bisect.bisect_left(self._ends, to_micros(before))
        if cut >= max(1, min_rows):
            live = [self._states, self._starts, self._ends]
            self._frozen, live = _freeze(self._frozen, live, cut, _PERIOD_CODES)
            self._states, self._starts, self._ends = live

    @property
    def frozen(self) -> int:
        """How many of the periods are frozen."""
        return _frozen_rows(self._frozen)

    def append(self, period: Period) -> None:
        """Add a period after the others."""
        if not self._states:  # the shared empty arrays: arrays of its own from now on
            self._states, self._starts, self._ends = array("B"), array("q"), array("q")
        self._states.append(_STATE_INDEX[period.state])
        self._starts.append(to_micros(period.start))
        self._ends.append(to_micros(period.end))

    def drop_ended_before(self, horizon: datetime) -> None:
        """Drop the leading periods that ended before ``horizon`` (ends ascend: a bisection)."""
        limit = to_micros(horizon)
        frozen = self._frozen
        if frozen is not None:
            if frozen.first_end >= limit:
                return
            if frozen.last_end >= limit:  # the cut is among the frozen: the live ones end later
                self._frozen = _cut_frozen(frozen, limit)
                return
            self._frozen = None
        cut = bisect.bisect_left(self._ends, limit)
        if cut:
            del self._states[:cut]
            del self._starts[:cut]
            del self._ends[:cut]

    def ending_after(self, moment: datetime) -> int:
        """The index of the first period that ends after ``moment`` (``bisect_right`` by end)."""
        return self._after(2, to_micros(moment))

    def starting_after(self, moment: datetime) -> int:
        """The index of the first period that starts after ``moment``."""
        return self._after(1, to_micros(moment))

    def _after(self, column: int, micros: int) -> int:
        """``bisect_right`` of ``micros`` in the column (starts or ends, both ascend)."""
        frozen = self._frozen
        if frozen is None:
            return bisect.bisect_right((self._states, self._starts, self._ends)[column], micros)
        if micros >= frozen.last_end:  # every frozen start and end is at or before it
            live = (self._states, self._starts, self._ends)[column]
            return frozen.rows + bisect.bisect_right(live, micros)
        return bisect.bisect_right(self._all()[column], micros)

    def encoded(self) -> list[list[Any]]:
        """Each period as ``[state, start, end]``, times in Unix seconds (a rollup event's form).

        ``micros / 10**6`` is the float ``datetime.timestamp()`` gives, without making the datetime.
        """
        return [
            [_STATES[state], start / 1_000_000, end / 1_000_000]
            for state, start, end in zip(*self._all(), strict=True)
        ]

    def to_bytes(self) -> bytes:
        """The periods as bytes (``from_bytes`` reads them), the frozen ones with the rest."""
        return _pack(list(self._all()))

    @classmethod
    def from_bytes(cls, data: bytes) -> Periods:
        """What ``to_bytes`` wrote; ``ValueError`` for anything else."""
        states, starts, ends = _unpack(data, "Bqq")
        if any(state >= len(_STATES) for state in states):
            raise ValueError("packed periods: unknown state")
        periods = cls()
        if states:
            periods._states, periods._starts, periods._ends = states, starts, ends
        return periods

    def credit(self, totals: dict[Status, float], start: datetime, end: datetime) -> None:
        """Add each known state's seconds within ``[start, end)`` to ``totals``, in order.

        Exactly what summing ``(min(p.end, end) - max(p.start, start)).total_seconds()`` over the
        periods gives (both divide whole microseconds by 10**6), without making them.
        """
        lo_limit, hi_limit = to_micros(start), to_micros(end)
        frozen = self._frozen
        if frozen is not None and lo_limit < frozen.last_end:  # the window reaches them
            _credit(totals, frozen.thaw(), lo_limit, hi_limit)
        _credit(totals, [self._states, self._starts, self._ends], lo_limit, hi_limit)

    def since(self, index: int) -> Iterator[Period]:
        """The periods from ``index`` on."""
        frozen = self._frozen
        if frozen is not None and index < frozen.rows:
            states, starts, ends = frozen.thaw()
            for at in range(index, frozen.rows):
                yield Period(_STATES[states[at]], from_micros(starts[at]), from_micros(ends[at]))
            index = frozen.rows
        for at in range(index - _frozen_rows(frozen), len(self._states)):
            yield self._period(at)

    def _period(self, at: int) -> Period:
        return Period(
            _STATES[self._states[at]], from_micros(self._starts[at]), from_micros(self._ends[at])
        )

    def __len__(self) -> int:
        """How many periods."""
        return _frozen_rows(self._frozen) + len(self._states)

    @overload
    def __getitem__(self, index: int) -> Period: ...

    @overload
    def __getitem__(self, index: slice) -> list[Period]: ...

    def __getitem__(self, index: int | slice) -> Period | list[Period]:
        """A period (made when read), or a list of them."""
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("period index out of range")
        frozen = _frozen_rows(self._frozen)
        return self._period(index - frozen) if index >= frozen else next(self.since(index))

    def __iter__(self) -> Iterator[Period]:
        """The periods, in order."""
        return self.since(0)

    def __eq__(self, other: object) -> bool:
        """The same periods, whatever sequence holds them."""
        if isinstance(other, Periods):
            return self._all() == other._all()
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        """How many, and the span they cover."""
        if not self:
            return "Periods([])"
        _, starts, ends = self._all()
        return f"Periods({len(self)}: {from_micros(starts[0])} to {from_micros(ends[-1])})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Periods:
        """An independent copy (its arrays copied; the frozen rows, never changed, shared)."""
        copied = Periods()
        copied._frozen = self._frozen
        if self._states:
            copied._states, copied._starts, copied._ends = (
                self._states[:],
                self._starts[:],
                self._ends[:],
            )
        return copied


class Incidents(Sequence[Incident]):
    """Incidents in time order: the closed ones but the last packed, the last one an object."""

    __slots__ = ("_downs", "_ends", "_frozen", "_last", "_starts", "_unknowns")

    def __init__(self, incidents: Iterable[Incident] = ()) -> None:
        """The incidents, in order (any but the last must be closed)."""
        self._starts, self._ends, self._downs, self._unknowns = _NO_INCIDENTS
        self._last: Incident | None = None
        self._frozen: _Frozen | None = None
        """The oldest closed incidents, compressed (``freeze``); the arrays hold those after them."""
        for incident in incidents:
            self.append(incident)

    def freeze(self, before: datetime, min_rows: int = FREEZE_ROWS) -> None:
        """Keep the leading closed incidents that ended before ``before`` compressed.

        Only when ``min_rows`` or more did: an incident packed while still open stops the walk.
        """
        cut = _closed_before(self._ends, to_micros(before))
        if cut >= max(1, min_rows):
            self._frozen, live = _freeze(self._frozen, self._columns(), cut, _INCIDENT_CODES)
            self._starts, self._ends, self._downs, self._unknowns = live

    @property
    def frozen(self) -> int:
        """How many of the incidents are frozen."""
        return _frozen_rows(self._frozen)

    def _all(self) -> list[array[int]]:
        """Every packed row's columns, the frozen ones thawed (new arrays then: for reading only)."""
        if self._frozen is None:
            return list(self._columns())
        columns = self._frozen.thaw()
        for column, live in zip(columns, self._columns(), strict=True):
            column.extend(live)
        return columns

    def ending_after(self, moment: datetime) -> Iterator[Incident]:
        """The incidents in order, but for frozen ones when none of them ended after ``moment``.

        Every incident left out ended at or before ``moment``: what a window that starts there
        never shows, so it need not decompress them.
        """
        frozen = self._frozen
        if frozen is not None and frozen.last_end <= to_micros(moment):
            for at in range(len(self._starts)):
                yield self._incident(at)
            if self._last is not None:
                yield self._last
            return
        yield from self

    def append(self, incident: Incident) -> None:
        """Add an incident after the others (the one before it is packed)."""
        last = self._last
        if last is not None:
            if not self._starts:
                self._starts, self._ends, self._downs, self._unknowns = (
                    array("q"),
                    array("q"),
                    array("q"),
                    array("q"),
                )
            for column, value in zip(self._columns(), _row(last), strict=True):
                column.append(value)
        self._last = incident

    def _columns(self) -> tuple[array[int], array[int], array[int], array[int]]:
        return self._starts, self._ends, self._downs, self._unknowns

    def to_bytes(self) -> bytes:
        """The incidents as bytes (``from_bytes`` reads them), the frozen and the last one too."""
        columns = self._all() if self._frozen is not None else [c[:] for c in self._columns()]
        if self._last is not None:
            for column, value in zip(columns, _row(self._last), strict=True):
                column.append(value)
        return _pack(columns)

    @classmethod
    def from_bytes(cls, data: bytes) -> Incidents:
        """What ``to_bytes`` wrote (the last incident an object again); ``ValueError`` otherwise."""
        starts, ends, downs, unknowns = _unpack(data, "qqqq")
        incidents = cls()
        if not starts:
            return incidents
        last = _incident(starts.pop(), ends.pop(), downs.pop(), unknowns.pop())
        if starts:
            incidents._starts, incidents._ends = starts, ends
            incidents._downs, incidents._unknowns = downs, unknowns
        incidents._last = last
        return incidents

    def drop_ended_before(self, horizon: datetime) -> None:
        """Drop the leading closed incidents that ended before ``horizon``.

        A walk, not a bisection: an incident packed while still open (``_STILL_OPEN``) stops it.
        """
        limit = to_micros(horizon)
        frozen = self._frozen
        if frozen is not None:
            if frozen.first_end >= limit:
                return
            if frozen.last_end >= limit:  # the walk stops among the frozen (their ends ascend)
                self._frozen = _cut_frozen(frozen, limit)
                return
            self._frozen = None
        cut = _closed_before(self._ends, limit)
        if cut:
            del self._starts[:cut]
            del self._ends[:cut]
            del self._downs[:cut]
            del self._unknowns[:cut]
        last = self._last
        if not self._starts and last is not None and last.end is not None and last.end < horizon:
            self._last = None

    def _incident(self, at: int) -> Incident:
        return _incident(self._starts[at], self._ends[at], self._downs[at], self._unknowns[at])

    def __len__(self) -> int:
        """How many incidents."""
        return _frozen_rows(self._frozen) + len(self._starts) + (self._last is not None)

    @overload
    def __getitem__(self, index: int) -> Incident: ...

    @overload
    def __getitem__(self, index: slice) -> list[Incident]: ...

    def __getitem__(self, index: int | slice) -> Incident | list[Incident]:
        """An incident: the last one is the object the fold writes to, others are made when read."""
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("incident index out of range")
        frozen = _frozen_rows(self._frozen)
        if index == frozen + len(self._starts):
            assert self._last is not None  # noqa: S101 - len counts it
            return self._last
        if index >= frozen:
            return self._incident(index - frozen)
        return _incident(*(column[index] for column in self._frozen.thaw()))  # type: ignore[union-attr]

    def __iter__(self) -> Iterator[Incident]:
        """The incidents, in order."""
        if self._frozen is not None:
            yield from map(_incident, *self._frozen.thaw())
        for at in range(len(self._starts)):
            yield self._incident(at)
        if self._last is not None:
            yield self._last

    def __eq__(self, other: object) -> bool:
        """The same incidents, whatever sequence holds them."""
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        """How many."""
        return f"Incidents({len(self)})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Incidents:
        """An independent copy (arrays copied, the last incident too; frozen rows shared)."""
        copied = Incidents()
        copied._frozen = self._frozen
        if self._starts:
            copied._starts, copied._ends, copied._downs, copied._unknowns = (
                column[:] for column in self._columns()
            )
        last = self._last
        if last is not None:
            copied._last = Incident(last.start, last.end, last.down, last.unknown)
        return copied
