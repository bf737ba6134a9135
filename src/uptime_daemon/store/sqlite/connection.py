"""The database file, its two connections and the two threads that run every SQLite call."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

from uptime_daemon.errors import EventStoreUnavailable, InvalidArgument

BUSY_TIMEOUT_SECONDS: Final = 10.0
"""How long a connection waits for another process's lock before the operation is unavailable."""
_URL_PREFIX: Final = "sqlite:///"
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


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN") -> Iterator[None]:
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


def unavailable(path: Path, exc: BaseException) -> EventStoreUnavailable:
    """A driver or OS error as the store's error, naming the file and chained to the cause."""
    error = EventStoreUnavailable(f"sqlite {path}: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


class Connections:
    """A writer and a reader connection to one file, each used only on its own thread.

    The writer thread runs every write, so writes are serialized by the thread itself. The reader
    runs each read in its own short read transaction (one consistent snapshot); in WAL mode readers
    never wait for the writer and never block the event loop. Once ``close()`` has run, every call
    raises ``EventStoreUnavailable("store is closed")``.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self.reads = 0
        """Read transactions begun so far."""

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    async def open(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Open the writer, run ``prepare`` on it before anything else can, then open the reader."""
        await self._run(self._writer, functools.partial(self._open_writer, prepare))
        await self._run(self._reader, self._open_reader)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread with the writer connection."""
        return await self._run(self._writer, lambda: fn(self._connection(self._write_conn)))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction, so every query in it sees the same snapshot."""
        self.reads += 1

        def in_snapshot() -> T:
            conn = self._connection(self._read_conn)
            with transaction(conn):
                return fn(conn)

        return await self._run(self._reader, in_snapshot)

    async def close(self) -> None:
        """Close both connections, each on its own thread, then let the threads go."""
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
            raise unavailable(self._path, exc) from exc

    @staticmethod
    def _connection(conn: sqlite3.Connection | None) -> sqlite3.Connection:
        if conn is None:
            raise EventStoreUnavailable("store is closed")
        return conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        return conn

    def _open_writer(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """On the writer thread: connect, switch to WAL, prepare; publish the connection last."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            prepare(conn)
        except BaseException:
            conn.close()
            raise
        self._write_conn = conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Without WAL a reader would wait for the writer: refuse rather than degrade silently."""
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise EventStoreUnavailable(
                f"sqlite {self._path}: cannot use WAL (journal mode {mode})"
            )

    def _open_reader(self) -> None:
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")
        self._read_conn = conn

    def _drop_connection(self, attribute: str) -> None:
        """On the connection's own thread: forget it first, so later work sees the store closed."""
        conn: sqlite3.Connection | None = getattr(self, attribute)
        setattr(self, attribute, None)
        if conn is not None:
            conn.close()
