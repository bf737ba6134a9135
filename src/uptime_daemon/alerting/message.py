"""What a channel delivers: one notification, already decided, with its idempotency key.

The notifier decides *whether* and *when*; a channel only turns a ``Message`` into its receiver's
format and reports how the attempt went. A ``Message`` is the same on every daemon that could send
it, so a takeover after a crash sends the very same content under the same key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from uptime_daemon.clock import parse_iso, to_iso_millis
from uptime_daemon.status import Status

MessageKind = Literal["down", "degraded", "up"]


@dataclass(frozen=True, slots=True)
class Opened:
    """An outage notification that an ``up`` message resolves (what it announced, and when)."""

    kind: MessageKind
    """``down`` or ``degraded``."""
    at: datetime


@dataclass(frozen=True, slots=True)
class Message:
    """One notification to one channel."""

    key: str
    """Idempotency key: the same on every attempt and every daemon (a UUID string)."""
    channel: str
    service: str
    kind: MessageKind
    """``down``/``degraded``: an outage began (or, with ``reminder`` > 0, still lasts); ``up``: it ended."""
    status: Status
    """The service's status from ``at``."""
    previous_status: Status | None
    at: datetime
    """When the transition happened (the service's timeline), not when it is sent."""
    reminder: int = 0
    """0: the transition itself; n: the n-th reminder that the outage goes on."""
    resolves: tuple[Opened, ...] = ()
    """For ``up``: the outage notifications of this channel it ends (Alertmanager resolves them)."""
    detail: str | None = None
    """What the check that made the transition saw (``connection refused``, ``HTTP 503``, ...)."""
    description: str | None = None
    """The service's configured description."""
    url: str | None = None
    """Where a human sees more: this daemon's status page."""
    sent_by: str = ""
    """The instance sending it."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one attempt went. ``ok`` False: retry later (unless ``permanent``)."""

    ok: bool
    detail: str
    """``HTTP 200``, ``250 OK``, ``connection refused``, ... (never a secret)."""
    permanent: bool = False
    """The receiver refused the message itself (HTTP 4xx other than 408/429, a rejected recipient):
    retrying the same message cannot succeed."""


def encode_message(message: Message) -> dict[str, Any]:
    """A message as JSON-ready data: what a claim records, and the webhook body's core."""
    return {
        "key": message.key,
        "channel": message.channel,
        "service": message.service,
        "event": message.kind,
        "status": message.status.value,
        "previousStatus": None
        if message.previous_status is None
        else message.previous_status.value,
        "at": to_iso_millis(message.at),
        "reminder": message.reminder,
        "resolves": [{"event": o.kind, "at": to_iso_millis(o.at)} for o in message.resolves],
        "detail": message.detail,
        "description": message.description,
        "url": message.url,
    }


def decode_message(data: dict[str, Any], sent_by: str) -> Message:
    """``encode_message`` read back (``KeyError``/``ValueError`` on a malformed event)."""
    previous = data.get("previousStatus")
    return Message(
        key=str(data["key"]),
        channel=str(data["channel"]),
        service=str(data["service"]),
        kind=_kind(data["event"]),
        status=Status(data["status"]),
        previous_status=None if previous is None else Status(previous),
        at=parse_iso(str(data["at"])),
        reminder=int(data.get("reminder", 0)),
        resolves=tuple(
            Opened(_kind(o["event"]), parse_iso(str(o["at"]))) for o in data.get("resolves", [])
        ),
        detail=data.get("detail"),
        description=data.get("description"),
        url=data.get("url"),
        sent_by=sent_by,
    )


def _kind(value: object) -> MessageKind:
    if value == "down":
        return "down"
    if value == "degraded":
        return "degraded"
    if value == "up":
        return "up"
    raise ValueError(f"not a notification kind: {value!r}")
