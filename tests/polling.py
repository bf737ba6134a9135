"""Wait for a condition with a deadline: the one polling helper the tests share.

A test waits for what it needs (a log line, a request at the target, a counter, a DOM state), never
for time to pass. ``until`` is for tests on the event loop, ``wait_until`` for tests whose thread
blocks (subprocesses, browsers, Prometheus). Both return the condition's first truthy value, so a
caller can use what it waited for, and both raise ``AssertionError`` naming what was awaited when
the deadline passes.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar, overload

T = TypeVar("T")


def _describe(condition: Callable[[], object]) -> str:
    """The condition's name and where it is defined: a lambda is found by its file and line."""
    name = getattr(condition, "__qualname__", None) or repr(condition)
    function = getattr(condition, "__func__", condition)  # a bound method's function
    code = getattr(function, "__code__", None)
    if code is None:
        return str(name)
    return f"{name} ({Path(code.co_filename).name}:{code.co_firstlineno})"


def _timed_out(
    condition: Callable[[], object], what: str | None, within: float, last: object
) -> str:
    return f"{what or _describe(condition)}: not within {within:g} s (last returned {last!r})"


@overload
async def until(
    condition: Callable[[], Awaitable[T]],
    *,
    within: float = ...,
    interval: float = ...,
    what: str | None = ...,
) -> T: ...


@overload
async def until(
    condition: Callable[[], T],
    *,
    within: float = ...,
    interval: float = ...,
    what: str | None = ...,
) -> T: ...


async def until(
    condition: Callable[[], T | Awaitable[T]],
    *,
    within: float = 10.0,
    interval: float = 0.01,
    what: str | None = None,
) -> T:
    """Poll ``condition`` (sync or async) on the event loop until it is truthy; return that value.

    The condition is evaluated once more after the deadline, so a slow step is not failed early.

    Raises:
        AssertionError: ``within`` seconds passed with the condition falsy; the message names
            ``what`` (or the condition and where it is defined) and the last value.
    """
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(_timed_out(condition, what, within, value))
        await asyncio.sleep(interval)


def wait_until(
    condition: Callable[[], T],
    *,
    within: float = 10.0,
    interval: float = 0.05,
    what: str | None = None,
) -> T:
    """Poll ``condition`` from a blocking test until it is truthy; return that value.

    The condition is evaluated once more after the deadline, so a slow step is not failed early.

    Raises:
        AssertionError: ``within`` seconds passed with the condition falsy; the message names
            ``what`` (or the condition and where it is defined) and the last value.
    """
    deadline = time.monotonic() + within
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(_timed_out(condition, what, within, value))
        time.sleep(interval)  # the poll interval, bounded by the deadline
    return value
