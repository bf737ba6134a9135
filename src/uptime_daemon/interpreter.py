"""The event loop first: a shorter switch interval while a thread runs long Python beside it.

While another thread runs Python, the event loop waits for the interpreter each time it comes back
from ``epoll``: up to CPython's switch interval, 5 ms by default, and a check's start, probe and
append take several turns of the loop. The metrics thread renders each scrape in Python (at
10,000 services the first one after start-up renders every service for ~2.5 s, later ones
~0.4 s): ``bench/scale.py`` (10,000 services every 60 s, scrapes every 15 s; AMD EPYC, 2 cores)
found the loop held 30–113 ms at a time all through such a scrape, and 1.3–1.5 % of the runs
later than 50 ms over three runs; with a 1 ms interval while the metrics thread works, 0.06 %
(plain scrapes) and 0.69 % (gzipped).

Not for the whole process: at 1,000 probes/s, where the store's writer thread runs Python too, a
1 ms interval cost 15 % more CPU per probe (``bench/probes.py``: 0.82–0.90 ms against
0.70–0.78 ms, alternating runs). So the interval is short only while a thread says it runs long
Python (``loop_first``, a context manager or a decorator), and back to what it was once the last
such thread is done.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

SWITCH_INTERVAL_SECONDS: Final = 0.001
"""How long a thread in ``loop_first`` keeps the interpreter from one that waits (CPython: 5 ms)."""

_lock = threading.Lock()
_inside = 0
_before = sys.getswitchinterval()


@contextmanager
def loop_first() -> Iterator[None]:
    """Within: the switch interval is ``SWITCH_INTERVAL_SECONDS`` (for every thread of the process)."""
    global _inside, _before  # noqa: PLW0603 - the interpreter's setting is process-wide too
    with _lock:
        if _inside == 0:
            _before = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0:
                sys.setswitchinterval(_before)
