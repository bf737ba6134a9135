"""The interpreter's switch interval, set for an event loop that shares it with worker threads.

The daemon's threads run Python too: the metrics thread renders each scrape (at 10,000 services
the first one after start-up renders every service for ~2.5 s, the later ones ~0.4 s), and the
store's threads and the summary's hashing and gzip take the interpreter between their C calls.
While one of them runs Python, the event loop waits for the interpreter each time it comes back
from ``epoll`` — up to CPython's switch interval, 5 ms by default, and a check's start, probe and
append take several turns of the loop. ``bench/scale.py`` (10,000 services every 60 s, scrapes
every 15 s; AMD EPYC, 2 cores) found the loop held 30–113 ms at a time all through such a scrape,
and 1.3–1.5 % of the runs later than 50 ms over three runs; with a 1 ms interval, 0.6 % at the same
CPU. Only the ``run`` command sets it (``serving.serve``), for the whole process.
"""

from __future__ import annotations

import sys
from typing import Final

import structlog

log = structlog.get_logger(__name__)

SWITCH_INTERVAL_SECONDS: Final = 0.001
"""How long a thread running Python keeps the interpreter from another that waits (CPython: 5 ms)."""


def tune() -> float:
    """Set the switch interval; the interval now."""
    was = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    now = sys.getswitchinterval()
    log.info("switch_interval_tuned", seconds=now, was=was)
    return now
