"""Configuration: every shipped file is valid, every invalid file fails with its exact message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from uptime_daemon.config.load import (
    load_settings,
    masked_settings,
    resolve_config_path,
    settings_from_mapping,
)
from uptime_daemon.config.model import HttpService
from uptime_daemon.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((Path(__file__).parent / "invalid").glob("*.toml"))
EXPECT_PREFIX = "# expect: "


def _expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(EXPECT_PREFIX), f"{path.name} must start with '{EXPECT_PREFIX}...'"
    return first.removeprefix(EXPECT_PREFIX)


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in INVALID])
def test_invalid_config_fails_with_exact_message(path: Path) -> None:
    """Each invalid file is rejected with one line naming the file and the key path."""
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert str(caught.value) == f"{path}: {_expected(path)}"


def test_there_are_invalid_examples() -> None:
    """The table above is not silently empty."""
    assert len(INVALID) >= 20


@pytest.mark.parametrize("env", ["dev", "staging", "test", "mainnet"])
def test_shipped_environments_are_valid(env: str) -> None:
    """Every environment file loads and monitors the daemon's own three services."""
    settings = load_settings(ROOT / "config" / f"{env}.toml", environ={})
    assert settings.environment == env
    assert set(settings.services) == {"http", "websocket", "database"}


@pytest.mark.parametrize("location", ["eu", "us"])
def test_the_example_cluster_configs_are_valid(location: str) -> None:
    """deploy/examples: each location's file loads, shares web and docs, keeps its own /health."""
    path = ROOT / "deploy" / "examples" / f"cluster-{location}.toml"
    settings = load_settings(path, environ={"UPTIME_INSTANCE": f"{location}-1"})
    assert settings.location == location
    assert set(settings.probed_here()) == {"web", "docs", f"self-{location}-1"}
    assert settings.placement("web").locations == ("eu", "us")
    assert settings.placement("web").quorum == 2


def test_defaults_apply_unless_a_service_overrides_them(tmp_path: Path) -> None:
    """``[defaults]`` fills every service; a service's own value wins."""
    path = tmp_path / "c.toml"
    path.write_text(
        "[defaults]\ninterval_seconds = 7\nfailures_before_down = 4\n"
        '[services.a]\nkind = "database"\n'
        '[services.b]\nkind = "database"\ninterval_seconds = 3\n'
    )
    settings = load_settings(path, environ={})
    assert settings.services["a"].interval_seconds == 7
    assert settings.services["b"].interval_seconds == 3
    assert settings.services["b"].failures_before_down == 4


def test_settings_are_frozen() -> None:
    """Validated once, then immutable."""
    settings = load_settings(ROOT / "config" / "dev.toml", environ={})
    with pytest.raises(ValueError, match="frozen"):
        settings.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("environ", "check"),
    [
        pytest.param({"HTTP_PORT": "9099"}, lambda s: s.server.port == 9099, id="http-port"),
        pytest.param(
            {"ALLOWED_ORIGINS": "http://localhost:5173, HTTP://LocalHost:80,https://a.example:443"},
            lambda s: (
                s.server.allowed_origins
                == ("http://localhost:5173", "http://localhost", "https://a.example")
            ),
            id="allowed-origins-normalised",
        ),
        pytest.param(
            {"KURRENTDB_URL": "kurrentdb://db.example:2113?tls=false"},
            lambda s: s.store.url == "kurrentdb://db.example:2113?tls=false",
            id="kurrentdb-url",
        ),
        pytest.param(
            {"KURRENTDB_URL": "http://localhost:2113"},
            lambda s: s.store.url == "kurrentdb://localhost:2113" and s.store.use_tls is False,
            id="seed-style-http-url",
        ),
        pytest.param(
            {"KURRENTDB_URL": "https://db.example:2113"},
            lambda s: s.store.url == "kurrentdb://db.example:2113" and s.store.use_tls is True,
            id="seed-style-https-url",
        ),
        pytest.param(
            {"KURRENTDB_USERNAME": "admin", "KURRENTDB_PASSWORD": "changeit"},
            lambda s: (
                s.store.username == "admin"
                and s.store.password is not None
                and s.store.password.get_secret_value() == "changeit"
            ),
            id="credentials",
        ),
        pytest.param(
            {"KURRENTDB_USE_TLS": "yes", "KURRENTDB_VERIFY_CERT": "0"},
            lambda s: s.store.use_tls is True and s.store.verify_cert is False,
            id="tls-flags",
        ),
    ],
)
def test_environment_overrides(environ: dict[str, str], check: object) -> None:
    """The seeds' variables override endpoints and secrets from the file."""
    settings = load_settings(ROOT / "config" / "dev.toml", environ=environ)
    assert callable(check)
    assert check(settings)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param(
            {"HTTP_PORT": "http"},
            "environment variable HTTP_PORT: expected a port 0-65535, got 'http'",
            id="port-not-a-number",
        ),
        pytest.param(
            {"HTTP_PORT": "65536"},
            "environment variable HTTP_PORT: expected a port 0-65535, got '65536'",
            id="port-out-of-range",
        ),
        pytest.param(
            {"KURRENTDB_USE_TLS": "maybe"},
            "environment variable KURRENTDB_USE_TLS: expected true or false, got 'maybe'",
            id="tls-not-a-boolean",
        ),
        pytest.param(
            {"KURRENTDB_URL": "postgres://x"},
            f"{ROOT / 'config' / 'dev.toml'}: store.url: must start with sqlite://, kurrentdb:// "
            "or kurrentdb+discover://",
            id="store-url-scheme",
        ),
    ],
)
def test_bad_environment_values_are_named(environ: dict[str, str], message: str) -> None:
    """A bad override names the variable (or the key it feeds) in one line."""
    with pytest.raises(ConfigError) as caught:
        load_settings(ROOT / "config" / "dev.toml", environ=environ)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("config", "env", "environ", "expected"),
    [
        pytest.param(None, None, {}, Path("config/dev.toml"), id="default-dev"),
        pytest.param(
            None, "staging", {"UPTIME_ENV": "test"}, Path("config/staging.toml"), id="flag-wins"
        ),
        pytest.param(
            None, None, {"UPTIME_ENV": "mainnet"}, Path("config/mainnet.toml"), id="uptime-env"
        ),
        pytest.param(
            None, None, {"UPTIME_CONFIG_DIR": "/etc/ud"}, Path("/etc/ud/dev.toml"), id="config-dir"
        ),
        pytest.param(
            Path("x.toml"), None, {"UPTIME_ENV": "test"}, Path("x.toml"), id="explicit-path"
        ),
    ],
)
def test_config_path_resolution(
    config: Path | None, env: str | None, environ: dict[str, str], expected: Path
) -> None:
    """``--config`` beats ``--env`` beats ``UPTIME_ENV`` beats ``dev``."""
    assert resolve_config_path(config=config, env=env, environ=environ) == expected


def test_unknown_uptime_env_is_rejected() -> None:
    """A typo in UPTIME_ENV is an error, not a silent fallback to dev."""
    with pytest.raises(ConfigError, match="UPTIME_ENV: unknown environment 'prod'"):
        resolve_config_path(config=None, env=None, environ={"UPTIME_ENV": "prod"})


def test_masked_settings_hide_every_secret(tmp_path: Path) -> None:
    """Passwords, tokens and URL credentials never appear in the printed config."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[store]\nurl = "kurrentdb://admin:s3cr3t-url@db:2113"\n'
        '[services.api]\nkind = "http"\nurl = "https://x.example/"\nbearer_token = "s3cr3t-token"\n'
        '[services.b]\nkind = "http"\nurl = "https://x.example/"\n'
        'basic_auth = { username = "u", password = "s3cr3t-basic" }\n'
    )
    settings = load_settings(path, environ={"KURRENTDB_PASSWORD": "s3cr3t-env"})
    text = orjson.dumps(masked_settings(settings)).decode()
    assert "s3cr3t" not in text
    assert "admin:***@db:2113" in text
    assert isinstance(settings.services["api"], HttpService)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uptime_daemon", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def test_cli_invalid_config_exits_2_with_one_line() -> None:
    """A bad config ends the process with status 2 and one readable line, no traceback."""
    bad = INVALID[0]
    done = _cli("--config", str(bad), "config", "validate")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"uptime-daemon: config error: {bad}: {_expected(bad)}\n"


def test_cli_validate_prints_effective_config_masked() -> None:
    """``config validate`` prints the merged config with env overrides applied and secrets masked."""
    done = _cli(
        "--env",
        "dev",
        "config",
        "validate",
        env={"HTTP_PORT": "9191", "KURRENTDB_PASSWORD": "hunter2-secret"},
    )
    assert done.returncode == 0, done.stderr
    printed = orjson.loads(done.stdout)
    assert printed["server"]["port"] == 9191
    assert printed["store"]["password"] == "**********"  # noqa: S105 - the mask, not a secret
    assert "hunter2" not in done.stdout


def test_in_a_cluster_self_monitoring_services_are_each_instance_s_own() -> None:
    """``http`` on ``/health`` and ``database`` are this daemon's own.

    Renamed per instance and placed at its location only, so members on one log never merge or
    share them.
    """
    data = {
        "instance": "web-2",
        "location": "eu",
        "store": {"url": "kurrentdb://127.0.0.1:2113?tls=false"},
        "cluster": {"locations": ["eu", "us"]},
        "services": {
            "http": {"kind": "http", "url": "/health"},
            "database": {"kind": "database"},
            "api": {"kind": "http", "url": "https://api.example.com/"},
        },
    }
    settings = settings_from_mapping(data, source="test", environ={})
    assert list(settings.services) == ["http-web-2", "database-web-2", "api"]
    assert settings.placement("http-web-2").locations == ("eu",)
    assert settings.placement("api").locations == ("eu", "us")
    assert settings.placement("api").quorum == 2
    single = settings_from_mapping({**data, "cluster": None}, source="test", environ={})
    assert list(single.services) == ["http", "database", "api"]
