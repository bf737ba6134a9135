"""uptime-daemon: scheduled probes, an append-only uptime log and exact time-weighted summaries."""

__version__ = "0.1.0"
