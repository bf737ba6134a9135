"""The cyclic garbage collector, set for a daemon's heap: young collections 14 × rarer.

A daemon holds a few hundred thousand container objects for as long as it runs (hour buckets,
periods, configuration models, its modules), and allocates fast and briefly (a probe, a request,
an event). CPython collects the young generation every 700 net allocations of container objects;
whatever is alive at that moment (in flight) is promoted, and once promotions reach a quarter of
the old heap a full collection walks all of it with the event loop held: 125-190 ms every ~9 s at
10,000 services (``bench/scale.py``), 100-190 ms every few seconds at 1,000 services under 500
requests/s (``bench/api.py``) — most of the daemon's late checks and slow answers.

With a young collection every ``YOUNG_THRESHOLD`` allocations instead, far more of the brief objects
are gone (freed by reference counting) before a collection could promote them, so full collections
come minutes apart instead of seconds, and a young collection still walks at most that many objects
(a millisecond or two). ``gc.freeze()`` after start-up was tried instead and dropped: it stops full
collections from walking the frozen heap, but it cost 3 × the CPU per ``/uptime/summary`` answer
(1,000 services, wrk: 413 instead of 1,157 answers/s in the same hour) — most likely because CPython
3.11 then runs a full collection every few young ones (its "a quarter of the old heap" rule sees an
old heap that is nearly empty). Only the ``run``
command sets it (``serving.serve``), for the whole process.
"""

from __future__ import annotations

import gc
from typing import Final

import structlog

log = structlog.get_logger(__name__)

YOUNG_THRESHOLD: Final = 10_000
"""Net container allocations between young collections (CPython's default is 700)."""


def tune() -> tuple[int, int, int]:
    """Set the young generation's threshold (the older two as they are); the thresholds now."""
    was = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, was[1], was[2])
    now = gc.get_threshold()
    log.info("gc_tuned", thresholds=list(now), was=list(was))
    return now
