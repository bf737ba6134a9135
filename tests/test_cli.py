"""The command line as an operator uses it: real subprocesses, real files, exit codes and output."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_config
from tests.projector.test_runner import write_checks
from uptime_daemon.store.sqlite import SqliteEventStore

CHECKS = 40


def cli(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uptime_daemon", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


async def _write_history(database: Path) -> int:
    """``CHECKS`` checks spread over services ``a``, ``b``, ``c``; returns how many got any."""
    store = await SqliteEventStore.open(database)
    await write_checks(store, CHECKS, seed=3)
    streams = {e.stream for e in await store.read_all(stream_prefix="service-uptime-")}
    await store.close()
    return len(streams)


def test_replay_folds_every_event_and_reports_its_rate(tmp_path: Path) -> None:
    """``replay`` rebuilds from zero: it counts every stored uptime event and says how fast."""
    services = asyncio.run(_write_history(tmp_path / "events.db"))
    config = write_config(tmp_path, '[services.a]\nkind = "http"\nurl = "http://127.0.0.1:9/"\n')
    done = cli(config, "replay")
    assert done.returncode == 0, done.stderr
    match = re.search(
        r"replayed (\d+) events into (\d+) services in [\d.]+ s \(([\d,]+) events/s\)", done.stdout
    )
    assert match, done.stdout
    assert int(match.group(1)) == CHECKS
    assert int(match.group(2)) == services
    assert int(match.group(3).replace(",", "")) > 0


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``config validate | head -1`` must not end in a traceback or an error line."""
    config = write_config(tmp_path, "")
    with subprocess.Popen(
        [sys.executable, "-m", "uptime_daemon", "--config", str(config), "config", "validate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()  # the reader goes away before the first write
        stderr = process.stderr.read().decode()
        code = process.wait(timeout=60)
    assert code == 141, stderr
    assert stderr == ""


def test_an_unknown_event_loop_choice_is_one_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, "")
    done = cli(config, "replay", env={"UPTIME_EVENT_LOOP": "trio"})
    assert done.returncode == 2
    assert done.stderr == (
        "uptime-daemon: config error: UPTIME_EVENT_LOOP: must be auto, uvloop or asyncio, got 'trio'\n"
    )
