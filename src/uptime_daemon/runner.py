"""Run one check end to end: probe under the caller's deadline → status machine → event → append.

This is the only place that turns a probe outcome into a stored fact. It owns the per-probe deadline,
the per-service status-machine state and the one log line per probe. A probe whose deadline lapsed
while the daemon's own loop was late (``loop_lag.overrun_explained``) is no outcome at all: the
status machine is not stepped and the check is stored as ``ServiceCheckInconclusive``. Checks of one service are
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
from uptime_daemon.loop_lag import LagSource, overrun_explained
from uptime_daemon.probes.base import ProbeContext, ProbeFn, Prober
from uptime_daemon.results import CheckKind, FailureReason, InconclusiveReason, ProbeResult
from uptime_daemon.status import (
    Grade,
    Outcome,
    PastCheck,
    ServiceState,
    Status,
    credible_seconds,
    step,
)
from uptime_daemon.store import EventStore, NewEvent, RecordedEvent, StreamState
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
    """The ``ServiceStatusChanged`` (or ``ServiceCheckPending``, ``ServiceCheckInconclusive``) event
    as appended."""
    position: int | None
    """Commit position of the stored event; ``None`` when spooled, dropped or refused."""
    store_error: str | None = None
    spooled: bool = False
    """The store was unreachable: the event waits in the outage spool and will be appended in order."""
    slot_wait_seconds: float = 0.0
    """How long the probe waited for a slot of its host (``per_host_concurrency``) before it began;
    not part of ``result.duration_seconds`` nor of its deadline."""
    lag_seconds: float = 0.0
    """How late the daemon's own loop ran while the probe ran."""
    inconclusive: InconclusiveReason | None = None
    """Set when the check concluded nothing: ``outcome`` then only repeats the unchanged state."""

    @property
    def event_type(self) -> str:
        """The stored event's type: ``ServiceStatusChanged``, or one with no verdict.

        ``ServiceCheckPending`` (no verdict yet) or ``ServiceCheckInconclusive`` (no outcome).
        """
        return self.event.type

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
"""Events read back to find this location's last verdict of a service and the streak before it."""


@dataclass(frozen=True, slots=True)
class _Stored:
    """One stored check, as resuming the status machine reads it."""

    location: str
    slot: datetime
    ok: bool
    at: datetime
    gap: float | None
    status: Status | None
    """``None``: a pending check (no verdict yet)."""
    since: datetime | None

    @classmethod
    def of(cls, event: RecordedEvent) -> _Stored | None:
        """The check an event records; ``None`` for events that record none.

        A ``ServiceCheckInconclusive`` records none: it neither continues nor breaks a streak.
        """
        if event.type == events.EVENT_TYPE_STATUS_CHANGED:
            decoded = events.decode_status_changed(event.data)
            since = decoded.timestamp - timedelta(seconds=decoded.duration_seconds)
            return cls(
                decoded.location,
                decoded.scheduled_at,
                decoded.probe_ok,
                decoded.timestamp,
                decoded.gap_seconds,
                decoded.status,
                since,
            )
        if event.type == events.EVENT_TYPE_CHECK_PENDING:
            pending = events.decode_check_pending(event.data)
            return cls(
                pending.location,
                pending.scheduled_at,
                False,  # noqa: FBT003 - a pending check is a failed one
                pending.timestamp,
                pending.gap_seconds,
                None,
                None,
            )
        return None


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
        lag: LagSource | None = None,
    ) -> None:
        """Wire the runner; nothing is read or written until ``prepare`` or the first check.

        ``lag``: the loop's lateness (``loop_lag.LoopLag``); without it every lapsed deadline is
        the target's.
        """
        self._on_check = on_check
        self._lag = lag
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
        self._host_slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        """Per ``(host:port, limit)``: a new limit after a reload starts fresh semaphores."""

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
            state, last_slot, exists = await self._restore_state(stream, service)
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

    async def _restore_state(
        self, stream: str, policy: CheckPolicy
    ) -> tuple[ServiceState, datetime | None, bool]:
        """This location's state in the stream, its last slot, and whether the stream exists.

        One backwards read of at most ``RESTORE_LOOKBACK`` events. Other locations write into the
        stream too, so only this location's checks count (whichever daemon of the location stored
        them: a takeover continues the previous owner's machine); a check stored twice counts
        once. The newest gives the status and its start; it and the ones before it, up to the
        most the policy can need, give the debouncing streak (``ServiceState.restored``). A
        location silent for longer than the lookback starts afresh.
        """
        try:
            newest = await self._store.read_stream(stream, backwards=True, limit=RESTORE_LOOKBACK)
        except StreamNotFound:
            return ServiceState.initial(), None, False
        wanted = max(policy.failures_before_down, policy.successes_before_up)
        default_credible = credible_seconds(policy.interval_seconds, policy.timeout_seconds)
        found: list[_Stored] = []
        slots: set[datetime] = set()
        for event in newest:
            try:
                seen = _Stored.of(event)
            except events.EventDecodeError:
                if found:
                    break  # an unreadable older check ends the streak, not the restore
                raise
            if seen is None or seen.location != self._settings.location or seen.slot in slots:
                continue
            if found and seen.ok != found[0].ok:
                break  # the outcome flipped: the streak began after this check
            slots.add(seen.slot)
            found.append(seen)
            if len(found) >= wanted:
                break
        if not found:
            return ServiceState.initial(), None, bool(newest)
        last = found[0]
        recent = [
            PastCheck(
                ok=check.ok,
                at=check.at,
                credible_seconds=default_credible if check.gap is None else check.gap,
            )
            for check in found
        ]
        state = ServiceState.restored(last.status, last.since, recent, policy=policy)
        return state, last.slot, True

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
            return await self._run_locked(name, service, scheduled_at or self._clock.now())

    async def _run_locked(self, name: str, service: Service, scheduled_at: datetime) -> CheckReport:
        store_error = await self.try_prepare(name)
        result, waited, lag = await self._probe(service)
        completed_at = self._clock.now()
        state = self._states.get(name, ServiceState.initial())
        inconclusive: InconclusiveReason | None = None
        if result.failure is FailureReason.TIMEOUT and overrun_explained(
            timeout_seconds=service.timeout_seconds, lag_seconds=lag
        ):
            # The deadline lapsed while we were late: no outcome, the machine is not stepped.
            inconclusive = InconclusiveReason.DAEMON_OVERLOADED
            outcome = _unchanged(state, completed_at)
            event = self._verdict(
                name=name,
                service=service,
                scheduled_at=scheduled_at,
                completed_at=completed_at,
                outcome=outcome,
                result=result,
                inconclusive=(inconclusive, lag),
            )
        else:
            outcome = step(
                state,
                ok=result.ok,
                response_seconds=result.duration_seconds,
                at=completed_at,
                policy=service,
                impaired=result.degraded is not None,
            )
            self._states[name] = outcome.state
            event = self._verdict(
                name=name,
                service=service,
                scheduled_at=scheduled_at,
                completed_at=completed_at,
                outcome=outcome,
                result=result,
            )
        position, spooled, store_error = await self._append(
            name, service.kind, event, scheduled_at, store_error
        )
        self._log(name, service.kind, result, outcome, lag_seconds=lag, inconclusive=inconclusive)
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
            slot_wait_seconds=waited,
            lag_seconds=lag,
            inconclusive=inconclusive,
        )
        if self._on_check is not None:
            self._on_check(report)
        return report

    def _verdict(
        self,
        *,
        name: str,
        service: Service,
        scheduled_at: datetime,
        completed_at: datetime,
        outcome: Outcome,
        result: ProbeResult,
        inconclusive: tuple[InconclusiveReason, float] | None = None,
    ) -> NewEvent:
        """The check's event: a verdict, a pending check or (``inconclusive``) no outcome.

        ``ServiceStatusChanged``, ``ServiceCheckPending`` (no verdict yet), or with
        ``inconclusive`` (reason, lag seconds) ``ServiceCheckInconclusive``.
        """
        placement = self._settings.placement(name)
        return events.status_changed(
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
            failures_before_down=service.failures_before_down,
            inconclusive=inconclusive,
        )

    async def _append(
        self,
        name: str,
        kind: CheckKind,
        event: NewEvent,
        scheduled_at: datetime,
        store_error: str | None,
    ) -> tuple[int | None, bool, str | None]:
        """Append one check's event; its position, whether it was spooled, and any store error."""
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
            # No traceback for an outage.
            log.error("event_append_failed", service=name, kind=kind, error=store_error)  # noqa: TRY400
        return position, spooled, store_error

    async def _probe(self, service: Service) -> tuple[ProbeResult, float, float]:
        """The probe's result, its wait for a slot of its host, and the loop's lateness meanwhile.

        The wait is in seconds, before the probe began. The deadline starts with the probe, after the wait: a host busy with this daemon's own
        other probes is not slow, and must never read as a timeout.
        """
        host = service.host_key
        if host is None:
            result, lag = await self._timed_probe(service)
            return result, 0.0, lag
        limit = self._settings.scheduler.per_host_concurrency
        slots = self._host_slots.get((host, limit))
        if slots is None:
            slots = self._host_slots[(host, limit)] = asyncio.Semaphore(limit)
        queued = self._clock.monotonic()
        async with slots:
            waited = self._clock.monotonic() - queued
            result, lag = await self._timed_probe(service)
            return result, waited, lag

    async def _timed_probe(self, service: Service) -> tuple[ProbeResult, float]:
        """The probe under its deadline, and how late the loop ran from its start to its end."""
        probe = self._probers[service.kind].probe
        if self._lag is None:
            return await probe_with_deadline(probe, service, self._context, self._clock), 0.0
        before = self._lag.cumulative_seconds()
        result = await probe_with_deadline(probe, service, self._context, self._clock)
        return result, self._lag.cumulative_seconds() - before

    @staticmethod
    def _log(
        name: str,
        kind: CheckKind,
        result: ProbeResult,
        outcome: Outcome,
        *,
        lag_seconds: float = 0.0,
        inconclusive: InconclusiveReason | None = None,
    ) -> None:
        if inconclusive is not None:
            log.warning(
                "probe_inconclusive",
                service=name,
                kind=kind,
                reason=inconclusive,
                probe_reason=result.failure,
                detail=result.detail,
                duration_seconds=round(result.duration_seconds, 6),
                lag_seconds=round(lag_seconds, 6),
                status=outcome.status,
            )
            return
        fields: dict[str, Any] = {
            "service": name,
            "kind": kind,
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


def _unchanged(state: ServiceState, at: datetime) -> Outcome:
    """What an inconclusive check reports as its outcome: the state as it was, no transition."""
    since = state.since
    streak = 0.0 if since is None else max(0.0, (at - since).total_seconds())
    return Outcome(
        status=state.status,
        previous_status=state.status,
        changed=False,
        streak_seconds=streak,
        grade=Grade.FAILED,
        state=state,
    )
