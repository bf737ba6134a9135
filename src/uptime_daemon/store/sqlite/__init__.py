"""The embedded event store: one SQLite file in WAL mode, one writer thread with group commit.

Why it is built this way:

* Writes (``writer.py``): every append is queued; one writer task drains the queue and commits the
  whole batch in one transaction on the writer thread, so many appends share one fsync. Each append
  runs inside its own SAVEPOINT, so one request's conflict does not undo its neighbours in the batch.
* Reads (``connection.py``, ``reads.py``): a second connection on its own thread, each read in its
  own short read transaction (one consistent snapshot). In WAL mode readers never wait for the
  writer and never block the event loop.
* Positions (``schema.py``): ``INTEGER PRIMARY KEY AUTOINCREMENT``, strictly increasing and never
  reused, even after a scavenge deleted the tail and the file was reopened: a checkpoint always
  stays valid.
* Compact rows (``schema.py``, ``codec.py``): names, types and metadata interned, ids as 16 bytes,
  payloads compressed with a zstd dictionary trained on the file's own payloads, so a check event
  costs about a fifth of what it did in version 1. An older file is upgraded in place on open,
  resumably (``upgrade.py``).
* Retention (``streams.py``, ``scavenge.py``): ``max_age_seconds`` / ``max_count`` / soft delete
  hide events from ``read_stream`` at read time (as KurrentDB does); a scavenge, run by the store
  itself every so many appends or minutes, deletes them for real, so temporary streams such as
  ``system-health-check`` do not grow the file without bound.
* Subscriptions (``head.py``, ``reads.py``) follow the log by position: the writer announces
  "something was committed" and a subscriber reads what follows its cursor, so catch-up and live
  use the same loop and the hand-over can neither skip nor repeat an event. Once caught up, what
  follows comes from the last commits the head holds in memory (each the events of one
  transaction, bounded by the file's sequence read under the write lock) when they reach back
  to the cursor, and from the file when they do not: at a check per commit, that saves a trip
  to the reader thread and a decode per check.

This module is the facade: argument checks, then the part that does the work.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from uptime_daemon.errors import EventStoreUnavailable
from uptime_daemon.store import (
    CaughtUp,
    Digest,
    DigestRow,
    Expected,
    LogRow,
    NewEvent,
    RecordedEvent,
    StreamMetadata,
    StreamPrefix,
    StreamState,
)
from uptime_daemon.store.sqlite import reads
from uptime_daemon.store.sqlite import truncate as truncation
from uptime_daemon.store.sqlite.checks import (
    MAX_STREAM_NAME,
    check_at_least,
    check_events,
    check_expected,
    check_stream,
)
from uptime_daemon.store.sqlite.codec import Decoder
from uptime_daemon.store.sqlite.connection import (
    BUSY_TIMEOUT_SECONDS,
    Connections,
    sqlite_path_from_url,
)
from uptime_daemon.store.sqlite.head import Head
from uptime_daemon.store.sqlite.reads import SUBSCRIPTION_PAGE
from uptime_daemon.store.sqlite.scavenge import (
    SCAVENGE_EVERY_APPENDS,
    SCAVENGE_INTERVAL_SECONDS,
    Scavenger,
)
from uptime_daemon.store.sqlite.schema import SCHEMA_VERSION, sequence
from uptime_daemon.store.sqlite.upgrade import migrate, migrate_file
from uptime_daemon.store.sqlite.writer import MAX_BATCH, Writer

__all__ = [
    "BUSY_TIMEOUT_SECONDS",
    "MAX_BATCH",
    "MAX_STREAM_NAME",
    "SCAVENGE_EVERY_APPENDS",
    "SCAVENGE_INTERVAL_SECONDS",
    "SCHEMA_VERSION",
    "SUBSCRIPTION_PAGE",
    "SqliteEventStore",
    "migrate_file",
    "sqlite_path_from_url",
]


class SqliteEventStore:
    """The ``EventStore`` protocol on one SQLite file, for one process.

    Open with ``await SqliteEventStore.open(path)``; ``clock_now`` stamps ``recorded_at`` and ages
    events for ``max_age_seconds`` (inject it in tests instead of sleeping).

    ``close()`` commits every append already queued, then ends live subscriptions: their next step
    raises ``EventStoreUnavailable("store is closed")``, as does every later call. Cancelling an
    ``append`` does not withdraw it once queued; retrying it is safe because appends are idempotent.
    """

    backend: Final = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        clock_now: Callable[[], datetime],
        scavenge_every_appends: int,
        scavenge_interval_seconds: float,
        digest: Digest | None = None,
    ) -> None:
        """Use ``open``: construction does no I/O."""
        self._now = clock_now
        self._connections = Connections(path)
        self._head = Head()
        self._decoder = Decoder()
        self._scavenger = Scavenger(
            self._connections,
            clock_now=clock_now,
            every_appends=scavenge_every_appends,
            interval_seconds=scavenge_interval_seconds,
        )
        self._writer = Writer(
            self._connections, self._head, self._scavenger, clock_now=clock_now, digest=digest
        )
        self._closing = False
        self._close_done = asyncio.Event()

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        clock_now: Callable[[], datetime] | None = None,
        scavenge_every_appends: int = SCAVENGE_EVERY_APPENDS,
        scavenge_interval_seconds: float = SCAVENGE_INTERVAL_SECONDS,
        digest: Digest | None = None,
    ) -> SqliteEventStore:
        """Open ``path``, creating parent directories, the file and the schema as needed.

        ``digest`` (``events.check_digest`` in the daemon) is stored beside each appended event and
        read back by ``read_digest_rows``; an older file's events get theirs as it is upgraded.

        Raises ``EventStoreUnavailable`` when the file cannot be created, opened or written, is not
        a database, or has a schema newer than this build.
        """
        store = cls(
            Path(path),
            clock_now=clock_now or (lambda: datetime.now(UTC)),
            scavenge_every_appends=scavenge_every_appends,
            scavenge_interval_seconds=scavenge_interval_seconds,
            digest=digest,
        )
        try:
            await store._connections.open(
                functools.partial(migrate, path=store.path, digest=digest)
            )
            store._head.position = await store._connections.write(sequence)
            await store._connections.write(store._writer.load)
        except BaseException:
            await store.close()
            raise
        store._scavenger.start()
        store._writer.start()
        return store

    @property
    def path(self) -> Path:
        """The database file."""
        return self._connections.path

    @property
    def transactions(self) -> int:
        """Append transactions committed so far: fewer than ``appends`` when group commit works."""
        return self._writer.transactions

    @property
    def appends(self) -> int:
        """Append requests answered by a committed transaction so far."""
        return self._writer.appends

    @property
    def reads(self) -> int:
        """Reads of the file so far, each one trip to the reader thread (subscriptions' included)."""
        return self._connections.reads

    # --- writes ------------------------------------------------------------------------------------

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected: Expected = StreamState.ANY
    ) -> int:
        """Queue the append for the next group commit and wait for its own outcome."""
        if self._closing:
            raise EventStoreUnavailable("store is closed")
        check_stream(stream)
        return await self._writer.append(
            stream, check_events(stream, events), check_expected(expected)
        )

    async def set_stream_metadata(
        self, stream: str, *, max_age_seconds: int | None = None, max_count: int | None = None
    ) -> None:
        """Set (or, with ``None``, clear) retention; applies to the next read."""
        self._head.ensure_open()
        check_stream(stream)
        check_at_least("max_age_seconds", max_age_seconds, 1)
        check_at_least("max_count", max_count, 1)
        await self._writer.set_stream_metadata(
            stream, max_age_seconds=max_age_seconds, max_count=max_count
        )

    async def delete_stream(self, stream: str, expected: Expected = StreamState.ANY) -> None:
        """Soft delete: hide every current event; a later append revives the stream at last + 1.

        Raises ``StreamNotFound`` for a missing or already deleted stream, whatever ``expected``
        (KurrentDB answers "not found" there too), and ``ConcurrencyConflict`` when ``expected``
        does not hold for an existing one.
        """
        self._head.ensure_open()
        check_stream(stream)
        await self._writer.delete_stream(stream, check_expected(expected))

    async def truncate_before(self, stream: str, revision: int) -> None:
        """Hide the stream's events below ``revision`` for good; the next scavenge deletes them."""
        self._head.ensure_open()
        check_stream(stream)
        check_at_least("revision", revision, 0)
        await self._connections.write(
            functools.partial(truncation.truncate_before, stream=stream, revision=revision)
        )

    async def scavenge(self) -> int:
        """Physically delete every event ``read_stream`` can no longer see; return how many.

        Afterwards ``read_all`` and subscriptions no longer see them either (as after a KurrentDB
        scavenge). The store runs this by itself; call it to reclaim space at once.
        """
        self._head.ensure_open()
        return await self._scavenger.run()

    # --- reads -------------------------------------------------------------------------------------

    async def get_stream_metadata(self, stream: str) -> StreamMetadata:
        """Retention settings of a stream (all ``None`` when never set)."""
        self._head.ensure_open()
        check_stream(stream)
        return await reads.stream_metadata(self._connections, stream)

    async def read_stream(
        self,
        stream: str,
        *,
        backwards: bool = False,
        limit: int | None = None,
        from_revision: int | None = None,
    ) -> list[RecordedEvent]:
        """Visible events of one stream; ``from_revision`` inclusive in either direction."""
        self._head.ensure_open()
        check_stream(stream)
        check_at_least("limit", limit, 1)
        check_at_least("from_revision", from_revision, 0)
        return await reads.read_stream(
            self._connections,
            self._decoder,
            stream,
            now=self._now().timestamp(),
            backwards=backwards,
            limit=limit,
            from_revision=from_revision,
        )

    async def read_all(
        self,
        *,
        after: int | None = None,
        stream_prefix: StreamPrefix = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """The global log after ``after`` (exclusive), optionally only streams with a prefix."""
        self._head.ensure_open()
        check_at_least("limit", limit, 1)
        check_at_least("after", after, 0)
        return await reads.read_all(
            self._connections, self._decoder, after=after or 0, prefix=stream_prefix, limit=limit
        )

    async def read_log_rows(
        self, *, after: int | None, stream_prefix: StreamPrefix, limit: int
    ) -> list[LogRow]:
        """``read_all`` as ``LogRow`` s (``store.read_log``), for a fold of the whole log."""
        self._head.ensure_open()
        check_at_least("limit", limit, 1)
        check_at_least("after", after, 0)
        return await reads.read_log_rows(
            self._connections, self._decoder, after=after or 0, prefix=stream_prefix, limit=limit
        )

    async def read_digest_rows(
        self, *, after: int | None, stream_prefix: StreamPrefix, limit: int
    ) -> list[DigestRow]:
        """``read_log_rows`` with digests (``store.read_digests``): a replay's bulk read."""
        self._head.ensure_open()
        check_at_least("limit", limit, 1)
        check_at_least("after", after, 0)
        return await reads.read_digest_rows(
            self._connections, self._decoder, after=after or 0, prefix=stream_prefix, limit=limit
        )

    async def read_payloads(self, positions: Sequence[int]) -> dict[int, bytes]:
        """The payloads of the events at ``positions`` that are still stored."""
        self._head.ensure_open()
        return await reads.read_payloads(self._connections, self._decoder, positions)

    def subscribe(
        self, *, after: int | None = None, stream_prefix: StreamPrefix = None
    ) -> AsyncIterator[RecordedEvent | CaughtUp]:
        """Catch up, yield ``CaughtUp`` once, then follow commits (see ``reads.subscribe``).

        Arguments and the store are checked on the first step, as with any async generator.
        """
        return reads.subscribe(
            self._connections, self._decoder, self._head, after=after, prefix=stream_prefix
        )

    # --- health and lifecycle ----------------------------------------------------------------------

    async def ping(self) -> float:
        """Time one small query that touches the file, on the reader thread."""
        self._head.ensure_open()
        return await reads.ping(self._connections)

    async def close(self) -> None:
        """Commit what is queued, end subscriptions, close both connections and threads."""
        if self._closing:
            await self._close_done.wait()
            return
        self._closing = True
        try:
            await self._writer.stop()
        finally:
            self._head.closed = True
            self._writer.fail_leftovers()
            await self._head.announce()
            await self._connections.close()
            self._close_done.set()
