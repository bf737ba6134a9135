"""The embedded event store: SQLite in WAL mode, one writer thread with group commit, no server.

* Writes: every append is queued; a writer task drains the queue and commits the whole batch in one
  transaction on the writer thread (one fsync for many appends), with a SAVEPOINT per append so one
  request's conflict does not undo its neighbours.
* Reads: a second connection on its own thread, so reads never block the event loop and never wait
  for a write (WAL readers see the last commit).
* Positions: ``INTEGER PRIMARY KEY AUTOINCREMENT`` — strictly increasing and never reused, even after
  a scavenge deletes the tail.
* Retention: ``max_age_seconds`` / ``max_count`` / soft delete hide events from ``read_stream`` at read
  time (as KurrentDB does) and a periodic scavenge deletes them for real, so temporary streams such
  as ``system-health-check`` do not grow the file without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TypeVar
from uuid import UUID

import structlog

from uptime_daemon.errors import (
    ConcurrencyConflict,
    EventStoreError,
    EventStoreUnavailable,
    InvalidArgument,
    StreamNotFound,
)
from uptime_daemon.store import (
    CaughtUp,
    Expected,
    NewEvent,
    RecordedEvent,
    StreamMetadata,
    StreamState,
)

log = structlog.get_logger(__name__)

SCHEMA_VERSION: Final = 1
MAX_BATCH: Final = 512
"""Appends committed together at most (bounds one transaction's size and latency)."""
SUBSCRIPTION_PAGE: Final = 1000
SCAVENGE_EVERY_APPENDS: Final = 5000
MAX_STREAM_NAME: Final = 255
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    stream      TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    id          TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    data        BLOB    NOT NULL,
    metadata    BLOB    NOT NULL,
    recorded_at REAL    NOT NULL,
    UNIQUE (stream, revision),
    UNIQUE (stream, id)
);
CREATE TABLE IF NOT EXISTS streams (
    name            TEXT    PRIMARY KEY,
    last_revision   INTEGER NOT NULL,
    truncate_before INTEGER NOT NULL DEFAULT 0,
    deleted         INTEGER NOT NULL DEFAULT 0,
    max_age_seconds INTEGER,
    max_count       INTEGER
) WITHOUT ROWID;
"""
_COLUMNS: Final = "position, stream, revision, id, type, data, metadata, recorded_at"
T = TypeVar("T")


def sqlite_path_from_url(url: str) -> Path:
    """``sqlite:///relative/path`` or ``sqlite:////absolute/path`` (SQLAlchemy's convention)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise InvalidArgument(
            f"not a sqlite URL: {url!r} (use sqlite:///relative or sqlite:////absolute)"
        )
    return Path(url[len(prefix) :])


def _check_stream(stream: str) -> None:
    if not stream or len(stream) > MAX_STREAM_NAME or "\x00" in stream:
        raise InvalidArgument(f"invalid stream name {stream!r}")


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise InvalidArgument(f"limit must be at least 1, got {limit}")


def _prefix_bounds(prefix: str) -> tuple[str, str]:
    """``[prefix, upper)``: every string starting with ``prefix`` sorts inside (no LIKE escaping)."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _row_to_event(row: tuple[int, str, int, str, str, bytes, bytes, float]) -> RecordedEvent:
    position, stream, revision, uid, kind, data, metadata, recorded = row
    return RecordedEvent(
        id=UUID(uid),
        type=kind,
        data=bytes(data),
        metadata=bytes(metadata),
        stream=stream,
        revision=revision,
        position=position,
        recorded_at=datetime.fromtimestamp(recorded, UTC),
    )


@dataclass(slots=True)
class _Append:
    stream: str
    events: Sequence[NewEvent]
    expected: Expected
    future: asyncio.Future[int] = field(repr=False)


class SqliteEventStore:
    """The ``EventStore`` protocol on one SQLite file."""

    backend: Final = "sqlite"

    def __init__(self, path: Path, now: Callable[[], datetime]) -> None:
        """Use ``open``: construction does no I/O."""
        self.path = path
        self._now = now
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._queue: asyncio.Queue[_Append] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._head = 0
        self._changed = asyncio.Condition()
        self._closed = False
        self._appends_since_scavenge = 0
        self.transactions = 0
        """Write transactions committed: fewer than appends under load (group commit)."""

    @classmethod
    async def open(
        cls, path: Path, *, now: Callable[[], datetime] | None = None
    ) -> SqliteEventStore:
        """Open (creating if needed) the database at ``path``."""
        store = cls(path, now or (lambda: datetime.now(UTC)))
        try:
            await store._on_writer(store._open_writer)
            await store._on_reader(store._open_reader)
        except EventStoreError:
            await store.close()
            raise
        store._writer_task = asyncio.create_task(store._write_loop(), name="sqlite-writer")
        return store

    # --- threads ----------------------------------------------------------------------------

    async def _on_writer(self, fn: Callable[[], T]) -> T:
        return await self._in_thread(self._writer, fn)

    async def _on_reader(self, fn: Callable[[], T]) -> T:
        return await self._in_thread(self._reader, fn)

    async def _in_thread(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn)
        except sqlite3.Error as exc:
            raise EventStoreUnavailable(f"sqlite {self.path}: {type(exc).__name__}: {exc}") from exc
        except RuntimeError as exc:  # executor shut down under us
            raise EventStoreUnavailable("store is closed") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    def _open_writer(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        self._write_conn = conn
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this build ({SCHEMA_VERSION})"
            )
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._head = conn.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0]

    def _open_reader(self) -> None:
        self._read_conn = self._connect()
        self._read_conn.execute("PRAGMA query_only = ON")

    def _ensure_open(self) -> None:
        if self._closed:
            raise EventStoreUnavailable("store is closed")

    # --- writes -----------------------------------------------------------------------------

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected: Expected = StreamState.ANY
    ) -> int:
        """Queue the append for the next group commit and wait for its outcome."""
        self._ensure_open()
        _check_stream(stream)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Append(stream, list(events), expected, future))
        return await future

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit(batch)

    async def _commit(self, batch: list[_Append]) -> None:
        try:
            outcomes = await self._on_writer(lambda: self._write_batch(batch))
        except EventStoreError as exc:
            outcomes = [exc] * len(batch)
        for request, outcome in zip(batch, outcomes, strict=True):
            if request.future.done():
                continue
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)
        await self._publish()
        if self._appends_since_scavenge >= SCAVENGE_EVERY_APPENDS:
            self._appends_since_scavenge = 0
            with contextlib.suppress(EventStoreError):
                await self.scavenge()

    def _write_batch(self, batch: list[_Append]) -> list[int | EventStoreError]:
        conn = self._write_conn
        assert conn is not None  # noqa: S101 - opened before the writer task starts
        outcomes: list[int | EventStoreError] = []
        recorded = self._now().timestamp()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for request in batch:
                conn.execute("SAVEPOINT append")
                try:
                    outcomes.append(self._append_one(conn, request, recorded))
                    conn.execute("RELEASE append")
                except EventStoreError as exc:
                    conn.execute("ROLLBACK TO append")
                    conn.execute("RELEASE append")
                    outcomes.append(exc)
                except sqlite3.IntegrityError as exc:  # e.g. one id twice in the same batch
                    conn.execute("ROLLBACK TO append")
                    conn.execute("RELEASE append")
                    outcomes.append(InvalidArgument(f"stream {request.stream!r}: {exc}"))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.transactions += 1
        self._appends_since_scavenge += len(batch)
        self._head = conn.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0]
        return outcomes

    @staticmethod
    def _current(conn: sqlite3.Connection, stream: str) -> tuple[int | None, int | None]:
        """``(visible revision or None when no stream, stored last revision or None)``."""
        row = conn.execute(
            "SELECT last_revision, deleted FROM streams WHERE name = ?", (stream,)
        ).fetchone()
        if row is None:
            return None, None
        last, deleted = row
        return (None if deleted else last), last

    @staticmethod
    def _expected_holds(expected: Expected, current: int | None) -> bool:
        if expected == StreamState.ANY:
            return True
        if expected == StreamState.NO_STREAM:
            return current is None
        if expected == StreamState.STREAM_EXISTS:
            return current is not None
        return current == expected

    def _append_one(self, conn: sqlite3.Connection, request: _Append, recorded: float) -> int:
        stream, events, expected = request.stream, request.events, request.expected
        current, stored_last = self._current(conn, stream)
        if events:
            replayed = self._idempotent(conn, request, current)
            if replayed is not None:
                return replayed
        if not self._expected_holds(expected, current):
            raise ConcurrencyConflict(stream, expected, current)
        if not events:
            row = conn.execute(
                "SELECT MAX(position) FROM events WHERE stream = ?", (stream,)
            ).fetchone()
            return int(row[0] or 0)
        revision = 0 if stored_last is None else stored_last + 1
        position = 0
        for event in events:
            cursor = conn.execute(
                "INSERT INTO events (stream, revision, id, type, data, metadata, recorded_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (stream, revision, str(event.id), event.type, event.data, event.metadata, recorded),
            )
            position = int(cursor.lastrowid or 0)
            revision += 1
        conn.execute(
            "INSERT INTO streams (name, last_revision) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET last_revision = excluded.last_revision, deleted = 0",
            (stream, revision - 1),
        )
        return position

    @staticmethod
    def _idempotent(conn: sqlite3.Connection, request: _Append, current: int | None) -> int | None:
        """The original position when this exact batch is already stored; conflict on a partial one."""
        ids = [str(event.id) for event in request.events]
        marks = ",".join("?" * len(ids))
        found = conn.execute(
            f"SELECT id, revision, position FROM events WHERE stream = ? AND id IN ({marks}) ORDER BY revision",  # noqa: S608 - placeholders only
            (request.stream, *ids),
        ).fetchall()
        if not found:
            return None
        revisions = [row[1] for row in found]
        same_batch = [row[0] for row in found] == ids and revisions == list(
            range(revisions[0], revisions[0] + len(ids))
        )
        expected = request.expected
        before = revisions[0] - 1
        if same_batch and (
            expected == StreamState.ANY
            or (expected == StreamState.NO_STREAM and before == -1)
            or (expected == StreamState.STREAM_EXISTS and before >= 0)
            or (isinstance(expected, int) and expected == before)
        ):
            return int(found[-1][2])
        raise ConcurrencyConflict(request.stream, expected, current)

    async def set_stream_metadata(
        self, stream: str, *, max_age_seconds: int | None = None, max_count: int | None = None
    ) -> None:
        """Set retention; applies to reads at once (a stream with no events gets a placeholder row)."""
        self._ensure_open()
        _check_stream(stream)
        for name, value in (("max_age_seconds", max_age_seconds), ("max_count", max_count)):
            if value is not None and value < 1:
                raise InvalidArgument(f"{name} must be at least 1, got {value}")

        def write() -> None:
            conn = self._write_conn
            assert conn is not None  # noqa: S101
            conn.execute(
                "INSERT INTO streams (name, last_revision, deleted, max_age_seconds, max_count) "
                "VALUES (?, -1, 1, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "max_age_seconds = excluded.max_age_seconds, max_count = excluded.max_count",
                (stream, max_age_seconds, max_count),
            )

        await self._on_writer(write)

    async def get_stream_metadata(self, stream: str) -> StreamMetadata:
        """Retention settings of a stream."""
        self._ensure_open()
        _check_stream(stream)

        def read() -> tuple[int | None, int | None] | None:
            conn = self._read_conn
            assert conn is not None  # noqa: S101
            row = conn.execute(
                "SELECT max_age_seconds, max_count FROM streams WHERE name = ?", (stream,)
            ).fetchone()
            return None if row is None else (row[0], row[1])

        row = await self._on_reader(read)
        return (
            StreamMetadata()
            if row is None
            else StreamMetadata(max_age_seconds=row[0], max_count=row[1])
        )

    async def delete_stream(self, stream: str, expected: Expected = StreamState.ANY) -> None:
        """Soft delete: hide every current event; a later append revives the stream."""
        self._ensure_open()
        _check_stream(stream)

        def write() -> None:
            conn = self._write_conn
            assert conn is not None  # noqa: S101
            current, stored_last = self._current(conn, stream)
            if current is None:
                if expected not in (StreamState.ANY, StreamState.NO_STREAM):
                    raise ConcurrencyConflict(stream, expected, None)
                raise StreamNotFound(stream)
            if not self._expected_holds(expected, current):
                raise ConcurrencyConflict(stream, expected, current)
            conn.execute(
                "UPDATE streams SET deleted = 1, truncate_before = ? WHERE name = ?",
                ((stored_last or 0) + 1, stream),
            )

        await self._on_writer(write)

    async def scavenge(self) -> int:
        """Delete events no stream read can see any more; return how many were removed."""
        self._ensure_open()
        now = self._now().timestamp()

        def write() -> int:
            conn = self._write_conn
            assert conn is not None  # noqa: S101
            before = conn.total_changes
            conn.execute(
                """
                DELETE FROM events WHERE position IN (
                    SELECT e.position FROM events e JOIN streams s ON s.name = e.stream
                    WHERE e.revision < s.truncate_before
                       OR (s.max_count IS NOT NULL AND e.revision <= s.last_revision - s.max_count)
                       OR (s.max_age_seconds IS NOT NULL AND e.recorded_at < ? - s.max_age_seconds)
                )
                """,
                (now,),
            )
            return conn.total_changes - before

        removed = await self._on_writer(write)
        if removed:
            log.debug("store_scavenged", removed=removed)
        return removed

    # --- reads ------------------------------------------------------------------------------

    async def read_stream(
        self,
        stream: str,
        *,
        backwards: bool = False,
        limit: int | None = None,
        from_revision: int | None = None,
    ) -> list[RecordedEvent]:
        """Visible events of one stream (retention and soft delete applied)."""
        self._ensure_open()
        _check_stream(stream)
        _check_limit(limit)
        now = self._now().timestamp()

        def read() -> list[RecordedEvent] | None:
            conn = self._read_conn
            assert conn is not None  # noqa: S101
            meta = conn.execute(
                "SELECT last_revision, truncate_before, deleted, max_age_seconds, max_count "
                "FROM streams WHERE name = ?",
                (stream,),
            ).fetchone()
            if meta is None or meta[2]:
                return None
            last, floor, _, max_age, max_count = meta
            if max_count is not None:
                floor = max(floor, last - max_count + 1)
            clauses = ["stream = ?", "revision >= ?"]
            params: list[object] = [stream, floor]
            if max_age is not None:
                clauses.append("recorded_at >= ?")
                params.append(now - max_age)
            if from_revision is not None:
                clauses.append("revision <= ?" if backwards else "revision >= ?")
                params.append(from_revision)
            order = "DESC" if backwards else "ASC"
            params.append(-1 if limit is None else limit)
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "  # noqa: S608 - fixed fragments
                f"ORDER BY revision {order} LIMIT ?",
                params,
            ).fetchall()
            return [_row_to_event(row) for row in rows]

        found = await self._on_reader(read)
        if found is None:
            raise StreamNotFound(stream)
        return found

    async def read_all(
        self,
        *,
        after: int | None = None,
        stream_prefix: str | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """The global log after ``after`` (exclusive), optionally only streams with a prefix."""
        self._ensure_open()
        _check_limit(limit)
        params: list[object] = [after or 0]
        where = "position > ?"
        if stream_prefix:
            low, high = _prefix_bounds(stream_prefix)
            where += " AND stream >= ? AND stream < ?"
            params += [low, high]
        params.append(-1 if limit is None else limit)
        sql = f"SELECT {_COLUMNS} FROM events WHERE {where} ORDER BY position LIMIT ?"  # noqa: S608

        def read() -> list[RecordedEvent]:
            conn = self._read_conn
            assert conn is not None  # noqa: S101
            return [_row_to_event(row) for row in conn.execute(sql, params).fetchall()]

        return await self._on_reader(read)

    async def subscribe(
        self, *, after: int | None = None, stream_prefix: str | None = None
    ) -> AsyncIterator[RecordedEvent | CaughtUp]:
        """Catch up in pages, announce ``CaughtUp`` once, then follow commits as they happen."""
        position = after
        caught_up = False
        while True:
            self._ensure_open()
            head = self._head  # every event at or below this is committed and visible
            page = await self.read_all(
                after=position, stream_prefix=stream_prefix, limit=SUBSCRIPTION_PAGE
            )
            for event in page:
                position = event.position
                yield event
            if len(page) == SUBSCRIPTION_PAGE:
                continue
            if not caught_up:
                caught_up = True
                yield CaughtUp(position)
            async with self._changed:
                await self._changed.wait_for(functools.partial(self._moved_past, head))

    def _moved_past(self, head: int) -> bool:
        return self._head > head or self._closed

    async def _publish(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def ping(self) -> float:
        """Time one trivial query on the reader connection."""
        self._ensure_open()
        started = time.perf_counter()

        def query() -> None:
            conn = self._read_conn
            assert conn is not None  # noqa: S101
            conn.execute("SELECT 1").fetchone()

        await self._on_reader(query)
        return time.perf_counter() - started

    async def close(self) -> None:
        """Commit what is queued, wake subscribers, close both connections and threads."""
        if self._closed:
            return
        if self._writer_task is not None:
            while not self._queue.empty():
                batch: list[_Append] = []
                while not self._queue.empty() and len(batch) < MAX_BATCH:
                    batch.append(self._queue.get_nowait())
                await self._commit(batch)
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
        self._closed = True
        await self._publish()
        for executor, conn in ((self._writer, self._write_conn), (self._reader, self._read_conn)):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error, RuntimeError):
                    await asyncio.get_running_loop().run_in_executor(executor, conn.close)
            executor.shutdown(wait=True)
