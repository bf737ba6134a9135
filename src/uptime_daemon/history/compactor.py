"""Compaction: raw checks past ``[store] raw_retention_days`` become exact rollups, then go.

Every ``interval_seconds`` (and once the projection has caught up, so it has folded every raw
event it is about to lose), for each service the projection knows:

1. Read its last rollup (``system-uptime-rollup-{service}``) and its raw stream from the first
   event still visible, up to events recorded an hour past the cutoff (``now - raw_retention``,
   floored to the hour).
2. Pick the cut: the last event recorded before the cutoff such that every check up to it is older
   than every check after it (the look-ahead hour sees checks that reached the log late). Exactness
   rests on that clean cut (``projector.rollup``).
3. Fold the stretch after the last rollup, exactly as the projector does (``rollup.roll_up``), and
   append the result with the stream's expected revision and an id derived from its content, so
   two daemons compacting at once write it once.
4. Truncate the raw stream before the cut (``$tb``): the SQLite store deletes those events at its
   next scavenge; KurrentDB hides them at once and removes them at its own scavenge.

A crash between 3 and 4 loses nothing: the next run re-reads the raw events, the fold skips the
ones the rollup holds (``rolled_through``), and truncates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from uuid import uuid5

import structlog

from uptime_daemon import events
from uptime_daemon.clock import to_iso_micros
from uptime_daemon.config.model import Settings
from uptime_daemon.errors import (
    ConcurrencyConflict,
    EventStoreError,
    StreamNotFound,
    UptimeDaemonError,
)
from uptime_daemon.projector import rollup as rollups
from uptime_daemon.projector.fold import (
    HOUR_SECONDS,
    Inconclusive,
    Observation,
    ProjectionState,
    epoch,
)
from uptime_daemon.projector.runner import observation
from uptime_daemon.status import credibility
from uptime_daemon.store import EventStore, NewEvent, RecordedEvent, StreamState

log = structlog.get_logger(__name__)

LOOK_AHEAD: Final = timedelta(hours=1)
"""Raw events read past the cutoff to find a clean cut: a check that reaches the log later than
this after an older one of the stretch is skipped (the README states the bound)."""
PAGE: Final = 1000
MAX_STRETCH_EVENTS: Final = 20_000
"""Raw events folded into one rollup at most (two weeks at one check a minute): the first run over
a long history writes several rollups instead of one huge event."""


@dataclass(frozen=True, slots=True)
class Compacted:
    """What one run did to one service."""

    service: str
    events: int
    """Raw events the rollup covers (now hidden, removed at the next scavenge)."""
    rollup_bytes: int
    through: datetime | None


@dataclass(frozen=True, slots=True)
class _Item:
    """A raw event as the cut needs it."""

    revision: int
    recorded_at: datetime
    check: Observation | Inconclusive | None
    """``None``: nothing to fold (the stream's creation, a pending check, an undecodable event)."""


def oldest_raw(state: Callable[[], ProjectionState]) -> Callable[[str], datetime | None]:
    """The oldest check of a service the projection may not have seen rolled up yet.

    Its first check, or past the newest rollup, the rollup's last check: older raw checks are gone.
    """

    def of(service: str) -> datetime | None:
        record = state().services.get(service)
        if record is None:
            return None
        return record.rolled_through or record.first_check

    return of


class Compactor:
    """Rolls up and removes aged raw checks, service by service."""

    def __init__(
        self,
        *,
        store: EventStore,
        now: Callable[[], datetime],
        settings: Settings,
        services: Callable[[], Iterable[str]],
        ready: Callable[[], bool],
        oldest_raw: Callable[[str], datetime | None] | None = None,
    ) -> None:
        self._store = store
        self._now = now
        self._services = services
        self._ready = ready
        self._oldest_raw = oldest_raw
        """Service → the oldest check it may still hold raw (``None``: none): a service whose oldest
        is not older than the cutoff is skipped without reading the store (most, most days)."""
        self.rollups_written = 0
        self.events_compacted = 0
        self.reload(settings)

    def reload(self, settings: Settings) -> None:
        """Retention, interval and the services' check policies as configured now."""
        self._default_gap = credibility(settings)
        self.raw_retention_days = settings.store.raw_retention_days
        self.interval_seconds = settings.store.compaction_interval_seconds

    def cutoff(self) -> datetime:
        """Raw events recorded before this are compacted: ``now - raw_retention``, on the hour."""
        moment = self._now() - timedelta(days=self.raw_retention_days)
        return epoch(int(moment.timestamp()) // HOUR_SECONDS * HOUR_SECONDS)

    async def run(self) -> None:
        """Compact every ``interval_seconds`` while retention is on; returns only when cancelled."""
        while True:
            if self.raw_retention_days and self._ready():
                try:
                    await self.compact()
                except EventStoreError as exc:
                    log.warning("compaction_failed", error=str(exc))
            await asyncio.sleep(self.interval_seconds)

    async def compact(self) -> list[Compacted]:
        """One pass over every service; what was compacted."""
        cutoff = self.cutoff()
        done = []
        for service in sorted(self._services()):
            if self._oldest_raw is not None:
                oldest = self._oldest_raw(service)
                if oldest is None or oldest >= cutoff:
                    continue
            try:
                while (found := await self.compact_service(service, cutoff)) is not None:
                    done.append(found)
                    if found.events < MAX_STRETCH_EVENTS:
                        break
            except rollups.RollupDecodeError as exc:  # its raw events stay until it is repaired
                log.error("compaction_skipped", service=service, error=str(exc))  # noqa: TRY400
        if done:
            log.info(
                "compacted",
                services=len({each.service for each in done}),
                rollups=len(done),
                events=sum(each.events for each in done),
                cutoff=to_iso_micros(cutoff),
            )
        return done

    async def compact_service(self, service: str, cutoff: datetime) -> Compacted | None:
        """Roll up one service's raw events recorded before ``cutoff`` (one stretch at most)."""
        previous, expected = await self._last_rollup(service)
        items = await self._raw(service, cutoff)
        cut = _clean_cut(items, cutoff)
        if cut is None:
            return None
        stretch = items[: cut + 1]
        made = rollups.roll_up(
            previous,
            service,
            [item.check for item in stretch if item.check is not None],
            from_revision=stretch[0].revision,
            through_revision=stretch[-1].revision,
        )
        data = rollups.encode(made)
        event = NewEvent(
            id=uuid5(
                events.EVENT_ID_NAMESPACE,
                f"rollup:{service}:{made.from_revision}:{made.through_revision}:{made.rolled_through}",
            ),
            type=rollups.EVENT_TYPE_ROLLUP,
            data=data,
            metadata=events.EVENT_METADATA,
        )
        try:
            await self._store.append(rollups.rollup_stream(service), [event], expected)
        except ConcurrencyConflict:
            log.info("compaction_raced", service=service)  # another daemon rolled it up first
            return None
        await self._store.truncate_before(events.stream_name(service), stretch[-1].revision + 1)
        self.rollups_written += 1
        self.events_compacted += len(stretch)
        return Compacted(service, len(stretch), len(data), made.rolled_through)

    async def _last_rollup(self, service: str) -> tuple[rollups.Rollup | None, int | StreamState]:
        """The service's newest rollup and the revision the next one must follow."""
        try:
            newest = await self._store.read_stream(
                rollups.rollup_stream(service), backwards=True, limit=1
            )
        except StreamNotFound:
            return None, StreamState.NO_STREAM
        if not newest:
            return None, StreamState.NO_STREAM
        return rollups.decode(newest[0].data), newest[0].revision

    async def _raw(self, service: str, cutoff: datetime) -> list[_Item]:
        """The raw events still visible, up to ``MAX_STRETCH_EVENTS`` and the look-ahead past ``cutoff``."""
        items: list[_Item] = []
        horizon = cutoff + LOOK_AHEAD
        start: int | None = None
        while len(items) < MAX_STRETCH_EVENTS + PAGE:
            try:
                page = await self._store.read_stream(
                    events.stream_name(service), limit=PAGE, from_revision=start
                )
            except StreamNotFound:
                return items
            items.extend(self._item(event) for event in page)
            if len(page) < PAGE or page[-1].recorded_at >= horizon:
                break
            start = page[-1].revision + 1
        return items

    def _item(self, event: RecordedEvent) -> _Item:
        check: Observation | Inconclusive | None = None
        try:
            if event.type == events.EVENT_TYPE_STATUS_CHANGED:
                check = observation(events.decode_check(event.data), self._default_gap)
            elif event.type == events.EVENT_TYPE_CHECK_INCONCLUSIVE:
                decoded = events.decode_check_inconclusive(event.data)
                check = Inconclusive(decoded.service, decoded.timestamp)
        except (UptimeDaemonError, ValueError) as exc:
            log.warning(
                "compaction_event_skipped",
                stream=event.stream,
                revision=event.revision,
                error=str(exc),
            )
        return _Item(event.revision, event.recorded_at, check)


def _clean_cut(items: list[_Item], cutoff: datetime) -> int | None:
    """The index of the last event to roll up, or ``None`` when there is nothing to.

    Events recorded before ``cutoff`` (a prefix, at most ``MAX_STRETCH_EVENTS``) are candidates; the
    cut is the last candidate after which every check read is newer than every check before it.
    """
    aged = 0
    while aged < len(items) and aged < MAX_STRETCH_EVENTS and items[aged].recorded_at < cutoff:
        aged += 1
    if not aged:
        return None
    newer_after: list[datetime | None] = [None] * (len(items) + 1)
    for index in range(len(items) - 1, -1, -1):
        check, later = items[index].check, newer_after[index + 1]
        newer_after[index] = (
            later if check is None else check.at if later is None else min(later, check.at)
        )
    best, newest_before = None, None
    for index in range(aged):
        check = items[index].check
        if check is not None:
            newest_before = check.at if newest_before is None else max(newest_before, check.at)
        after = newer_after[index + 1]
        if newest_before is None or after is None or newest_before < after:
            best = index
    return best
