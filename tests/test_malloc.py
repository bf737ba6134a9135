"""``malloc.give_back``: the heap's free pages go back to the system (glibc's ``malloc_trim``)."""

from __future__ import annotations

import os
from pathlib import Path

from uptime_daemon import malloc

_PAGE = os.sysconf("SC_PAGE_SIZE")
_BLOCKS = 20_000
_BLOCK_BYTES = 4_000
"""80 MB in blocks the C library's heap serves (over CPython's 512 bytes, under glibc's mmap threshold)."""


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1]) * _PAGE


def test_freed_blocks_inside_the_heap_are_given_back() -> None:
    blocks = [bytes(_BLOCK_BYTES) for _ in range(_BLOCKS)]
    survivors = blocks[
        -1::-997
    ]  # a few kept: the heap's top stays in use, so free() returns nothing
    del blocks
    before = _rss()
    assert malloc.give_back()
    given = before - _rss()
    assert given > _BLOCKS * _BLOCK_BYTES // 2, f"{given} bytes given back"
    assert len(survivors) > 1
