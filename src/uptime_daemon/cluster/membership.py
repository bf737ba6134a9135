"""One daemon's membership: heartbeat to the members stream, follow it, and say who is alive here.

``Membership.run()`` appends a heartbeat at once and then every ``heartbeat_seconds``, follows the
stream through the store's subscription folding every event into a ``MemberTable``, and re-evaluates
the alive members of its own location after every event it follows and at every heartbeat tick, so
a peer whose lifetime ran out is noticed within one heartbeat even when nothing is written.
``on_change`` hears each new set once.

Resume position. Each (re)connection seeds the table from ``read_stream`` of the members stream
(which its ``$maxAge`` keeps to a few lifetimes of heartbeats) and subscribes after the last event
read. Subscribing from the start of ``$all`` instead would make KurrentDB scan the whole log on
every start, and replay every heartbeat not yet scavenged. The first seed waits for the first
heartbeat attempt, so the read normally ends at our own heartbeat and always has a position.

A store outage never ends ``run()``: heartbeats keep being attempted every ``heartbeat_seconds``
and the subscription is retried with a bounded backoff. Peers then see this member expire, and it
sees them expire: each side goes on alone until the store is back. That is intended, because a
daemon always counts itself among the alive members of its location while it runs: during a
partition every side keeps (or takes over) the checks, and the duplicates deduplicate by event id.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Final

import structlog

from uptime_daemon.clock import Clock
from uptime_daemon.cluster.members import (
    EMPTY_TABLE,
    MAX_TTL_SECONDS,
    STREAM,
    MemberDecodeError,
    MemberHeartbeat,
    MemberLeft,
    MemberTable,
    alive,
    apply,
    decode,
    heartbeat_event,
    left_event,
    prune,
)
from uptime_daemon.errors import EventStoreError, StreamNotFound
from uptime_daemon.store import CaughtUp, EventStore, RecordedEvent

log = structlog.get_logger(__name__)

RESUBSCRIBE_BACKOFF_SECONDS: Final = (0.1, 0.5, 1.0, 2.0, 5.0)
"""Waits before following the stream again after consecutive failures; the last one repeats."""
MAX_AGE_TTLS: Final = 3
"""The stream keeps this many member lifetimes of events (``$maxAge``) ..."""
MIN_MAX_AGE_SECONDS: Final = 60
"""... and never less than a minute, so a slow reader still finds the heartbeats it needs."""


def stream_max_age_seconds(ttl_seconds: float) -> int:
    """``$maxAge`` of the members stream: a few lifetimes, at least a minute, whole seconds."""
    return max(MIN_MAX_AGE_SECONDS, math.ceil(MAX_AGE_TTLS * ttl_seconds))


class Membership:
    """This daemon's presence in the cluster and its view of the alive members of its location.

    ``instance`` must be unique across the cluster; ``location`` is the vantage point whose members
    share services. ``ttl_seconds`` is the lifetime each heartbeat vouches for and must exceed
    ``heartbeat_seconds``; three heartbeats per lifetime tolerate two lost ones. ``on_change`` is
    called synchronously on the event loop with the new alive set, never concurrently with itself;
    an exception from it is logged, never raised into the loop.
    """

    def __init__(
        self,
        *,
        store: EventStore,
        clock: Clock,
        instance: str,
        location: str,
        heartbeat_seconds: float,
        ttl_seconds: float,
        on_change: Callable[[tuple[str, ...]], None] | None = None,
    ) -> None:
        if not instance or not location:
            raise ValueError(f"instance and location must be non-empty: {instance!r}, {location!r}")
        if not 0 < heartbeat_seconds < ttl_seconds <= MAX_TTL_SECONDS:
            raise ValueError(
                f"need 0 < heartbeat_seconds < ttl_seconds <= {MAX_TTL_SECONDS:g}, "
                f"got {heartbeat_seconds} and {ttl_seconds}"
            )
        self._store = store
        self._clock = clock
        self.instance: Final = instance
        self.location: Final = location
        self.heartbeat_seconds: Final = heartbeat_seconds
        self.ttl_seconds: Final = ttl_seconds
        self.max_age_seconds: Final = stream_max_age_seconds(ttl_seconds)
        self._on_change = on_change
        self._started_at = clock.now()
        self._table = EMPTY_TABLE
        self._position: int | None = None
        self._running = False
        self._left = False
        self._caught_up = False
        self._notified: tuple[str, ...] | None = None
        self._metadata_set = False
        self._beat_failures = 0
        self._first_beat_tried = asyncio.Event()

    # --- what the rest of the daemon reads ------------------------------------------------------

    @property
    def members(self) -> tuple[str, ...]:
        """The alive members of this location now, sorted; this instance while it runs and has not left.

        A running daemon knows it is alive even when the store cannot carry its heartbeats; once
        it has left it no longer counts itself, whatever its own table still says.
        """
        seen = alive(self._table, self.location, self._clock.now())
        if self._left:
            return tuple(name for name in seen if name != self.instance)
        if self._running and self.instance not in seen:
            return tuple(sorted((*seen, self.instance)))
        return seen

    @property
    def table(self) -> MemberTable:
        """Everything folded so far, for diagnostics (every location, expired members too)."""
        return self._table

    @property
    def caught_up(self) -> bool:
        """The stream has been read up to the time of subscribing; ``members`` is complete."""
        return self._caught_up

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Heartbeat, follow the stream and notify changes until cancelled; never ends by itself.

        Raises only for a bug (a store error is retried, a callback error logged).
        """
        self._running = True
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._follow(), name=f"cluster-follow-{self.instance}")
                beat: asyncio.Task[None] | None = None
                while True:
                    # A beat still in flight (a slow store) is not doubled, but the tick goes on:
                    # expiry is re-evaluated every heartbeat whatever the store's latency.
                    if not self._left and (beat is None or beat.done()):
                        beat = tasks.create_task(self._beat(), name=f"cluster-beat-{self.instance}")
                    self._tick()
                    await asyncio.sleep(self.heartbeat_seconds)
        finally:
            self._running = False

    async def leave(self) -> bool:
        """Announce a clean stop, so peers take this member's services over at once.

        Stops heartbeats first (a later heartbeat would bring the member back). Returns ``False``
        when the store could not record it: the peers then see the member expire after its ttl.
        """
        self._left = True
        left = MemberLeft(self.instance, self.location, self._clock.now())
        try:
            await self._store.append(STREAM, [left_event(left)])
        except EventStoreError as exc:
            log.warning(
                "cluster_leave_failed",
                instance=self.instance,
                location=self.location,
                error=str(exc),
            )
            return False
        log.info("cluster_member_left", instance=self.instance, location=self.location)
        return True

    # --- heartbeats -----------------------------------------------------------------------------

    async def _beat(self) -> None:
        """Set the stream's retention (until it once succeeds), then append one heartbeat.

        Failures are logged, never raised: one warning per outage, the rest at debug, so a long
        outage does not flood the log.
        """
        if not self._metadata_set:
            try:
                await self._store.set_stream_metadata(STREAM, max_age_seconds=self.max_age_seconds)
            except EventStoreError as exc:
                emit = log.debug if self._beat_failures else log.warning
                emit("cluster_stream_metadata_failed", instance=self.instance, error=str(exc))
            else:
                self._metadata_set = True
        try:
            heartbeat = MemberHeartbeat(
                instance=self.instance,
                location=self.location,
                started_at=self._started_at,
                at=self._clock.now(),
                ttl_seconds=self.ttl_seconds,
            )
            await self._store.append(STREAM, [heartbeat_event(heartbeat)])
        except EventStoreError as exc:
            self._beat_failures += 1
            emit = log.warning if self._beat_failures == 1 else log.debug
            emit(
                "cluster_heartbeat_failed",
                instance=self.instance,
                failures=self._beat_failures,
                error=str(exc),
            )
        else:
            if self._beat_failures:
                log.info(
                    "cluster_heartbeat_recovered",
                    instance=self.instance,
                    failures=self._beat_failures,
                )
            self._beat_failures = 0
        finally:
            self._first_beat_tried.set()

    def _tick(self) -> None:
        """Drop what the store can no longer deliver, then tell ``on_change`` if the set changed."""
        horizon = self._clock.now() - timedelta(seconds=self.max_age_seconds)
        self._table = prune(self._table, horizon)
        self._evaluate()

    # --- following the stream -------------------------------------------------------------------

    async def _follow(self) -> None:
        """Seed from the stream, subscribe after the seed, fold; on a store error back off and redo."""
        await self._first_beat_tried.wait()
        failures = 0
        while True:
            try:
                await self._seed()
                subscription = self._store.subscribe(after=self._position, stream_prefix=STREAM)
                try:
                    async for item in subscription:
                        failures = 0
                        if isinstance(item, CaughtUp):
                            if not self._caught_up:
                                log.info(
                                    "cluster_members_caught_up",
                                    instance=self.instance,
                                    position=item.position,
                                )
                            self._caught_up = True
                        else:
                            self._handle(item)
                        if self._caught_up:
                            self._evaluate()
                finally:
                    await _close(subscription)
            except EventStoreError as exc:
                delay = RESUBSCRIBE_BACKOFF_SECONDS[
                    min(failures, len(RESUBSCRIBE_BACKOFF_SECONDS) - 1)
                ]
                failures += 1
                log.warning(
                    "cluster_subscription_lost",
                    instance=self.instance,
                    position=self._position,
                    error=str(exc),
                    retry_in_seconds=delay,
                )
                await asyncio.sleep(delay)
            else:
                log.warning(
                    "cluster_subscription_ended", instance=self.instance, position=self._position
                )
                await asyncio.sleep(RESUBSCRIBE_BACKOFF_SECONDS[0])

    async def _seed(self) -> None:
        """Fold what the stream holds now and move the resume position to its last event.

        When the stream reads empty the position stays where the last subscription left it.
        """
        try:
            events = await self._store.read_stream(STREAM)
        except StreamNotFound:
            return
        for event in events:
            self._handle(event)

    def _handle(self, event: RecordedEvent) -> None:
        """Fold one stored event; a malformed one is logged and skipped, never fatal."""
        # The prefix filter also matches longer names (``system-cluster-members-old``).
        if event.stream == STREAM:
            try:
                self._table = apply(self._table, decode(event.type, event.data))
            except MemberDecodeError as exc:
                log.error(  # noqa: TRY400 - the event, not a traceback, is what the operator needs
                    "cluster_member_event_invalid",
                    stream=event.stream,
                    revision=event.revision,
                    position=event.position,
                    error=str(exc),
                )
        if self._position is None or event.position > self._position:
            self._position = event.position

    def _evaluate(self) -> None:
        """Call ``on_change`` when the alive set differs from the one it last heard.

        Silent until the first catch-up, so listeners never hear a half-read table.
        """
        if not self._caught_up:
            return
        current = self.members
        if current == self._notified:
            return
        self._notified = current
        log.info(
            "cluster_members_changed",
            instance=self.instance,
            location=self.location,
            members=list(current),
        )
        if self._on_change is None:
            return
        try:
            self._on_change(current)
        except Exception as exc:  # a listener's bug must not stop membership
            log.exception("cluster_on_change_failed", instance=self.instance, error=repr(exc))


async def _close(subscription: AsyncIterator[RecordedEvent | CaughtUp]) -> None:
    """End a subscription: the protocol promises an ``AsyncIterator``; the adapters use generators."""
    close = getattr(subscription, "aclose", None)
    if close is not None:
        await close()
