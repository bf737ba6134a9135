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
"""

from __future__ import annotations

import bisect
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


class Periods(Sequence[Period]):
    """Closed periods in time order: states, starts and ends in arrays."""

    __slots__ = ("_ends", "_starts", "_states")

    def __init__(self, periods: Iterable[Period] = ()) -> None:
        """The periods, in order."""
        self._states, self._starts, self._ends = _NO_ROWS
        for period in periods:
            self.append(period)

    def append(self, period: Period) -> None:
        """Add a period after the others."""
        if not self._states:  # the shared empty arrays: arrays of its own from now on
            self._states, self._starts, self._ends = array("B"), array("q"), array("q")
        self._states.append(_STATE_INDEX[period.state])
        self._starts.append(to_micros(period.start))
        self._ends.append(to_micros(period.end))

    def drop_ended_before(self, horizon: datetime) -> None:
        """Drop the leading periods that ended before ``horizon`` (ends ascend: a bisection)."""
        cut = bisect.bisect_left(self._ends, to_micros(horizon))
        if cut:
            del self._states[:cut]
            del self._starts[:cut]
            del self._ends[:cut]

    def ending_after(self, moment: datetime) -> int:
        """The index of the first period that ends after ``moment`` (``bisect_right`` by end)."""
        return bisect.bisect_right(self._ends, to_micros(moment))

    def starting_after(self, moment: datetime) -> int:
        """The index of the first period that starts after ``moment``."""
        return bisect.bisect_right(self._starts, to_micros(moment))

    def encoded(self) -> list[list[Any]]:
        """Each period as ``[state, start, end]``, times in Unix seconds (a rollup event's form).

        ``micros / 10**6`` is the float ``datetime.timestamp()`` gives, without making the datetime.
        """
        return [
            [_STATES[state], start / 1_000_000, end / 1_000_000]
            for state, start, end in zip(self._states, self._starts, self._ends, strict=True)
        ]

    def to_bytes(self) -> bytes:
        """The periods as bytes (``from_bytes`` reads them)."""
        return _pack([self._states, self._starts, self._ends])

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
        unknown = _STATE_INDEX[Status.UNKNOWN]
        states, starts, ends = self._states, self._starts, self._ends
        for at in range(bisect.bisect_right(ends, lo_limit), len(states)):
            state = states[at]
            if state == unknown:
                continue
            lo, hi = max(starts[at], lo_limit), min(ends[at], hi_limit)
            if hi > lo:
                totals[_STATES[state]] += (hi - lo) / 1_000_000

    def since(self, index: int) -> Iterator[Period]:
        """The periods from ``index`` on."""
        for at in range(index, len(self._states)):
            yield self._period(at)

    def _period(self, at: int) -> Period:
        return Period(
            _STATES[self._states[at]], from_micros(self._starts[at]), from_micros(self._ends[at])
        )

    def __len__(self) -> int:
        """How many periods."""
        return len(self._states)

    @overload
    def __getitem__(self, index: int) -> Period: ...

    @overload
    def __getitem__(self, index: slice) -> list[Period]: ...

    def __getitem__(self, index: int | slice) -> Period | list[Period]:
        """A period (made when read), or a list of them."""
        if isinstance(index, slice):
            return [self._period(at) for at in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("period index out of range")
        return self._period(index)

    def __iter__(self) -> Iterator[Period]:
        """The periods, in order."""
        return self.since(0)

    def __eq__(self, other: object) -> bool:
        """The same periods, whatever sequence holds them."""
        if isinstance(other, Periods):
            return (self._states, self._starts, self._ends) == (
                other._states,
                other._starts,
                other._ends,
            )
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        """How many, and the span they cover."""
        if not self:
            return "Periods([])"
        return (
            f"Periods({len(self)}: {from_micros(self._starts[0])} to {from_micros(self._ends[-1])})"
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> Periods:
        """An independent copy (its arrays copied)."""
        copied = Periods()
        if self._states:
            copied._states, copied._starts, copied._ends = (
                self._states[:],
                self._starts[:],
                self._ends[:],
            )
        return copied


class Incidents(Sequence[Incident]):
    """Incidents in time order: the closed ones but the last packed, the last one an object."""

    __slots__ = ("_downs", "_ends", "_last", "_starts", "_unknowns")

    def __init__(self, incidents: Iterable[Incident] = ()) -> None:
        """The incidents, in order (any but the last must be closed)."""
        self._starts, self._ends, self._downs, self._unknowns = _NO_INCIDENTS
        self._last: Incident | None = None
        for incident in incidents:
            self.append(incident)

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
        """The incidents as bytes (``from_bytes`` reads them), the last one too."""
        columns = [column[:] for column in self._columns()]
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
        cut = 0
        limit = to_micros(horizon)
        ends = self._ends
        while cut < len(ends) and ends[cut] != _STILL_OPEN and ends[cut] < limit:
            cut += 1
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
        return len(self._starts) + (self._last is not None)

    @overload
    def __getitem__(self, index: int) -> Incident: ...

    @overload
    def __getitem__(self, index: slice) -> list[Incident]: ...

    def __getitem__(self, index: int | slice) -> Incident | list[Incident]:
        """An incident: the last one is the object the fold writes to, others are made when read."""
        if isinstance(index, slice):
            return [self[at] for at in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("incident index out of range")
        if index == len(self._starts):
            assert self._last is not None  # noqa: S101 - len counts it
            return self._last
        return self._incident(index)

    def __iter__(self) -> Iterator[Incident]:
        """The incidents, in order."""
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
        """An independent copy (arrays copied, the last incident too)."""
        copied = Incidents()
        if self._starts:
            copied._starts, copied._ends, copied._downs, copied._unknowns = (
                column[:] for column in self._columns()
            )
        last = self._last
        if last is not None:
            copied._last = Incident(last.start, last.end, last.down, last.unknown)
        return copied
