"""One daemon per embedded store and per state file: an advisory lock held for the daemon's life.

The embedded SQLite store, the outage spool and the projection snapshot each belong to one daemon;
a second daemon pointed at the same file would double every check and race the other's snapshot.
``flock`` on a ``.lock`` file beside it refuses the second one at start-up with one line naming the
holder; the kernel drops the lock when the process ends, even by SIGKILL, so a crash never leaves a
stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from uptime_daemon.errors import AlreadyInUse


def lock_path(path: Path) -> Path:
    """The lock file of ``path``: ``events.db`` → ``events.db.lock``."""
    return path.with_name(path.name + ".lock")


@contextmanager
def exclusive(path: Path, *, holder: str, why: str) -> Iterator[None]:
    """Hold ``path``'s lock until the block ends; ``AlreadyInUse`` names the holder and ``why``."""
    target = lock_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise AlreadyInUse(f"{path} is in use by {other}; {why}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} (pid {os.getpid()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
