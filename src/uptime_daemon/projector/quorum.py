"""The k-of-n quorum rule: one service's status from its locations' credible verdicts (DESIGN §9).

Pure: no clock, no I/O. The fold applies it at every instant a location's verdict arrives or stops
being credible, so the service's time-weighted seconds, incidents and metrics all come from one
quorum timeline that every replica and every replay compute alike.
"""

from __future__ import annotations

from collections.abc import Iterable

from uptime_daemon.status import Status


def verdict(credible: Iterable[Status | None], quorum: int) -> Status:
    """The service's status from each location's credible verdict (``None``: it has none).

    ``down`` when at least ``quorum`` locations say down; else ``unknown`` when no location has a
    credible verdict; else ``degraded`` when any location says down or degraded — a partial
    outage below quorum is visible, never hidden; else ``up``.
    """
    down = troubled = known = 0
    for status in credible:
        if status is None:
            continue
        known += 1
        if status is Status.DOWN:
            down += 1
        elif status is Status.DEGRADED:
            troubled += 1
    if down >= quorum:
        return Status.DOWN
    if not known:
        return Status.UNKNOWN
    if down or troubled:
        return Status.DEGRADED
    return Status.UP
