"""One ``streams`` row and the KurrentDB rules it decides: expected state and what stays readable."""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

from uptime_daemon.store import Expected, StreamState


class StreamRow(NamedTuple):
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


def allows(row: StreamRow | None, expected: Expected) -> bool:
    """Expected-state check against a stream row; no row at all is a stream that never existed."""
    if row is None:
        return expected in {StreamState.ANY, StreamState.NO_STREAM}
    return row.allows(expected)


def stream_row(conn: sqlite3.Connection, stream: str) -> StreamRow | None:
    """The row of ``stream``, or ``None`` when it never had events or metadata."""
    row = conn.execute(
        "SELECT last_revision, truncate_before, deleted, max_age_seconds, max_count "
        "FROM streams WHERE name = ?",
        (stream,),
    ).fetchone()
    return None if row is None else StreamRow(row[0], row[1], bool(row[2]), row[3], row[4])
