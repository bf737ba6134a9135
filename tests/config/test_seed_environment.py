"""The seeds' environment variables are honoured or refused with one line — never ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from uptime_daemon.config.load import resolve_config_path, settings_from_mapping
from uptime_daemon.errors import ConfigError


def _load(**environ: str) -> object:
    return settings_from_mapping({}, source="t.toml", environ=environ)


def test_kurrentdb_host_and_port_build_the_store_url() -> None:
    """Without KURRENTDB_URL, KURRENTDB_HOST (+ KURRENTDB_PORT, default 2113) selects KurrentDB."""
    settings = settings_from_mapping({}, source="t", environ={"KURRENTDB_HOST": "db.internal"})
    assert settings.store.url == "kurrentdb://db.internal:2113"
    settings = settings_from_mapping(
        {}, source="t", environ={"KURRENTDB_HOST": "db.internal", "KURRENTDB_PORT": "2114"}
    )
    assert settings.store.url == "kurrentdb://db.internal:2114"
    both = {"KURRENTDB_URL": "kurrentdb://other:2113", "KURRENTDB_HOST": "db.internal"}
    assert settings_from_mapping({}, source="t", environ=both).store.url == "kurrentdb://other:2113"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"KURRENTDB_HOST": "db", "KURRENTDB_PORT": "0"},
            "KURRENTDB_PORT: expected a port 1-65535",
        ),
        ({"KURRENTDB_PORT": "2113"}, "set KURRENTDB_HOST too"),
        ({"WS_PORT": "3001"}, "WS_PORT: the live feed is served on the HTTP port"),
    ],
)
def test_seed_variables_we_cannot_honour_are_one_clear_line(
    environ: dict[str, str], message: str
) -> None:
    """A port out of range, a port without a host, a separate WebSocket port: refused, named."""
    with pytest.raises(ConfigError, match=message):
        _load(**environ)


@pytest.mark.parametrize(
    ("node_env", "file"),
    [("development", "dev"), ("production", "mainnet"), ("staging", "staging"), ("test", "test")],
)
def test_node_env_picks_the_environment_when_uptime_env_is_unset(node_env: str, file: str) -> None:
    """NODE_ENV maps onto our environments; UPTIME_ENV and --env still win."""
    environ = {"NODE_ENV": node_env, "UPTIME_CONFIG_DIR": "config"}
    assert resolve_config_path(config=None, env=None, environ=environ) == Path(
        f"config/{file}.toml"
    )
    environ["UPTIME_ENV"] = "staging"
    assert resolve_config_path(config=None, env=None, environ=environ) == Path(
        "config/staging.toml"
    )
    assert resolve_config_path(config=None, env="test", environ=environ) == Path("config/test.toml")


def test_an_unknown_node_env_is_refused() -> None:
    """NODE_ENV=qa is not silently dev: one line naming the variable and the values it takes."""
    with pytest.raises(ConfigError, match="NODE_ENV: unknown value 'qa'"):
        resolve_config_path(config=None, env=None, environ={"NODE_ENV": "qa"})
