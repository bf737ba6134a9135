"""Configuration: TOML per environment, environment-variable overrides, one frozen ``Settings`` tree."""

from uptime_daemon.config.load import load_settings, masked_settings, resolve_config_path
from uptime_daemon.config.model import Settings

__all__ = ["Settings", "load_settings", "masked_settings", "resolve_config_path"]
