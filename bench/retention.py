"""Retention: what compaction saves on disk, and that no figure moves.

Writes realistic history (``_history.py``: the daemon's own events, one check a minute per service,
outages and slow stretches) into an embedded SQLite store with the simulated clock, then:

1. folds it and records ``/uptime/service/{name}?hours=2160`` (the API's own view) for every
   service at a fixed instant;
2. compacts as the daemon would: every ``--every-hours`` for ``--steady-days`` simulated days (the steady state: one
   rollup per service per pass), then the rest of what is older than ``--raw-retention-days`` at once;
3. scavenges, and measures the pages in use (``page_count - freelist_count``) and, after VACUUM, the
   file size;
4. folds again from zero and compares every service's answer, byte for byte.

From the measured bytes per raw event and per steady-state rollup it prints the disk cost of one service
checked every minute for a year, with and without compaction. Prints figures; never asserts.

    python bench/retention.py                         # 1,000,000 events: 20 services × 50,000 checks
    python bench/retention.py --services 5 --checks 20000
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson
from _common import emit, file_pages, machine
from _history import History, workspace

from uptime_daemon.api import views
from uptime_daemon.clock import SystemClock
from uptime_daemon.config.model import Settings
from uptime_daemon.events import check_digest
from uptime_daemon.history.compactor import Compactor
from uptime_daemon.projector import rollup
from uptime_daemon.projector.runner import Projector
from uptime_daemon.store.sqlite import SqliteEventStore

INTERVAL_SECONDS: Final = 60.0
TIMEOUT_SECONDS: Final = 10.0
YEAR_CHECKS: Final = 365 * 86_400 / INTERVAL_SECONDS


class _Clock:
    """The compactor's clock, moved by the bench."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return time.monotonic()


def used_bytes(db: Path) -> int:
    """Bytes of the file's pages in use (free pages left by deletes are reused, not counted)."""
    return file_pages(db).used_bytes


async def answers(
    store: SqliteEventStore, settings: Settings, now: datetime
) -> tuple[dict[str, Any], float]:
    """Every service's ``/uptime/service/{name}?hours=2160`` body at ``now``, and the fold's seconds."""
    projector = Projector(
        store=store,
        clock=SystemClock(),
        default_gap_seconds=lambda _: 2 * INTERVAL_SECONDS + TIMEOUT_SECONDS,
    )
    started = time.perf_counter()
    await projector.catch_up()
    seconds = time.perf_counter() - started
    found = {
        name: orjson.loads(
            views.service_uptime(
                settings, projector.state, name, hours=2160, now=now
            ).model_dump_json(by_alias=True)
        )
        for name in sorted(projector.state.services)
    }
    return found, seconds


async def write_hourly(history: History, db: Path, checks: int) -> dict[str, float]:
    """The history an hour at a time, each event recorded within the hour of its check.

    As the daemon records it: compaction's cutoff goes by ``recorded_at``.
    """
    started = time.perf_counter()
    store = await SqliteEventStore.open(db, clock_now=history.clock, digest=check_digest)
    hour = int(3600 / INTERVAL_SECONDS)
    try:
        await history.create_streams(store)
        for upto in range(hour, checks + hour, hour):
            await history.extend(store, min(upto, checks), batch=hour)
    finally:
        await store.close()
    return {"seconds": round(time.perf_counter() - started, 1)}


async def steady_state(
    compactor: Compactor, clock: _Clock, args: argparse.Namespace
) -> tuple[int, int, float]:
    """Compact every ``--every-hours`` for ``--steady-days``: rollups, raw events, seconds."""
    rollups = compacted = 0
    started = time.perf_counter()
    for _ in range(int(args.steady_days * 24 / args.every_hours)):
        clock.current += timedelta(hours=args.every_hours)
        done = await compactor.compact()
        rollups += len(done)
        compacted += sum(each.events for each in done)
    return rollups, compacted, time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    emit("machine", **machine())
    with workspace(keep=args.keep) as procs:
        db = procs.work / "events.db"
        history = History(
            args.services,
            args.checks,
            interval_seconds=INTERVAL_SECONDS,
            timeout_seconds=TIMEOUT_SECONDS,
            end=datetime.fromisoformat("2026-12-01T00:00:00+00:00"),
        )
        written = await write_hourly(history, db, args.checks)
        events = history.counts.checks + args.services
        raw_bytes = used_bytes(db)
        emit(
            "history",
            events=events,
            services=args.services,
            days=round(args.checks * INTERVAL_SECONDS / 86_400, 1),
            write=written,
            bytes_used=raw_bytes,
            bytes_per_event=round(raw_bytes / events, 1),
        )

        settings = Settings.model_validate(
            {"store": {"raw_retention_days": args.raw_retention_days}}
        )
        now = history.clock() + timedelta(minutes=5)
        clock = _Clock(history.first + timedelta(days=args.raw_retention_days, hours=1))
        store = await SqliteEventStore.open(db, clock_now=clock.now, digest=check_digest)
        try:
            before, fold_before = await answers(store, settings, now)
            names = list(before)
            compactor = Compactor(
                store=store,
                now=clock.now,
                settings=settings,
                services=lambda: names,
                ready=lambda: True,
            )
            steady_rollups, steady_events, steady_seconds = await steady_state(
                compactor, clock, args
            )
            rollup_bytes_steady = sum(
                len(e.data) for e in await store.read_all(stream_prefix=rollup.ROLLUP_STREAM_PREFIX)
            )
            clock.current = now
            started = time.perf_counter()
            rest = await compactor.compact()
            rest_seconds = time.perf_counter() - started
            deleted = await store.scavenge()
            left = len(await store.read_all(stream_prefix="service-uptime-"))
            rollups = await store.read_all(stream_prefix=rollup.ROLLUP_STREAM_PREFIX)
            after, fold_after = await answers(store, settings, now)
        finally:
            await store.close()
        compacted_used = used_bytes(db)
        with sqlite3.connect(db) as conn:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        file_after = db.stat().st_size
        emit(
            "compaction",
            steady_rollups=steady_rollups,
            steady_events=steady_events,
            steady_seconds=round(steady_seconds, 2),
            rollup_bytes_per_steady_rollup=round(rollup_bytes_steady / max(1, steady_rollups), 1),
            rest_rollups=len(rest),
            rest_events=sum(e.events for e in rest),
            rest_seconds=round(rest_seconds, 2),
            deleted=deleted,
            raw_events_left=left,
            rollup_events=len(rollups),
        )
        emit(
            "disk",
            bytes_used_before=raw_bytes,
            bytes_used_after=compacted_used,
            file_bytes_after_vacuum=file_after,
            ratio=round(compacted_used / raw_bytes, 3),
        )
        emit("replay", seconds_raw=round(fold_before, 2), seconds_compacted=round(fold_after, 2))
        same = before == after
        differing = [name for name in before if before[name] != after.get(name)]
        emit(
            "figures",
            hours=2160,
            services=len(before),
            identical=same,
            differing=differing[:5],
            example={
                k: before[names[0]][k] for k in ("uptimeRatio", "availabilityRatio", "checks")
            },
        )
        per_event = raw_bytes / events
        payload = history.counts.payload_bytes / history.counts.checks
        row_overhead = max(0.0, per_event - payload)  # ids, names, indexes: what a row adds on disk
        per_steady = rollup_bytes_steady / max(1, steady_rollups) + row_overhead
        per_year = 365 * 24 / args.every_hours
        kept_raw = args.raw_retention_days * 86_400 / INTERVAL_SECONDS * per_event
        emit(
            "per_service_year",
            compaction_every_hours=args.every_hours,
            checks=int(YEAR_CHECKS),
            without_compaction_mib=round(YEAR_CHECKS * per_event / 2**20, 1),
            with_compaction_mib_at_most=round((kept_raw + per_year * per_steady) / 2**20, 2),
            bytes_per_raw_event=round(per_event, 1),
            bytes_per_steady_rollup_at_most=round(per_steady, 1),
            raw_retention_days=args.raw_retention_days,
            note="a rollup counted as its uncompressed JSON plus a raw row's overhead",
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument(
        "--checks", type=int, default=50_000, help="checks per service (default 50,000)"
    )
    parser.add_argument("--raw-retention-days", type=int, default=7)
    parser.add_argument(
        "--steady-days", type=float, default=2.0, help="days compacted in steady state first"
    )
    parser.add_argument(
        "--every-hours", type=float, default=24.0, help="compaction interval in steady state"
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    asyncio.run(main(parser.parse_args()))
