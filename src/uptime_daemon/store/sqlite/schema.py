"""The versioned schema: its migrations, and the position sequence its ``AUTOINCREMENT`` keeps."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from uptime_daemon.errors import EventStoreUnavailable
from uptime_daemon.store.sqlite.connection import transaction

SCHEMA_VERSION: Final = 1

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


def migrate(conn: sqlite3.Connection, *, path: Path) -> None:
    """Bring the file at ``path`` to ``SCHEMA_VERSION``; refuse a file from a newer build."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == SCHEMA_VERSION:
        return
    with transaction(conn, "BEGIN IMMEDIATE"):
        # Read again under the write lock: another process may have migrated meanwhile.
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise EventStoreUnavailable(
                f"sqlite {path}: schema version {version} is newer than this build "
                f"understands ({SCHEMA_VERSION}); upgrade uptime-daemon"
            )
        for step in _MIGRATIONS[version:]:
            for statement in step:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def sequence(conn: sqlite3.Connection) -> int:
    """The highest position ever issued (survives deletes of the tail, unlike ``MAX(position)``)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return 0 if row is None else int(row[0])
