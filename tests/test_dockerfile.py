"""The Dockerfile cannot be built here (no engine); check by parsing that it keeps its promises."""

from __future__ import annotations

import json
import re
from pathlib import Path

from uptime_daemon.config.load import load_settings

ROOT = Path(__file__).resolve().parents[1]


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_multi_stage_slim_non_root_with_healthcheck_volume_and_config_in_cmd() -> None:
    """Two stages on a slim base, a numeric non-root USER, HEALTHCHECK on /health, a state VOLUME, config in CMD."""
    steps = _instructions()
    froms = [arg for op, arg in steps if op == "FROM"]
    assert len(froms) == 2
    assert all("slim" in base for base in froms)
    user = [arg for op, arg in steps if op == "USER"][-1]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), user
    health = next(arg for op, arg in steps if op == "HEALTHCHECK")
    assert "/health" in health
    assert any(op == "VOLUME" and "/var/lib/uptime-daemon" in arg for op, arg in steps)
    cmd = json.loads(next(arg for op, arg in steps if op == "CMD"))
    assert cmd[0] == "--config"
    assert cmd[-1] == "run"


def test_every_copied_path_exists_and_is_not_ignored() -> None:
    """COPY sources exist, and .dockerignore does not hide them from the build context."""
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()
    }
    for op, arg in _instructions():
        if op != "COPY" or arg.startswith("--from"):
            continue
        *sources, _ = arg.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") not in ignored, source


def test_container_config_is_valid_and_listens_inside_the_container() -> None:
    """The config the image runs with loads, binds all interfaces in the container, keeps state in the volume."""
    settings = load_settings(ROOT / "deploy/docker/container.toml", environ={})
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 8080
    assert settings.store.url == "sqlite:////var/lib/uptime-daemon/events.db"
