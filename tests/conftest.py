"""Shared fixtures: a real daemon as a subprocess, reading its JSON log lines."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.kurrentdb_standin import ThreadedStandIn
from uptime_daemon.store import RecordedEvent
from uptime_daemon.store.sqlite import SqliteEventStore

ROOT = Path(__file__).resolve().parents[1]


class DaemonProcess:
    """``uptime-daemon run`` in a subprocess; its JSON log lines are collected as they arrive."""

    def __init__(
        self, config: Path, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> None:
        """``prefix`` runs it under another command (``ip netns exec NAME`` for a partition test)."""
        self.config = config
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "uptime_daemon", "--config", str(config), "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=config.parent,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = str(self.wait_for_log(lambda e: e.get("event") == "daemon_started")["url"])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.raw.append(line)
                try:
                    self.lines.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    self.lines.append({"event": "unparsed", "line": line})
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_log(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first log line matching ``predicate``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for entry in self.lines[seen:]:
                    if predicate(entry):
                        return entry
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and seen == len(self.lines)):
                    output = "".join(self.raw[-40:])
                    pytest.fail(
                        f"log line not seen (exit={self.proc.poll()}); last output:\n{output}"
                    )
                self._cond.wait(min(remaining, 0.5))

    def wait_until(
        self, condition: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0
    ) -> None:
        """Wait until ``condition(all log lines so far)`` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition(self.lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    output = "".join(self.raw[-40:])
                    pytest.fail(
                        f"condition not met (exit={self.proc.poll()}); last output:\n{output}"
                    )
                self._cond.wait(min(remaining, 0.5))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the daemon and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            pytest.fail(f"daemon did not stop within {timeout} s of signal {sig}")
        self._reader.join(timeout=10)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()
        return code


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_http_target(port: int, directory: Path) -> subprocess.Popen[bytes]:
    """A real HTTP target in its own process (``python -m http.server``), listening when this returns."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)  # waiting for the listener, bounded by the deadline
    proc.kill()
    pytest.fail("target did not start")


def write_config(directory: Path, body: str, store: str | None = None) -> Path:
    """A config file on an ephemeral port and a store in ``directory`` (or ``store``), plus ``body``."""
    path = directory / "daemon.toml"
    path.write_text(
        'environment = "test"\n'
        '[server]\nhost = "127.0.0.1"\nport = 0\nshutdown_timeout_seconds = 5\n'
        + (store or f'[store]\nurl = "sqlite:///{directory / "events.db"}"\n')
        + '[log]\nlevel = "debug"\nformat = "json"\n'
        + body,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start daemons on demand; any still running at the end are stopped."""
    started: list[DaemonProcess] = []

    def start(
        body: str = "", env: dict[str, str] | None = None, store: str | None = None
    ) -> DaemonProcess:
        daemon = DaemonProcess(write_config(tmp_path, body, store), env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop(signal.SIGKILL)  # no-op signal for one that already exited; closes its pipe


def get_json(url: str) -> Any:
    """GET a loopback (or test-namespace) URL and parse its JSON body."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a URL the test built
        return orjson.loads(response.read())


@pytest.fixture
def standin() -> Iterator[ThreadedStandIn]:
    """The KurrentDB stand-in on loopback, on its own thread (the test's thread may block)."""
    server = ThreadedStandIn()
    server.start()
    yield server
    server.close()


def stored_events(database: Path, prefix: str | None = None) -> list[RecordedEvent]:
    """Every event of the SQLite file at ``database`` (in commit order), read through the store.

    The file's tables are the store's business (names interned, payloads compressed): tests read
    what the store says, as the daemon would.
    """

    async def read() -> list[RecordedEvent]:
        store = await SqliteEventStore.open(database)
        try:
            return await store.read_all(stream_prefix=prefix)
        finally:
            await store.close()

    return asyncio.run(read())
