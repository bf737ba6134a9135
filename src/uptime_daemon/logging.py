"""structlog configuration: snake_case events, fields for everything else, JSON lines when not a TTY.

Standard-library loggers (aiohttp, apscheduler, grpc) go through the same chain, so every line has
one shape. A last-line-of-defence processor masks anything that looks like a secret.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final, TextIO

import orjson
import structlog
from structlog.tracebacks import ExceptionDictTransformer

from uptime_daemon.redact import redact

_SECRET_KEYS: Final = re.compile(
    r"pass(word)?|secret|token|authorization|api[_-]?key", re.IGNORECASE
)
_QUIET_LOGGERS: Final = ("apscheduler", "aiohttp.access", "grpc", "asyncio")


def mask_secrets(
    _logger: object, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace secret-looking fields and credentials inside URLs before anything is rendered."""
    for key, value in event_dict.items():
        if _SECRET_KEYS.search(key) and value is not None:
            event_dict[key] = "***"
        elif isinstance(value, str):
            event_dict[key] = redact(value)
    return event_dict


def _json_dumps(value: object, **_kwargs: object) -> str:
    return orjson.dumps(value, default=str).decode()


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to ``stream`` (stdout) in one format."""
    out = sys.stdout if stream is None else stream
    as_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_secrets,
    ]
    renderer: Any
    if as_json:
        renderer = structlog.processors.JSONRenderer(serializer=_json_dumps)
        # Without frame locals: they are rendered after mask_secrets and could hold a password.
        shared.append(
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Calls below the level return at once: the one-line-per-probe `probe_completed` at info
        # costs nothing at all when the level is warning.
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
