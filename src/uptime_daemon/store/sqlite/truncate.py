"""Truncating a stream before a revision (KurrentDB's ``$tb``): what compaction leaves behind."""

from __future__ import annotations

import sqlite3

from uptime_daemon.errors import StreamNotFound
from uptime_daemon.store.sqlite.connection import transaction
from uptime_daemon.store.sqlite.streams import stream_row


def truncate_before(conn: sqlite3.Connection, *, stream: str, revision: int) -> None:
    """On the writer thread: raise the stream's truncation point to ``revision``, never lower it.

    The events below it are hidden from ``read_stream`` at once and deleted by the next scavenge.
    """
    with transaction(conn, "BEGIN IMMEDIATE"):
        row = stream_row(conn, stream)
        if row is None or row.visible_revision is None:
            raise StreamNotFound(stream)
        conn.execute(
            "UPDATE streams SET truncate_before = MAX(truncate_before, ?) WHERE name = ?",
            (revision, stream),
        )
