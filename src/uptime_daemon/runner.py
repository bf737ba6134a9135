"""Run one check end to end: probe under the caller's deadline → status machine → event → append.

This is the only place that turns a probe outcome into a stored fact. It owns the per-probe deadline,
the per-service status-machine state and the one log line per probe. Checks of one service are
serialised (a manual ``POST /uptime/check`` never interleaves with a scheduled run); checks of
different services run concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

import orjson
import structlog

from uptime_daemon import events
from uptime_daemon.clock import Clock
from uptime_daemon.config.model import CheckPolicy, Service, Settings
from uptime_daemon.errors import (
    ConcurrencyConflict,
    EventStoreError,
    EventStoreUnavailable,
    StreamNotFound,
)
from uptime_daemon.probes.base import ProbeContext, ProbeFn, Prober
from uptime_daemon.results import CheckKind, FailureReason, ProbeResult
from uptime_daemon.status import Outcome, ServiceState, Status, step
from uptime_daemon.store import EventStore, NewEvent, StreamState
from uptime_daemon.store.spool import Appender, Delivered

log = structlog.get_logger(__name__)

ServiceT = TypeVar("ServiceT", bound=CheckPolicy)


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What one check produced: the probe result, the status decision and where the event went."""

    service: str
    kind: CheckKind
    scheduled_at: datetime
    result: ProbeResult
    outcome: Outcome
    event: NewEvent
    """The ``ServiceStatusChanged`` event as appended."""
    position: int | None
    """Commit position of the stored event; ``None`` when spooled, dropped or refused."""
    store_error: str | None = None
    spooled: bool = False
    """The store was unreachable: the event waits in the outage spool and will be appended in order."""

    @property
    def payload(self) -> Mapping[str, Any]:
        """The event data exactly as stored (parsed on request: the scheduled path never needs it)."""
        data: dict[str, Any] = orjson.loads(self.event.data)
        return data


async def probe_with_deadline(
    probe: ProbeFn[ServiceT], service: ServiceT, context: ProbeContext, clock: Clock
) -> ProbeResult:
    """Run a probe under the service's deadline; running out of time is a result, not an exception."""
    started = clock.monotonic()
    try:
        async with asyncio.timeout(service.timeout_seconds):
            return await probe(service, context)
    except TimeoutError:
        return ProbeResult(
            ok=False,
            duration_seconds=clock.monotonic() - started,
            failure=FailureReason.TIMEOUT,
            detail=f"no answer within {service.timeout_seconds:g} s",
        )


_ONE_MS: Final = timedelta(milliseconds=1)
RESTORE_LOOKBACK: Final = 100
"""Events read back to find this location's last verdict of a service."""


class UnknownService(LookupError):
    """A check was requested for a service that is not configured (for this daemon's location)."""


class CheckRunner:
    """Holds per-service state and runs checks; the scheduler and the API both call ``run_check``."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: EventStore,
        appender: Appender,
        probers: Mapping[CheckKind, Prober[Any]],
        context: ProbeContext,
        clock: Clock,
        on_check: Callable[[CheckReport], None] | None = None,
    ) -> None:
        """Wire the runner; nothing is read or written until ``prepare`` or the first check."""
        self._on_check = on_check
        self._settings = settings
        self._services = settings.probed_here()
        self._store = store
        self._appender = appender
        self._probers = probers
        self._context = context
        self._clock = clock
        self._states: dict[str, ServiceState] = {}
        self._last_slots: dict[str, datetime] = {}
        """Per service, the newest slot this location stored a check of (as far as we know)."""
        self._locks: dict[str, asyncio.Lock] = {}
        self._prepared: set[str] = set()

    @property
    def services(self) -> Mapping[str, Service]:
        """The services this daemon probes (those listed for its location), by name."""
        return self._services

    def reload(self, settings: Settings) -> None:
        """Adopt a new configuration; state of services that remain is kept."""
        self._settings = settings
        self._services = settings.probed_here()
        for gone in set(self._states) - set(self._services):
            self._states.pop(gone, None)
            self._prepared.discard(gone)

    def forget(self, name: str) -> None:
        """Drop ``name``'s state: another daemon probes it now.

        If it comes back, its status is restored from the log, where the other owner left it.
        """
        self._states.pop(name, None)
        self._last_slots.pop(name, None)
        self._prepared.discard(name)

    async def prepare(self, name: str) -> None:
        """Restore the service's status from its last stored event, or create its stream once.

        One read when the stream exists (a restart, a takeover of thousands of services); the
        ``StreamCreated`` append only when it does not. Failures are logged and retried before the
        next check: a store that is down at start-up must not stop probing.
        """
        if name in self._prepared:
            return
        service = self._services[name]
        stream = events.stream_name(name)
        try:
            state, last_slot, exists = await self._restore_state(stream)
        except EventStoreUnavailable:
            state, last_slot, exists = ServiceState.initial(), None, False  # no history to resume
        if not exists:
            created = events.stream_created(name, self._clock.now(), service.description)
            try:
                delivery = await self._appender.append(stream, [created], StreamState.NO_STREAM)
                if delivery.delivered is Delivered.STORED:
                    log.info("stream_created", stream=stream)
            except ConcurrencyConflict:
                pass  # present already: another run or another daemon created it
        self._states[name] = state
        if last_slot is not None:
            self._last_slots[name] = last_slot
        self._prepared.add(name)

    async def _restore_state(self, stream: str) -> tuple[ServiceState, datetime | None, bool]:
        """This location's last verdict in the stream, its slot, and whether the stream exists.

        Other locations write into the stream too. Looks back at most ``RESTORE_LOOKBACK`` events:
        a location silent for longer starts afresh.
        """
        try:
            newest = await self._store.read_stream(stream, backwards=True, limit=RESTORE_LOOKBACK)
        except StreamNotFound:
            return ServiceState.initial(), None, False
        for event in newest:
            if event.type != events.EVENT_TYPE_STATUS_CHANGED:
                continue
            decoded = events.decode_status_changed(event.data)
            if decoded.location != self._settings.location:
                continue
            since = decoded.timestamp - timedelta(seconds=decoded.duration_seconds)
            return ServiceState.restored(decoded.status, since), decoded.scheduled_at, True
        return ServiceState.initial(), None, bool(newest)

    async def run_slot(self, name: str, slot: datetime) -> CheckReport | None:
        """The scheduler's check of ``slot``; ``None`` (no probe) when already stored.

        This location may have stored a check of that slot or a later one already: the first run
        after a takeover, say, whose slot the previous owner did before it died. The next slot is
        then the next check.
        """
        if name in self._services:
            await self.try_prepare(name)
        done = self._last_slots.get(name)
        if done is not None and slot <= done:
            log.debug("check_slot_already_stored", service=name, slot=slot.isoformat())
            return None
        return await self.run_check(name, slot)

    async def try_prepare(self, name: str) -> str | None:
        """``prepare``, logging a store failure instead of raising it; the failure's text, if any.

        The next check tries again: a store that is down must not stop probing.
        """
        try:
            await self.prepare(name)
        except EventStoreError as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("stream_prepare_failed", service=name, error=error)
            return error
        return None

    async def run_check(self, name: str, scheduled_at: datetime | None = None) -> CheckReport:
        """Probe ``name`` once, decide its status, append the event; never raises for a target."""
        service = self._services.get(name)
        if service is None:
            raise UnknownService(name)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            with structlog.contextvars.bound_contextvars(service=name, kind=service.kind):
                return await self._run_locked(name, service, scheduled_at or self._clock.now())

    async def _run_locked(self, name: str, service: Service, scheduled_at: datetime) -> CheckReport:
        store_error = await self.try_prepare(name)
        result = await self._probe(service)
        completed_at = self._clock.now()
        state = self._states.get(name, ServiceState.initial())
        outcome = step(
            state,
            ok=result.ok,
            response_seconds=result.duration_seconds,
            at=completed_at,
            policy=service,
            impaired=result.degraded is not None,
        )
        self._states[name] = outcome.state
        placement = self._settings.placement(name)
        event = events.status_changed(
            service=name,
            instance=self._settings.instance,
            location=self._settings.location,
            kind=service.kind,
            scheduled_at=scheduled_at,
            completed_at=completed_at,
            outcome=outcome,
            probe=result,
            interval_seconds=service.interval_seconds,
            timeout_seconds=service.timeout_seconds,
            quorum=placement.quorum,
            locations=placement.locations,
        )
        position: int | None = None
        spooled = False
        try:
            delivery = await self._appender.append(events.stream_name(name), [event])
            position, spooled = delivery.position, delivery.delivered is Delivered.SPOOLED
            if delivery.delivered is Delivered.DROPPED:
                store_error = "store unreachable and the outage spool full: event dropped"
            elif scheduled_at > self._last_slots.get(name, scheduled_at - _ONE_MS):
                self._last_slots[name] = scheduled_at
        except EventStoreError as exc:
            store_error = f"{type(exc).__name__}: {exc}"
            log.error("event_append_failed", error=store_error)  # noqa: TRY400 - no traceback for an outage
        self._log(result, outcome)
        report = CheckReport(
            service=name,
            kind=service.kind,
            scheduled_at=scheduled_at,
            result=result,
            outcome=outcome,
            event=event,
            position=position,
            store_error=store_error,
            spooled=spooled,
        )
        if self._on_check is not None:
            self._on_check(report)
        return report

    async def _probe(self, service: Service) -> ProbeResult:
        return await probe_with_deadline(
            self._probers[service.kind].probe, service, self._context, self._clock
        )

    @staticmethod
    def _log(result: ProbeResult, outcome: Outcome) -> None:
        fields: dict[str, Any] = {
            "ok": result.ok,
            "reason": result.failure,
            "detail": result.detail,
            "duration_seconds": round(result.duration_seconds, 6),
            "status": outcome.status,
            "previous_status": outcome.previous_status,
            "changed": outcome.changed,
            "grade": outcome.grade,
        }
        if result.http_status is not None:
            fields["http_status"] = result.http_status
        if result.ok:
            log.info("probe_completed", **fields)
        else:
            log.warning("probe_completed", **fields)
        if outcome.changed:
            # A service's first status is news only when it is down: 10,000 services starting
            # up are not 10,000 warnings.
            first_and_fine = outcome.previous_status is None and outcome.status is not Status.DOWN
            (log.info if first_and_fine else log.warning)("service_status_changed", **fields)
