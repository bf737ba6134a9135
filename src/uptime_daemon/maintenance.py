"""Maintenance windows: their events on ``system-maintenance``, their fold, the time they cover.

A window is declared by an event — from config at start-up or reload, or at run time through
``POST /maintenance``, also for a time already past — and ended early or cancelled by another, so
a replay of the log re-derives every figure. Windows do not change what was observed: the
projection keeps every check and every status period; the summary takes a window's time out of
the uptime ratios and reports it as ``maintenance`` (``projector/summary.py``).

Events (JSON, camelCase, one stream):

* ``MaintenanceScheduled`` ``{windowId, services, start, end, cron, durationMs, timezone, reason,
  source, declaredAt, declaredBy}`` — a new window, or a new definition of an existing one (the
  config's, after an edit). ``services`` empty: every service. A one-off window has ``start`` and
  ``end``; a recurring one ``cron`` + ``durationMs`` (``start``/``end`` then bound when it recurs).
* ``MaintenanceEnded`` ``{windowId, at, reason}`` — the window stops at ``at`` (an early end; a
  recurring window stops recurring).
* ``MaintenanceCancelled`` ``{windowId, reason}`` — the window never counts (also retroactively).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal
from uuid import UUID, uuid5

import orjson
from apscheduler.triggers.cron import CronTrigger

from uptime_daemon.clock import parse_iso, to_iso_millis
from uptime_daemon.config.cron import CronError, occurrences, parse_cron
from uptime_daemon.config.model import MaintenanceWindow
from uptime_daemon.errors import UptimeDaemonError
from uptime_daemon.store import NewEvent

STREAM: Final = "system-maintenance"
SCHEDULED: Final = "MaintenanceScheduled"
ENDED: Final = "MaintenanceEnded"
CANCELLED: Final = "MaintenanceCancelled"
EVENT_TYPES: Final = frozenset({SCHEDULED, ENDED, CANCELLED})
CONFIG_SOURCE_PREFIX: Final = "config:"
_NAMESPACE: Final = UUID("0d6c1c4e-2f7a-4b8e-9a55-3c1e7f0b9d21")
"""Fixed forever: event ids of maintenance events derive from it."""

Interval = tuple[datetime, datetime]


class MaintenanceDecodeError(UptimeDaemonError, ValueError):
    """A maintenance event does not have the shape its type promises; the message names the field."""


@dataclass(frozen=True, slots=True)
class Window:
    """One window as the log declares it, with what later events did to it."""

    id: str
    services: frozenset[str]
    """Empty: every service."""
    start: datetime | None
    end: datetime | None
    cron: str | None
    duration: timedelta | None
    timezone: str
    reason: str
    source: str
    """``api`` or ``config:NAME``."""
    declared_at: datetime
    declared_by: str
    ended_at: datetime | None = None
    cancelled: bool = False

    def covers(self, service: str) -> bool:
        """Whether the window applies to ``service``."""
        return not self.services or service in self.services

    @property
    def stops(self) -> datetime | None:
        """When the window (or its recurrence) stops: its end, or an earlier end from the log."""
        if self.ended_at is None:
            return self.end
        return self.ended_at if self.end is None else min(self.end, self.ended_at)

    def same_definition(self, other: Window) -> bool:
        """Whether both declare the same time and services (the rest is bookkeeping)."""
        return (
            self.services,
            self.start,
            self.end,
            self.cron,
            self.duration,
            self.timezone,
            self.reason,
        ) == (
            other.services,
            other.start,
            other.end,
            other.cron,
            other.duration,
            other.timezone,
            other.reason,
        )


@dataclass(slots=True)
class Maintenance:
    """Every window the log declares, by id; part of the projection state."""

    windows: dict[str, Window] = field(default_factory=dict)
    revision: int = field(default=0, compare=False)
    """Bumped by every event folded: caches of figures compare it to know they are stale."""
    _triggers: dict[str, CronTrigger] = field(default_factory=dict, repr=False, compare=False)

    def apply(self, event_type: str, data: bytes) -> Window | None:
        """Fold one maintenance event; return the window it changed (``None``: unknown window)."""
        raw = _object(data)
        self.revision += 1
        if event_type == SCHEDULED:
            window = _decode_scheduled(raw)
            self.windows[window.id] = window
            self._triggers.pop(window.id, None)
            return window
        window_id = _text(raw, "windowId")
        known = self.windows.get(window_id)
        if known is None:
            return None
        if event_type == ENDED:
            at = _time(raw, "at")
            changed = replace(
                known, ended_at=at if known.ended_at is None else min(known.ended_at, at)
            )
        elif event_type == CANCELLED:
            changed = replace(known, cancelled=True)
        else:
            raise MaintenanceDecodeError(f"not a maintenance event type: {event_type!r}")
        self.windows[window_id] = changed
        return changed

    def intervals(self, service: str, start: datetime, end: datetime) -> list[Interval]:
        """The time within ``[start, end)`` that maintenance covers for ``service``: sorted, merged."""
        found: list[Interval] = []
        for window in list(self.windows.values()):  # the metrics thread reads while the loop folds
            if window.cancelled or not window.covers(service):
                continue
            found.extend(self._spans(window, start, end))
        return merge(found)

    def active(self, service: str, at: datetime) -> list[Window]:
        """The windows covering ``service`` at the instant ``at``."""
        moment = at + timedelta(microseconds=1)
        return [
            window
            for window in self.windows.values()
            if not window.cancelled
            and window.covers(service)
            and any(True for _ in self._spans(window, at, moment))
        ]

    def listed(self) -> list[Window]:
        """Every window, newest declaration first."""
        return sorted(self.windows.values(), key=lambda w: (w.declared_at, w.id), reverse=True)

    def _spans(self, window: Window, start: datetime, end: datetime) -> Iterator[Interval]:
        stops = window.stops
        if window.cron is None or window.duration is None:
            if window.start is None or stops is None:
                return
            lo, hi = max(window.start, start), min(stops, end)
            if hi > lo:
                yield lo, hi
            return
        trigger = self._triggers.get(window.id)
        if trigger is None:
            try:
                trigger = self._triggers[window.id] = parse_cron(window.cron, window.timezone)
            except CronError:
                return  # decoded events were validated; a zone database change is not worth a crash
        for begin, finish in occurrences(
            trigger, window.duration, start, end, not_before=window.start, not_after=stops
        ):
            lo, hi = max(begin, start), min(finish, end)
            if hi > lo:
                yield lo, hi


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, overlapping or touching intervals joined."""
    merged: list[Interval] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1]:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def covered_seconds(lo: datetime, hi: datetime, intervals: Sequence[Interval]) -> float:
    """Seconds of ``[lo, hi)`` inside the (sorted, merged) ``intervals``."""
    total = 0.0
    for start, end in intervals:
        if start >= hi:
            break
        overlap = (min(end, hi) - max(start, lo)).total_seconds()
        if overlap > 0:
            total += overlap
    return total


def outside(lo: datetime, hi: datetime, intervals: Sequence[Interval]) -> Iterator[Interval]:
    """The parts of ``[lo, hi)`` not inside the (sorted, merged) ``intervals``."""
    cursor = lo
    for start, end in intervals:
        if end <= cursor:
            continue
        if start >= hi:
            break
        if start > cursor:
            yield cursor, start
        cursor = max(cursor, end)
        if cursor >= hi:
            return
    if cursor < hi:
        yield cursor, hi


# --- events --------------------------------------------------------------------------------------


def _event(event_type: str, identity: str, data: dict[str, Any]) -> NewEvent:
    body = orjson.dumps(data)
    return NewEvent(
        id=uuid5(_NAMESPACE, f"{event_type}:{identity}:{body.decode()}"),
        type=event_type,
        data=body,
        metadata=orjson.dumps({"producer": "uptime-daemon"}),
    )


def scheduled(window: Window) -> NewEvent:
    """``MaintenanceScheduled`` for ``window``.

    Its id depends on the definition only, so daemons declaring the same config window write the
    same event.
    """
    data = {
        "windowId": window.id,
        "services": sorted(window.services),
        "start": None if window.start is None else to_iso_millis(window.start),
        "end": None if window.end is None else to_iso_millis(window.end),
        "cron": window.cron,
        "durationMs": None
        if window.duration is None
        else round(window.duration.total_seconds() * 1000),
        "timezone": window.timezone,
        "reason": window.reason,
        "source": window.source,
    }
    identity = f"{window.id}:{orjson.dumps(data).decode()}"
    if window.source == "api":  # each API declaration is its own, even with the same content
        identity += f":{to_iso_millis(window.declared_at)}"
    data |= {"declaredAt": to_iso_millis(window.declared_at), "declaredBy": window.declared_by}
    return _event(SCHEDULED, identity, data)


def ended(window_id: str, at: datetime, reason: str = "") -> NewEvent:
    """``MaintenanceEnded``: the window stops at ``at``."""
    data = {"windowId": window_id, "at": to_iso_millis(at), "reason": reason}
    return _event(ENDED, window_id, data)


def cancelled(window_id: str, reason: str = "") -> NewEvent:
    """``MaintenanceCancelled``: the window never counts."""
    return _event(CANCELLED, window_id, {"windowId": window_id, "reason": reason})


def from_config(name: str, declared: MaintenanceWindow, *, at: datetime, instance: str) -> Window:
    """The window a ``[maintenance.NAME]`` table declares."""
    return Window(
        id=f"{CONFIG_SOURCE_PREFIX}{name}",
        services=frozenset(declared.services),
        start=declared.start,
        end=declared.end,
        cron=declared.cron,
        duration=declared.duration,
        timezone=declared.timezone,
        reason=declared.reason,
        source=f"{CONFIG_SOURCE_PREFIX}{name}",
        declared_at=at,
        declared_by=instance,
    )


def config_changes(
    state: Maintenance, declared: dict[str, MaintenanceWindow], *, at: datetime, instance: str
) -> list[NewEvent]:
    """What to append so the log's config windows match ``declared``.

    A new or edited table is (re-)scheduled; a table removed from the config ends its window now
    (what already happened stays maintenance). Run at start-up and on reload, once the projector
    has caught up (so it knows the log's windows).
    """
    changes: list[NewEvent] = []
    wanted = {
        f"{CONFIG_SOURCE_PREFIX}{name}": from_config(name, window, at=at, instance=instance)
        for name, window in declared.items()
    }
    for window_id, window in wanted.items():
        known = state.windows.get(window_id)
        if (
            known is None
            or known.cancelled
            or known.ended_at is not None
            or not known.same_definition(window)
        ):
            changes.append(scheduled(window))
    for window_id, known in state.windows.items():
        if (
            known.source.startswith(CONFIG_SOURCE_PREFIX)
            and window_id not in wanted
            and not known.cancelled
            and known.ended_at is None
            and (known.stops is None or known.stops > at)
        ):
            changes.append(ended(window_id, at, "removed from the configuration"))
    return changes


# --- decoding ------------------------------------------------------------------------------------


def _object(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MaintenanceDecodeError(f"event data is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise MaintenanceDecodeError("event data is not a JSON object")
    return value


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise MaintenanceDecodeError(f"{key}: a non-empty string expected")
    return value


def _time(raw: dict[str, Any], key: str) -> datetime:
    try:
        return parse_iso(_text(raw, key))
    except ValueError as exc:
        raise MaintenanceDecodeError(f"{key}: not an ISO 8601 time") from exc


def _optional_time(raw: dict[str, Any], key: str) -> datetime | None:
    return None if raw.get(key) is None else _time(raw, key)


def _decode_scheduled(raw: dict[str, Any]) -> Window:
    services = raw.get("services", [])
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        raise MaintenanceDecodeError("services: a list of names expected")
    duration_ms = raw.get("durationMs")
    if duration_ms is not None and (not isinstance(duration_ms, int) or duration_ms <= 0):
        raise MaintenanceDecodeError("durationMs: a positive integer expected")
    cron = raw.get("cron")
    if cron is not None and not isinstance(cron, str):
        raise MaintenanceDecodeError("cron: a string expected")
    window = Window(
        id=_text(raw, "windowId"),
        services=frozenset(services),
        start=_optional_time(raw, "start"),
        end=_optional_time(raw, "end"),
        cron=cron,
        duration=None if duration_ms is None else timedelta(milliseconds=duration_ms),
        timezone=str(raw.get("timezone") or "UTC"),
        reason=str(raw.get("reason") or ""),
        source=str(raw.get("source") or "api"),
        declared_at=_time(raw, "declaredAt"),
        declared_by=str(raw.get("declaredBy") or ""),
    )
    if window.cron is None and (window.start is None or window.end is None):
        raise MaintenanceDecodeError("start/end: a one-off window needs both")
    if window.cron is not None and window.duration is None:
        raise MaintenanceDecodeError("durationMs: a recurring window needs it")
    return window


# --- snapshot ------------------------------------------------------------------------------------


def encode_windows(state: Maintenance) -> list[dict[str, Any]]:
    """The windows as JSON-ready data (the projection snapshot keeps them)."""
    return [
        {
            "id": w.id,
            "services": sorted(w.services),
            "start": None if w.start is None else to_iso_millis(w.start),
            "end": None if w.end is None else to_iso_millis(w.end),
            "cron": w.cron,
            "durationMs": None if w.duration is None else w.duration // timedelta(milliseconds=1),
            "timezone": w.timezone,
            "reason": w.reason,
            "source": w.source,
            "declaredAt": to_iso_millis(w.declared_at),
            "declaredBy": w.declared_by,
            "endedAt": None if w.ended_at is None else to_iso_millis(w.ended_at),
            "cancelled": w.cancelled,
        }
        for w in sorted(state.windows.values(), key=lambda w: w.id)
    ]


def decode_windows(items: list[dict[str, Any]]) -> Maintenance:
    """``encode_windows`` read back."""
    state = Maintenance()
    for item in items:
        window = _decode_scheduled({**item, "windowId": item["id"]})
        state.windows[window.id] = replace(
            window,
            ended_at=_optional_time(item, "endedAt"),
            cancelled=bool(item.get("cancelled")),
        )
    return state


Status = Literal["scheduled", "active", "ended", "cancelled"]


def status_of(window: Window, now: datetime) -> Status:
    """Where a window stands at ``now`` (for a recurring one: whether an occurrence is on)."""
    if window.cancelled:
        return "cancelled"
    probe = Maintenance({window.id: window})
    if any(True for _ in probe._spans(window, now, now + timedelta(microseconds=1))):  # noqa: SLF001
        return "active"
    stops = window.stops
    if stops is not None and stops <= now:
        return "ended"
    return "scheduled"
