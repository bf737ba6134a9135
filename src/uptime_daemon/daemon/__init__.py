"""The one place where things are built: wiring, serving, health, reload, and the offline commands.

``wiring`` builds one daemon's parts and their cleanup contexts; ``serving`` runs it (socket,
signals, supervisor, systemd); ``health`` is the one component health check; ``reload`` hands a new
configuration to every component; ``build`` selects the store and builds what the offline commands
(``offline``, ``split_replay``, and ``answers`` for ``check`` and ``summary``) share with the
running daemon; ``exclusive`` claims this daemon's files; ``sharing`` keeps the scheduler on this
daemon's share of its location's services.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uptime_daemon.daemon.serving import serve
    from uptime_daemon.daemon.wiring import Daemon, build_app

__all__ = ["Daemon", "build_app", "serve"]

_WHERE = {"Daemon": "wiring", "build_app": "wiring", "serve": "serving"}


def __getattr__(name: str) -> object:
    """The running daemon's parts, imported when first asked for.

    The offline commands (a ``replay``, an ``export``) import this package without the server.
    """
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
