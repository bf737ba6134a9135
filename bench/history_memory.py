"""What the projection costs once it holds its whole retention: memory, the collector, a snapshot.

Folds ``--services`` services checked ``--checks-per-hour`` times an hour for ``--hours`` hours (90
days by default: a daemon that has run as long as ``projector.retention_days``), response times
spread over the histogram as a real service's are (log-normal around 40 ms, a fixed seed). Then
moves every record's days before its last ``runner.HOT_HOURS`` to the file beside the snapshot and
freezes its transitions and incidents older than ``runner.WARM_HOURS``, as the daemon's projector
does when it writes one (``projector.cold``, ``runner.freeze``), and measures:

* ``bytes_per_service_hour_all_held``: ``tracemalloc``'s growth over the fold, per service-hour
  (every hour in memory, as before the cold days);
* ``bytes_per_service_held`` / ``mib_at_10k_services``: what memory still holds per service once
  the older days are on disk, and that at 10,000 services;
* ``cold_bytes_per_service_hour``: the file's size per service-hour moved to it;
* ``gc_objects_per_service_hour``: objects the cyclic collector tracks, per service-hour;
* ``full_collection_ms``: one ``gc.collect()`` with the projection held, less one once it is
  dropped (best of 5 each), and that scaled to 10,000 services (the walk grows with the objects);
* ``snapshot_encode_ms`` / ``snapshot_bytes`` per service: the projector's snapshot (every 60 s);
* ``summary_ms_per_service``: ``summarize`` over 24 hours (best of 5), and over 90 days the first
  time (the cold days read from the file) and again (best of 5: the sums kept per window).

One JSON line with the machine; nothing is asserted.

    python bench/history_memory.py --services 20 --hours 2160 --checks-per-hour 60
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import emit, machine
from _held import fold

from uptime_daemon.projector import snapshot
from uptime_daemon.projector.cold import ColdDays
from uptime_daemon.projector.fold import ProjectionState
from uptime_daemon.projector.runner import HOT_HOURS, cold_before_day, freeze, records
from uptime_daemon.projector.summary import summarize

START = datetime(2026, 1, 1, tzinfo=UTC)
SCALE_TO_SERVICES = 10_000


def _fold(services: int, hours: int, per_hour: int) -> ProjectionState:
    return fold([f"svc-{n:05d}" for n in range(services)], hours, per_hour, START)


def _collection() -> float:
    """The fastest of five full collections, in seconds."""
    times = []
    for _ in range(5):
        began = time.perf_counter()
        gc.collect()
        times.append(time.perf_counter() - began)
    return min(times)


def _summaries(state: ProjectionState, hours_held: int) -> dict[str, float]:
    """``summarize``'s time per service: 90 days the first time, then 24 h and 90 days again."""
    now = START + timedelta(hours=hours_held)
    services = state.services.values()
    began = time.perf_counter()
    for service in services:
        summarize(service, now=now, hours=2160)
    first = time.perf_counter() - began
    found = {"summary_2160h_first_ms_per_service": round(first * 1000 / len(services), 3)}
    for hours in (24, 2160):
        times = []
        for _ in range(5):
            began = time.perf_counter()
            for service in services:
                summarize(service, now=now, hours=hours)
            times.append(time.perf_counter() - began)
        found[f"summary_{hours}h_ms_per_service"] = round(min(times) * 1000 / len(services), 3)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--hours", type=int, default=2160)
    parser.add_argument("--checks-per-hour", type=int, default=60)
    args = parser.parse_args()

    gc.collect()
    objects_before = len(gc.get_objects())
    tracemalloc.start()
    began = time.perf_counter()
    state = _fold(args.services, args.hours, args.checks_per_hour)
    fold_seconds = time.perf_counter() - began
    gc.collect()
    grown, _ = tracemalloc.get_traced_memory()
    with tempfile.TemporaryDirectory() as directory:
        cold = ColdDays(Path(directory) / "projection.hours.db")
        began = time.perf_counter()
        for record in records(state):
            record.buckets.evict(cold, cold_before_day(record))
            freeze(record)
        flush = cold.flush([])
        cold.write(flush)
        cold.flushed(flush)
        evict_seconds = time.perf_counter() - began
        del flush
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        objects = len(gc.get_objects()) - objects_before
        service_hours = args.services * args.hours
        cold_hours = sum(r.buckets.cold_hours() for r in records(state))
        cold_bytes = cold.bytes_on_disk()

        held_collection = _collection()
        began = time.perf_counter()
        data = snapshot.encode(snapshot.Snapshot(1, state))
        encode_seconds = time.perf_counter() - began
        began = time.perf_counter()
        snapshot.decode(data)
        decode_seconds = time.perf_counter() - began

        summaries = _summaries(state, args.hours)
        cold.close()

    del state
    collection = max(0.0, held_collection - _collection())
    per_service_hour = grown / service_hours
    emit(
        "history_memory",
        services=args.services,
        hours=args.hours,
        checks_per_hour=args.checks_per_hour,
        fold_seconds=round(fold_seconds, 1),
        bytes_per_service_hour_all_held=round(per_service_hour, 1),
        gib_at_10k_services_all_held=round(
            per_service_hour * args.hours * SCALE_TO_SERVICES / 2**30, 2
        ),
        hot_hours=HOT_HOURS,
        bytes_per_service_held=round(held / args.services),
        mib_at_10k_services=round(held / args.services * SCALE_TO_SERVICES / 2**20, 1),
        cold_bytes_per_service_hour=round(cold_bytes / max(cold_hours, 1), 1),
        cold_mib_per_service_year=round(cold_bytes / max(cold_hours, 1) * 24 * 365 / 2**20, 2),
        evict_ms_per_service=round(evict_seconds * 1000 / args.services, 2),
        gc_objects_per_service_hour=round(objects / service_hours, 2),
        full_collection_ms=round(collection * 1000, 2),
        full_collection_ms_at_10k_services=round(
            collection * 1000 * SCALE_TO_SERVICES / args.services
        ),
        snapshot_bytes_per_service=round(len(data) / args.services),
        snapshot_encode_ms_per_service=round(encode_seconds * 1000 / args.services, 2),
        snapshot_decode_ms_per_service=round(decode_seconds * 1000 / args.services, 2),
        **summaries,
        **machine(),
    )


if __name__ == "__main__":
    main()
