"""``malloc``: the heap's free pages go back to the system, large blocks are mapped apart (glibc)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


_LARGE_BLOCKS = """
import sys
from pathlib import Path
from uptime_daemon import malloc

def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * {page}

if sys.argv[1] == "mapped":
    assert malloc.map_large()
first = bytearray(16 << 20)  # mapped on its own either way; freeing it raises glibc's threshold
del first
before = rss()
kept = []
for _ in range(8):
    block = bytearray(4 << 20)
    kept.append(bytes(600))  # a heap block after it: the freed one is not the heap's top
    del block
print(rss() - before)
"""


def _grown(mode: str) -> int:
    """RSS growth (bytes) of a fresh process that freed eight 4 MiB blocks, ``mode`` as set."""
    env = {key: value for key, value in os.environ.items() if key != malloc.OPERATOR_SETTING}
    done = subprocess.run(
        [sys.executable, "-c", _LARGE_BLOCKS.format(page=_PAGE), mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    return int(done.stdout)


def test_large_blocks_are_mapped_apart_and_returned_when_freed() -> None:
    """Without ``map_large`` the freed 4 MiB blocks stay in the heap; with it they are unmapped."""
    assert _grown("default") >= 4 << 20
    assert _grown("mapped") < 1 << 20


def test_the_operators_own_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(malloc.OPERATOR_SETTING, "262144")
    assert not malloc.map_large()
