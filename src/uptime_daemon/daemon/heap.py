"""Keep the daemon's long-lived heap out of the cyclic garbage collector's full collections.

A daemon holds a few hundred thousand container objects for as long as it runs (hour buckets,
periods, configuration models, its modules); at 10,000 services, more as their hours fill. CPython's
full collection walks every one of them with the event loop held: 125-190 ms every ~9 s at 10,000
services (``bench/scale.py``), 60-190 ms at 1,000 services with a day of history under request load
(``bench/api.py``) — most of the daemon's late checks and slow answers. ``gc.freeze()`` moves what
is alive to a permanent generation the collector no longer walks, so later full collections only
cover what came after.

So: once the projector has caught up, one full collection and a freeze; from then on, whenever a
full collection took longer than ``SLOW_SECONDS`` (the heap has grown), its survivors are frozen
right after it (no extra pause: the collection just happened). Frozen objects are still freed by
reference counting; only a reference cycle among them would never be collected. What is alive
right after a full collection lives on (the projection, the configuration); the rest is in flight
(a probe, a request) and rarely cyclic, so once every ``RENEW_SECONDS`` the heap is unfrozen: the
next full collection walks everything once, collects what was kept that way, and its survivors are
frozen again. Only the ``run`` command does this (``serving.serve``): a test process that starts
daemons in-process must not freeze its own heap.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any, Final

import structlog

log = structlog.get_logger(__name__)

SLOW_SECONDS: Final = 0.02
"""A full collection at least this long freezes its survivors."""
RENEW_SECONDS: Final = 86_400.0
"""How often the heap is unfrozen, so the collector sees (and can free) everything once."""


class Settler:
    """Freezes the survivors of a slow full collection; ``run`` is its task (see the module)."""

    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        slow_seconds: float = SLOW_SECONDS,
        renew_seconds: float = RENEW_SECONDS,
    ) -> None:
        """Nothing happens before ``run``; ``monotonic`` times the renewals."""
        self._monotonic = monotonic
        self._slow = slow_seconds
        self._renew = renew_seconds
        self._started = 0.0
        self._renewed = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = False
        self.settled = 0
        """Freezes so far (the first after catch-up included)."""

    async def run(self, caught_up: asyncio.Event) -> None:
        """Once ``caught_up`` is set: settle, then watch full collections until cancelled."""
        await caught_up.wait()
        self._loop = asyncio.get_running_loop()
        started = time.perf_counter()
        collected = gc.collect()
        self._settle(took=time.perf_counter() - started, collected=collected)
        self._renewed = self._monotonic()
        gc.callbacks.append(self._observe)
        try:
            await asyncio.Event().wait()
        finally:
            gc.callbacks.remove(self._observe)

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        """A ``gc.callbacks`` hook: time full collections; a slow one settles on the loop next."""
        if info["generation"] != 2:  # noqa: PLR2004 - the oldest generation: a full collection
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        if took < self._slow or self._due or self._loop is None:
            return
        self._due = True  # the hook may run in any thread; freezing is the loop's
        self._loop.call_soon_threadsafe(self._after_slow, took, info["collected"])

    def _after_slow(self, took: float, collected: int) -> None:
        self._due = False
        if self._monotonic() - self._renewed >= self._renew:
            gc.unfreeze()  # the next full collection walks everything once; it is slow: settles
            self._renewed = self._monotonic()
            log.info("heap_unfrozen", after_seconds=self._renew)
            return
        self._settle(took=took, collected=collected)

    def _settle(self, *, took: float, collected: int) -> None:
        gc.freeze()
        self.settled += 1
        log.info(
            "heap_settled",
            frozen_objects=gc.get_freeze_count(),
            collected=collected,
            collection_milliseconds=round(1000 * took, 1),
        )
