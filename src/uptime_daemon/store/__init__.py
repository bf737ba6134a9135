"""The event store port: one ``EventStore`` protocol, adapters behind it (``sqlite``, ``kurrentdb``).

Semantics follow KurrentDB, because KurrentDB is the production store:

* Stream revisions are 0-based and gapless per stream. Commit positions are global, strictly
  increasing, and may have gaps: never do ``position + 1`` arithmetic.
* ``append`` is idempotent by event id: re-appending a batch whose ids are already in the stream, in
  the same order, succeeds and returns the original commit position without writing anything, when
  ``expected`` is ``ANY`` or equals the revision the stream was at before the original write.
* Positions passed as ``after`` are exclusive: ``read_all(after=p)`` and ``subscribe(after=p)`` start
  with the first event whose position is greater than ``p``. ``None`` means "from the beginning".
* Stream metadata (``max_age_seconds``, ``max_count``) and soft deletes hide events from
  ``read_stream`` at read time; ``read_all`` and ``subscribe`` still see them (as KurrentDB's ``$all``
  does until a scavenge).
* A soft-deleted stream reads as ``StreamNotFound``; appending to it again (``expected`` ``ANY`` or
  ``NO_STREAM``) revives it, with revisions continuing from where they were.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final, Protocol, runtime_checkable
from uuid import UUID

UPTIME_STREAM_PREFIX: Final = "service-uptime-"
SYSTEM_STREAM_PREFIX: Final = "system-"


class StreamState(StrEnum):
    """Expected state of a stream for an optimistic-concurrency check."""

    ANY = "any"
    NO_STREAM = "no_stream"
    STREAM_EXISTS = "stream_exists"


Expected = StreamState | int
"""Either a ``StreamState`` or the exact revision of the stream's last event."""

StreamPrefix = str | tuple[str, ...] | None
"""Which streams a ``read_all``/``subscribe`` keeps: those whose name starts with the prefix (or
with any of several); ``None`` keeps every stream."""


def prefixes(stream_prefix: StreamPrefix) -> tuple[str, ...]:
    """The prefixes a ``StreamPrefix`` names (empty: every stream)."""
    if not stream_prefix:
        return ()
    return (stream_prefix,) if isinstance(stream_prefix, str) else stream_prefix


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. ``data`` and ``metadata`` are JSON bytes."""

    id: UUID
    type: str
    data: bytes
    metadata: bytes = b""


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as the store holds it."""

    id: UUID
    type: str
    data: bytes
    metadata: bytes
    stream: str
    revision: int
    position: int
    recorded_at: datetime


LogRow = tuple[int, str, int, str, bytes, float]
"""One event of the global log as a fold reads it in bulk: ``(position, stream, revision, type,
data, recorded_at)``, ``recorded_at`` in Unix seconds. A plain tuple, without the id and metadata
a fold never looks at: a replay reads millions, and a ``RecordedEvent`` (a UUID, a datetime, a
frozen dataclass) costs more to build than the fold spends on the event."""


Digest = Callable[[str, bytes], tuple[str, bytes] | None]
"""A layer above's digest of an event, given its ``(type, data)``: ``(key, packed)`` or ``None``.

An adapter that keeps digests (SQLite) stores them beside the payload at append time, the key
interned, and returns them in ``DigestRow`` s, so a replay folds an event from a few bytes instead
of parsing its payload. Opaque to the store; the events layer defines and reads them
(``events.check_digest``). It must not raise."""
DigestRow = tuple[int, str, int, str, bytes | None, float, str | None, bytes | None]
"""A ``LogRow`` plus the event's digest: ``(position, stream, revision, type, data, recorded_at,
key, packed)``. When the event has a digest, ``data`` is ``None`` (not read, not decompressed:
``DigestReader.read_payloads`` fetches it); otherwise ``key`` and ``packed`` are ``None``."""


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Subscription marker: every event committed before the subscription started has been yielded.

    ``position`` is the position of the last event yielded so far (or the ``after`` the subscription
    started from), so it is a safe resume point.
    """

    position: int | None


@dataclass(frozen=True, slots=True)
class StreamMetadata:
    """Retention settings of one stream (KurrentDB's ``$maxAge`` / ``$maxCount``)."""

    max_age_seconds: int | None = None
    max_count: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


class EventStore(Protocol):
    """What the daemon needs from an event store. Both adapters pass ``tests/store/contract.py``."""

    @property
    def backend(self) -> str:
        """Short backend name for health output: ``sqlite`` or ``kurrentdb``."""
        ...

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected: Expected = StreamState.ANY
    ) -> int:
        """Append atomically; return the commit position of the last event.

        Raises ``ConcurrencyConflict`` when ``expected`` does not hold, ``StreamDeleted`` for a
        tombstoned stream, ``EventStoreUnavailable`` when the store cannot be reached.
        """
        ...

    async def read_stream(
        self,
        stream: str,
        *,
        backwards: bool = False,
        limit: int | None = None,
        from_revision: int | None = None,
    ) -> list[RecordedEvent]:
        """Read one stream. ``from_revision`` is inclusive (as KurrentDB's ``stream_position``).

        Raises ``StreamNotFound`` for a missing or soft-deleted stream.
        """
        ...

    async def read_all(
        self,
        *,
        after: int | None = None,
        stream_prefix: StreamPrefix = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Read the global log forwards from just after ``after``, optionally only streams with a prefix."""
        ...

    def subscribe(
        self, *, after: int | None = None, stream_prefix: StreamPrefix = None
    ) -> AsyncIterator[RecordedEvent | CaughtUp]:
        """Catch up from just after ``after``, yield ``CaughtUp`` once, then yield live events forever.

        No gap and no duplicate across the hand-over from catch-up to live. Errors surface from the
        iterator as ``EventStoreUnavailable``; the caller resubscribes from its own checkpoint.
        """
        ...

    async def set_stream_metadata(
        self, stream: str, *, max_age_seconds: int | None = None, max_count: int | None = None
    ) -> None:
        """Set retention for a stream; applies to ``read_stream`` at once."""
        ...

    async def get_stream_metadata(self, stream: str) -> StreamMetadata:
        """Retention settings of a stream (all ``None`` when never set)."""
        ...

    async def delete_stream(self, stream: str, expected: Expected = StreamState.ANY) -> None:
        """Soft delete: the stream reads as not found until appended to again. Never a tombstone."""
        ...

    async def truncate_before(self, stream: str, revision: int) -> None:
        """Hide the stream's events below ``revision`` for good (KurrentDB's ``$tb``).

        Never moves the truncation point back, and never hides the stream: its last revision stays,
        appends continue after it. ``read_all`` and subscriptions still see the hidden events until a
        scavenge removes them (the SQLite store scavenges by itself). Raises ``StreamNotFound`` for a
        missing stream.
        """
        ...

    async def ping(self) -> float:
        """Round-trip the store once; return the seconds it took. Raises ``EventStoreUnavailable``."""
        ...

    async def close(self) -> None:
        """Release connections and threads; pending appends are completed first."""
        ...


@runtime_checkable
class LogRowReader(Protocol):
    """An adapter that can read the global log as ``LogRow`` s itself (optional; see ``read_log``)."""

    async def read_log_rows(
        self, *, after: int | None, stream_prefix: StreamPrefix, limit: int
    ) -> list[LogRow]:
        """``read_all`` with the same arguments, as rows."""
        ...


async def read_log(
    store: EventStore, *, after: int | None, stream_prefix: StreamPrefix, limit: int
) -> list[LogRow]:
    """``store.read_all(...)`` as ``LogRow`` s: the adapter's own bulk read when it has one.

    Any ``EventStore`` works: without ``read_log_rows`` the rows are taken from ``read_all``.
    """
    if isinstance(store, LogRowReader):
        return await store.read_log_rows(after=after, stream_prefix=stream_prefix, limit=limit)
    return [
        (e.position, e.stream, e.revision, e.type, e.data, e.recorded_at.timestamp())
        for e in await store.read_all(after=after, stream_prefix=stream_prefix, limit=limit)
    ]


@runtime_checkable
class DigestReader(Protocol):
    """An adapter that stores digests and reads the log with them (optional; see ``read_digests``)."""

    async def read_digest_rows(
        self, *, after: int | None, stream_prefix: StreamPrefix, limit: int
    ) -> list[DigestRow]:
        """``read_log`` with the same arguments, each event's digest instead of its payload."""
        ...

    async def read_payloads(self, positions: Sequence[int]) -> dict[int, bytes]:
        """The payloads of the events at ``positions`` that are still stored."""
        ...


async def read_digests(
    store: EventStore, *, after: int | None, stream_prefix: StreamPrefix, limit: int
) -> list[DigestRow]:
    """``read_log`` with digests where the adapter keeps them; any ``EventStore`` works."""
    if isinstance(store, DigestReader):
        return await store.read_digest_rows(after=after, stream_prefix=stream_prefix, limit=limit)
    return [
        (*row, None, None)
        for row in await read_log(store, after=after, stream_prefix=stream_prefix, limit=limit)
    ]
