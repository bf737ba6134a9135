"""Follow service-level transitions in the projection and deliver each one once, whoever sends it.

Every daemon folds the same log, so every daemon sees the same transitions — the quorum verdict's
status changes, ``unknown`` skipped — at the same instants of each service's timeline. For each
transition and each channel that wants it the notifier plans a job; when it is due it decides,
from the log alone, whether to send:

* ``down``/``degraded`` (an outage begins): not when the outage ended before ``min_down_seconds``;
  suppressed when a maintenance window covers the service at that instant, or a parent
  (``depends_on``) was last seen down. Reminders follow every ``repeat_every_seconds`` while the
  outage lasts (each one checked the same way).
* ``up`` (it ended): only when this channel was told of the outage (a claim or delivery of one of
  its notifications is in the log): every page gets its resolution, and no resolution comes alone.
  A parent or a maintenance window never holds a resolution back.

Then it claims the notification (``claims.py``): the one daemon whose append wins sends; the
others watch the claim and take it over if its holder goes silent past the lease. Failed attempts
are retried with backoff for ``retry_for_seconds``. Nothing here blocks the event loop for long:
one pass over the services is attribute reads, and only services whose status moved are walked.
A pass is made only when the projection says a status may have moved (``transitions``, counted by
the projector), and at least every ``FULL_SCAN_SECONDS`` whatever it says: at 10,000 quiet
services that is no pass most seconds, where a pass every second cost ~1 % of a core.

Its own checkpoint — per service, the point of its timeline up to which every transition is
settled, and the status before it — is saved beside the projection snapshot, so a restart resumes
there. A transition already ``max_age_seconds`` old when first seen is not sent (a daemon that
starts on old history pages nobody); one folded late after a store outage still is.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import orjson
import structlog

from uptime_daemon import events
from uptime_daemon.alerting.claims import NOT_CLAIMED, Claims, Ledger, Outcome, stream_name
from uptime_daemon.alerting.claims import idempotency_key as key_of
from uptime_daemon.alerting.message import Delivery, Message, MessageKind, Opened
from uptime_daemon.clock import Clock, parse_iso, to_iso_millis
from uptime_daemon.config.live import LiveSettings
from uptime_daemon.config.model import NotificationChannel, Settings
from uptime_daemon.errors import EventStoreError, UptimeDaemonError
from uptime_daemon.projector.fold import ProjectionState, ServiceProjection, last_verdict
from uptime_daemon.projector.snapshot import write_atomically
from uptime_daemon.status import Status
from uptime_daemon.store import EventStore, StreamState

log = structlog.get_logger(__name__)

SCAN_SECONDS: Final = 1.0
FULL_SCAN_SECONDS: Final = 30.0
"""However still the projection's ``transitions`` count, the services are passed over this often."""
SCAN_SLICE: Final = 500
"""Services passed over between two yields to the event loop: a pass over 10,000 held the loop
for ~50 ms in one piece (``bench/scale.py``: checks due meanwhile started late); 500 take ~2.5 ms."""
RETRY_BACKOFF_SECONDS: Final = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0)
STORE_RETRY_SECONDS: Final = 2.0
UNDECIDED_RETRY_SECONDS: Final = 5.0
BUG_RETRY_SECONDS: Final = 60.0
CHECKPOINT_EVERY_SECONDS: Final = 5.0
_OPENERS: Final = (Status.DOWN, Status.DEGRADED)

Deliver = Callable[[Message, NotificationChannel], Awaitable[Delivery]]


@dataclass(frozen=True, slots=True)
class Transition:
    """The service's status changed to ``status`` at ``at`` (its timeline's instant)."""

    service: str
    status: Status
    previous: Status | None
    at: datetime


@dataclass(slots=True)
class Cursor:
    """How far a service's transitions are planned, and its status there."""

    at: datetime | None
    status: Status | None
    marker: tuple[Status | None, datetime | None] = (None, None)
    """``(status, since)`` when last walked: unchanged means nothing new to walk."""


@dataclass(frozen=True, slots=True)
class Job:
    """One notification to decide or deliver (or a claim to watch)."""

    service: str
    kind: MessageKind
    at: datetime
    previous: Status | None
    channel: str
    reminder: int = 0
    seen: Ledger | None = None
    """The notification's stream as last read: set when watching another daemon's claim, or
    retrying our own after a failed attempt."""

    @property
    def stream(self) -> str:
        """The notification's stream."""
        return stream_name(self.service, self.at, self.kind, self.channel, self.reminder)


@dataclass(order=True)
class _Due:
    when: datetime
    order: int
    job: Job = field(compare=False)


class Notifier:
    """Plans, decides, claims and delivers notifications (see the module docstring)."""

    def __init__(
        self,
        *,
        settings: LiveSettings,
        store: EventStore,
        state: Callable[[], ProjectionState],
        caught_up: asyncio.Event,
        clock: Clock,
        deliver: Deliver,
        base_url: str,
        checkpoint_path: Path | None,
        on_settled: Callable[[str, str], None] = lambda _channel, _result: None,
        transitions: Callable[[], int] | None = None,
    ) -> None:
        """Nothing runs before ``run``.

        ``transitions``: a count that moves whenever a service's status may have changed
        (``Projector.transitions``); without it every step scans.
        """
        self._live = settings
        self._store = store
        self._state = state
        self._caught_up = caught_up
        self._clock = clock
        self._deliver = deliver
        self._base_url = base_url.rstrip("/")
        self._checkpoint_path = checkpoint_path
        self._on_settled = on_settled
        self._claims = Claims(
            store, settings.current.instance, settings.current.alerting.lease_seconds
        )
        self._cursors: dict[str, Cursor] = {}
        self._queue: list[_Due] = []
        self._order = itertools.count()
        self._open: dict[str, set[str]] = {}
        """Service → streams of its jobs not yet settled (they hold its checkpoint back)."""
        self._inflight: list[Job] = []
        """Jobs being worked now: a stop that cancels them must not checkpoint past them."""
        self._wake = asyncio.Event()
        self._transitions = transitions
        self._scanned: tuple[ProjectionState, int] | None = None
        """The state and ``transitions`` count of the last pass."""
        self._full_scan_at = 0.0
        self._checkpoint_dirty = False
        self.settled = 0
        """Notifications this daemon settled (a figure for tests and logs)."""

    # --- lifecycle ------------------------------------------------------------------------------

    def reload(self, _settings: Settings) -> None:
        """Channels and rules are read from the live settings at each decision: nothing to do."""

    async def run(self, scan_seconds: float = SCAN_SECONDS) -> None:
        """Forever: once caught up, scan for transitions and work the due jobs."""
        await self._caught_up.wait()
        self.resume()
        last_saved = self._clock.monotonic()
        while True:
            await self.step()
            if (
                self._checkpoint_dirty
                and self._clock.monotonic() - last_saved >= CHECKPOINT_EVERY_SECONDS
            ):
                self.save_checkpoint()
                last_saved = self._clock.monotonic()
            self._wake.clear()
            timeout = scan_seconds
            if self._queue:
                until = (self._queue[0].when - self._clock.now()).total_seconds()
                timeout = max(0.0, min(timeout, until))
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def poke(self) -> None:
        """Scan now (a transition was folded)."""
        self._wake.set()

    # --- checkpoint -----------------------------------------------------------------------------

    async def step(self) -> None:
        """One round: plan what is new (if anything may be), work what is due (``run`` repeats it)."""
        if self._scan_due():
            await self.scan()
        await self._work_due()

    def _scan_due(self) -> bool:
        """Whether a status may have moved since the last pass, or a full pass is due anyway."""
        if self._transitions is None:
            return True
        seen = (self._state(), self._transitions())
        now = self._clock.monotonic()
        if (
            self._scanned is not None
            and self._scanned[0] is seen[0]
            and self._scanned[1] == seen[1]
            and now < self._full_scan_at
        ):
            return False
        self._scanned, self._full_scan_at = seen, now + FULL_SCAN_SECONDS
        return True

    @property
    def pending(self) -> int:
        """Jobs planned and not yet done (decisions, retries, watched claims, reminders)."""
        return len(self._queue)

    def resume(self) -> None:
        """Resume from the checkpoint; without one, start from the present (history pages nobody)."""
        saved = self._read_checkpoint()
        state = self._state()
        for name, service in state.services.items():
            if name in saved:
                self._cursors[name] = saved[name]
            else:
                self._cursors[name] = Cursor(
                    at=service.last_check,
                    status=service.status,
                    marker=(service.status, service.since),
                )
        self._resume_reminders(state)
        log.info("notifier_started", services=len(self._cursors), resumed=len(saved))

    def _resume_reminders(self, state: ProjectionState) -> None:
        """Outages going on at start-up get their next reminders (the checkpoint is past them)."""
        now = self._clock.now()
        for name, channel in self._live.current.notifications.items():
            repeat = channel.repeat_every_seconds
            if repeat is None:
                continue
            for service in state.services.values():
                if service.status not in _OPENERS or service.since is None:
                    continue
                for opener in episode_openers(service, now, including=True):
                    kind = _kind_of(opener.status)
                    if not channel.wants(service.name, kind):
                        continue
                    elapsed = (now - opener.at).total_seconds() - channel.min_down_seconds
                    if elapsed < 0:
                        continue  # its first notification is still to come: the scan plans it
                    job = Job(
                        service.name,
                        kind,
                        opener.at,
                        opener.previous,
                        name,
                        int(elapsed // repeat) + 1,
                    )
                    self._push(job, self._due(job, channel))

    def _read_checkpoint(self) -> dict[str, Cursor]:
        if self._checkpoint_path is None:
            return {}
        try:
            raw = orjson.loads(self._checkpoint_path.read_bytes())
            return {
                name: Cursor(
                    at=None if at is None else parse_iso(at),
                    status=None if status is None else Status(status),
                )
                for name, (at, status) in raw["services"].items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning(
                "notifier_checkpoint_ignored", path=str(self._checkpoint_path), error=str(exc)
            )
            return {}

    def save_checkpoint(self) -> None:
        """Write each service's settled point (atomically); unsettled jobs hold it back."""
        if self._checkpoint_path is None:
            return
        services = {}
        for name, cursor in self._cursors.items():
            at, status = self._settled_point(name, cursor)
            services[name] = [
                None if at is None else to_iso_millis(at),
                None if status is None else status.value,
            ]
        data = orjson.dumps({"format": 1, "services": services})
        path = self._checkpoint_path
        try:
            write_atomically(path, data)
        except OSError as exc:
            log.error("notifier_checkpoint_failed", path=str(path), error=str(exc))  # noqa: TRY400
            return
        self._checkpoint_dirty = False

    def _settled_point(self, name: str, cursor: Cursor) -> tuple[datetime | None, Status | None]:
        """The cursor, or just before the oldest unsettled job of the service."""
        pending = (
            [due.job for due in self._queue if due.job.service == name]
            + [job for job in self._inflight if job.service == name]
            if self._open.get(name)
            else []
        )
        if not pending:
            return cursor.at, cursor.status
        oldest = min(pending, key=lambda job: job.at)
        return oldest.at - timedelta(milliseconds=1), oldest.previous

    # --- planning -------------------------------------------------------------------------------

    async def scan(self) -> int:
        """Plan a job for every new transition of every service; return how many transitions.

        The event loop is given back every ``SCAN_SLICE`` services. Each service is passed over
        once, as it is when its slice comes: one that changes after its slice was passed is found
        by the next scan (the projection's ``transitions`` count has moved), as it would be had it
        changed after a scan in one piece.
        """
        services = list(self._state().services.items())
        found = 0
        for start in range(0, len(services), SCAN_SLICE):
            if start:
                await asyncio.sleep(0)
            found += self._scan(services[start : start + SCAN_SLICE])
        return found

    def _scan(self, services: list[tuple[str, ServiceProjection]]) -> int:
        found = 0
        for name, service in services:
            cursor = self._cursors.get(name)
            marker = (service.status, service.since)
            if cursor is None:
                cursor = self._cursors[name] = Cursor(at=None, status=None)
            elif cursor.marker == marker:
                continue
            for transition in transitions(service, cursor):
                found += 1
                self._plan(transition, service)
                cursor.at, cursor.status = transition.at, transition.status
            cursor.marker = marker
            self._checkpoint_dirty = True
        return found

    def _plan(self, transition: Transition, service: ServiceProjection) -> None:
        settings = self._live.current
        age = (self._clock.now() - transition.at).total_seconds()
        if age > settings.alerting.max_age_seconds:
            log.info(
                "notification_too_old", service=transition.service, at=to_iso_millis(transition.at)
            )
            return
        kind = _kind_of(transition.status)
        if kind != "up" and not any(
            opener.status is transition.status and opener.at == transition.at
            for opener in episode_openers(service, transition.at, including=True)
        ):
            return  # the outage already went this way once (down, degraded, down): told already
        for name, channel in settings.notifications.items():
            if not channel.wants(transition.service, kind):
                continue
            job = Job(transition.service, kind, transition.at, transition.previous, name)
            delay = channel.min_down_seconds if kind != "up" else 0.0
            self._push(job, transition.at + timedelta(seconds=delay))

    def _push(self, job: Job, when: datetime) -> None:
        heapq.heappush(self._queue, _Due(when, next(self._order), job))
        self._open.setdefault(job.service, set()).add(job.stream)

    def _done(self, job: Job) -> None:
        streams = self._open.get(job.service)
        if streams is not None:
            streams.discard(job.stream)
            if not streams:
                del self._open[job.service]
        self._checkpoint_dirty = True

    # --- working --------------------------------------------------------------------------------

    async def _work_due(self) -> None:
        now = self._clock.now()
        due: list[Job] = []
        while self._queue and self._queue[0].when <= now:
            due.append(heapq.heappop(self._queue).job)
        if due:
            await asyncio.gather(*(self._work(job) for job in due))

    async def _work(self, job: Job) -> None:
        self._inflight.append(job)  # left there when cancelled: the checkpoint stays before it
        try:
            retry_at = await self._handle(job)
        except EventStoreError as exc:
            log.warning("notification_store_unavailable", stream=job.stream, error=str(exc))
            retry_at = (job, self._clock.now() + timedelta(seconds=STORE_RETRY_SECONDS))
        except (UptimeDaemonError, ValueError, KeyError) as exc:  # a malformed claim stream
            log.error("notification_unreadable", stream=job.stream, error=str(exc))  # noqa: TRY400
            retry_at = None
        except Exception:  # a bug of ours: keep the job (and every other one), say so loudly
            log.exception("notification_job_failed", stream=job.stream)
            retry_at = (job, self._clock.now() + timedelta(seconds=BUG_RETRY_SECONDS))
        self._inflight.remove(job)
        if retry_at is None:
            self._done(job)
        else:
            again, when = retry_at
            self._open.get(job.service, set()).discard(job.stream)
            self._push(again, when)

    async def _handle(self, job: Job) -> tuple[Job, datetime] | None:
        """Decide and act on one job; the job to run again and when, or ``None`` when done."""
        settings = self._live.current
        channel = settings.notifications.get(job.channel)
        service = self._state().services.get(job.service)
        if channel is None or service is None:
            return None  # the channel or the service left the configuration
        if job.seen is not None:  # another daemon's claim we watch, or our own retry
            return await self._deliver_claimed(job, channel, job.seen)
        now = self._clock.now()
        if job.kind == "up":
            return await self._resolve(job, channel, service, now)
        return await self._open_outage(job, channel, service)

    async def _open_outage(
        self, job: Job, channel: NotificationChannel, service: ServiceProjection
    ) -> tuple[Job, datetime] | None:
        due = self._due(job, channel)
        ended = episode_end(service, job.at)
        if ended is not None and ended < due:
            if job.reminder:
                return None  # the outage is over: no more reminders
            seconds = (ended - job.at).total_seconds()
            short = (
                f"the outage lasted {seconds:.0f} s, less than min_down_seconds "
                f"({channel.min_down_seconds:g} s)"
            )
            await self._suppress(job, short)
            return None
        reminder = self._next_reminder(job, channel, ended)
        if reminder is not None:  # every daemon plans it; the claim decides who sends it
            self._push(reminder, self._due(reminder, channel))
        reason = self._held_back(job, due)
        if reason is not None:
            await self._suppress(job, reason)
            return None
        message = await self._message(job, resolves=())
        return await self._send(job, channel, message, NOT_CLAIMED)

    def _next_reminder(
        self, job: Job, channel: NotificationChannel, ended: datetime | None
    ) -> Job | None:
        if channel.repeat_every_seconds is None:
            return None
        following = replace(job, reminder=job.reminder + 1, seen=None)
        if ended is not None and ended < self._due(following, channel):
            return None
        return following

    def _due(self, job: Job, channel: NotificationChannel) -> datetime:
        repeat = channel.repeat_every_seconds or 0.0
        return job.at + timedelta(seconds=channel.min_down_seconds + job.reminder * repeat)

    def _held_back(self, job: Job, due: datetime) -> str | None:
        """Why an outage notification is suppressed (maintenance, a parent down), or ``None``."""
        state = self._state()
        instant = job.at if job.reminder == 0 else due
        windows = (
            state.maintenance.active(job.service, instant) if state.maintenance.windows else []
        )
        if windows:
            window = windows[0]
            return f"maintenance window {window.id}" + (
                f": {window.reason}" if window.reason else ""
            )
        configured = self._live.current.services.get(job.service)
        for parent in configured.depends_on if configured is not None else ():
            record = state.services.get(parent)
            if record is not None and last_verdict(record, due) is Status.DOWN:
                return f"parent {parent} is down"
        return None

    async def _resolve(
        self, job: Job, channel: NotificationChannel, service: ServiceProjection, now: datetime
    ) -> tuple[Job, datetime] | None:
        """An outage ended: tell this channel if it was told of the outage."""
        announced: list[Opened] = []
        for opener in episode_openers(service, job.at):
            kind = _kind_of(opener.status)
            if not channel.wants(job.service, kind):
                continue
            probe = Job(job.service, kind, opener.at, opener.previous, job.channel)
            told, undecided = await self._was_told(probe, channel, job.at)
            if (
                undecided
                and (now - job.at).total_seconds() < self._live.current.alerting.retry_for_seconds
            ):
                return job, now + timedelta(seconds=UNDECIDED_RETRY_SECONDS)
            if told:
                announced.append(Opened(kind, opener.at))
        if not announced:
            return None
        message = await self._message(job, resolves=tuple(announced))
        return await self._send(job, channel, message, NOT_CLAIMED)

    async def _was_told(
        self, opener: Job, channel: NotificationChannel, ended: datetime
    ) -> tuple[bool, bool]:
        """Whether the channel was told of this outage opener (or of a reminder of it).

        Also whether one that was due is still undecided (nobody claimed or suppressed it yet).
        """
        undecided = False
        reminder = opener
        for _ in range(10_000):
            if self._due(reminder, channel) >= ended:
                break
            ledger = await self._claims.read(reminder.stream)
            if ledger.announced:
                return True, False
            if ledger.revision is None:
                undecided = True
            if channel.repeat_every_seconds is None:
                break
            reminder = replace(reminder, reminder=reminder.reminder + 1)
        return False, undecided

    # --- claiming and delivering ----------------------------------------------------------------

    async def _suppress(self, job: Job, reason: str) -> None:
        won = await self._claims.settle(
            job.stream,
            Outcome.SUPPRESSED,
            StreamState.NO_STREAM,
            reason=reason,
            service=job.service,
            event=job.kind,
            at=to_iso_millis(job.at),
            channel=job.channel,
            reminder=job.reminder,
        )
        if won:
            self.settled += 1
            self._on_settled(job.channel, "suppressed")
            log.info("notification_suppressed", stream=job.stream, reason=reason)

    async def _send(
        self, job: Job, channel: NotificationChannel, message: Message, seen: Ledger
    ) -> tuple[Job, datetime] | None:
        """Claim (expecting ``seen``), deliver, record; a job to run again, or ``None``."""
        now = self._clock.now()
        held = await self._claims.claim(job.stream, message, seen, now)
        if held is None:  # another daemon claimed or settled it: watch it
            ledger = await self._claims.read(job.stream)
            return self._watch(job, ledger, now)
        attempt = seen.attempts + 1
        delivery = await self._deliver(message, channel)
        if delivery.ok:
            if await self._claims.settle(
                job.stream, Outcome.DELIVERED, held, attempt=attempt, detail=delivery.detail
            ):
                self.settled += 1
                self._on_settled(job.channel, "delivered")
                log.info(
                    "notification_delivered",
                    stream=job.stream,
                    key=message.key,
                    attempt=attempt,
                    detail=delivery.detail,
                )
            return None
        self._on_settled(job.channel, "failed")
        alerting = self._live.current.alerting
        give_up = (now - job.at).total_seconds() >= alerting.retry_for_seconds
        if delivery.permanent or give_up:
            why = (
                "refused by the receiver" if delivery.permanent else "retried for retry_for_seconds"
            )
            if await self._claims.settle(
                job.stream,
                Outcome.ABANDONED,
                held,
                attempts=attempt,
                error=delivery.detail,
                why=why,
            ):
                self.settled += 1
                self._on_settled(job.channel, "abandoned")
                log.error(
                    "notification_abandoned", stream=job.stream, error=delivery.detail, why=why
                )
            return None
        delay = RETRY_BACKOFF_SECONDS[min(attempt - 1, len(RETRY_BACKOFF_SECONDS) - 1)]
        retry_at = now + timedelta(seconds=delay)
        revision = await self._claims.failed(
            job.stream, held, error=delivery.detail, retry_at=retry_at, attempt=attempt
        )
        log.warning(
            "notification_failed",
            stream=job.stream,
            error=delivery.detail,
            attempt=attempt,
            retry_in_seconds=delay,
        )
        if revision is None:
            return None  # taken over meanwhile: its new holder retries
        retry = Ledger(revision=revision, holder=None, attempts=attempt, message=message)
        return replace(job, seen=retry), retry_at

    def _watch(self, job: Job, ledger: Ledger, now: datetime) -> tuple[Job, datetime] | None:
        if ledger.outcome is not None or ledger.revision is None:
            return None
        lease_until = ledger.lease_until or now
        return replace(job, seen=ledger), max(lease_until, now) + timedelta(milliseconds=500)

    async def _deliver_claimed(
        self, job: Job, channel: NotificationChannel, seen: Ledger
    ) -> tuple[Job, datetime] | None:
        """A claim we watch (take it over once its lease ran out) or our own retry."""
        now = self._clock.now()
        ledger = await self._claims.read(job.stream)
        if ledger.outcome is not None:
            return None
        ours = ledger.revision == seen.revision and seen.holder is None
        if not ours and ledger.lease_until is not None and ledger.lease_until > now:
            return self._watch(job, ledger, now)
        message = ledger.message or seen.message
        if message is None:
            return None
        if not ours:
            log.warning(
                "notification_taken_over", stream=job.stream, holder=ledger.holder, key=message.key
            )
        return await self._send(
            job, channel, replace(message, sent_by=self._live.current.instance), ledger
        )

    async def _message(self, job: Job, resolves: tuple[Opened, ...]) -> Message:
        settings = self._live.current
        configured = settings.services.get(job.service)
        return Message(
            key=key_of(job.stream),
            channel=job.channel,
            service=job.service,
            kind=job.kind,
            status=_status_of(job.kind),
            previous_status=job.previous,
            at=job.at,
            reminder=job.reminder,
            resolves=resolves,
            detail=await self._detail(job),
            description=None if configured is None else configured.description,
            url=f"{self._base_url}/" if self._base_url else None,
            sent_by=settings.instance,
        )

    async def _detail(self, job: Job) -> str | None:
        """What the check that made the transition saw (its probe detail), when the log has it."""
        try:
            recent = await self._store.read_stream(
                events.stream_name(job.service), backwards=True, limit=200
            )
        except EventStoreError:
            return None
        for event in recent:
            if event.type != events.EVENT_TYPE_STATUS_CHANGED:
                continue
            try:
                decoded = events.decode_status_changed(event.data)
            except (UptimeDaemonError, ValueError):
                continue
            if decoded.timestamp <= job.at:
                probe = decoded.payload.get("probe")
                detail = probe.get("detail") if isinstance(probe, dict) else None
                return str(detail) if detail else None
        return None


# --- reading the timeline ------------------------------------------------------------------------


def transitions(service: ServiceProjection, cursor: Cursor) -> list[Transition]:
    """The service's status changes after ``cursor`` (``unknown`` is no status: it is skipped)."""
    periods = service.periods
    start = 0 if cursor.at is None else periods.starting_after(cursor.at)
    spans = [(p.state, p.start) for p in periods.since(start)]
    opened = service.open_start
    if (
        service.open_state is not None
        and opened is not None
        and (cursor.at is None or opened > cursor.at)
    ):
        spans.append((service.open_state, opened))
    found = []
    status = cursor.status
    for state, begun in spans:
        if state is Status.UNKNOWN or state is status:
            continue
        found.append(Transition(service.name, state, status, begun))
        status = state
    return found


def _verdicts(service: ServiceProjection) -> list[tuple[Status, datetime]]:
    """Every (status, start) of the timeline, ``unknown`` left out, oldest first."""
    spans: list[tuple[Status, datetime]] = [
        (p.state, p.start) for p in service.periods if p.state is not Status.UNKNOWN
    ]
    if (
        service.open_state is not None
        and service.open_start is not None
        and service.open_state is not Status.UNKNOWN
    ):
        spans.append((service.open_state, service.open_start))
    return spans


def episode_end(service: ServiceProjection, at: datetime) -> datetime | None:
    """When the outage that began at ``at`` ended (its status became ``up``), if it has."""
    for state, begun in _verdicts(service):
        if begun > at and state is Status.UP:
            return begun
    return None


def episode_openers(
    service: ServiceProjection, ended: datetime, *, including: bool = False
) -> list[Transition]:
    """The first transition into down, and into degraded, of the outage that ended at ``ended``.

    ``including``: of the outage going on at ``ended``, a transition at that very instant included.
    """
    openers: list[Transition] = []
    previous: Status | None = None
    for state, begun in _verdicts(service):
        if begun > ended or (begun == ended and not including):
            break
        if state is Status.UP:
            openers = []
        elif (
            state is not previous
            and state in _OPENERS
            and all(opener.status is not state for opener in openers)
        ):
            openers.append(Transition(service.name, state, previous, begun))
        previous = state
    return openers


def _kind_of(status: Status) -> MessageKind:
    if status is Status.DOWN:
        return "down"
    if status is Status.DEGRADED:
        return "degraded"
    return "up"


def _status_of(kind: MessageKind) -> Status:
    return {"down": Status.DOWN, "degraded": Status.DEGRADED, "up": Status.UP}[kind]
