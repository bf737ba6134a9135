"""Load, override and validate the configuration once; every failure is one ``ConfigError`` line.

Order: TOML file → ``[defaults]`` merged into each service → environment overrides (secrets and
endpoints, the seeds' variable names) → validation into the frozen ``Settings`` tree.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from uptime_daemon.config.model import Defaults, Settings, StoreSettings
from uptime_daemon.errors import ConfigError
from uptime_daemon.redact import redact
from uptime_daemon.results import CheckKind

ENVIRONMENTS: Final = ("dev", "staging", "test", "mainnet")
ENV_SELECTOR: Final = "UPTIME_ENV"
CONFIG_DIR_VARIABLE: Final = "UPTIME_CONFIG_DIR"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_SERVICE_KINDS: Final = frozenset(CheckKind)
_KINDS_SHOWN: Final = ", ".join(kind.value for kind in list(CheckKind)[:-1]) + (
    f" or {list(CheckKind)[-1].value}"
)
_MESSAGES: Final = {
    "Extra inputs are not permitted": "unknown key",
    "Field required": "missing required key",
}


NODE_ENVIRONMENTS: Final = {
    "development": "dev",
    "dev": "dev",
    "test": "test",
    "testing": "test",
    "staging": "staging",
    "production": "mainnet",
    "mainnet": "mainnet",
}
"""The seeds' ``NODE_ENV`` values → our environments (used when ``UPTIME_ENV`` is unset)."""


def _from_node_env(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    name = NODE_ENVIRONMENTS.get(value.strip().lower())
    if name is None:
        known = ", ".join(sorted(NODE_ENVIRONMENTS))
        raise ConfigError(
            f"environment variable NODE_ENV: unknown value {value!r} (one of {known})"
        )
    return name


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``--env NAME`` looks for ``NAME.toml``: ``$UPTIME_CONFIG_DIR``, else ``./config``."""
    env = os.environ if environ is None else environ
    return Path(env.get(CONFIG_DIR_VARIABLE, "config"))


def resolve_config_path(
    *, config: Path | None, env: str | None, environ: Mapping[str, str] | None = None
) -> Path:
    """Pick the file: ``--config`` wins, then ``--env``, then ``$UPTIME_ENV``, then ``dev``."""
    if config is not None:
        return config
    environ = os.environ if environ is None else environ
    node_env = environ.get("NODE_ENV")
    name = env or environ.get(ENV_SELECTOR) or _from_node_env(node_env) or "dev"
    if name not in ENVIRONMENTS:
        source = "--env" if env else ENV_SELECTOR
        raise ConfigError(
            f"{source}: unknown environment {name!r} (one of {', '.join(ENVIRONMENTS)})"
        )
    return config_dir(environ) / f"{name}.toml"


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``path``, apply defaults and environment overrides, validate. Raises ``ConfigError``."""
    environ = os.environ if environ is None else environ
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return settings_from_mapping(raw, source=str(path), environ=environ)


def settings_from_mapping(
    raw: Mapping[str, Any], *, source: str, environ: Mapping[str, str]
) -> Settings:
    """Validate an already-parsed mapping (the file's content); ``source`` names it in errors."""
    data = dict(raw)
    try:
        defaults = Defaults.model_validate(data.get("defaults", {}))
    except ValidationError as exc:
        raise ConfigError(_format(exc, source, prefix=("defaults",))) from None
    data["services"] = _merge_defaults(data.get("services", {}), defaults, source)
    _apply_environment(data, environ)
    try:
        return Settings.model_validate(data).instance_scoped()
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None


def _merge_defaults(services: object, defaults: Defaults, source: str) -> object:
    """Give every service the ``[defaults]`` values it does not set itself."""
    if not isinstance(services, Mapping):
        return services  # validation reports the wrong type with its path
    base = defaults.model_dump(exclude_unset=True)
    merged: dict[str, object] = {}
    for name, table in services.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: services.{_key(str(name))}: must be a table")
        merged[name] = {**base, **table}
    return merged


def store_for_url(url: str, environ: Mapping[str, str] | None = None) -> StoreSettings:
    """A store setting for ``url`` (``migrate --to``).

    The same credential and TLS variables apply as to the configured store's
    (``KURRENTDB_USERNAME``, ``KURRENTDB_PASSWORD``, ...).
    """
    store: dict[str, Any] = {"url": url}
    _apply_store_environment(store, os.environ if environ is None else environ)
    try:
        return StoreSettings.model_validate(store)
    except ValidationError as exc:
        raise ConfigError(_format(exc, "--to", prefix=("store",))) from None


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Environment variables override secrets and endpoints (the seeds' names)."""
    store = dict(data.get("store", {})) if isinstance(data.get("store"), Mapping) else {}
    server = dict(data.get("server", {})) if isinstance(data.get("server"), Mapping) else {}
    _apply_store_url(store, environ)
    if environ.get("WS_PORT"):
        raise ConfigError(
            "environment variable WS_PORT: the live feed is served on the HTTP port "
            "(/ws/health); unset WS_PORT and use HTTP_PORT"
        )
    _apply_store_environment(store, environ)
    if (http_port := environ.get("HTTP_PORT")) is not None:
        server["port"] = _parse_port(http_port, "HTTP_PORT")
    if (origins := environ.get("ALLOWED_ORIGINS")) is not None:
        server["allowed_origins"] = [o.strip() for o in origins.split(",") if o.strip()]
    _apply_auth_environment(server, environ)
    for variable, key in (("UPTIME_INSTANCE", "instance"), ("UPTIME_LOCATION", "location")):
        if (value := environ.get(variable)) is not None:
            data[key] = value
    if store:
        data["store"] = store
    if server:
        data["server"] = server


def _apply_store_url(store: dict[str, Any], environ: Mapping[str, str]) -> None:
    """``KURRENTDB_URL``, else the seeds' ``KURRENTDB_HOST`` (+ ``KURRENTDB_PORT``, 2113)."""
    if url := environ.get("KURRENTDB_URL"):
        store["url"], tls = _store_url_from_env(url)
        if tls is not None:
            store["use_tls"] = tls
    elif host := environ.get("KURRENTDB_HOST"):
        port = _parse_port(environ.get("KURRENTDB_PORT", "2113"), "KURRENTDB_PORT", lowest=1)
        store["url"] = f"kurrentdb://{host.strip()}:{port}"
    elif environ.get("KURRENTDB_PORT"):
        raise ConfigError(
            "environment variable KURRENTDB_PORT: set KURRENTDB_HOST too (or KURRENTDB_URL)"
        )


def _apply_store_environment(store: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Credentials and TLS flags of the store from the seeds' variables."""
    if (username := environ.get("KURRENTDB_USERNAME")) is not None:
        store["username"] = username
    if (password := environ.get("KURRENTDB_PASSWORD")) is not None:
        store["password"] = password
    for variable, key in (
        ("KURRENTDB_USE_TLS", "use_tls"),
        ("KURRENTDB_VERIFY_CERT", "verify_cert"),
    ):
        if (value := environ.get(variable)) is not None:
            store[key] = _parse_bool(variable, value)


def _apply_auth_environment(server: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Tokens and the metrics password can come from the environment instead of the file."""
    auth = dict(server.get("auth", {})) if isinstance(server.get("auth"), Mapping) else {}
    for variable, key in (
        ("UPTIME_READ_TOKENS", "read_tokens"),
        ("UPTIME_OPERATOR_TOKENS", "operator_tokens"),
    ):
        if (tokens := environ.get(variable)) is not None:
            auth[key] = [token.strip() for token in tokens.split(",") if token.strip()]
    if (password := environ.get("UPTIME_METRICS_PASSWORD")) is not None:
        auth["metrics_password"] = password
    if auth:
        server["auth"] = auth


def _store_url_from_env(url: str) -> tuple[str, bool | None]:
    """Accept the seeds' ``http://host:2113`` form as well as store URLs; http(s) sets TLS."""
    parts = urlsplit(url)
    if parts.scheme in {"http", "https"}:
        if not parts.hostname:
            raise ConfigError(f"environment variable KURRENTDB_URL: no host in {redact(url)!r}")
        return urlunsplit(("kurrentdb", parts.netloc, "", parts.query, "")), parts.scheme == "https"
    return url, None


def _parse_bool(variable: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"environment variable {variable}: expected true or false, got {value!r}")


def _parse_port(value: str, variable: str, *, lowest: int = 0) -> int:
    try:
        port = int(value.strip())
    except ValueError:
        port = -1
    if not lowest <= port <= 65535:  # noqa: PLR2004 - the TCP port range
        msg = f"environment variable {variable}: expected a port {lowest}-65535, got {value!r}"
        raise ConfigError(msg)
    return port


def _format(exc: ValidationError, source: str, prefix: tuple[str, ...] = ()) -> str:
    """One line naming the file and each failing key path."""
    problems = []
    for error in exc.errors(include_url=False):
        location = list(prefix) + [str(part) for part in error["loc"]]
        # A discriminated union puts the tag in the path (services.x.http.url): drop it.
        if len(location) >= 3 and location[0] == "services" and location[2] in _SERVICE_KINDS:  # noqa: PLR2004
            del location[2]
        message = " ".join(str(error["msg"]).removeprefix("Value error, ").split())
        message = _MESSAGES.get(message, message)
        if error["type"] == "union_tag_not_found":
            message = f"missing key 'kind' ({_KINDS_SHOWN})"
        elif error["type"] == "union_tag_invalid":
            message = f"unknown kind {error['input'].get('kind')!r} ({_KINDS_SHOWN})"
        if location and location[-1] == "[key]":
            location.pop()
            message = "invalid name: use lowercase letters, digits and '-' (at most 64)"
        path = ".".join(_key(part) for part in location)
        if not path and _NAMES_ITS_KEY.match(message):
            problems.append(message)  # a whole-file rule names the key it is about
        else:
            problems.append(f"{path or '(top level)'}: {message}")
    return f"{source}: " + "; ".join(problems)


_PLAIN_KEY: Final = re.compile(r"[A-Za-z0-9_\-\[\]]+")
_NAMES_ITS_KEY: Final = re.compile(r"[a-z_]+(\.[a-z0-9_-]+)*: ")


def _key(part: str) -> str:
    """A key path element as typed, or quoted when it holds anything unusual (so errors stay one line)."""
    return part if _PLAIN_KEY.fullmatch(part) else repr(part)  # fullmatch: `$` lets a final \n by


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The effective settings as JSON-ready data with every secret masked.

    Secret fields dump as ``**********``; credentials embedded in any URL (store or service) as
    ``user:***@host``.
    """
    masked = _redact_strings(settings.model_dump(mode="json"))
    assert isinstance(masked, dict)  # noqa: S101 - a dict in, a dict out
    return masked


def _redact_strings(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_strings(item) for item in value]
    return value
