"""``loop_first``: a short switch interval while any thread is inside, the old one once all are out."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from uptime_daemon.interpreter import SWITCH_INTERVAL_SECONDS, loop_first


@pytest.fixture(autouse=True)
def _default_interval() -> Iterator[None]:
    was = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(was)


def test_the_interval_is_short_inside_and_restored_after() -> None:
    with loop_first():
        assert sys.getswitchinterval() == SWITCH_INTERVAL_SECONDS
    assert sys.getswitchinterval() == 0.005


def test_restored_after_an_error_inside() -> None:
    with pytest.raises(RuntimeError), loop_first():
        raise RuntimeError("the render failed")
    assert sys.getswitchinterval() == 0.005


def test_two_threads_inside_at_once_keep_it_short_until_the_last_leaves() -> None:
    first_in, first_may_leave, first_left = (threading.Event() for _ in range(3))
    seen: list[float] = []

    def first() -> None:
        with loop_first():
            first_in.set()
            assert first_may_leave.wait(10)
        first_left.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(10)
    with loop_first():
        first_may_leave.set()
        assert first_left.wait(10)
        seen.append(sys.getswitchinterval())  # the first has left; this one is still inside
    thread.join(10)
    assert seen == [SWITCH_INTERVAL_SECONDS]
    assert sys.getswitchinterval() == 0.005


def test_as_a_decorator_each_call_is_inside() -> None:
    """The metrics thread's functions are decorated: every call, not only the first, is inside."""

    @loop_first()
    def seen() -> float:
        return sys.getswitchinterval()

    assert [seen(), seen()] == [SWITCH_INTERVAL_SECONDS] * 2
    assert sys.getswitchinterval() == 0.005
