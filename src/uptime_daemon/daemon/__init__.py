"""The one place where things are built: wiring, serving, health, reload, and the offline commands.

``wiring`` builds one daemon's parts and their cleanup contexts; ``serving`` runs it (socket,
signals, supervisor, systemd); ``health`` is the one component health check; ``reload`` hands a new
configuration to every component; ``build`` selects the store and builds what the offline commands
(``offline``) share with the running daemon; ``exclusive`` claims this daemon's files; ``sharing``
keeps the scheduler on this daemon's share of its location's services.
"""

from uptime_daemon.daemon.serving import serve
from uptime_daemon.daemon.wiring import Daemon, build_app

__all__ = ["Daemon", "build_app", "serve"]
