"""A projection that has held its retention: folded for one service, given to many.

``history_memory.py`` folds services check by check (4.4 s per service for 90 days); a daemon
watching 10,000 services with 90 days held (``scale.py --history-days``) is seeded instead with one
folded record copied under every name: the snapshot names each copy's cold days under ids of its
own, as the projector would have written them.
"""

from __future__ import annotations

import random
import struct
from array import array
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from uptime_daemon.projector import snapshot
from uptime_daemon.projector.cold import ColdDays, path_beside
from uptime_daemon.projector.fold import ProjectionState, apply_check
from uptime_daemon.projector.hours import DAY_HOURS
from uptime_daemon.projector.runner import cold_before_day, records
from uptime_daemon.status import Status

DOWN_SHARE: Final = 0.0005
"""One check in 2,000 down: an outage every ~33 hours at a check a minute."""
_COLD_HEADER: Final = struct.Struct("<I")
"""``Hours.cold_index``'s header (days); then days (int32), ids (int64), hours (uint16)."""
_FLUSH_EVERY: Final = 500
"""Records whose days are put before they are written (bounds the pending blobs in memory)."""


def fold(names: list[str], hours: int, per_hour: int, start: datetime) -> ProjectionState:
    """Each of ``names`` checked ``per_hour`` times an hour for ``hours`` hours from ``start``."""
    state = ProjectionState()
    rng = random.Random(7)  # noqa: S311 - figures, not secrets
    step = timedelta(seconds=3600 / per_hour)
    for name in names:
        at = start
        for _ in range(hours * per_hour):
            response = rng.lognormvariate(-3.2, 0.35)
            status = Status.DOWN if rng.random() < DOWN_SHARE else Status.UP
            apply_check(state, name, at, status, response, 2 * step.total_seconds() + 5, slot=at)
            at += step
    return state


def seed(snapshot_path: Path, names: list[str], days: float, end: datetime) -> dict[str, float]:
    """Write the snapshot (folded from position zero) and its cold days for ``names``.

    Every service holds ``days`` days of a check a minute up to ``end``. Returns the files' sizes.
    """
    hours = int(days * DAY_HOURS)
    template = fold(["template"], hours, 60, end - timedelta(hours=hours))
    record = next(records(template))
    cold = ColdDays(path_beside(snapshot_path))
    record.buckets.evict(cold, cold_before_day(record))
    blobs = [cold.get(blob_id) for blob_id in record.buckets.cold_ids()]
    for blob_id in record.buckets.cold_ids():  # the template's own: only its copies are named
        cold.release(blob_id)
    index = record.buckets.cold_index()
    (count,) = _COLD_HEADER.unpack_from(index)
    day_bytes = index[_COLD_HEADER.size : _COLD_HEADER.size + 4 * count]
    hour_bytes = index[_COLD_HEADER.size + 12 * count :]
    encoded = snapshot.encode_record(record, packed=True)
    state = ProjectionState(retention_seconds=template.retention_seconds)
    for n, name in enumerate(names):
        ids = array("q", [cold.put(blob) for blob in blobs])
        copy = snapshot.decode_record(name, encoded)
        copy.buckets.with_cold_index(
            _COLD_HEADER.pack(count) + day_bytes + ids.tobytes() + hour_bytes
        )
        state.services[name] = copy
        if (n + 1) % _FLUSH_EVERY == 0 or n + 1 == len(names):
            flush = cold.flush()
            cold.write(flush)
            cold.flushed(flush)
    data = snapshot.encode(snapshot.Snapshot(None, state))
    snapshot.write_atomically(snapshot_path, data)
    size = cold.bytes_on_disk()
    cold.close()
    return {"snapshot_mib": round(len(data) / 2**20, 1), "cold_mib": round(size / 2**20, 1)}
