"""Keep the projection current: subscribe from the checkpoint, fold, snapshot, resubscribe on failure.

The runner is the projection's only writer. It subscribes to ``service-uptime-*`` from the commit
position of its last snapshot (exclusive), folds each ``ServiceStatusChanged`` event, and is *ready*
once the subscription reports it has caught up. When the subscription breaks (the store went away)
it resubscribes from the last folded position after a backoff, so nothing is missed or counted twice.
Events it cannot decode are logged with their position and skipped — one bad event never stops the
projection.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import zlib
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import structlog

from uptime_daemon import events, maintenance, malloc
from uptime_daemon.clock import Clock, from_micros, to_micros
from uptime_daemon.config.model import Settings
from uptime_daemon.errors import EventStoreError, UptimeDaemonError
from uptime_daemon.projector import cold as colds
from uptime_daemon.projector import rollup as rollups
from uptime_daemon.projector import snapshot as snapshots
from uptime_daemon.projector.fold import (
    Inconclusive,
    Lanes,
    Observation,
    ProjectionState,
    ServiceProjection,
    apply,
    apply_inconclusive,
)
from uptime_daemon.projector.hours import DAY_HOURS
from uptime_daemon.status import Status, credibility
from uptime_daemon.store import (
    UPTIME_STREAM_PREFIX,
    CaughtUp,
    DigestReader,
    DigestRow,
    EventStore,
    RecordedEvent,
    read_digests,
    read_log,
)

FOLLOWED: Final = (UPTIME_STREAM_PREFIX, maintenance.STREAM, rollups.ROLLUP_STREAM_PREFIX)
"""The streams the projection folds: every service's checks, the maintenance windows, and the
rollups of checks removed (folded first of all: ``fold_rollups``)."""

log = structlog.get_logger(__name__)

RESUBSCRIBE_BACKOFF_SECONDS: Final = (0.1, 0.5, 1.0, 2.0, 5.0)
CATCH_UP_PAGE: Final = 1000
"""Events per read of ``catch_up`` where each comes whole (payloads: rollups, or folding event by
event for listeners); a page's rows are all it holds at once, so memory does not grow with the log."""
BULK_PAGE: Final = 10_000
"""Rows per read of the bulk catch-up (digests, ~21 bytes a check): a page's read costs ~0.6 ms
whatever its size, so 10,000-row pages replayed a 400,400-event log 17 % faster than 1,000-row ones
(3.4–3.6 s against 4.2 s, alternating runs) for 5 MiB more peak RSS (docs/performance-history.md)."""


Newest = tuple[int, str, bytes | int]
"""A service's newest check seen by a bulk fold: ``(completed at in µs since the epoch, type,
payload or position)``, the position when it was folded from its digest and its payload is still
to be read."""


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A transition of a service, as the live feed announces it.

    For a service watched from several locations it is the quorum verdict's; ``payload`` is then
    the check that moved it.
    """

    service: str
    status: Status
    previous_status: Status | None
    at: datetime
    position: int
    payload: Mapping[str, object]
    """The event data as stored."""

    @classmethod
    def of(cls, position: int, event: events.StatusChanged) -> StatusChange:
        """The transition a decoded ``ServiceStatusChanged`` at ``position`` records."""
        return cls(
            service=event.service,
            status=event.status,
            previous_status=event.previous_status,
            at=event.timestamp,
            position=position,
            payload=event.payload,
        )


@dataclass(frozen=True, slots=True)
class LastProbe:
    """What one service's newest check saw."""

    at: datetime
    reason: str | None
    """The failure reason (``None``: the probe succeeded; ``inconclusive``: the check concluded
    nothing, ``detail`` says why)."""
    detail: str
    location: str


@dataclass(frozen=True, slots=True)
class Share:
    """Part ``index`` of ``of`` disjoint parts of the log, by service: the parts fold independently.

    A service's checks, its stream's creation and its rollups are in its part, chosen by a hash of
    its name; the maintenance windows (and any other stream) in part 0. No fold of one service
    reads another's record, so the parts' projections, put together, are the whole log's
    (``tests/projector/test_shares.py``): ``uptime-daemon replay`` folds them in two processes.
    """

    index: int
    of: int

    def __post_init__(self) -> None:
        """``0 <= index < of``."""
        if not 0 <= self.index < self.of:
            raise ValueError(f"share {self.index} of {self.of}: needs 0 <= index < of")

    def holds(self, stream: str) -> bool:
        """Whether ``stream``'s events are folded in this part."""
        service = events.service_from_stream(stream)
        if service is None and stream.startswith(rollups.ROLLUP_STREAM_PREFIX):
            service = stream[len(rollups.ROLLUP_STREAM_PREFIX) :] or None
        if service is None:
            return self.index == 0
        return zlib.crc32(service.encode()) % self.of == self.index


SNAPSHOT_BUSY_SHARE: Final = 0.01
"""The periodic snapshots take at most this share of the event loop's time (``snapshot_spacing``)."""


def snapshot_spacing(interval_seconds: float, busy_seconds: float) -> float:
    """Seconds until the next periodic snapshot, after one that kept the loop ``busy_seconds``.

    ``projector.snapshot_interval_seconds``, or longer when encoding is dear: a snapshot holds the
    whole retained history (10,000 services with 90 days of hours: ~24 s of encoding), so its
    cost is kept to ``SNAPSHOT_BUSY_SHARE``. What a longer spacing costs is a longer catch-up after
    a crash (the events since the snapshot, replayed at start); shutdown always writes one.
    """
    return max(interval_seconds, busy_seconds / SNAPSHOT_BUSY_SHARE)


WRITE_BYTES: Final = 1 << 20
"""A periodic snapshot's pieces are written to the file once about this many are made."""
HOT_HOURS: Final = 3
"""A record's newest hours that stay in memory with the rest of their day; the whole days before
them go to the file beside the snapshot (``projector.cold``) when a snapshot is written
(``cold_before_day``). The fold writes to the current hour and the one before; the third is a margin
for a check that comes late. A record holds 3 to 26 hours, 14 on average (it held 24 to 48 before:
2.9 KB a service more at a check a minute). A 24-hour window reads the rest of its hours from the
file, once an hour (``Hours.add_window`` keeps what it summed)."""


def cold_before_day(record: ServiceProjection) -> int:
    """The first day of ``record`` that stays in memory (``HOT_HOURS``)."""
    return (record.pruned_hour - HOT_HOURS + 1) // DAY_HOURS


WARM_HOURS: Final = 31 * DAY_HOURS
"""A record's transitions and incidents that ended this long before its newest hour are frozen
(``Periods.freeze``: compressed, about a fifth of the size) when a snapshot is read or written. The
longest window the scrapes read is 30 days (``collector.WINDOWS``), so they never thaw them while
the service is checked; longer windows decompress them for the query. At 90 days held, an outage
every ~33 hours, a record's two containers are 3.2 KB instead of 5.5 (3.1 KB less RSS a service,
2,000 of them read in one process)."""


def freeze(record: ServiceProjection) -> None:
    """Freeze ``record``'s transitions and incidents older than ``WARM_HOURS``."""
    before = from_micros((record.pruned_hour - WARM_HOURS) * 3_600_000_000)
    record.periods.freeze(before)
    record.incidents.freeze(before)


def records(state: ProjectionState) -> Iterator[ServiceProjection]:
    """Every record of ``state``: each service's, and each of its locations'."""
    for record in state.services.values():
        yield record
        yield from record.locations.values()


class Projector:
    """Owns the projection state, its checkpoint and its readiness."""

    def __init__(
        self,
        *,
        store: EventStore,
        clock: Clock,
        default_gap_seconds: Callable[[str], float],
        snapshot_path: Path | None = None,
        snapshot_interval_seconds: float = 60.0,
        retention_seconds: float | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._default_gap = default_gap_seconds
        self._snapshot_path = snapshot_path
        self._snapshot_interval = snapshot_interval_seconds
        self._snapshot_spacing = snapshot_interval_seconds
        """Seconds from one periodic snapshot to the next (``snapshot_spacing``)."""
        self.state = ProjectionState()
        if retention_seconds is not None:
            self.state.retention_seconds = retention_seconds
        self.position: int | None = None
        self.caught_up = asyncio.Event()
        self.last_event_recorded_at: datetime | None = None
        self.events_applied = 0
        self.decode_failures = 0
        self.transitions = 0
        """Moves whenever a service's status or ``since`` may have changed: each live check that
        changed them, and every bulk fold (catch-up, rollups). A reader that saw the same number
        (and the same ``state``) has seen every transition (``alerting.Notifier``)."""
        self._listeners: set[Callable[[StatusChange], None]] = set()
        self.last_probe: dict[str, LastProbe] = {}
        """Service → what its newest folded check saw (for the status page; not part of the
        projection's state: it refills from the next checks after a restart)."""
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._no_verdict: dict[
            str, Callable[[bytes], events.CheckPending | events.CheckInconclusive]
        ] = {
            events.EVENT_TYPE_CHECK_PENDING: self._fold_pending,
            events.EVENT_TYPE_CHECK_INCONCLUSIVE: self._fold_inconclusive,
        }
        """The checks with no verdict, by event type: they fold no time (an inconclusive one is
        counted in its hour)."""
        self._snapshot_position: int | None = None
        self._last_snapshot_monotonic = clock.monotonic()
        self._cold: colds.ColdDays | None = None
        """The file beside the snapshot holding the records' older days (opened when first used)."""
        self._cold_written = False
        """Whether this projector has written that file yet (its first write clears what no record
        names: ``colds.Flush.keep``)."""
        self._digest_keys: dict[str, events.DigestKey] = {}
        """Digest keys met by ``_fold_rows``, decoded once each (one per service and location)."""

    def reload(self, settings: Settings) -> None:
        """Events that do not record their policy are judged by the reloaded services' from now on."""
        self._default_gap = credibility(settings)

    # --- lifecycle --------------------------------------------------------------------------

    def load_snapshot(self) -> None:
        """Start from the snapshot on disk when there is a usable one."""
        if self._snapshot_path is None:
            return
        try:
            stored = snapshots.read(self._snapshot_path, freeze)
        except (snapshots.SnapshotError, OSError) as exc:
            log.warning("snapshot_ignored", path=str(self._snapshot_path), error=str(exc))
            return
        if stored is None:
            return
        if any(record.buckets.holds_cold_days for record in records(stored.state)):
            named = 0

            def blobs() -> Iterator[int]:
                nonlocal named
                for record in records(stored.state):
                    ids = record.buckets.cold_ids()  # each record's index read once
                    named += len(ids)
                    yield from ids

            try:
                cold = self._cold_days()
                missing = cold.missing(blobs())
            except (sqlite3.Error, OSError) as exc:
                log.warning("snapshot_ignored", path=str(self._snapshot_path), error=str(exc))
                return
            if missing:
                log.warning(
                    "snapshot_ignored",
                    path=str(self._snapshot_path),
                    error=f"{missing} of the {named} days it names are not in {cold.path}",
                )
                return
            for record in records(stored.state):
                record.buckets.attach(cold)
        retention = self.state.retention_seconds
        self.state = stored.state
        self.state.retention_seconds = retention
        self.position = stored.position
        self._snapshot_position = stored.position
        log.info("snapshot_loaded", position=stored.position, services=len(stored.state.services))
        malloc.give_back()  # the decoding's transient was the size of the state again (``malloc``)

    def _cold_days(self) -> colds.ColdDays:
        if self._cold is None:
            if self._snapshot_path is None:
                raise RuntimeError("only a projector that keeps a snapshot keeps cold days")
            self._cold = colds.ColdDays(colds.path_beside(self._snapshot_path))
        return self._cold

    def _evict(
        self, record: ServiceProjection, cold: colds.ColdDays, named: list[array[int]] | None
    ) -> None:
        """Move the record's days before ``cold_before_day`` to ``cold``; its blobs' ids to ``named``.

        Its older transitions and incidents are frozen (``freeze``).
        """
        record.buckets.evict(cold, cold_before_day(record))
        freeze(record)
        if named is not None and record.buckets.holds_cold_days:
            named.append(record.buckets.cold_ids())  # a new array: the record's own is bytes

    @staticmethod
    def _write(
        path: Path, data: bytes | list[bytes], cold: colds.ColdDays, flush: colds.Flush
    ) -> None:
        """The cold days first, then the snapshot that names them (in a worker thread, or not)."""
        cold.write(flush)
        snapshots.write_atomically(path, data)

    async def _write_streamed(
        self,
        path: Path,
        encoding: snapshots.Encoding,
        cold: colds.ColdDays,
        flush: colds.Flush,
    ) -> None:
        """``_write`` while the snapshot is encoded: never all of it in memory.

        Its pieces go to the file ``WRITE_BYTES`` at a time, in a thread; the cold days, then the
        rename, last.
        """
        with snapshots.AtomicFile(path) as file:  # opened here: a cancellation cannot leak it
            pending: list[bytes] = []
            written = 0
            async for pieces in encoding:
                pending += pieces
                if encoding.size - written >= WRITE_BYTES:
                    await asyncio.to_thread(file.write, pending)
                    pending, written = [], encoding.size
                else:
                    await asyncio.sleep(0)
            await asyncio.to_thread(self._commit, file, pending, cold, flush)

    @staticmethod
    def _commit(
        file: snapshots.AtomicFile, pieces: list[bytes], cold: colds.ColdDays, flush: colds.Flush
    ) -> None:
        file.write(pieces)
        cold.write(flush)
        file.commit()

    def _written(self, position: int | None, cold: colds.ColdDays, flush: colds.Flush) -> None:
        cold.flushed(flush)
        self._cold_written = True
        self._snapshot_position = position
        self._last_snapshot_monotonic = self._clock.monotonic()

    def close(self) -> None:
        """Close the file of cold days: last, once nothing reads the state (its cold days with it)."""
        if self._cold is not None:
            self._cold.close()
            self._cold = None

    def save_snapshot(self) -> None:
        """Write the state at the current position (no-op when nothing changed since the last one)."""
        if self._snapshot_path is None or self.position == self._snapshot_position:
            return
        try:
            cold = self._cold_days()
            named: list[array[int]] | None = None if self._cold_written else []
            for record in records(self.state):
                self._evict(record, cold, named)
            flush = cold.flush(named)
            data = snapshots.encode(snapshots.Snapshot(self.position, self.state))
            self._write(self._snapshot_path, data, cold, flush)
        except (OSError, sqlite3.Error) as exc:
            log.error("snapshot_write_failed", path=str(self._snapshot_path), error=str(exc))  # noqa: TRY400
            return
        self._written(self.position, cold, flush)
        log.debug("snapshot_saved", position=self.position, bytes=len(data))

    async def run(self) -> None:
        """Follow the store forever; returns only when cancelled."""
        failures = 0
        while True:
            try:
                await self.fold_rollups()
                async for item in self._store.subscribe(
                    after=self.position, stream_prefix=FOLLOWED
                ):
                    failures = 0
                    if isinstance(item, CaughtUp):
                        if not self.caught_up.is_set():
                            log.info(
                                "projector_caught_up",
                                position=self.position,
                                events=self.events_applied,
                            )
                        self.caught_up.set()
                    else:
                        self.handle(item)
                    if self._snapshot_due():
                        await self.save_snapshot_sliced()
            except EventStoreError as exc:
                delay = RESUBSCRIBE_BACKOFF_SECONDS[
                    min(failures, len(RESUBSCRIBE_BACKOFF_SECONDS) - 1)
                ]
                failures += 1
                log.warning(
                    "projector_subscription_lost",
                    error=str(exc),
                    position=self.position,
                    retry_in_seconds=delay,
                )
                await asyncio.sleep(delay)
            else:
                log.warning("projector_subscription_ended", position=self.position)
                await asyncio.sleep(RESUBSCRIBE_BACKOFF_SECONDS[0])

    async def catch_up(self, page_size: int | None = None, *, share: Share | None = None) -> int:
        """Fold everything stored after the checkpoint, without subscribing; return events folded.

        The offline path used by ``uptime-daemon replay`` and ``summary``, so it is the fast one:
        the store's rows as they come (``read_digests``), a check folded from its digest where the
        store keeps one (``events.check_of_digest``: no payload read) and from its payload by
        ``events.decode_check`` otherwise, and each service's newest check remembered, decoded for
        ``last_probe`` once at the end. With listeners attached it folds through ``handle``
        instead, which announces each transition. Either way the projection is the same.
        ``page_size`` sets every read's size (``BULK_PAGE`` and ``CATCH_UP_PAGE`` otherwise).
        With a ``share`` only that part's events are folded (and counted); the checkpoint still
        moves over the whole log. No listener may be attached then.
        """
        if share is not None and self._listeners:
            raise ValueError("a share of the log is folded without listeners")
        newest: dict[str, Newest] = {}
        held = None if share is None else _Held(share)
        await self.fold_rollups(page_size or CATCH_UP_PAGE, held=held)
        try:
            if self._listeners:
                return await self._catch_up_announcing(page_size or CATCH_UP_PAGE)
            return await self._catch_up_in_bulk(page_size or BULK_PAGE, newest, held)
        finally:
            await self._record_last_probes(newest)

    async def _catch_up_announcing(self, page_size: int) -> int:
        """``catch_up`` event by event through ``handle``, which tells the listeners.

        ``handle`` records each ``last_probe`` itself: nothing is left for ``_record_last_probes``.
        """
        folded = 0
        while True:
            page = await self._store.read_all(
                after=self.position, stream_prefix=FOLLOWED, limit=page_size
            )
            for event in page:
                self.handle(event)
            folded += len(page)
            if len(page) < page_size:
                return folded

    async def _catch_up_in_bulk(
        self, page_size: int, newest: dict[str, Newest], held: _Held | None
    ) -> int:
        """``catch_up`` in rows, page after page.

        Reading the next page on the store's thread while this one folds measured no faster (both
        need the interpreter), so the pages are read one after the other.
        """
        folded = 0
        while True:
            page = await read_digests(
                self._store, after=self.position, stream_prefix=FOLLOWED, limit=page_size
            )
            rows = page if held is None else [row for row in page if held(row[1])]
            self._fold_rows(rows, newest)
            folded += len(rows)
            if page and rows is not page:  # the rows of other shares are passed over too
                self.position = page[-1][0]
                self.last_event_recorded_at = datetime.fromtimestamp(page[-1][5], UTC)
            if len(page) < page_size:
                return folded

    async def fold_rollups(
        self, page_size: int = CATCH_UP_PAGE, *, held: Callable[[str], bool] | None = None
    ) -> int:
        """Fold every rollup stored after the checkpoint, ahead of the log; return how many.

        A rollup is appended after raw checks newer than its own (it is written when its checks
        have aged), so read in log order it would come too late: the newer checks would already
        have moved the record past it. Folded first, each lands on the record as it stood before
        its checks, and the raw checks it covers that are still stored are skipped (``fold.apply``).
        The checkpoint does not move: the log is then read from it as before, and the rollups met
        again there change nothing.
        """
        applied = 0
        after = self.position
        while True:
            rows = await read_log(
                self._store,
                after=after,
                stream_prefix=rollups.ROLLUP_STREAM_PREFIX,
                limit=page_size,
            )
            for position, stream, revision, kind, data, _ in rows:
                if kind == rollups.EVENT_TYPE_ROLLUP and (held is None or held(stream)):
                    applied += self._apply_rollup(stream, revision, position, data)
            if len(rows) < page_size:
                break
            after = rows[-1][0]
        if applied:
            log.info("projector_rollups_folded", rollups=applied, position=self.position)
        return applied

    def _apply_rollup(self, stream: str, revision: int, position: int, data: bytes) -> bool:
        """One rollup onto the projection; an undecodable one is counted and skipped."""
        self.transitions += 1
        try:
            return rollups.apply_rollup(self.state, rollups.decode(data))
        except ValueError as exc:  # RollupDecodeError
            self._decode_failed(stream, revision, position, exc)
            return False

    def _fold_rows(self, rows: list[DigestRow], newest: dict[str, Newest]) -> None:
        """``handle`` for a page of rows with no one listening, keeping ``last_probe`` for later.

        A check goes to the fold as its fields (``fold.Lanes``): no ``Observation`` per event,
        none of its payload read when the row has its digest, and no datetime made for a check
        that just continues its service's verdict.
        """
        keys, lanes = self._digest_keys, Lanes(self.state)
        try:
            for position, stream, revision, kind, data, _, key, packed in rows:
                try:
                    if packed is not None and key is not None:
                        facts = keys.get(key) or keys.setdefault(key, events.digest_key(key))
                        status, at, lead, response = events.unpack_digest(packed)
                        service, location, k, of, gap = facts
                        gap = self._default_gap(service) if gap is None else gap
                        lanes.digest(service, status, at, lead, response, gap, location, k, of)
                        known = newest.get(service)
                        if known is None or known[0] <= at:
                            newest[service] = (at, kind, position)
                    elif data is not None and kind == events.EVENT_TYPE_STATUS_CHANGED:
                        service, status, moment, response, gap, location, slot, k, of = (
                            events.decode_check(data)
                        )
                        gap = self._default_gap(service) if gap is None else gap
                        lanes.check(service, moment, status, response, gap, location, slot, k, of)
                        known, at = newest.get(service), to_micros(moment)
                        if known is None or known[0] <= at:
                            newest[service] = (at, kind, data)
                    else:
                        lanes.close()
                        self._fold_unchecked(stream, revision, position, kind, data, newest)
                except (UptimeDaemonError, ValueError, OverflowError) as exc:
                    self._decode_failed(stream, revision, position, exc)
                self.position = position
                self.events_applied += 1
        finally:
            lanes.close()
        if rows:
            self.transitions += 1
            self.last_event_recorded_at = datetime.fromtimestamp(rows[-1][5], UTC)
            if self._waiters:
                self._wake(rows[-1][0])

    def _fold_unchecked(  # noqa: PLR0917 - a row's fields, as _fold_rows has them
        self,
        stream: str,
        revision: int,
        position: int,
        kind: str,
        data: bytes | None,
        newest: dict[str, Newest],
    ) -> None:
        """A row of ``_fold_rows`` that is not a check with a verdict."""
        if data is None:
            raise events.EventDecodeError("the store gave neither a payload nor a digest")
        if kind == rollups.EVENT_TYPE_ROLLUP:
            self._apply_rollup(stream, revision, position, data)
        elif (fold := self._no_verdict.get(kind)) is not None:
            seen = fold(data)  # pending or inconclusive: no time, only the newest check
            known, at = newest.get(seen.service), to_micros(seen.timestamp)
            if known is None or known[0] <= at:
                newest[seen.service] = (at, kind, data)
        else:
            self._fold_other(stream, kind, data)

    async def _record_last_probes(self, newest: dict[str, Newest]) -> None:
        """``last_probe`` from each service's newest check seen by ``_fold_rows``.

        What ``handle`` would have recorded event by event: the newest check by completion time,
        the later one in the log on a tie. A check folded from its digest is remembered by its
        position; those payloads are read now, in one go (an event scavenged meanwhile is skipped:
        the service's next check refills it). If the store fails here, the fold is kept and so are
        the payloads already at hand.
        """
        positions = [seen for _, _, seen in newest.values() if isinstance(seen, int)]
        payloads: dict[int, bytes] = {}
        if positions and isinstance(self._store, DigestReader):
            try:
                payloads = await self._store.read_payloads(positions)
            except EventStoreError as exc:
                log.warning("projector_last_probes_unread", services=len(positions), error=str(exc))
        for service, (at, kind, seen) in newest.items():
            data = payloads.get(seen) if isinstance(seen, int) else seen
            known = self.last_probe.get(service)
            if data is None or (known is not None and to_micros(known.at) > at):
                continue
            try:
                self.last_probe[service] = self._probe_of(kind, data)
            except (
                UptimeDaemonError,
                ValueError,
            ) as exc:  # folded from its digest, yet undecodable
                log.warning("projector_last_probe_undecodable", service=service, error=str(exc))

    @staticmethod
    def _probe_of(kind: str, data: bytes) -> LastProbe:
        """What a check (with a verdict, pending or inconclusive) saw."""
        if kind == events.EVENT_TYPE_STATUS_CHANGED:
            return _last_probe(events.decode_status_changed(data))
        if kind == events.EVENT_TYPE_CHECK_INCONCLUSIVE:
            return _inconclusive_probe(events.decode_check_inconclusive(data))
        return _pending_probe(events.decode_check_pending(data))

    def _snapshot_due(self) -> bool:
        return (
            self._snapshot_path is not None
            and self.position != self._snapshot_position
            and self._clock.monotonic() - self._last_snapshot_monotonic >= self._snapshot_spacing
        )

    async def save_snapshot_sliced(self) -> None:
        """``save_snapshot`` from the projector's own task, never holding the event loop long.

        Older days go to the cold file and the state is encoded a few records at a time (the
        projector folds nothing meanwhile: it is this task that awaits); the files are written and
        synced in a thread.
        """
        path, position = self._snapshot_path, self.position
        if path is None or position == self._snapshot_position:
            return
        try:
            cold = self._cold_days()
        except (OSError, sqlite3.Error) as exc:
            log.error("snapshot_write_failed", path=str(path), error=str(exc))  # noqa: TRY400
            return
        named: list[array[int]] | None = None if self._cold_written else []
        evicting = await self._evict_sliced(cold, named)
        flush = cold.flush(named)
        encoding = snapshots.Encoding(snapshots.Snapshot(position, self.state))
        try:
            await self._write_streamed(path, encoding, cold, flush)
        except (OSError, sqlite3.Error) as exc:
            log.error("snapshot_write_failed", path=str(path), error=str(exc))  # noqa: TRY400
            return
        self._written(position, cold, flush)
        await asyncio.to_thread(malloc.give_back)  # the encoding's transient (``malloc``)
        busy, size = encoding.busy_seconds, encoding.size
        self._snapshot_spacing = snapshot_spacing(self._snapshot_interval, busy + evicting)
        log.debug(
            "snapshot_saved",
            position=position,
            bytes=size,
            cold_days_written=len(flush.added),
            busy_seconds=round(busy + evicting, 3),
            next_in_seconds=round(self._snapshot_spacing, 1),
        )

    async def _evict_sliced(self, cold: colds.ColdDays, named: list[array[int]] | None) -> float:
        """``_evict`` every record, giving the loop back as ``snapshots.Encoding`` does."""
        began = time.perf_counter()
        busy = 0.0
        in_slice = 0
        for record in list(records(self.state)):
            self._evict(record, cold, named)
            in_slice += 1
            now = time.perf_counter()
            if in_slice >= snapshots.SLICE_RECORDS or now - began >= snapshots.SLICE_SECONDS:
                busy += now - began
                await asyncio.sleep(0)
                began, in_slice = time.perf_counter(), 0
        return busy + time.perf_counter() - began

    # --- folding ----------------------------------------------------------------------------

    def handle(self, event: RecordedEvent) -> None:
        """Fold one recorded event and advance the checkpoint."""
        try:
            if event.type == events.EVENT_TYPE_STATUS_CHANGED:
                self._apply_status(event)
            elif event.type == events.EVENT_TYPE_CHECK_PENDING:
                self._apply_pending(event)
            elif event.type == events.EVENT_TYPE_CHECK_INCONCLUSIVE:
                self._apply_inconclusive(event)
            elif event.type == rollups.EVENT_TYPE_ROLLUP:
                self._apply_rollup(event.stream, event.revision, event.position, event.data)
            else:
                self._fold_other(event.stream, event.type, event.data)
        except (UptimeDaemonError, ValueError) as exc:
            self._decode_failed(event.stream, event.revision, event.position, exc)
        self.position = event.position
        self.last_event_recorded_at = event.recorded_at
        self.events_applied += 1
        if self._waiters:
            self._wake(event.position)

    def _fold_other(self, stream: str, kind: str, data: bytes) -> None:
        """A stream's creation (the service exists from then on) or a maintenance window."""
        if kind == events.EVENT_TYPE_STREAM_CREATED:
            name = events.service_from_stream(stream)
            if name is not None and name not in self.state.services:
                self.state.services[name] = ServiceProjection(name)
        elif stream == maintenance.STREAM and kind in maintenance.EVENT_TYPES:
            self.state.maintenance.apply(kind, data)

    def _decode_failed(self, stream: str, revision: int, position: int, exc: Exception) -> None:
        """Count and log an event that cannot be folded; the event, not a traceback, is the news."""
        self.decode_failures += 1
        log.error(
            "event_decode_failed",
            stream=stream,
            revision=revision,
            position=position,
            error=str(exc),
        )

    async def folded(self, position: int, within_seconds: float) -> bool:
        """Wait until the event at ``position`` is folded (at most ``within_seconds``); whether it was.

        What an API call that appended an event waits for, so its answer and the next read agree.
        """
        if self.position is not None and self.position >= position:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((position, waiter))
        try:
            async with asyncio.timeout(within_seconds):
                await waiter
        except TimeoutError:
            return False
        finally:
            self._waiters = [(p, w) for p, w in self._waiters if w is not waiter]
        return True

    def _wake(self, position: int) -> None:
        for wanted, waiter in self._waiters:
            if wanted <= position and not waiter.done():
                waiter.set_result(None)

    def _apply_pending(self, event: RecordedEvent) -> None:
        """A failed check of a service with no verdict yet: no status, no time; its newest check."""
        pending = self._fold_pending(event.data)
        newest = self.last_probe.get(pending.service)
        if newest is None or newest.at <= pending.timestamp:
            self.last_probe[pending.service] = _pending_probe(pending)

    def _fold_pending(self, data: bytes) -> events.CheckPending:
        """All a pending check does to the projection: its service exists."""
        pending = events.decode_check_pending(data)
        if pending.service not in self.state.services:
            self.state.services[pending.service] = ServiceProjection(pending.service)
        return pending

    def _apply_inconclusive(self, event: RecordedEvent) -> None:
        """A check that concluded nothing: no status, no time, no transition; its newest check."""
        inconclusive = self._fold_inconclusive(event.data)
        newest = self.last_probe.get(inconclusive.service)
        if newest is None or newest.at <= inconclusive.timestamp:
            self.last_probe[inconclusive.service] = _inconclusive_probe(inconclusive)

    def _fold_inconclusive(self, data: bytes) -> events.CheckInconclusive:
        """An inconclusive check is counted in its hour; it folds no time and no verdict."""
        inconclusive = events.decode_check_inconclusive(data)
        apply_inconclusive(self.state, Inconclusive(inconclusive.service, inconclusive.timestamp))
        return inconclusive

    def _apply_status(self, event: RecordedEvent) -> None:
        decoded = events.decode_status_changed(event.data)
        newest = self.last_probe.get(decoded.service)
        if newest is None or newest.at <= decoded.timestamp:
            self.last_probe[decoded.service] = _last_probe(decoded)
        gap = (
            decoded.gap_seconds
            if decoded.gap_seconds is not None
            else self._default_gap(decoded.service)
        )
        observation = Observation(
            service=decoded.service,
            at=decoded.timestamp,
            status=decoded.status,
            response_seconds=decoded.response_seconds,
            gap_seconds=gap,
            location=decoded.location,
            slot=decoded.scheduled_at,
            quorum=decoded.quorum,
            locations=decoded.quorum_of,
        )
        known = self.state.services.get(decoded.service)
        before = None if known is None else known.status
        since = None if known is None else known.since
        apply(self.state, observation)
        service = self.state.services[decoded.service]
        if service is not known or service.status is not before or service.since != since:
            self.transitions += 1
        if not self._listeners:  # a replay, or no live client: nothing to announce
            return
        if service.by_quorum:
            # The service's transition is the quorum's, not this location's: announce it when
            # this check moved the verdict, with the verdict's status.
            if service.status is before or service.status is None:
                return
            change = StatusChange(
                decoded.service,
                service.status,
                before,
                decoded.timestamp,
                event.position,
                decoded.payload,
            )
        elif decoded.changed:
            change = StatusChange.of(event.position, decoded)
        else:
            return
        for listener in list(self._listeners):
            listener(change)

    # --- live feed --------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[StatusChange], None]) -> None:
        """Call ``listener`` synchronously for every transition folded from now on."""
        self._listeners.add(listener)

    def remove_listener(self, listener: Callable[[StatusChange], None]) -> None:
        """Stop calling ``listener``."""
        self._listeners.discard(listener)

    def lag_seconds(self) -> float:
        """How far behind the newest folded event is; 0 once caught up and current."""
        if self.caught_up.is_set() or self.last_event_recorded_at is None:
            return 0.0
        return max(0.0, (self._clock.now() - self.last_event_recorded_at).total_seconds())


def observation(check: events.Check, default_gap: Callable[[str], float]) -> Observation:
    """A decoded check as the fold takes it; ``default_gap`` judges one that states no policy."""
    gap = check.gap_seconds
    return Observation(
        check.service,
        check.timestamp,
        check.status,
        check.response_seconds,
        default_gap(check.service) if gap is None else gap,
        check.location,
        check.scheduled_at,
        check.quorum,
        check.quorum_of,
    )


def _last_probe(event: events.StatusChanged) -> LastProbe:
    """What a decoded ``ServiceStatusChanged``'s check saw."""
    probe = event.payload.get("probe")
    detail = probe.get("detail") if isinstance(probe, dict) else None
    return LastProbe(
        event.timestamp,
        None if event.reason is None else event.reason.value,
        str(detail)[:200] if detail else "",
        event.location,
    )


def _pending_probe(pending: events.CheckPending) -> LastProbe:
    """What a decoded ``ServiceCheckPending``'s check saw."""
    return LastProbe(
        pending.timestamp,
        None if pending.reason is None else pending.reason.value,
        pending.detail[:200],
        pending.location,
    )


INCONCLUSIVE: Final = "inconclusive"
"""``LastProbe.reason`` of a check that concluded nothing (the status page shows it as is)."""


def _inconclusive_probe(inconclusive: events.CheckInconclusive) -> LastProbe:
    """What a decoded ``ServiceCheckInconclusive``'s check saw: nothing about the target."""
    lag_ms = round(inconclusive.lag_seconds * 1000)
    detail = f"{inconclusive.reason.value} (loop {lag_ms} ms late): {inconclusive.detail}"
    return LastProbe(inconclusive.timestamp, INCONCLUSIVE, detail[:200], inconclusive.location)


class _Held:
    """``Share.holds``, remembered per stream (a replay meets each stream thousands of times)."""

    __slots__ = ("_known", "_share")

    def __init__(self, share: Share) -> None:
        self._share = share
        self._known: dict[str, bool] = {}

    def __call__(self, stream: str) -> bool:
        known = self._known.get(stream)
        if known is None:
            known = self._known[stream] = self._share.holds(stream)
        return known
