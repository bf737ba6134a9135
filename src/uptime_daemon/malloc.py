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
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Final


def _trimmer() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # pragma: no cover - a platform without a C library to load
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:  # pragma: no cover - a C library without the call (musl)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_TRIM: Final = _trimmer()


def give_back() -> bool:
    """Return the heap's free pages to the system; whether the C library could return any."""
    return _TRIM is not None and _TRIM(0) == 1
