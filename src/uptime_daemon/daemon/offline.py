"""The offline commands' work: fold the log, replay, compact, move the log — no server, no scheduler.

They build their parts with ``build`` exactly as the running daemon does (same store selection,
same projector). The CLI only parses arguments and prints what these return. The two that answer
as the daemon would (``check``, ``summary``) are in ``answers``: they need the probes and the
API's views, which the commands here never import (``replay`` starts in half the time).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

import structlog

from uptime_daemon import events, transfer
from uptime_daemon.clock import SystemClock
from uptime_daemon.config.load import store_for_url
from uptime_daemon.config.model import Settings, StoreKind
from uptime_daemon.daemon import split_replay
from uptime_daemon.daemon.build import (
    database_path,
    kurrentdb_uri,
    new_projector,
    open_store,
    snapshot_path,
)
from uptime_daemon.daemon.exclusive import exclusive
from uptime_daemon.errors import ConfigError, EventStoreError
from uptime_daemon.history.compactor import Compactor, oldest_raw
from uptime_daemon.projector.runner import Projector
from uptime_daemon.redact import redact
from uptime_daemon.store import EventStore
from uptime_daemon.store.sqlite import SCHEMA_VERSION, migrate_file
from uptime_daemon.store.sqlite.upgrade import CHUNK as UPGRADE_CHUNK

log = structlog.get_logger(__name__)


@asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[EventStore]:
    """The configured store, closed on the way out."""
    store = await open_store(settings.store)
    try:
        yield store
    finally:
        await store.close()


async def fold_log(settings: Settings, *, from_snapshot: bool) -> tuple[Projector, int]:
    """The projection of the whole log (from the snapshot when allowed) and the events folded."""
    async with opened_store(settings) as store:
        projector = new_projector(settings, store, SystemClock())
        if from_snapshot:
            projector.load_snapshot()
        folded = await projector.catch_up()
    return projector, folded


STOP_THE_DAEMON: Final = "stop the daemon first: replay rewrites the snapshot it keeps"
STOP_UPGRADING: Final = "stop the daemon first: it upgrades the file itself when it opens it"
STOP_COMPACTING: Final = "stop the daemon first (it compacts the SQLite file by itself, hourly)"


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a replay from position zero did."""

    events: int
    services: int
    seconds: float
    position: int | None
    processes: int = 1
    """How many processes folded it (``split_replay``)."""

    @property
    def events_per_second(self) -> float:
        """The replay rate."""
        return self.events / max(self.seconds, 1e-9)


async def replay(settings: Settings, *, processes: int | None = None) -> Replayed:
    """Fold the whole log from position zero and write a fresh snapshot.

    Never under a running daemon's feet: the snapshot is claimed as the daemon claims it.
    ``processes``: how many fold it, each a share of the services (``split_replay``); by default
    two for a big embedded store on two or more cores, else one.
    """
    clock = SystemClock()
    if processes is None:
        processes = split_replay.processes_for(settings)
    with exclusive(snapshot_path(settings), holder="uptime-daemon replay", why=STOP_THE_DAEMON):
        started = clock.monotonic()
        projector, folded, processes = await _fold_for_replay(settings, processes)
        seconds = clock.monotonic() - started
        projector.save_snapshot()
        projector.close()
    return Replayed(folded, len(projector.state.services), seconds, projector.position, processes)


async def _fold_for_replay(settings: Settings, processes: int) -> tuple[Projector, int, int]:
    """The whole log folded from zero, the events folded and how many processes folded them.

    In ``processes`` shares, or in one piece when that fails.
    """
    if processes > 1:
        try:
            return (*await split_replay.fold_split(settings, processes), processes)
        except EventStoreError as exc:
            log.warning("replay_split_failed", error=str(exc), then="folding in one process")
    return (*await fold_log(settings, from_snapshot=False), 1)


@dataclass(frozen=True, slots=True)
class CompactedLog:
    """What an offline compaction did."""

    rollups: int
    events: int
    """Raw events rolled up (hidden at once; deleted by the scavenge on SQLite)."""
    deleted: int | None
    """Events the SQLite store deleted afterwards (``None`` on KurrentDB: its own scavenge)."""
    seconds: float


async def compact(settings: Settings, *, older_than_days: int | None = None) -> CompactedLog:
    """Roll up the raw checks older than ``raw_retention_days`` now, as the daemon does hourly.

    With the daemon stopped for SQLite (the file is one daemon's); on KurrentDB it may run beside
    daemons (a rollup is written once, whoever writes it).
    """
    days = settings.store.raw_retention_days if older_than_days is None else older_than_days
    if days < 1:
        raise ConfigError(f"compaction keeps at least 1 day of raw checks (got {days} days)")
    clock = SystemClock()
    started = clock.monotonic()
    database = database_path(settings.store)
    with contextlib.ExitStack() as held:
        if database is not None:
            held.enter_context(
                exclusive(database, holder="uptime-daemon compact", why=STOP_COMPACTING)
            )
        async with opened_store(settings) as store:
            projector = new_projector(settings, store, clock)
            projector.load_snapshot()
            await projector.catch_up()
            scoped = settings.model_copy(
                update={"store": settings.store.model_copy(update={"raw_retention_days": days})}
            )
            compactor = Compactor(
                store=store,
                now=clock.now,
                settings=scoped,
                services=lambda: list(projector.state.services),
                ready=lambda: True,
                oldest_raw=oldest_raw(lambda: projector.state),
            )
            done = await compactor.compact()
            scavenge = getattr(store, "scavenge", None)
            deleted = await scavenge() if scavenge is not None else None
    return CompactedLog(
        rollups=len(done),
        events=sum(each.events for each in done),
        deleted=deleted,
        seconds=clock.monotonic() - started,
    )


@dataclass(frozen=True, slots=True)
class UpgradedStore:
    """The embedded store's file after ``upgrade_store``."""

    path: Path
    version: int
    size_bytes: int


class _Stopped(Exception):
    """Raised in the upgrade's thread between two chunks, once the command was cancelled."""


async def upgrade_store(
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
    *,
    chunk: int = UPGRADE_CHUNK,
) -> UpgradedStore:
    """Bring the SQLite file to this build's schema now (the daemon would on start, silently long).

    Resumable: stopped half-way, the next run (or the daemon) carries on after the last chunk.
    Cancelled (Ctrl-C), it stops after the chunk it is copying, which is committed, and the
    cancellation goes on; a thread cannot be interrupted, so without this it ran to the end.
    """
    database = database_path(settings.store)
    if database is None:
        raise ConfigError("upgrade-store is for the embedded SQLite store (store.url sqlite:///…)")
    stop = threading.Event()

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total)
        if stop.is_set():
            raise _Stopped

    with exclusive(database, holder="uptime-daemon upgrade-store", why=STOP_UPGRADING):
        work = asyncio.ensure_future(
            asyncio.to_thread(
                migrate_file, database, progress=report, chunk=chunk, digest=events.check_digest
            )
        )
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            stop.set()
            try:
                await work  # the chunk being copied ends, committed
            except _Stopped:
                raise asyncio.CancelledError from None  # the cancellation, as it came
            # The upgrade ended before it saw the stop: it is done, say so.
    return UpgradedStore(database, SCHEMA_VERSION, database.stat().st_size)


async def export(settings: Settings, out: TextIO) -> int:
    """Write the uptime log as JSON lines; return the events written."""
    async with opened_store(settings) as store:
        return (await transfer.export_jsonl(store, out)).events


async def import_(settings: Settings, lines: Iterable[str]) -> transfer.Progress:
    """Append a JSON-lines export (idempotent)."""
    async with opened_store(settings) as store:
        return await transfer.import_jsonl(store, lines)


@dataclass(frozen=True, slots=True)
class Migrated:
    """What ``migrate`` copied, to where (masked), and its checkpoint file."""

    events: int
    target: str
    checkpoint: Path


async def migrate(settings: Settings, to_url: str, *, restart: bool) -> Migrated:
    """Copy the embedded store's uptime log to the KurrentDB at ``to_url``, resumably."""
    database = database_path(settings.store)
    if database is None:
        raise ConfigError("migrate copies from the embedded SQLite store; store.url is not sqlite")
    target_settings = store_for_url(to_url)
    if target_settings.kind is not StoreKind.KURRENTDB:
        raise ConfigError(f"--to: {redact(to_url)} is not a kurrentdb:// URL")
    uri = kurrentdb_uri(target_settings)
    checkpoint = transfer.checkpoint_path(database, uri)
    async with opened_store(settings) as source:
        target = await open_store(target_settings)
        try:
            done = await transfer.migrate(source, target, checkpoint, restart=restart)
        finally:
            await target.close()
    return Migrated(done.events, redact(uri), checkpoint)
