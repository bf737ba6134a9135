"""The member table: membership events, their JSON encoding, and the pure fold that says who is alive.

Members announce themselves kopf-style: each appends a ``MemberHeartbeat`` with a lifetime
(``ttlSeconds``) to the temporary stream ``system-cluster-members`` and reads everyone else's. A
clean stop appends ``MemberLeft``. Nothing here does I/O or reads a clock: ``apply`` folds decoded
events into an immutable ``MemberTable`` and ``alive`` answers for an instant passed in.

The fold keeps, per instance, only the newest heartbeat and the newest leave (by their ``at``), so the
table it reaches does not depend on the order events arrive in: a replayed, reordered or duplicated
log folds to the same table. A member has left when its newest leave is not older than its newest
heartbeat; a heartbeat after a leave (a restart under the same name) brings it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID, uuid5

import orjson

from uptime_daemon.clock import parse_iso, to_iso_millis
from uptime_daemon.errors import UptimeDaemonError
from uptime_daemon.store import SYSTEM_STREAM_PREFIX, NewEvent

STREAM: Final = f"{SYSTEM_STREAM_PREFIX}cluster-members"
"""The one membership stream; temporary (``$maxAge``), so it stays small."""
EVENT_TYPE_HEARTBEAT: Final = "MemberHeartbeat"
EVENT_TYPE_LEFT: Final = "MemberLeft"
SCHEMA_VERSION: Final = 1
EVENT_ID_NAMESPACE: Final = UUID("48a50cd1-2c80-4125-beb4-e4febe31c1b8")
"""Fixed forever: changing it would change every id and break idempotent re-appends."""
MAX_TTL_SECONDS: Final = 86_400.0
"""The longest lifetime a heartbeat may claim: a day. Longer is no heartbeat but a corrupt event, and
would keep a crashed member "alive" for that long."""
PRODUCER: Final = "uptime-daemon"
EVENT_METADATA: Final = orjson.dumps({"schemaVersion": SCHEMA_VERSION, "producer": PRODUCER})
"""Store metadata of every membership event (informational, as for the uptime events)."""


class MemberDecodeError(UptimeDaemonError, ValueError):
    """A membership event does not have the shape its type and version promise; names the field."""


@dataclass(frozen=True, slots=True)
class MemberHeartbeat:
    """``instance`` (of ``location``, running since ``started_at``) is alive at ``at`` for ``ttl_seconds``."""

    instance: str
    location: str
    started_at: datetime
    at: datetime
    ttl_seconds: float

    @property
    def expires_at(self) -> datetime:
        """The first instant this heartbeat no longer vouches for its member."""
        try:
            return self.at + timedelta(seconds=self.ttl_seconds)
        except OverflowError:  # stamped at the very end of year 9999: an instant nobody reaches
            return datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """``instance`` stopped cleanly at ``at``: its peers may take its services over at once."""

    instance: str
    location: str
    at: datetime


MemberEvent = MemberHeartbeat | MemberLeft


def event_id(event_type: str, instance: str, at: datetime) -> UUID:
    """The store id of one membership event: a retried append of the same event is a no-op.

    The type is part of the name so a heartbeat and a leave stamped in the same millisecond stay
    two events.
    """
    return uuid5(EVENT_ID_NAMESPACE, f"{event_type}:{instance}:{to_iso_millis(at)}")


def heartbeat_event(heartbeat: MemberHeartbeat) -> NewEvent:
    """The ``MemberHeartbeat`` to append (times at millisecond precision, as every event of ours)."""
    data = {
        "instance": heartbeat.instance,
        "location": heartbeat.location,
        "startedAt": to_iso_millis(heartbeat.started_at),
        "at": to_iso_millis(heartbeat.at),
        "ttlSeconds": heartbeat.ttl_seconds,
        "schemaVersion": SCHEMA_VERSION,
    }
    return NewEvent(
        id=event_id(EVENT_TYPE_HEARTBEAT, heartbeat.instance, heartbeat.at),
        type=EVENT_TYPE_HEARTBEAT,
        data=orjson.dumps(data),
        metadata=EVENT_METADATA,
    )


def left_event(left: MemberLeft) -> NewEvent:
    """The ``MemberLeft`` to append on a clean stop."""
    data = {
        "instance": left.instance,
        "location": left.location,
        "at": to_iso_millis(left.at),
        "schemaVersion": SCHEMA_VERSION,
    }
    return NewEvent(
        id=event_id(EVENT_TYPE_LEFT, left.instance, left.at),
        type=EVENT_TYPE_LEFT,
        data=orjson.dumps(data),
        metadata=EVENT_METADATA,
    )


class _Fields:
    """Typed reads from one JSON object; each error names the field and what it should have been."""

    __slots__ = ("_raw",)

    def __init__(self, raw: dict[str, Any]) -> None:
        self._raw = raw

    def _invalid(self, name: str, expected: str) -> MemberDecodeError:
        return MemberDecodeError(
            f"field {name!r}: expected {expected}, got {self._raw.get(name)!r}"
        )

    def name(self, name: str) -> str:
        value = self._raw.get(name)
        if not isinstance(value, str) or not value:
            raise self._invalid(name, "a non-empty string")
        return value

    def time(self, name: str) -> datetime:
        value = self._raw.get(name)
        if not isinstance(value, str):
            raise self._invalid(name, "an ISO-8601 timestamp")
        try:
            return parse_iso(value)
        except ValueError:
            raise self._invalid(name, "an ISO-8601 timestamp") from None

    def seconds(self, name: str, most: float) -> float:
        """A positive number of seconds, at most ``most``."""
        value = self._raw.get(name)
        # JSON true is a Python int; it is not a number of seconds.
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= most:
            raise self._invalid(name, f"a positive number of seconds up to {most:g}")
        return float(value)

    def version(self) -> None:
        value = self._raw.get("schemaVersion")
        if isinstance(value, bool) or value != SCHEMA_VERSION:
            raise self._invalid("schemaVersion", str(SCHEMA_VERSION))


def decode(event_type: str, data: bytes) -> MemberEvent:
    """Decode one stored membership event; ``MemberDecodeError`` names the bad field.

    Strict on purpose: a malformed heartbeat must not keep a member alive (or kill it) by accident.
    """
    if event_type not in {EVENT_TYPE_HEARTBEAT, EVENT_TYPE_LEFT}:
        raise MemberDecodeError(
            f"event type {event_type!r}: expected {EVENT_TYPE_HEARTBEAT} or {EVENT_TYPE_LEFT}"
        )
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MemberDecodeError(f"event data is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise MemberDecodeError(f"event data is not a JSON object: {type(raw).__name__}")
    fields = _Fields(raw)
    fields.version()
    if event_type == EVENT_TYPE_LEFT:
        return MemberLeft(
            instance=fields.name("instance"), location=fields.name("location"), at=fields.time("at")
        )
    return MemberHeartbeat(
        instance=fields.name("instance"),
        location=fields.name("location"),
        started_at=fields.time("startedAt"),
        at=fields.time("at"),
        ttl_seconds=fields.seconds("ttlSeconds", MAX_TTL_SECONDS),
    )


@dataclass(frozen=True, slots=True)
class Member:
    """What is known of one instance: its newest heartbeat and its newest leave."""

    instance: str
    heartbeat: MemberHeartbeat | None = None
    left: MemberLeft | None = None

    @property
    def has_left(self) -> bool:
        """It announced leaving, and has not heartbeaten since (a tie goes to the leave)."""
        if self.left is None:
            return False
        return self.heartbeat is None or self.left.at >= self.heartbeat.at

    def alive_at(self, now: datetime) -> bool:
        """Vouched for by its newest heartbeat at ``now`` and not left since.

        Only the end of the lifetime is checked: a heartbeat stamped after ``now`` (the writer's clock
        runs ahead of the reader's) still counts, since it was written, so the member was alive.
        Requiring ``at <= now`` would drop such a member for a moment after every heartbeat.
        """
        return self.heartbeat is not None and not self.has_left and now < self.heartbeat.expires_at


@dataclass(frozen=True, slots=True)
class MemberTable:
    """Every instance the fold has heard of, by name. Immutable: ``apply`` returns a new table."""

    members: Mapping[str, Member] = field(default_factory=dict)


EMPTY_TABLE: Final = MemberTable()


def _heartbeat_rank(heartbeat: MemberHeartbeat) -> tuple[datetime, datetime, float, str]:
    """Newest first by ``at``; the rest only orders two different heartbeats stamped alike."""
    return (heartbeat.at, heartbeat.started_at, heartbeat.ttl_seconds, heartbeat.location)


def _left_rank(left: MemberLeft) -> tuple[datetime, str]:
    return (left.at, left.location)


def apply(table: MemberTable, event: MemberEvent) -> MemberTable:
    """The table after ``event``; the same table object when the event tells nothing new.

    An event older than what is already known of its member (a heartbeat older than its newest
    heartbeat, a leave older than its newest leave) changes nothing.
    """
    known = table.members.get(event.instance) or Member(event.instance)
    if isinstance(event, MemberHeartbeat):
        if known.heartbeat is not None and _heartbeat_rank(event) <= _heartbeat_rank(
            known.heartbeat
        ):
            return table
        updated = Member(event.instance, heartbeat=event, left=known.left)
    else:
        if known.left is not None and _left_rank(event) <= _left_rank(known.left):
            return table
        updated = Member(event.instance, heartbeat=known.heartbeat, left=event)
    return MemberTable({**table.members, event.instance: updated})


def alive(table: MemberTable, location: str, now: datetime) -> tuple[str, ...]:
    """The instances of ``location`` alive at ``now``, sorted by name.

    Alive: its newest heartbeat was written in ``location`` and ``now`` is before that heartbeat's
    ``at + ttl`` (see ``Member.alive_at`` for stamps from the future), and it has not left since.
    """
    return tuple(
        sorted(
            member.instance
            for member in table.members.values()
            if member.heartbeat is not None
            and member.heartbeat.location == location
            and member.alive_at(now)
        )
    )


def prune(table: MemberTable, before: datetime) -> MemberTable:
    """Forget instances of which nothing is newer than ``before`` (nor vouches past it).

    Keeps the table from growing with every name that ever ran. Safe when ``before`` is older than
    anything the store can still deliver late (the stream's ``$maxAge``): no forgotten event can
    come back to revive a member that had expired or left.
    """
    kept = {
        name: member
        for name, member in table.members.items()
        if (member.heartbeat is not None and member.heartbeat.expires_at >= before)
        or (member.left is not None and member.left.at >= before)
    }
    if len(kept) == len(table.members):
        return table
    return MemberTable(kept)
