"""Freed memory handed back to the system after a large, short-lived piece of work.

CPython frees a large object with the C library's ``free``, and glibc keeps what was freed inside
its heap for the next allocation: only the heap's top is returned, and only above a threshold that
grows with the largest blocks seen. So after a transient of tens of megabytes, such as a snapshot's
decoding at start or its encoding every minute, the process keeps the pages although nothing uses
them. At 10,000 services holding 89 days (``bench/history_memory.py``'s record under every name,
AMD EPYC) the 58 MB snapshot decoded into a process of 311 MiB RSS, and encoding it again left it
there; after ``malloc_trim`` it was 248 MiB, the trim taking 4 ms.

``give_back`` asks glibc for that (``malloc_trim(0)``: every arena, every whole free page in it, not
only the top). With another C library (musl has no such call) it does nothing.

``map_large`` keeps large blocks out of the heap. glibc maps a block of 128 KiB or more on its own
and unmaps it when freed, but each time it frees such a block it raises that threshold to the
block's size (up to 32 MiB): the scrapes' and snapshots' megabyte-sized pieces then come from the
heap, and stay in it once freed. With the threshold fixed at 1 MiB the 10,000-service daemon
holding 89 days ended its bench window at 284.4-286.1 MiB (three runs) against 293.1-293.4 for
the same code without it in the same hour (``bench/scale.py --history-days 89``, AMD EPYC).

The price: a block of 1 MiB or more made per request is mapped, faulted in page by page and
unmapped every time. aiohttp joined the head and body of each ``/uptime/summary`` answer (1.26 MB at
1,000 services) into one such block, and at 500 identity answers/s the p99 went from 8 to 405 ms
(``bench/api.py``, the 2026-12-08 ``make bench``); ``api.body.send_body`` now sends a kept body
without that copy. A new path that makes megabyte blocks per request should do the same.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Final


def _glibc(
    name: str, *arguments: type[ctypes.c_int | ctypes.c_size_t]
) -> Callable[..., int] | None:
    """The C library's function ``name`` taking ``arguments`` and returning an int, if it has one."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # pragma: no cover - a platform without a C library to load
        return None
    function = getattr(libc, name, None)
    if function is None:  # pragma: no cover - a C library without the call (musl)
        return None
    function.argtypes = list(arguments)
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_TRIM: Final = _glibc("malloc_trim", ctypes.c_size_t)
_MALLOPT: Final = _glibc("mallopt", ctypes.c_int, ctypes.c_int)
_M_MMAP_THRESHOLD: Final = -3
"""glibc's ``mallopt`` parameter number (``malloc.h``)."""
LARGE_BYTES: Final = 1 << 20
"""``map_large``'s default: blocks this large or larger are mapped on their own."""
OPERATOR_SETTING: Final = "MALLOC_MMAP_THRESHOLD_"
"""glibc's own environment variable for the same: when set, it is left to decide."""


def give_back() -> bool:
    """Return the heap's free pages to the system; whether the C library could return any."""
    return _TRIM is not None and _TRIM(0) == 1


def map_large(threshold: int = LARGE_BYTES) -> bool:
    """Map every block of ``threshold`` bytes or more on its own, for good; whether it was set.

    Left alone when the operator set ``MALLOC_MMAP_THRESHOLD_`` (or the C library is not glibc).
    """
    if _MALLOPT is None or os.environ.get(OPERATOR_SETTING):
        return False
    return _MALLOPT(_M_MMAP_THRESHOLD, threshold) == 1
