"""How long two pieces of the daemon's own work hold the event loop or cost, in one process and run.

* ``snapshot_encode``: the projector's snapshot of ``--services`` services with an hour of minute
  checks each: ``snapshot.encode`` in one go (what the loop used to wait for) against
  ``snapshot.Encoding`` (the loop given back between slices) beside a task that measures every turn of the loop (the longest hold).
  The two must give the same bytes.
* ``skip_logging``: what one skipped run cost in logging: our line and APScheduler's own, against
  the scheduler's ``Tally`` with APScheduler's line filtered (``--skips`` of them, JSON to memory).

    python bench/loop_holds.py
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import random
import time
from datetime import UTC, datetime, timedelta

import structlog
from _common import emit, machine

from uptime_daemon.logging import configure_logging
from uptime_daemon.projector import snapshot
from uptime_daemon.projector.fold import Observation, ProjectionState, apply
from uptime_daemon.scheduler import APSCHEDULER_LOGGERS, Tally, _not_ours_twice
from uptime_daemon.status import Status

T0 = datetime(2026, 12, 7, tzinfo=UTC)
APSCHEDULER_SKIP = 'Execution of job "%s" skipped: maximum number of running instances reached (%d)'


def projection(services: int) -> ProjectionState:
    rng = random.Random(1)  # noqa: S311 - a reproducible load, not secrets
    state = ProjectionState()
    for i in range(services):
        for k in range(60):
            status = Status.DOWN if rng.random() < 0.01 else Status.UP
            at = T0 + timedelta(seconds=60 * k + i % 60)
            apply(state, Observation(f"service-{i}", at, status, rng.uniform(0.001, 0.2), 125.0))
    return state


async def sliced(whole: snapshot.Snapshot) -> tuple[bytes, float, float]:
    """The sliced encoding, its wall time, and the longest turn of the loop meanwhile."""
    holds: list[float] = []
    done = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            holds.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    pieces: list[bytes] = []
    async for given in snapshot.Encoding(whole):
        pieces += given
        await asyncio.sleep(0)
    data = b"".join(pieces)
    total = time.perf_counter() - started
    done = True
    await tick
    return data, total, max(holds)


def snapshot_encode(services: int) -> None:
    whole = snapshot.Snapshot(123, projection(services))
    blocking = []
    for _ in range(3):
        started = time.perf_counter()
        data = snapshot.encode(whole)
        blocking.append(time.perf_counter() - started)
    same, total, hold = asyncio.run(sliced(whole))
    emit(
        "snapshot_encode",
        cpu=machine()["cpu"],
        services=services,
        bytes=len(data),
        same_bytes=same == data,
        encode_blocking_ms=round(1000 * min(blocking), 1),
        sliced_total_ms=round(1000 * total, 1),
        sliced_longest_hold_ms=round(1000 * hold, 2),
    )


def skip_logging(skips: int) -> None:
    configure_logging("info", "json", stream=io.StringIO())
    ours = structlog.get_logger("uptime_daemon.scheduler")
    theirs = logging.getLogger(APSCHEDULER_LOGGERS[0])
    started = time.perf_counter()
    for i in range(skips):
        theirs.warning(APSCHEDULER_SKIP, f"s{i}", 1)
        ours.warning("check_skipped_still_running", service=f"s{i}")
    before = (time.perf_counter() - started) / skips
    theirs.addFilter(_not_ours_twice)
    tally = Tally("check_skipped_still_running", time.monotonic)
    started = time.perf_counter()
    for i in range(skips):
        theirs.warning(APSCHEDULER_SKIP, f"s{i}", 1)
        tally.note(f"s{i}")
    after = (time.perf_counter() - started) / skips
    emit(
        "skip_logging",
        cpu=machine()["cpu"],
        skips=skips,
        us_per_skip_two_lines=round(1e6 * before, 1),
        us_per_skip_tally=round(1e6 * after, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--skips", type=int, default=20_000)
    args = parser.parse_args()
    emit("machine", **machine())
    snapshot_encode(args.services)
    skip_logging(args.skips)


if __name__ == "__main__":
    main()
