"""The SQLite store on a disk that fills up or turns read-only: a clear error, health red, no crash, no loss."""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import DaemonProcess, stored_events


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (root only; skipped with the reason otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _ready(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/health/ready", timeout=10) as response:  # noqa: S310
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb") as handle:
        try:
            for _ in range(1024):  # at most 64 MiB, far more than the disk holds
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def _checks(lines: list[dict[str, Any]]) -> int:
    return sum(e.get("event") == "probe_completed" and e.get("service") == "http" for e in lines)


def test_full_disk(
    daemon_factory: Callable[..., DaemonProcess], tiny_disk: Path, tmp_path: Path
) -> None:
    """Appends fail cleanly, readiness turns red, probing goes on, the spool keeps every event for later.

    (A disk turning read-only under open files cannot be simulated here: the remount is refused
    while the database is open. The start-up case is below.)
    """
    daemon = daemon_factory(
        "[projector]\n" + f'snapshot_path = "{tmp_path}/projection.json"\n'
        '[services.http]\nkind = "http"\nurl = "/health"\ninterval_seconds = 0.2\n',
        store=f'[store]\nurl = "sqlite:///{tiny_disk}/events.db"\nspool_path = "{tmp_path}/spool.db"\n',
    )
    daemon.wait_until(lambda lines: _checks(lines) >= 5)
    filler = _fill(tiny_disk)
    daemon.wait_for_log(lambda e: e.get("event") == "store_unavailable_spooling", timeout=60)
    status, body = _ready(daemon.url)
    assert status == 503
    store = next(c for c in body["components"] if c["name"] == "store")
    assert store["ok"] is False
    assert "full" in store["detail"]
    before = _checks(daemon.lines)
    daemon.wait_until(lambda lines: _checks(lines) >= before + 5)  # still probing
    filler.unlink()
    daemon.wait_for_log(lambda e: e.get("event") == "spool_drained", timeout=60)

    assert daemon.proc.poll() is None  # never crashed
    assert daemon.stop() == 0
    ids = [
        e.id
        for e in stored_events(tiny_disk / "events.db", "service-uptime-http")
        if e.type == "ServiceStatusChanged"
    ]
    assert len(ids) == len(set(ids)) == _checks(daemon.lines)


def test_read_only_disk_at_start_is_one_clear_error(tiny_disk: Path, tmp_path: Path) -> None:
    """A store on a read-only file system: exit 1 with one readable line, no traceback."""
    import sys  # noqa: PLC0415

    from tests.conftest import write_config  # noqa: PLC0415

    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    config = write_config(tmp_path, "", store=f'[store]\nurl = "sqlite:///{tiny_disk}/events.db"\n')
    done = subprocess.run(
        [sys.executable, "-m", "uptime_daemon", "--config", str(config), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert "EventStoreUnavailable" in done.stderr
    assert (
        "read-only" in done.stderr.lower()
        or "readonly" in done.stderr.lower()
        or "unable to open" in done.stderr.lower()
    )
