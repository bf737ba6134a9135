"""The command line as an operator uses it: real subprocesses, real files, exit codes and output."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

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


def test_replay_in_two_processes_writes_the_same_snapshot(tmp_path: Path) -> None:
    """``--processes 2`` folds a share of the services in a child: the snapshot is the same bytes."""
    asyncio.run(_write_history(tmp_path / "events.db"))
    config = write_config(tmp_path, '[services.a]\nkind = "http"\nurl = "http://127.0.0.1:9/"\n')
    snapshot = tmp_path / "events.db.projection.json"
    written = {}
    for processes in ("1", "2"):
        done = cli(config, "replay", "--processes", processes)
        assert done.returncode == 0, done.stderr
        assert "replay_split_failed" not in done.stderr
        assert ("2 processes" in done.stdout) == (processes == "2"), done.stdout
        assert f"replayed {CHECKS} events" in done.stdout
        written[processes] = snapshot.read_bytes()
    assert written["1"] == written["2"]
    refused = cli(config, "replay", "--processes", "0")
    assert refused.returncode == 2
    assert "a whole number from 1 to 8" in refused.stderr


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


def _command(argv: list[str], environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI with exactly ``argv``; no environment selector inherited from the caller."""
    inherited = {k: v for k, v in os.environ.items() if k not in {"UPTIME_ENV", "NODE_ENV"}}
    return subprocess.run(
        [sys.executable, "-m", "uptime_daemon", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**inherited, **environ},
        check=False,
    )


@pytest.fixture
def two_configs(tmp_path: Path) -> dict[str, str]:
    """``FILE`` (instance ``from-file``) and ``$UPTIME_CONFIG_DIR`` with test.toml and dev.toml."""
    for name, instance in (
        ("file", "from-file"),
        ("test", "from-env-test"),
        ("dev", "from-env-dev"),
    ):
        (tmp_path / f"{name}.toml").write_text(
            f'environment = "test"\ninstance = "{instance}"\n'
            f'[store]\nurl = "sqlite:///{tmp_path / "events.db"}"\n',
            encoding="utf-8",
        )
    return {"FILE": str(tmp_path / "file.toml"), "UPTIME_CONFIG_DIR": str(tmp_path)}


@pytest.mark.parametrize(
    ("argv", "instance"),
    [
        pytest.param(["--config", "FILE", "config", "validate"], "from-file", id="config-before"),
        pytest.param(["config", "validate", "--config", "FILE"], "from-file", id="config-after"),
        pytest.param(["--env", "test", "config", "validate"], "from-env-test", id="env-before"),
        pytest.param(["config", "validate", "--env", "test"], "from-env-test", id="env-after"),
        pytest.param(
            ["--env", "test", "config", "validate", "--env", "test"],
            "from-env-test",
            id="env-twice-alike",
        ),
        pytest.param(["config", "validate"], "from-env-dev", id="neither-is-dev"),
    ],
)
def test_where_the_config_comes_from_goes_before_or_after_the_command(
    two_configs: dict[str, str], argv: list[str], instance: str
) -> None:
    """``--env``/``--config`` are accepted where users type them: before or after the command."""
    argv = [two_configs["FILE"] if arg == "FILE" else arg for arg in argv]
    done = _command(argv, {"UPTIME_CONFIG_DIR": two_configs["UPTIME_CONFIG_DIR"]})
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["instance"] == instance


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["--env", "test", "config", "validate", "--env", "dev"],
            "--env given twice with different values: 'test' before the command, 'dev' after it",
            id="env-twice-unlike",
        ),
        pytest.param(
            ["--config", "FILE", "summary", "--config", "other.toml"],
            "--config given twice with different values",
            id="config-twice-unlike",
        ),
        pytest.param(
            ["--env", "test", "config", "validate", "--config", "FILE"],
            "argument --config: not allowed with argument --env",
            id="env-before-config-after",
        ),
        pytest.param(
            ["run", "--config", "FILE", "--env", "test"],
            "argument --env: not allowed with argument --config",
            id="both-after",
        ),
    ],
)
def test_where_options_stay_one_choice(
    two_configs: dict[str, str], argv: list[str], message: str
) -> None:
    """Still mutually exclusive across the command, and one value each: a usage error (status 2)."""
    argv = [two_configs["FILE"] if arg == "FILE" else arg for arg in argv]
    done = _command(argv, {"UPTIME_CONFIG_DIR": two_configs["UPTIME_CONFIG_DIR"]})
    assert done.returncode == 2
    assert done.stderr.startswith("usage: uptime-daemon"), done.stderr
    assert f": error: {message}" in done.stderr  # "uptime-daemon[ COMMAND]: error: ..."
    assert done.stdout == ""


def test_a_command_help_shows_where_the_config_comes_from() -> None:
    """``run --help`` lists ``--env`` and ``--config`` too, once each."""
    done = _command(["run", "--help"], {})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("--config PATH") == 2  # usage line and option list
    assert "--env {dev,staging,test,mainnet}" in done.stdout


def test_compact_rolls_up_aged_checks_and_every_figure_stays(tmp_path: Path) -> None:
    """``compact``: the raw checks older than the retention go, ``summary`` says the same after."""
    aged = datetime.now(UTC) - timedelta(days=40)

    async def write() -> None:
        store = await SqliteEventStore.open(tmp_path / "events.db", clock_now=lambda: aged)
        await write_checks(store, CHECKS, seed=8, start=aged - timedelta(hours=1))
        await store.close()

    asyncio.run(write())
    config = write_config(tmp_path, '[services.a]\nkind = "http"\nurl = "http://127.0.0.1:9/"\n')
    before = cli(config, "summary", "--hours", "2160", "--json")
    assert before.returncode == 0, before.stderr
    done = cli(config, "compact", "--older-than-days", "30")
    assert done.returncode == 0, done.stderr
    match = re.search(
        r"rolled up (\d+) raw events into (\d+) rollups .*; (\d+) deleted", done.stdout
    )
    assert match, done.stdout
    assert int(match.group(1)) == int(match.group(3)) == CHECKS
    after = cli(config, "summary", "--hours", "2160", "--json")
    assert after.returncode == 0, after.stderr
    assert _lasting(after.stdout) == _lasting(before.stdout)
    again = cli(config, "compact", "--older-than-days", "0")
    assert again.returncode == 2, again.stdout  # a config error: at least one day is kept


def _lasting(summary: str) -> list[dict[str, object]]:
    """What a summary says that does not depend on the instant it was asked (``now`` moves on)."""
    found = []
    for service in orjson.loads(summary)["services"]:
        seconds = service.pop("seconds")
        seconds.pop("unknown")
        service.pop("window")
        found.append(service | {"seconds": seconds})
    return found
