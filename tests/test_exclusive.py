"""One daemon per embedded store and per state file: a second one is refused with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess, write_config
from uptime_daemon.daemon.exclusive import exclusive
from uptime_daemon.errors import AlreadyInUse


def _run(
    config: Path, *command: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uptime_daemon", "--config", str(config), *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=config.parent,
        env={**os.environ, **(env or {})},
    )


def test_a_second_daemon_on_one_sqlite_file_is_refused(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """The second exits 1 at once with one line naming the holder and the way out; the first runs on."""
    first = daemon_factory(env={"UPTIME_INSTANCE": "first"})
    other = tmp_path / "second"
    other.mkdir()
    config = write_config(other, "", store=_same_store(tmp_path))
    second = _run(config, "run", env={"UPTIME_INSTANCE": "second"})
    assert second.returncode == 1
    (line,) = [text for text in second.stderr.splitlines() if text.startswith("uptime-daemon:")]
    assert f"{tmp_path / 'events.db'} is in use by uptime-daemon instance 'first' (pid " in line
    assert "KurrentDB" in line
    assert first.proc.poll() is None, "the first daemon is untouched"
    assert first.stop() == 0


def test_replay_is_refused_while_the_daemon_runs(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """``replay`` rewrites the snapshot the running daemon keeps: refused, and it says why."""
    daemon = daemon_factory()
    refused = _run(daemon.config, "replay")
    assert refused.returncode == 1
    assert "stop the daemon first" in refused.stderr
    assert daemon.stop() == 0
    done = _run(daemon.config, "replay")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("replayed ")


def test_the_lock_is_released_when_the_holder_ends(tmp_path: Path) -> None:
    """Leaving the block (or the process ending, even by SIGKILL) frees the file for the next one."""
    path = tmp_path / "events.db"
    with (
        exclusive(path, holder="one", why="because"),
        pytest.raises(AlreadyInUse, match=r"in use by one \(pid \d+\); because"),
        exclusive(path, holder="two", why="because"),
    ):
        pass
    with exclusive(path, holder="three", why="because"):
        pass
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, pathlib; from uptime_daemon.daemon.exclusive import exclusive\n"
                f"with exclusive(pathlib.Path({str(path)!r}), holder='held', why='w'):\n"
                "    print('held', flush=True); sys.stdin.read()"
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "held\n"
    with (
        pytest.raises(AlreadyInUse, match="in use by held"),
        exclusive(path, holder="four", why="w"),
    ):
        pass
    holder.kill()
    holder.wait(timeout=10)
    holder.stdout.close()
    assert holder.stdin is not None
    holder.stdin.close()
    with exclusive(path, holder="five", why="w"):
        pass


def _same_store(tmp_path: Path) -> str:
    return f'[store]\nurl = "sqlite:///{tmp_path / "events.db"}"\n'
