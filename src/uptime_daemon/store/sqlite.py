"""The embedded event store: one SQLite file in WAL mode, one writer thread with group commit.

Why it is built this way:

* Writes: every append is queued; one writer task drains the queue and commits the whole batch in
  one transaction on the writer thread, so many appends share one fsync. Each append runs inside its
  own SAVEPOINT, so one request's conflict does not undo its neighbours in the batch.
* Reads: a second connection on its own thread, each read in its own short read transaction (one
  consistent snapshot). In WAL mode readers never wait for the writer and never block the event loop.
* Positions: ``INTEGER PRIMARY KEY AUTOINCREMENT``, strictly increasing and never reused, even
  after a scavenge deleted the tail and the file was reopened: a checkpoint always stays valid.
* Retention: ``max_age_seconds`` / ``max_count`` / soft delete hide events from ``read_stream`` at
  read time (as KurrentDB does); a scavenge, run by the store itself every so many appends or
  minutes, deletes them for real, so temporary streams such as ``system-health-check`` do not grow
  the file without bound.
* Subscriptions never receive events from memory: the writer only announces "something was
  committed" and every subscriber re-reads the file by position, so catch-up and live use the same
  code path and the hand-over can neither skip nor repeat an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, NamedTuple, TypeVar
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
"""Events read per catch-up step of a subscription."""
MAX_STREAM_NAME: Final = 255
BUSY_TIMEOUT_SECONDS: Final = 10.0
"""How long a connection waits for another process's lock before the operation is unavailable."""
SCAVENGE_EVERY_APPENDS: Final = 1000
SCAVENGE_INTERVAL_SECONDS: Final = 600.0
_ID_CHUNK: Final = 500
"""Event ids looked up per query (well under SQLite's limit on bound parameters)."""
_URL_PREFIX: Final = "sqlite:///"
_MAX_CHAR: Final = 0x10FFFF
_SURROGATES: Final = range(0xD800, 0xE000)

_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # 0 → 1: the first schema. A later version appends a tuple here; ``user_version`` says how far
    # a file has come, so an old file is upgraded step by step on open.
    (
        """
        CREATE TABLE events (
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
        )
        """,
        """
        CREATE TABLE streams (
            name            TEXT    PRIMARY KEY,
            last_revision   INTEGER NOT NULL,
            truncate_before INTEGER NOT NULL DEFAULT 0,
            deleted         INTEGER NOT NULL DEFAULT 0,
            max_age_seconds INTEGER,
            max_count       INTEGER
        ) WITHOUT ROWID
        """,
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION  # noqa: S101 - one migration step per schema version

_COLUMNS: Final = "position, stream, revision, id, type, data, metadata, recorded_at"
_INSERT: Final = (
    "INSERT INTO events (stream, revision, id, type, data, metadata, recorded_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
T = TypeVar("T")


def sqlite_path_from_url(url: str) -> Path:
    """``sqlite:///relative/path`` (from the working directory) or ``sqlite:////absolute/path``.

    SQLAlchemy's convention, so an operator's muscle memory works. Query strings, ``:memory:`` and
    anything else are refused: the daemon needs a file that outlives it.
    """
    rest = url[len(_URL_PREFIX) :] if url.startswith(_URL_PREFIX) else ""
    if not rest.strip("/") or rest == ":memory:" or "?" in rest or "#" in rest:
        raise InvalidArgument(
            f"not a sqlite file URL: {url!r} (use sqlite:///relative/path or sqlite:////absolute/path)"
        )
    return Path(rest)


# --- argument checks (caller errors, raised before anything is queued) --------------------------


def _check_stream(stream: object) -> str:
    if not isinstance(stream, str) or not stream or len(stream) > MAX_STREAM_NAME:
        raise InvalidArgument(
            f"stream name must be 1 to {MAX_STREAM_NAME} characters, got {stream!r}"
        )
    if "\x00" in stream:
        raise InvalidArgument(f"stream name must not contain NUL: {stream!r}")
    return stream


def _check_at_least(name: str, value: object, minimum: int) -> None:
    """``None`` or an int (not a bool) of at least ``minimum``."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_expected(expected: object) -> Expected:
    if isinstance(expected, StreamState):
        return expected
    if isinstance(expected, int) and not isinstance(expected, bool) and expected >= 0:
        return expected
    raise InvalidArgument(f"expected must be a StreamState or a revision >= 0, got {expected!r}")


def _check_event(stream: str, event: object) -> UUID:
    """The event's id, once its fields have the types the schema stores (callers are untyped too)."""
    if not isinstance(event, NewEvent) or not isinstance(event.id, UUID):
        raise InvalidArgument(f"stream {stream!r}: not a NewEvent with a UUID id: {event!r}")
    kind: object = event.type
    if not isinstance(kind, str) or not kind:
        raise InvalidArgument(f"stream {stream!r}: event {event.id} needs a non-empty type")
    data: object = event.data
    metadata: object = event.metadata
    if not isinstance(data, bytes) or not isinstance(metadata, bytes):
        raise InvalidArgument(
            f"stream {stream!r}: event {event.id} data and metadata must be bytes"
        )
    return event.id


def _check_events(stream: str, events: Sequence[NewEvent]) -> tuple[NewEvent, ...]:
    """A private copy of the batch, each event well-formed and its id used once."""
    batch = tuple(events)
    ids = [_check_event(stream, event) for event in batch]
    if len(set(ids)) != len(ids):
        raise InvalidArgument(f"stream {stream!r}: an event id appears twice in one append")
    return batch


def _prefix_upper(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (``None``: no upper bound).

    ``stream >= prefix AND stream < upper`` is an exact prefix match with no LIKE/GLOB escaping, and
    SQLite's BINARY collation (UTF-8 bytes) orders like code points, so the range is exact.
    """
    stripped = prefix.rstrip(chr(_MAX_CHAR))
    if not stripped:
        return None
    bumped = ord(stripped[-1]) + 1
    if bumped in _SURROGATES:
        bumped = _SURROGATES.stop
    return stripped[:-1] + chr(bumped)


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


def _allows(row: _Stream | None, expected: Expected) -> bool:
    """Expected-state check against a stream row; no row at all is a stream that never existed."""
    if row is None:
        return expected in {StreamState.ANY, StreamState.NO_STREAM}
    return row.allows(expected)


class _Stream(NamedTuple):
    """A ``streams`` row. ``last_revision`` is -1 for a stream that only has metadata so far."""

    last_revision: int
    truncate_before: int
    deleted: bool
    max_age_seconds: int | None
    max_count: int | None

    @property
    def visible_revision(self) -> int | None:
        """The revision expected-state checks see: ``None`` for a soft-deleted or empty stream."""
        return None if self.deleted or self.last_revision < 0 else self.last_revision

    def allows(self, expected: Expected) -> bool:
        """KurrentDB's expected-state rule for this stream.

        A soft-deleted stream counts as no stream, except that its last revision is still accepted:
        its events are hidden, not gone, and revisions continue from there.
        """
        current = self.visible_revision
        if expected == StreamState.NO_STREAM:
            return current is None
        if expected == StreamState.STREAM_EXISTS:
            return current is not None
        if isinstance(expected, int):
            return expected in {current, self.last_revision if self.deleted else None}
        return True  # ANY

    def floor(self) -> int:
        """Lowest revision still readable by count rules (truncate-before and ``max_count``)."""
        if self.max_count is None:
            return self.truncate_before
        return max(self.truncate_before, self.last_revision - self.max_count + 1)


def _stream_row(conn: sqlite3.Connection, stream: str) -> _Stream | None:
    row = conn.execute(
        "SELECT last_revision, truncate_before, deleted, max_age_seconds, max_count "
        "FROM streams WHERE name = ?",
        (stream,),
    ).fetchone()
    return None if row is None else _Stream(row[0], row[1], bool(row[2]), row[3], row[4])


def _sequence(conn: sqlite3.Connection) -> int:
    """The highest position ever issued (survives deletes of the tail, unlike ``MAX(position)``)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return 0 if row is None else int(row[0])


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, begin: str = "BEGIN") -> Iterator[None]:
    """One explicit transaction: ``BEGIN`` for a read snapshot, ``BEGIN IMMEDIATE`` for writes."""
    conn.execute(begin)
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the original error is the one to report
                conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _unavailable(path: Path, exc: BaseException) -> EventStoreUnavailable:
    error = EventStoreUnavailable(f"sqlite {path}: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


@dataclass(slots=True)
class _Append:
    stream: str
    events: tuple[NewEvent, ...]
    expected: Expected
    future: asyncio.Future[int] = field(repr=False)


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
    ) -> None:
        """Use ``open``: construction does no I/O."""
        self._path = path
        self._now = clock_now
        self._scavenge_every = scavenge_every_appends
        self._scavenge_interval = scavenge_interval_seconds
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._queue: asyncio.Queue[_Append | None] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._head = 0
        self._committed = asyncio.Condition()
        self._closing = False
        self._closed = False
        self._close_done = asyncio.Event()
        self._appends_since_scavenge = 0
        self._last_scavenge = 0.0
        self._transactions = 0
        self._appends = 0

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        clock_now: Callable[[], datetime] | None = None,
        scavenge_every_appends: int = SCAVENGE_EVERY_APPENDS,
        scavenge_interval_seconds: float = SCAVENGE_INTERVAL_SECONDS,
    ) -> SqliteEventStore:
        """Open ``path``, creating parent directories, the file and the schema as needed.

        Raises ``EventStoreUnavailable`` when the file cannot be created, opened or written, is not
        a database, or has a schema newer than this build.
        """
        store = cls(
            Path(path),
            clock_now=clock_now or (lambda: datetime.now(UTC)),
            scavenge_every_appends=scavenge_every_appends,
            scavenge_interval_seconds=scavenge_interval_seconds,
        )
        try:
            store._head = await store._run(store._writer, store._open_writer)
            await store._run(store._reader, store._open_reader)
        except BaseException:
            await store.close()
            raise
        store._last_scavenge = store._now().timestamp()
        store._writer_task = asyncio.create_task(store._write_loop(), name="sqlite-writer")
        return store

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def transactions(self) -> int:
        """Append transactions committed so far: fewer than ``appends`` when group commit works."""
        return self._transactions

    @property
    def appends(self) -> int:
        """Append requests answered by a committed transaction so far."""
        return self._appends

    # --- threads and connections -----------------------------------------------------------------

    async def _run(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        """Run ``fn`` on one of our two threads; driver and OS errors become ``EventStoreUnavailable``."""
        loop = asyncio.get_running_loop()
        try:
            pending = loop.run_in_executor(executor, fn)
        except RuntimeError as exc:  # the executor was shut down by close()
            raise EventStoreUnavailable("store is closed") from exc
        try:
            return await pending
        except (sqlite3.Error, OSError) as exc:
            raise _unavailable(self._path, exc) from exc

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(self._writer, lambda: fn(self._connection(self._write_conn)))

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction, so every query in it sees the same snapshot."""

        def in_snapshot() -> T:
            conn = self._connection(self._read_conn)
            with _transaction(conn):
                return fn(conn)

        return await self._run(self._reader, in_snapshot)

    @staticmethod
    def _connection(conn: sqlite3.Connection | None) -> sqlite3.Connection:
        if conn is None:
            raise EventStoreUnavailable("store is closed")
        return conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        return conn

    def _open_writer(self) -> int:
        """On the writer thread: connect, switch to WAL, migrate; return the last issued position."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
            head = _sequence(conn)
        except BaseException:
            conn.close()
            raise
        self._write_conn = conn
        return head

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Without WAL a reader would wait for the writer: refuse rather than degrade silently."""
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise EventStoreUnavailable(
                f"sqlite {self._path}: cannot use WAL (journal mode {mode})"
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == SCHEMA_VERSION:
            return
        with _transaction(conn, "BEGIN IMMEDIATE"):
            # Read again under the write lock: another process may have migrated meanwhile.
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise EventStoreUnavailable(
                    f"sqlite {self._path}: schema version {version} is newer than this build "
                    f"understands ({SCHEMA_VERSION}); upgrade uptime-daemon"
                )
            for step in _MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _open_reader(self) -> None:
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")
        self._read_conn = conn

    def _ensure_open(self) -> None:
        if self._closed:
            raise EventStoreUnavailable("store is closed")

    # --- appends: queue, group commit ----------------------------------------------------------

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected: Expected = StreamState.ANY
    ) -> int:
        """Queue the append for the next group commit and wait for its own outcome."""
        if self._closing:
            raise EventStoreUnavailable("store is closed")
        _check_stream(stream)
        request = _Append(
            stream,
            _check_events(stream, events),
            _check_expected(expected),
            asyncio.get_running_loop().create_future(),
        )
        self._queue.put_nowait(request)
        return await request.future

    async def _write_loop(self) -> None:
        """Drain the queue batch by batch until ``close()`` queues the ``None`` sentinel."""
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch, stopping = [first], False
            while len(batch) < MAX_BATCH and not self._queue.empty():
                request = self._queue.get_nowait()
                if request is None:
                    stopping = True
                    break
                batch.append(request)
            await self._commit(batch)
            if stopping:
                return
            await self._scavenge_if_due()

    async def _commit(self, batch: list[_Append]) -> None:
        """Write one batch and settle every caller's future; never raises, so the loop lives on."""
        recorded = self._now().timestamp()
        try:
            outcomes, head = await self._write(
                functools.partial(self._write_batch, batch=batch, recorded=recorded)
            )
        except Exception as exc:  # noqa: BLE001 - every waiting caller must hear of it
            if not isinstance(exc, EventStoreError):
                log.error("store_write_failed", appends=len(batch), error=repr(exc))  # noqa: TRY400
            outcomes = [self._batch_failure(exc) for _ in batch]
        else:
            self._transactions += 1
            self._appends += len(batch)
            self._appends_since_scavenge += len(batch)
            self._head = max(self._head, head)
        for request, outcome in zip(batch, outcomes, strict=True):
            if request.future.done():  # the caller gave up waiting; the write stands
                continue
            if isinstance(outcome, int):
                request.future.set_result(outcome)
            else:
                request.future.set_exception(outcome)
        async with self._committed:
            self._committed.notify_all()

    def _batch_failure(self, exc: Exception) -> EventStoreUnavailable:
        """One fresh exception per caller when the whole transaction failed, chained to the cause."""
        if isinstance(exc, EventStoreUnavailable):
            error = EventStoreUnavailable(*exc.args)
        else:
            error = EventStoreUnavailable(f"sqlite {self._path}: writer failed: {exc!r}")
        error.__cause__ = exc
        return error

    def _write_batch(
        self, conn: sqlite3.Connection, *, batch: list[_Append], recorded: float
    ) -> tuple[list[int | BaseException], int]:
        """On the writer thread: one transaction, one SAVEPOINT per request; the new head."""
        with _transaction(conn, "BEGIN IMMEDIATE"):
            outcomes = [self._append_in_savepoint(conn, request, recorded) for request in batch]
        return outcomes, _sequence(conn)

    def _append_in_savepoint(
        self, conn: sqlite3.Connection, request: _Append, recorded: float
    ) -> int | BaseException:
        conn.execute("SAVEPOINT append")
        try:
            position = self._append_one(conn, request, recorded)
        except (EventStoreError, sqlite3.Error) as exc:
            if not conn.in_transaction:
                raise  # SQLite already rolled back the whole transaction: the batch fails as one
            conn.execute("ROLLBACK TO append")
            conn.execute("RELEASE append")
            if isinstance(exc, EventStoreError):
                return exc
            return _unavailable(self._path, exc)
        conn.execute("RELEASE append")
        return position

    def _append_one(self, conn: sqlite3.Connection, request: _Append, recorded: float) -> int:
        stream, events, expected = request.stream, request.events, request.expected
        row = _stream_row(conn, stream)
        if events:
            replayed = self._replayed_position(conn, request, row)
            if replayed is not None:
                return replayed
        if not _allows(row, expected):
            raise ConcurrencyConflict(
                stream, expected, None if row is None else row.visible_revision
            )
        if not events:
            return self._last_position(conn, stream)
        first = 0 if row is None else row.last_revision + 1
        conn.executemany(
            _INSERT,
            [
                (stream, first + i, str(e.id), e.type, e.data, e.metadata, recorded)
                for i, e in enumerate(events)
            ],
        )
        conn.execute(
            "INSERT INTO streams (name, last_revision) VALUES (?, ?) ON CONFLICT (name) "
            "DO UPDATE SET last_revision = excluded.last_revision, deleted = 0",
            (stream, first + len(events) - 1),
        )
        return int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])

    @staticmethod
    def _last_position(conn: sqlite3.Connection, stream: str) -> int:
        # Within a stream positions rise with revisions, so the index on (stream, revision) finds it.
        row = conn.execute(
            "SELECT position FROM events WHERE stream = ? ORDER BY revision DESC LIMIT 1", (stream,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    @staticmethod
    def _replayed_position(
        conn: sqlite3.Connection, request: _Append, row: _Stream | None
    ) -> int | None:
        """The original position when this exact batch is stored already; conflict on a partial one.

        KurrentDB's rule: the ids must sit in the stream consecutively and in order, and
        ``expected`` must be ``ANY`` or what held before the original write.
        """
        ids = [str(event.id) for event in request.events]
        found: list[tuple[str, int, int]] = []
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start : start + _ID_CHUNK]
            marks = ",".join("?" * len(chunk))
            found += conn.execute(
                f"SELECT id, revision, position FROM events WHERE stream = ? AND id IN ({marks})",  # noqa: S608 - placeholders only
                (request.stream, *chunk),
            ).fetchall()
        if not found:
            return None
        found.sort(key=lambda hit: hit[1])
        first = found[0][1]
        same_batch = [hit[0] for hit in found] == ids and [hit[1] for hit in found] == list(
            range(first, first + len(ids))
        )
        expected, before = request.expected, first - 1
        revived_here = row is not None and row.truncate_before == first
        held_before = (
            expected == StreamState.ANY
            or (expected == StreamState.NO_STREAM and (before == -1 or revived_here))
            or (expected == StreamState.STREAM_EXISTS and before >= 0 and not revived_here)
            or (isinstance(expected, int) and expected == before)
        )
        if same_batch and held_before:
            return int(found[-1][2])
        raise ConcurrencyConflict(
            request.stream, expected, None if row is None else row.visible_revision
        )

    # --- stream management ---------------------------------------------------------------------

    async def set_stream_metadata(
        self, stream: str, *, max_age_seconds: int | None = None, max_count: int | None = None
    ) -> None:
        """Set (or, with ``None``, clear) retention; applies to the next read.

        A stream with no events yet gets a row holding only its metadata, so retention set before
        the first append (as the database probe does) is in force from the first event.
        """
        self._ensure_open()
        _check_stream(stream)
        _check_at_least("max_age_seconds", max_age_seconds, 1)
        _check_at_least("max_count", max_count, 1)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO streams (name, last_revision, max_age_seconds, max_count) "
                "VALUES (?, -1, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "max_age_seconds = excluded.max_age_seconds, max_count = excluded.max_count",
                (stream, max_age_seconds, max_count),
            )

        await self._write(write)

    async def get_stream_metadata(self, stream: str) -> StreamMetadata:
        """Retention settings of a stream (all ``None`` when never set)."""
        self._ensure_open()
        _check_stream(stream)
        row = await self._read(lambda conn: _stream_row(conn, stream))
        if row is None:
            return StreamMetadata()
        return StreamMetadata(max_age_seconds=row.max_age_seconds, max_count=row.max_count)

    async def delete_stream(self, stream: str, expected: Expected = StreamState.ANY) -> None:
        """Soft delete: hide every current event; a later append revives the stream at last + 1.

        Raises ``StreamNotFound`` for a missing or already deleted stream, whatever ``expected``
        (KurrentDB answers "not found" there too), and ``ConcurrencyConflict`` when ``expected``
        does not hold for an existing one.
        """
        self._ensure_open()
        _check_stream(stream)
        expected = _check_expected(expected)

        def write(conn: sqlite3.Connection) -> None:
            with _transaction(conn, "BEGIN IMMEDIATE"):
                row = _stream_row(conn, stream)
                if row is None or row.visible_revision is None:
                    raise StreamNotFound(stream)
                if not row.allows(expected):
                    raise ConcurrencyConflict(stream, expected, row.visible_revision)
                conn.execute(
                    "UPDATE streams SET deleted = 1, truncate_before = ? WHERE name = ?",
                    (row.last_revision + 1, stream),
                )

        await self._write(write)

    # --- scavenge --------------------------------------------------------------------------------

    async def scavenge(self) -> int:
        """Physically delete every event ``read_stream`` can no longer see; return how many.

        Afterwards ``read_all`` and subscriptions no longer see them either (as after a KurrentDB
        scavenge). The store runs this by itself; call it to reclaim space at once.
        """
        self._ensure_open()
        return await self._scavenge()

    async def _scavenge(self) -> int:
        now = self._now().timestamp()
        started = time.perf_counter()
        self._appends_since_scavenge = 0
        self._last_scavenge = now
        removed = await self._write(functools.partial(self._scavenge_in, now=now))
        if removed:
            log.info(
                "store_scavenged", removed=removed, duration_seconds=time.perf_counter() - started
            )
        return removed

    @staticmethod
    def _scavenge_in(conn: sqlite3.Connection, *, now: float) -> int:
        """Only streams with retention or a soft delete are visited, each through its index.

        Expiry by age is deleted as a prefix in revision order (up to the first event still young),
        so the work is proportional to what is removed, not to the stream's length.
        """
        removed = 0
        with _transaction(conn, "BEGIN IMMEDIATE"):
            rows = conn.execute(
                "SELECT name, last_revision, truncate_before, deleted, max_age_seconds, max_count "
                "FROM streams WHERE truncate_before > 0 OR max_age_seconds IS NOT NULL "
                "OR max_count IS NOT NULL"
            ).fetchall()
            for name, *fields in rows:
                stream = _Stream(fields[0], fields[1], bool(fields[2]), fields[3], fields[4])
                floor = stream.floor()
                if stream.max_age_seconds is not None:
                    young = conn.execute(
                        "SELECT revision FROM events WHERE stream = ? AND revision >= ? "
                        "AND recorded_at >= ? ORDER BY revision LIMIT 1",
                        (name, floor, now - stream.max_age_seconds),
                    ).fetchone()
                    floor = stream.last_revision + 1 if young is None else int(young[0])
                if floor > 0:
                    removed += conn.execute(
                        "DELETE FROM events WHERE stream = ? AND revision < ?", (name, floor)
                    ).rowcount
        return removed

    async def _scavenge_if_due(self) -> None:
        """Called by the writer loop between batches, so it never races an append."""
        elapsed = abs(self._now().timestamp() - self._last_scavenge)
        if self._appends_since_scavenge < self._scavenge_every and (
            elapsed < self._scavenge_interval
        ):
            return
        try:
            await self._scavenge()
        except EventStoreError as exc:
            log.warning("store_scavenge_failed", error=str(exc))

    # --- reads -------------------------------------------------------------------------------------

    async def read_stream(
        self,
        stream: str,
        *,
        backwards: bool = False,
        limit: int | None = None,
        from_revision: int | None = None,
    ) -> list[RecordedEvent]:
        """Visible events of one stream; ``from_revision`` inclusive in either direction."""
        self._ensure_open()
        _check_stream(stream)
        _check_at_least("limit", limit, 1)
        _check_at_least("from_revision", from_revision, 0)
        now = self._now().timestamp()

        def read(conn: sqlite3.Connection) -> list[RecordedEvent] | None:
            row = _stream_row(conn, stream)
            if row is None or row.visible_revision is None:  # missing, deleted, or metadata only
                return None
            clauses, params = ["stream = ?", "revision >= ?"], [stream, row.floor()]
            if row.max_age_seconds is not None:
                clauses.append("recorded_at >= ?")
                params.append(now - row.max_age_seconds)
            if from_revision is not None:
                clauses.append("revision <= ?" if backwards else "revision >= ?")
                params.append(from_revision)
            params.append(-1 if limit is None else limit)
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "  # noqa: S608 - fixed fragments
                f"ORDER BY revision {'DESC' if backwards else 'ASC'} LIMIT ?",
                params,
            ).fetchall()
            return [_row_to_event(r) for r in rows]

        found = await self._read(read)
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
        _check_at_least("limit", limit, 1)
        _check_at_least("after", after, 0)
        events, _ = await self._read(
            functools.partial(self._page, after=after or 0, prefix=stream_prefix, limit=limit)
        )
        return events

    @staticmethod
    def _page(
        conn: sqlite3.Connection, *, after: int, prefix: str | None, limit: int | None
    ) -> tuple[list[RecordedEvent], int]:
        """Events after ``after`` and the highest position committed in the same snapshot.

        The scan walks the primary key from ``after`` (``+stream`` keeps the planner off the stream
        index, which would sort the whole prefix range for every page).
        """
        where, params = "position > ?", list[object]([after])
        if prefix:
            where += " AND +stream >= ?"
            params.append(prefix)
            upper = _prefix_upper(prefix)
            if upper is not None:
                where += " AND +stream < ?"
                params.append(upper)
        params.append(-1 if limit is None else limit)
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE {where} ORDER BY position LIMIT ?",  # noqa: S608 - fixed fragments
            params,
        ).fetchall()
        return [_row_to_event(r) for r in rows], _sequence(conn)

    async def subscribe(
        self, *, after: int | None = None, stream_prefix: str | None = None
    ) -> AsyncIterator[RecordedEvent | CaughtUp]:
        """Catch up in pages, yield ``CaughtUp`` once, then follow commits as they happen.

        Catch-up and live are one loop: read the next page after the cursor from the file; when a
        page is short, everything committed up to that snapshot has been seen, so the cursor jumps
        to the snapshot's head (a quiet prefix never rescans) and the loop waits for the writer to
        announce a commit beyond it. The wait re-checks a predicate under the condition's lock, so
        a commit between the read and the wait is never missed.
        """
        self._ensure_open()
        _check_at_least("after", after, 0)
        cursor = after or 0
        last_yielded = after
        caught_up = False
        while True:
            self._ensure_open()
            page, head = await self._read(
                functools.partial(
                    self._page, after=cursor, prefix=stream_prefix, limit=SUBSCRIPTION_PAGE
                )
            )
            for event in page:
                self._ensure_open()
                last_yielded = cursor = event.position
                yield event
            if len(page) == SUBSCRIPTION_PAGE:
                continue
            cursor = max(cursor, head)
            if not caught_up:
                caught_up = True
                yield CaughtUp(last_yielded)
            async with self._committed:
                await self._committed.wait_for(functools.partial(self._moved_past, cursor))

    def _moved_past(self, position: int) -> bool:
        return self._head > position or self._closed

    # --- health and lifecycle ----------------------------------------------------------------------

    async def ping(self) -> float:
        """Time one small query that touches the file, on the reader thread."""
        self._ensure_open()
        started = time.perf_counter()
        await self._read(lambda conn: conn.execute("SELECT MAX(position) FROM events").fetchone())
        return time.perf_counter() - started

    async def close(self) -> None:
        """Commit what is queued, end subscriptions, close both connections and threads."""
        if self._closing:
            await self._close_done.wait()
            return
        self._closing = True
        try:
            if self._writer_task is not None:
                self._queue.put_nowait(None)
                await asyncio.wait({self._writer_task})  # never cancels it, whatever happens here
        finally:
            self._closed = True
            self._fail_leftovers()
            async with self._committed:
                self._committed.notify_all()
            loop = asyncio.get_running_loop()
            for executor, attribute in (
                (self._writer, "_write_conn"),
                (self._reader, "_read_conn"),
            ):
                with contextlib.suppress(sqlite3.Error, RuntimeError):
                    await loop.run_in_executor(
                        executor, functools.partial(self._drop_connection, attribute)
                    )
                executor.shutdown(wait=False)
            self._close_done.set()

    def _fail_leftovers(self) -> None:
        """Appends still queued if the writer task died or close() was cancelled: none may hang."""
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if request is not None and not request.future.done():
                request.future.set_exception(EventStoreUnavailable("store is closed"))
        if self._writer_task is not None and not self._writer_task.done():
            self._queue.put_nowait(None)  # it finishes its batch, then stops

    def _drop_connection(self, attribute: str) -> None:
        """On the connection's own thread: forget it first, so later work sees the store closed."""
        conn: sqlite3.Connection | None = getattr(self, attribute)
        setattr(self, attribute, None)
        if conn is not None:
            conn.close()
