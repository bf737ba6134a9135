"""A replay split by service over processes: each folds its share of the log, on its own core.

No fold of one service reads another's record (``projector.runner.Share``), so the log can be
folded in parts: this process folds share 0 (with the maintenance windows), and a child process
started with ``spawn`` (the parent has threads and an event loop: nothing is forked) folds each
other share from its own connection to the store and hands back its records as snapshot bytes. The
records are put together in name order, as a snapshot loads them. Each process still reads the
whole log (a page costs little to read and pass over); each folds only its part.

Only ``uptime-daemon replay`` does this: by default for an embedded store file of
``SPLIT_FROM_BYTES`` or more on two or more cores (starting the child, ~0.5 s of imports, costs
more than it saves on a small file), and for any store when ``--processes`` asks for it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Final

from uptime_daemon.clock import SystemClock
from uptime_daemon.config.model import Settings
from uptime_daemon.daemon.build import database_path, new_projector, open_store
from uptime_daemon.errors import EventStoreError
from uptime_daemon.projector import snapshot as snapshots
from uptime_daemon.projector.runner import Projector, Share
from uptime_daemon.store import EventStore

SPLIT_FROM_BYTES: Final = 16 * 2**20
"""An embedded store file this big or bigger is replayed in ``SPLIT_PROCESSES`` (~80,000 events)."""
SPLIT_PROCESSES: Final = 2
"""Processes a big file is replayed in, when there are as many cores."""


@dataclass(frozen=True, slots=True)
class Part:
    """What a child folded: its share's records as snapshot bytes, and its counts."""

    snapshot: bytes
    position: int | None
    folded: int
    decode_failures: int


def processes_for(settings: Settings) -> int:
    """How many processes a replay of ``settings``' store folds in: 1 or ``SPLIT_PROCESSES``."""
    path = database_path(settings.store)
    if path is None or len(os.sched_getaffinity(0)) < SPLIT_PROCESSES:
        return 1
    try:
        size = path.stat().st_size
    except OSError:
        return 1  # the store's open says what is wrong
    return SPLIT_PROCESSES if size >= SPLIT_FROM_BYTES else 1


async def fold_share(settings: Settings, share: Share) -> tuple[Projector, int]:
    """A projector that has folded ``share`` of the whole log (no snapshot read); events folded."""
    store = await open_store(settings.store)
    try:
        return await _fold(settings, store, share)
    finally:
        await store.close()


async def _fold(settings: Settings, store: EventStore, share: Share) -> tuple[Projector, int]:
    projector = new_projector(settings, store, SystemClock())
    folded = await projector.catch_up(share=share)
    return projector, folded


def fold_part(settings: Settings, share: Share) -> Part:
    """In a child process: ``fold_share``, handed back as bytes. Logs go to stderr, as the parent's."""
    from uptime_daemon.logging import configure_logging  # noqa: PLC0415 - the child's own set-up

    configure_logging(settings.log.level, "console", stream=sys.stderr)
    projector, folded = asyncio.run(fold_share(settings, share))
    return Part(
        snapshot=snapshots.encode(snapshots.Snapshot(projector.position, projector.state)),
        position=projector.position,
        folded=folded,
        decode_failures=projector.decode_failures,
    )


async def fold_split(settings: Settings, processes: int) -> tuple[Projector, int]:
    """The whole log folded in ``processes`` shares, put together here; and the events folded.

    Raises ``EventStoreError`` when the parts end at different positions (the log grew during
    the replay: the caller folds it again in one piece) or a child could not fold its part.
    """
    store = await open_store(settings.store)  # upgrades an older file before any child opens it
    try:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=processes - 1, mp_context=context) as pool:
            loop = asyncio.get_running_loop()
            children = [
                loop.run_in_executor(pool, fold_part, settings, Share(index, processes))
                for index in range(1, processes)
            ]
            try:
                projector, folded = await _fold(settings, store, Share(0, processes))
            finally:
                parts = await asyncio.gather(*children, return_exceptions=True)
    finally:
        await store.close()
    services = dict(projector.state.services)
    for part in parts:
        if isinstance(part, BaseException):
            raise EventStoreError(f"a share of the replay failed: {part!r}") from part
        if part.position != projector.position:
            raise EventStoreError(
                f"the log moved during the replay ({part.position} != {projector.position})"
            )
        try:
            stored = snapshots.decode(part.snapshot)
        except snapshots.SnapshotError as exc:
            raise EventStoreError(f"a share of the replay came back unreadable: {exc}") from exc
        services.update(stored.state.services)
        folded += part.folded
        projector.decode_failures += part.decode_failures
    projector.state.services = dict(sorted(services.items()))
    return projector, folded
