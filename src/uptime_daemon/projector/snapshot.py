"""Persist the projection with its checkpoint, so a restart resumes instead of replaying years.

The file holds the commit position and the state at exactly that position, written atomically
(temporary file, fsync, rename). A missing, corrupt or older-format file is not an error: the
projector logs it and replays from zero, which gives the same state.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Self

import orjson

from uptime_daemon import maintenance
from uptime_daemon.projector.fold import (
    HISTOGRAM_BUCKETS,
    ProjectionState,
    ServiceProjection,
    epoch,
    pack,
)
from uptime_daemon.projector.hours import HourBucket, Hours
from uptime_daemon.projector.periods import Incident, Incidents, Period, Periods
from uptime_daemon.status import Status

FORMAT_VERSION: Final = 9
"""9 writes a line of JSON for the header (with how many services follow), then one per service,
``[name, record]``, so that reading holds one record's JSON at a time: decoding the whole object at
once doubled a 10,000-service, 89-day daemon's memory at start for a moment (the peak of
``bench/scale.py --history-days 89``); 8 writes each record's periods and incidents packed (``Periods.to_bytes``,
``Incidents.to_bytes``, base64) instead of as lists: at 90 days the lists were most of a snapshot's
decoding (a 10,000-service one held ~2 GB while it was read); 7 names the days of each record moved to the file beside the snapshot (``projector.cold``:
``Hours.cold_index``, base64; a 6 or 5 is still read: it has none); 6 packs each record's closed hours (``Hours.to_bytes``, base64) beside its open ones (5 is still
read: the same record, every hour listed); 5 added the hour retention is measured from and the time rollups are folded through; 4 added each incident's down and unknown time (microseconds); 3 the maintenance windows; 2
per-location records, the quorum, the recent slots of each (service, location) and the
repeated-check count. Formats 5 to 8 are one JSON object. An older file is replayed from zero,
which rebuilds what it lacks."""
_OBJECT_VERSIONS: Final = (5, 6, 7, 8)
"""The formats written as one JSON object (``services`` a mapping), still read."""
READ_VERSIONS: Final = (*_OBJECT_VERSIONS, FORMAT_VERSION)
_MICROSECOND: Final = timedelta(microseconds=1)
SLICE_RECORDS: Final = 256
"""Records ``Encoding`` gives in a slice, between turns of the event loop (~1 ms of work)..."""
SLICE_SECONDS: Final = 0.005
"""... or fewer, once this long has gone on them (records holding months of hours)."""


class SnapshotError(ValueError):
    """The snapshot file cannot be used (corrupt, or written by another format version)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A projection state and the commit position it includes."""

    position: int | None
    state: ProjectionState


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else epoch(value)


def encode_record(s: ServiceProjection, *, packed: bool = False) -> dict[str, Any]:
    """One service's record as JSON-ready data, exact (times as Unix seconds, floats as they are).

    Also the body of a rollup event (``projector.rollup``): stored for good, so a change here must
    keep reading what it wrote before. ``packed`` (snapshots only) lists the open hours and writes
    the closed ones as ``Hours.to_bytes``, base64: the same record in a fifth of the bytes; names
    its cold days (``Hours.cold_index``), whose hours are in the file beside the snapshot; and
    writes its periods and incidents packed too.
    """
    return {
        "status": s.status,
        "since": _ts(s.since),
        "lastCheck": _ts(s.last_check),
        "gap": s.gap_seconds,
        "firstCheck": _ts(s.first_check),
        "openState": s.open_state,
        "openStart": _ts(s.open_start),
        "lastResponse": s.last_response_seconds,
        "totals": s.totals,
        **(
            {"periodsPacked": base64.b64encode(s.periods.to_bytes()).decode()}
            if packed
            else {"periods": s.periods.encoded()}
        ),
        "buckets": [
            [
                hour,
                b.checks,
                b.seconds,
                b.response_sum_seconds,
                sorted(b.histogram.items()),
                b.inconclusive,
            ]
            for hour, b in (sorted(s.buckets.open.items()) if packed else s.buckets.items())
        ],
        **({"packed": base64.b64encode(s.buckets.to_bytes()).decode()} if packed else {}),
        **(
            {"cold": base64.b64encode(s.buckets.cold_index()).decode()}
            if packed and len(s.buckets.cold_ids())
            else {}
        ),
        **(
            {"incidentsPacked": base64.b64encode(s.incidents.to_bytes()).decode()}
            if packed
            else {
                "incidents": [
                    [
                        i.start.timestamp(),
                        _ts(i.end),
                        i.down // _MICROSECOND,
                        i.unknown // _MICROSECOND,
                    ]
                    for i in s.incidents
                ]
            }
        ),
        "recentSlots": {where: s.recent_slots[where] for where in sorted(s.recent_slots)},
        "repeatedChecks": s.repeated_checks,
        "location": s.location,
        "quorum": s.quorum,
        "quorumOf": list(s.quorum_of),
        "locations": {
            where: encode_record(s.locations[where], packed=packed) for where in sorted(s.locations)
        },
        "prunedHour": s.pruned_hour,
        "folded": s.folded,
        "rolledThrough": _ts(s.rolled_through),
    }


def _header(snapshot: Snapshot) -> bytes:
    state = snapshot.state
    return (
        orjson.dumps(
            {
                "format": FORMAT_VERSION,
                "position": snapshot.position,
                "retentionSeconds": float(state.retention_seconds),
                "services": len(state.services),
                "maintenance": maintenance.encode_windows(state.maintenance),
            }
        )
        + b"\n"
    )


def _line(name: str, record: ServiceProjection) -> bytes:
    return orjson.dumps([name, encode_record(record, packed=True)]) + b"\n"


def encode(snapshot: Snapshot) -> bytes:
    """Serialize (deterministic: services in name order, locations too)."""
    services = snapshot.state.services
    return _header(snapshot) + b"".join(_line(name, services[name]) for name in sorted(services))


class Encoding:
    """``encode``'s very bytes, made a few records at a time: ``async for`` gives each slice's pieces.

    At 10,000 services with an hour of checks each ``encode`` held the loop 256-310 ms (6.6 MB);
    slices hold it at most 12-17 ms at a time (``bench/loop_holds.py``, AMD EPYC). A record with 90
    days of hours takes ~2.4 ms (``bench/history_memory.py``), so a slice also ends once
    ``slice_seconds`` have gone on records. The consumer gives the loop back between slices (the
    projector writes each to the file in a thread, so a snapshot is never whole in memory: at
    10,000 services holding 89 days it is 58 MB), and keeps the state still until the last one
    (the projector awaits it in its own task, the only one that folds): the bytes are the state at
    ``snapshot.position``, as ``encode`` would have written them.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        records_per_slice: int = SLICE_RECORDS,
        slice_seconds: float = SLICE_SECONDS,
    ) -> None:
        self._snapshot = snapshot
        self._records_per_slice = records_per_slice
        self._slice_seconds = slice_seconds
        self.busy_seconds = 0.0
        """Seconds spent encoding so far, the consumer's turns between slices left out."""
        self.size = 0
        """Bytes given so far."""

    def __aiter__(self) -> AsyncIterator[list[bytes]]:
        """The slices' pieces, in order (once: the iteration is the encoding)."""
        return self._slices()

    async def _slices(self) -> AsyncIterator[list[bytes]]:
        began = time.perf_counter()
        services = self._snapshot.state.services
        pieces = [_header(self._snapshot)]
        for name in sorted(services):
            pieces.append(_line(name, services[name]))
            now = time.perf_counter()
            if len(pieces) >= self._records_per_slice or now - began >= self._slice_seconds:
                yield self._given(pieces, now - began)
                pieces, began = [], time.perf_counter()
        yield self._given(pieces, time.perf_counter() - began)

    def _given(self, pieces: list[bytes], busy_seconds: float) -> list[bytes]:
        self.busy_seconds += busy_seconds
        self.size += sum(len(piece) for piece in pieces)
        return pieces


_MOST_COUNTED: Final = 2**32 - 1
"""A count an hour holds at most (``hours.COUNT_CODE``): far more than any hour's checks."""


def _count(value: float | str) -> int:
    count = int(value)
    if not 0 <= count <= _MOST_COUNTED:
        raise ValueError(f"count {count} out of range")
    return count


def _histogram_index(value: float | str) -> int:
    index = int(value)
    if not 0 <= index < HISTOGRAM_BUCKETS:
        raise ValueError(f"histogram bucket {index} out of range")
    return index


def _periods(s: dict[str, Any]) -> Periods:
    packed = s.get("periodsPacked")
    if packed is not None:
        return Periods.from_bytes(base64.b64decode(packed, validate=True))
    return Periods(Period(Status(p[0]), epoch(p[1]), epoch(p[2])) for p in s["periods"])


def _incidents(s: dict[str, Any]) -> Incidents:
    packed = s.get("incidentsPacked")
    if packed is not None:
        return Incidents.from_bytes(base64.b64decode(packed, validate=True))
    return Incidents(
        Incident(epoch(i[0]), _dt(i[1]), int(i[2]) * _MICROSECOND, int(i[3]) * _MICROSECOND)
        for i in s["incidents"]
    )


def decode_record(name: str, s: dict[str, Any]) -> ServiceProjection:
    """The record ``encode_record`` wrote (``KeyError``/``TypeError``/``ValueError`` when corrupt)."""
    packed = s.get("packed")
    service = ServiceProjection(
        name=name,
        buckets=Hours()
        if packed is None
        else Hours.from_bytes(base64.b64decode(packed, validate=True), indexes=HISTOGRAM_BUCKETS),
        status=None if s["status"] is None else Status(s["status"]),
        since=_dt(s["since"]),
        last_check=_dt(s["lastCheck"]),
        gap_seconds=float(s["gap"]),
        first_check=_dt(s["firstCheck"]),
        open_state=None if s["openState"] is None else Status(s["openState"]),
        open_start=_dt(s["openStart"]),
        last_response_seconds=s["lastResponse"],
        totals=[float(x) for x in s["totals"]],
        periods=_periods(s),
        incidents=_incidents(s),
        recent_slots={
            str(where): [int(k) for k in keys] for where, keys in s["recentSlots"].items()
        },
        repeated_checks=int(s["repeatedChecks"]),
        location=None if s["location"] is None else str(s["location"]),
        quorum=int(s["quorum"]),
        quorum_of=tuple(str(where) for where in s["quorumOf"]),
        locations={
            str(where): decode_record(name, record) for where, record in s["locations"].items()
        },
        pruned_hour=int(s["prunedHour"]),
        folded=int(s["folded"]),
        rolled_through=_dt(s["rolledThrough"]),
    )
    for hour, checks, seconds, response_sum, histogram, inconclusive in s["buckets"]:
        service.buckets[int(hour)] = HourBucket(
            checks=[_count(c) for c in checks],
            seconds=[float(x) for x in seconds],
            response_sum_seconds=float(response_sum),
            histogram={_histogram_index(k): _count(v) for k, v in histogram},
            inconclusive=_count(inconclusive),
        )
    pack(service)
    cold = s.get("cold")
    if cold is not None:
        service.buckets.with_cold_index(base64.b64decode(cold, validate=True))
    return service


def decode(data: bytes) -> Snapshot:
    """Parse bytes written by ``encode``; raise ``SnapshotError`` if they cannot be trusted."""
    return _decode_lines(iter(data.splitlines()))


def _give(
    services: dict[str, ServiceProjection],
    record: ServiceProjection,
    each: Callable[[ServiceProjection], None] | None,
) -> None:
    """Keep ``record`` under its name; ``each`` is given it, then its locations'."""
    services[record.name] = record
    if each is not None:
        each(record)
        for location in record.locations.values():
            each(location)


def _decode_lines(
    lines: Iterator[bytes], each: Callable[[ServiceProjection], None] | None = None
) -> Snapshot:
    """The snapshot in ``lines`` (format 9: a header, then a line per service; 5-8: one line).

    ``each`` is given every record as it is decoded (a service's, then its locations').
    """
    try:
        raw = orjson.loads(next(lines, b""))
        version = raw.get("format")
    except (orjson.JSONDecodeError, AttributeError) as exc:
        raise SnapshotError(f"corrupt snapshot: {type(exc).__name__}: {exc}") from exc
    if version not in READ_VERSIONS:
        raise SnapshotError(f"snapshot format {version!r}, expected one of {READ_VERSIONS}")
    try:
        state = ProjectionState(retention_seconds=float(raw["retentionSeconds"]))
        if version in _OBJECT_VERSIONS:
            for name, s in raw["services"].items():
                _give(state.services, decode_record(name, s), each)
        else:
            for _ in range(int(raw["services"])):
                name, s = orjson.loads(next(lines))
                _give(state.services, decode_record(str(name), s), each)
        state.maintenance = maintenance.decode_windows(raw["maintenance"])
        position = None if raw["position"] is None else int(raw["position"])
    except (
        orjson.JSONDecodeError,
        StopIteration,
        KeyError,
        IndexError,
        TypeError,
        ValueError,
        AttributeError,
    ) as exc:  # MaintenanceDecodeError is a ValueError
        raise SnapshotError(f"corrupt snapshot: {type(exc).__name__}: {exc}") from exc
    if any(line.strip() for line in lines):
        raise SnapshotError("corrupt snapshot: more services than its header says")
    return Snapshot(position=position, state=state)


class AtomicFile:
    """A file replaced whole or not at all: written beside it (``.tmp``), synced, then renamed.

    ``write`` as often as needed, then ``commit``; ``abort`` (or leaving the ``with`` block without
    a commit) removes what was written, and the file is as it was.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._tmp = path.with_name(path.name + ".tmp")
        self._handle = self._tmp.open("wb")

    def write(self, pieces: Iterable[bytes]) -> None:
        """Append ``pieces``, in order."""
        self._handle.writelines(pieces)

    def commit(self) -> None:
        """Sync what was written and put it in the file's place."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._tmp.replace(self.path)

    def abort(self) -> None:
        """Drop what was written (nothing once committed)."""
        if not self._handle.closed:
            self._handle.close()
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        """The file itself."""
        return self

    def __exit__(self, *_: object) -> None:
        """``abort``: nothing is left of an uncommitted file."""
        self.abort()


def write_atomically(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Replace ``path`` with ``data`` so a crash leaves either the old file or the new one.

    ``data`` is the bytes, or their pieces in order.
    """
    with AtomicFile(path) as file:
        file.write([data] if isinstance(data, bytes) else data)
        file.commit()


def read(path: Path, each: Callable[[ServiceProjection], None] | None = None) -> Snapshot | None:
    """The stored snapshot, or ``None`` when there is no file (read a record at a time).

    ``each`` is given every record as it is read, before the next is (what it lets go of, the next
    record's decoding reuses: ``runner.freeze`` after all of them left the heap 8 MiB larger at
    10,000 services).
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return None
    with handle:
        return _decode_lines(iter(handle), each)
