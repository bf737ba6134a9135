"""Once caught up, set the daemon's long-lived heap aside from the cyclic garbage collector.

A daemon that folded a long log holds a few hundred thousand container objects for as long as it
runs (hour buckets, periods, configuration models, its own modules). CPython's full collection
walks every one of them with the event loop held: 60-190 ms at 1,000 services with a day of
history (``bench/api.py``), every few seconds while requests churn the young generations — the
whole p99 of an answer that otherwise takes a millisecond. ``gc.freeze()`` moves what is alive to
a permanent generation the collector no longer walks, so later full collections only cover what
came after.

Frozen objects are still freed by reference counting as usual; only a reference cycle among them
would never be collected. A full collection just before the freeze leaves nothing cyclic from the
start-up (the log's fold, the first rebuilds) behind, and what stays alive then lives as long as
the process, so the freeze costs no memory. Only the ``run`` command does it (``serving.serve``):
a test process that starts daemons in-process must not freeze its own heap.
"""

from __future__ import annotations

import asyncio
import gc
import time

import structlog

log = structlog.get_logger(__name__)


async def settle_after(caught_up: asyncio.Event) -> int:
    """When ``caught_up`` is set: one full collection, then freeze what is alive; how many froze."""
    await caught_up.wait()
    started = time.perf_counter()
    collected = gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info(
        "heap_settled",
        frozen_objects=frozen,
        collected=collected,
        milliseconds=round(1000 * (time.perf_counter() - started), 1),
    )
    return frozen
