"""One stream per notification: the claim that makes N daemons send it once, and its outcome.

A notification — one transition (or reminder) of one service to one channel — is named by its
stream, ``system-notification-{service}-{at in ms}-{kind}-{channel}[-r{n}]``; its idempotency key
is a UUIDv5 of that name, so every daemon derives the same key and a receiver can drop a repeat.

* ``NotificationClaimed`` — appended with expected state *no stream* (the first claim) or the
  exact revision last seen (a takeover): the one append that wins sends. It carries the whole
  message, so a daemon that takes over sends exactly what was claimed, and a lease.
* ``NotificationFailed`` — an attempt failed; the holder retries at ``retryAt`` (its lease runs
  until then plus the lease time).
* ``NotificationDelivered`` / ``NotificationSuppressed`` / ``NotificationAbandoned`` settle it.
  Suppressed is appended instead of a claim (*no stream*): the decision not to send is recorded
  with its reason (maintenance, a parent down, an outage shorter than ``min_down_seconds``).

A claim whose holder went silent past its lease is taken over by whoever reads it next; the
holder's own next append then conflicts and it stops. A receiver may therefore see a message twice
(a sender that died after sending, before recording it), always under the same key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from uuid import UUID, uuid5

import orjson

from uptime_daemon.alerting.message import Message, MessageKind, decode_message, encode_message
from uptime_daemon.clock import parse_iso, to_iso_millis
from uptime_daemon.errors import ConcurrencyConflict, StreamNotFound
from uptime_daemon.store import EventStore, Expected, NewEvent, StreamState

STREAM_PREFIX: Final = "system-notification-"
_NAMESPACE: Final = UUID("5b1f6a8e-0c3d-4f27-8e41-9a2d7c6b3e10")
"""Fixed forever: idempotency keys derive from it."""
_METADATA: Final = orjson.dumps({"producer": "uptime-daemon"})

CLAIMED: Final = "NotificationClaimed"
FAILED: Final = "NotificationFailed"
DELIVERED: Final = "NotificationDelivered"
SUPPRESSED: Final = "NotificationSuppressed"
ABANDONED: Final = "NotificationAbandoned"


class Outcome(StrEnum):
    """How a notification was settled."""

    DELIVERED = "delivered"
    SUPPRESSED = "suppressed"
    ABANDONED = "abandoned"


_SETTLED: Final = {
    DELIVERED: Outcome.DELIVERED,
    SUPPRESSED: Outcome.SUPPRESSED,
    ABANDONED: Outcome.ABANDONED,
}


def stream_name(service: str, at: datetime, kind: MessageKind, channel: str, reminder: int) -> str:
    """The stream of one notification (the same on every daemon)."""
    millis = round(at.timestamp() * 1000)
    tail = f"-r{reminder}" if reminder else ""
    return f"{STREAM_PREFIX}{service}-{millis}-{kind}-{channel}{tail}"


def idempotency_key(stream: str) -> str:
    """The key receivers see: a UUIDv5 of the notification's stream."""
    return str(uuid5(_NAMESPACE, stream))


@dataclass(frozen=True, slots=True)
class Ledger:
    """A notification's stream as last read: where it stands."""

    revision: int | None
    """The last event's revision; ``None``: nobody has claimed or settled it yet."""
    outcome: Outcome | None = None
    """Set once settled."""
    holder: str | None = None
    lease_until: datetime | None = None
    attempts: int = 0
    message: Message | None = None
    """The claimed message (what a takeover sends)."""

    @property
    def announced(self) -> bool:
        """Whether the receiver was (or is being) told: claimed, in delivery or delivered."""
        return self.outcome is Outcome.DELIVERED or (
            self.outcome is None and self.revision is not None
        )


NOT_CLAIMED: Final = Ledger(revision=None)


def _event(event_type: str, data: dict[str, Any]) -> NewEvent:
    body = orjson.dumps(data)
    return NewEvent(
        id=uuid5(_NAMESPACE, f"{event_type}:{body.decode()}"),
        type=event_type,
        data=body,
        metadata=_METADATA,
    )


class Claims:
    """The claim protocol over the event store, for one daemon (``instance``)."""

    def __init__(self, store: EventStore, instance: str, lease_seconds: float) -> None:
        self._store = store
        self._instance = instance
        self._lease_seconds = lease_seconds

    async def read(self, stream: str) -> Ledger:
        """Where a notification stands (``NOT_CLAIMED`` when its stream does not exist)."""
        try:
            events = await self._store.read_stream(stream)
        except StreamNotFound:
            return NOT_CLAIMED
        ledger = NOT_CLAIMED
        for event in events:
            data = orjson.loads(event.data) if event.data else {}
            if event.type == CLAIMED:
                ledger = Ledger(
                    revision=event.revision,
                    holder=str(data.get("by")),
                    lease_until=parse_iso(str(data["leaseUntil"])),
                    attempts=ledger.attempts + 1,
                    message=decode_message(data["message"], self._instance),
                )
            elif event.type == FAILED:
                ledger = Ledger(
                    revision=event.revision,
                    holder=ledger.holder,
                    lease_until=parse_iso(str(data["leaseUntil"])),
                    attempts=ledger.attempts,
                    message=ledger.message,
                )
            elif event.type in _SETTLED:
                ledger = Ledger(
                    revision=event.revision,
                    outcome=_SETTLED[event.type],
                    holder=ledger.holder,
                    attempts=ledger.attempts,
                    message=ledger.message,
                )
        return ledger

    async def claim(self, stream: str, message: Message, seen: Ledger, now: datetime) -> int | None:
        """Claim for one attempt; the revision held, or ``None`` when another daemon got there first."""
        lease_until = now.timestamp() + self._lease_seconds
        data = {
            "key": message.key,
            "by": self._instance,
            "attempt": seen.attempts + 1,
            "leaseUntil": to_iso_millis(datetime.fromtimestamp(lease_until, now.tzinfo)),
            "message": encode_message(message),
        }
        expected: Expected = StreamState.NO_STREAM if seen.revision is None else seen.revision
        return await self._append(stream, CLAIMED, data, expected)

    async def failed(
        self, stream: str, held: int, *, error: str, retry_at: datetime, attempt: int
    ) -> int | None:
        """Record a failed attempt by the holder; the new revision held, or ``None`` if taken over."""
        lease_until = retry_at.timestamp() + self._lease_seconds
        data = {
            "by": self._instance,
            "attempt": attempt,
            "error": error,
            "retryAt": to_iso_millis(retry_at),
            "leaseUntil": to_iso_millis(datetime.fromtimestamp(lease_until, retry_at.tzinfo)),
        }
        return await self._append(stream, FAILED, data, held)

    async def settle(
        self, stream: str, outcome: Outcome, expected: Expected, **details: object
    ) -> bool:
        """Record the outcome; ``False`` when the stream moved on (another daemon settled it)."""
        event_type = {
            Outcome.DELIVERED: DELIVERED,
            Outcome.SUPPRESSED: SUPPRESSED,
            Outcome.ABANDONED: ABANDONED,
        }[outcome]
        data = {"by": self._instance, **details}
        return await self._append(stream, event_type, data, expected) is not None

    async def _append(
        self, stream: str, event_type: str, data: dict[str, Any], expected: Expected
    ) -> int | None:
        try:
            await self._store.append(stream, [_event(event_type, data)], expected)
        except ConcurrencyConflict:
            return None
        return 0 if expected is StreamState.NO_STREAM else int(expected) + 1
