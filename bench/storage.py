"""Storage: bytes per event of the SQLite store before (schema 1) and after (the current schema), and the upgrade.

Builds a schema 1 file of realistic check history (``_history.py``: the daemon's own event bytes,
appended ``--batch`` checks of one stream at a time, as ``replay.py`` writes them) with the frozen
schema 1 DDL, then: its bytes per event; optionally the replay of it by a pre-v2 source tree
(``--baseline-src``, e.g. a checkout of the commit before schema 2); the in-place upgrade
(``migrate_file``) with its progress, time and rate; bytes per event after it (WAL checkpointed,
after its VACUUM); and the replay of the upgraded file by this tree. ``--fresh`` also writes the
same history through the store into a new file of the current schema (grown by the daemon, not
vacuumed). The figures named ``storage_v2`` / ``replay_v2`` are the current schema's (3 since the
digests); the names are kept so older outputs compare.

    python bench/storage.py                                   # 1,000,000 events, 1,000 services
    python bench/storage.py --events 100000 --services 200 --baseline-src /tmp/old/src
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from _common import emit, file_pages, machine
from _history import History, workspace, write_history
from replay import INTERVAL_SECONDS, TIMEOUT_SECONDS, replay, write_config

from uptime_daemon.events import check_digest
from uptime_daemon.store import NewEvent, StreamState
from uptime_daemon.store.sqlite import migrate_file
from uptime_daemon.store.sqlite.upgrade import VERSION_1_DDL as V1_DDL

COMMIT_EVERY: Final = 50_000


class V1Writer:
    """Just enough of ``EventStore.append`` for ``History`` to fill a schema 1 file directly."""

    def __init__(self, path: Path, history: History) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        for statement in V1_DDL:
            self._conn.execute(statement)
        self._conn.execute("PRAGMA user_version = 1")
        self._conn.execute("BEGIN")
        self._history = history
        self._revisions: dict[str, int] = {}
        self._pending = 0

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected: object = StreamState.ANY
    ) -> int:
        """Insert one append's events and move the stream's row; commit every ``COMMIT_EVERY``."""
        del expected  # the history never conflicts
        first = self._revisions.get(stream, -1) + 1
        recorded = self._history.clock().timestamp()
        self._conn.executemany(
            "INSERT INTO events (stream, revision, id, type, data, metadata, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (stream, first + i, str(e.id), e.type, e.data, e.metadata, recorded)
                for i, e in enumerate(events)
            ],
        )
        self._revisions[stream] = first + len(events) - 1
        self._conn.execute(
            "INSERT INTO streams (name, last_revision) VALUES (?, ?) ON CONFLICT (name) "
            "DO UPDATE SET last_revision = excluded.last_revision",
            (stream, self._revisions[stream]),
        )
        self._pending += len(events)
        if self._pending >= COMMIT_EVERY:
            self._conn.execute("COMMIT")
            self._conn.execute("BEGIN")
            self._pending = 0
        return int(self._conn.execute("SELECT last_insert_rowid()").fetchone()[0])

    def close(self) -> None:
        """Commit, checkpoint the WAL into the file, close."""
        self._conn.execute("COMMIT")
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()


async def write_v1(history: History, db: Path, batch: int) -> dict[str, Any]:
    started = time.perf_counter()
    writer = V1Writer(db, history)
    try:
        await history.create_streams(writer)  # duck-typed: only append is called
        written = await history.extend(writer, history.checks_per_service, batch=batch)
    finally:
        writer.close()
    return {"events": written, "seconds": round(time.perf_counter() - started, 2)}


def storage(db: Path) -> dict[str, Any]:
    """Bytes per event of a closed file after a TRUNCATE checkpoint, and which b-trees hold them."""
    measured = file_pages(db)
    free_pages, parts = measured.free_pages, measured.btrees
    with sqlite3.connect(db) as conn:
        (events,) = conn.execute("SELECT COUNT(*) FROM events").fetchone()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    wal = db.with_name(db.name + "-wal")
    size = db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return {
        "schema_version": version,
        "events": events,
        "file_bytes": size,
        "bytes_per_event": round(size / events, 1),
        "free_pages": free_pages,
        "bytes_per_event_by_btree": {
            name: round(total / events, 1) for name, total in sorted(parts.items()) if total
        },
    }


def upgrade(db: Path, chunk: int) -> dict[str, Any]:
    """``migrate_file`` with a figure per chunk; the copy, and the whole upgrade with VACUUM."""
    started = time.perf_counter()
    copied_at = started

    def progress(done: int, total: int) -> None:
        nonlocal copied_at
        copied_at = time.perf_counter()
        seconds = copied_at - started
        emit(
            "migration_progress",
            done=done,
            total=total,
            seconds=round(seconds, 2),
            events_per_second=round(done / seconds),
        )

    migrate_file(db, progress=progress, chunk=chunk, digest=check_digest)
    total_seconds = time.perf_counter() - started
    return {
        "copy_seconds": round(copied_at - started, 2),
        "swap_indexes_vacuum_seconds": round(total_seconds - (copied_at - started), 2),
        "total_seconds": round(total_seconds, 2),
    }


def replay_with(config: Path, work: Path, label: str, src: Path | None) -> dict[str, Any]:
    """``replay.replay`` with ``src`` first on the child's path (a baseline tree), if given."""
    saved = os.environ.get("PYTHONPATH")
    if src is not None:
        os.environ["PYTHONPATH"] = str(src)
    try:
        return replay(config, work, label)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def run(args: argparse.Namespace) -> None:
    per_service = max(1, args.events // args.services)
    with workspace(keep=args.keep) as procs:
        history = History(
            args.services,
            per_service,
            interval_seconds=INTERVAL_SECONDS,
            timeout_seconds=TIMEOUT_SECONDS,
        )
        db = procs.work / "events.db"
        emit("v1_generate", **asyncio.run(write_v1(history, db, args.batch)))
        before = storage(db)
        emit("storage_v1", **before)
        config = write_config(procs, args.services)
        if args.baseline_src is not None:
            emit(
                "replay_v1",
                src=str(args.baseline_src),
                **replay_with(config, procs.work, "replay-v1", args.baseline_src),
            )
        figure = upgrade(db, args.chunk)
        events = before["events"]
        emit(
            "migration",
            events=events,
            **figure,
            events_per_second=round(events / figure["total_seconds"]),
        )
        after = storage(db)
        emit(
            "storage_v2",
            **after,
            ratio_to_v1=round(after["file_bytes"] / before["file_bytes"], 3),
        )
        emit("replay_v2", **replay_with(config, procs.work, "replay-v2", None))
        if args.fresh:
            fresh = procs.work / "fresh" / "events.db"
            again = History(
                args.services,
                per_service,
                interval_seconds=INTERVAL_SECONDS,
                timeout_seconds=TIMEOUT_SECONDS,
            )
            written = asyncio.run(write_history(again, fresh, per_service, batch=args.batch))
            emit("v2_fresh_generate", **written)
            emit("storage_v2_fresh", note="grown by appends, never vacuumed", **storage(fresh))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="status events")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500, help="checks of one stream per append")
    parser.add_argument("--chunk", type=int, default=20_000, help="events per upgrade step")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="a pre-v2 src/ tree: also time its replay of the schema 1 file",
    )
    parser.add_argument("--fresh", action="store_true", help="also write a new schema 2 file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    emit("machine", **machine(), events=args.events, services=args.services, batch=args.batch)
    run(args)


if __name__ == "__main__":
    main()
