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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import structlog

from uptime_daemon import events, maintenance
from uptime_daemon.clock import Clock
from uptime_daemon.config.model import Settings
from uptime_daemon.errors import EventStoreError, UptimeDaemonError
from uptime_daemon.projector import snapshot as snapshots
from uptime_daemon.projector.fold import (
    Observation,
    ProjectionState,
    ServiceProjection,
    apply,
)
from uptime_daemon.status import Status, credibility
from uptime_daemon.store import UPTIME_STREAM_PREFIX, CaughtUp, EventStore, RecordedEvent

FOLLOWED: Final = (UPTIME_STREAM_PREFIX, maintenance.STREAM)
"""The streams the projection folds: every service's checks, and the maintenance windows."""

log = structlog.get_logger(__name__)

RESUBSCRIBE_BACKOFF_SECONDS: Final = (0.1, 0.5, 1.0, 2.0, 5.0)


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
    """The failure reason (``None``: the probe succeeded)."""
    detail: str
    location: str


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
        self.state = ProjectionState()
        if retention_seconds is not None:
            self.state.retention_seconds = retention_seconds
        self.position: int | None = None
        self.caught_up = asyncio.Event()
        self.last_event_recorded_at: datetime | None = None
        self.events_applied = 0
        self.decode_failures = 0
        self._listeners: set[Callable[[StatusChange], None]] = set()
        self.last_probe: dict[str, LastProbe] = {}
        """Service → what its newest folded check saw (for the status page; not part of the
        projection's state: it refills from the next checks after a restart)."""
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._snapshot_position: int | None = None
        self._last_snapshot_monotonic = clock.monotonic()

    def reload(self, settings: Settings) -> None:
        """Events that do not record their policy are judged by the reloaded services' from now on."""
        self._default_gap = credibility(settings)

    # --- lifecycle --------------------------------------------------------------------------

    def load_snapshot(self) -> None:
        """Start from the snapshot on disk when there is a usable one."""
        if self._snapshot_path is None:
            return
        try:
            stored = snapshots.read(self._snapshot_path)
        except (snapshots.SnapshotError, OSError) as exc:
            log.warning("snapshot_ignored", path=str(self._snapshot_path), error=str(exc))
            return
        if stored is None:
            return
        retention = self.state.retention_seconds
        self.state = stored.state
        self.state.retention_seconds = retention
        self.position = stored.position
        self._snapshot_position = stored.position
        log.info("snapshot_loaded", position=stored.position, services=len(stored.state.services))

    def save_snapshot(self) -> None:
        """Write the state at the current position (no-op when nothing changed since the last one)."""
        if self._snapshot_path is None or self.position == self._snapshot_position:
            return
        data = snapshots.encode(snapshots.Snapshot(self.position, self.state))
        try:
            snapshots.write_atomically(self._snapshot_path, data)
        except OSError as exc:
            log.error("snapshot_write_failed", path=str(self._snapshot_path), error=str(exc))  # noqa: TRY400
            return
        self._snapshot_position = self.position
        self._last_snapshot_monotonic = self._clock.monotonic()
        log.debug("snapshot_saved", position=self.position, bytes=len(data))

    async def run(self) -> None:
        """Follow the store forever; returns only when cancelled."""
        failures = 0
        while True:
            try:
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
                    self._maybe_snapshot()
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

    async def catch_up(self, page_size: int = 1000) -> int:
        """Fold everything stored after the checkpoint, without subscribing; return events folded.

        The offline path used by ``uptime-daemon replay`` and ``summary``.
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

    def _maybe_snapshot(self) -> None:
        if self._clock.monotonic() - self._last_snapshot_monotonic >= self._snapshot_interval:
            self.save_snapshot()

    # --- folding ----------------------------------------------------------------------------

    def handle(self, event: RecordedEvent) -> None:
        """Fold one recorded event and advance the checkpoint."""
        try:
            if event.type == events.EVENT_TYPE_STATUS_CHANGED:
                self._apply_status(event)
            elif event.type == events.EVENT_TYPE_CHECK_PENDING:
                self._apply_pending(event)
            elif event.type == events.EVENT_TYPE_STREAM_CREATED:
                name = events.service_from_stream(event.stream)
                if name is not None and name not in self.state.services:
                    self.state.services[name] = ServiceProjection(name)
            elif event.stream == maintenance.STREAM and event.type in maintenance.EVENT_TYPES:
                self.state.maintenance.apply(event.type, event.data)
        except (UptimeDaemonError, ValueError) as exc:
            self.decode_failures += 1
            log.error(  # noqa: TRY400 - the event, not a traceback, is what the operator needs
                "event_decode_failed",
                stream=event.stream,
                revision=event.revision,
                position=event.position,
                error=str(exc),
            )
        self.position = event.position
        self.last_event_recorded_at = event.recorded_at
        self.events_applied += 1
        if self._waiters:
            self._wake(event.position)

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
        pending = events.decode_check_pending(event.data)
        if pending.service not in self.state.services:
            self.state.services[pending.service] = ServiceProjection(pending.service)
        newest = self.last_probe.get(pending.service)
        if newest is None or newest.at <= pending.timestamp:
            self.last_probe[pending.service] = LastProbe(
                pending.timestamp,
                None if pending.reason is None else pending.reason.value,
                pending.detail[:200],
                pending.location,
            )

    def _apply_status(self, event: RecordedEvent) -> None:
        decoded = events.decode_status_changed(event.data)
        newest = self.last_probe.get(decoded.service)
        if newest is None or newest.at <= decoded.timestamp:
            probe = decoded.payload.get("probe")
            detail = probe.get("detail") if isinstance(probe, dict) else None
            self.last_probe[decoded.service] = LastProbe(
                decoded.timestamp,
                None if decoded.reason is None else decoded.reason.value,
                str(detail)[:200] if detail else "",
                decoded.location,
            )
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
        if not self._listeners:  # a replay, or no live client: nothing to announce
            apply(self.state, observation)
            return
        known = self.state.services.get(decoded.service)
        before = None if known is None else known.status
        apply(self.state, observation)
        service = self.state.services[decoded.service]
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
