"""Turn the projection into API models (the only place that knows both shapes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from uptime_daemon import maintenance
from uptime_daemon.api import models
from uptime_daemon.clock import to_iso_millis
from uptime_daemon.config.model import Settings
from uptime_daemon.maintenance import Interval, Window
from uptime_daemon.projector.fold import (
    HOUR_SECONDS,
    ProjectionState,
    ServiceProjection,
    last_verdict,
    seconds_in_window,
)
from uptime_daemon.projector.runner import LastProbe
from uptime_daemon.projector.summary import (
    IncidentView,
    ServiceSummary,
    current_status,
    service_timeline,
    summarize,
    with_maintenance,
)
from uptime_daemon.status import Status


def service_names(settings: Settings, state: ProjectionState) -> list[str]:
    """Configured services in config order, then services only the log knows, by name."""
    configured = list(settings.services)
    historical = sorted(set(state.services) - set(configured))
    return configured + historical


def _projection(state: ProjectionState, name: str) -> ServiceProjection:
    return state.services.get(name) or ServiceProjection(name)


def _kind(settings: Settings, name: str) -> str | None:
    service = settings.services.get(name)
    return None if service is None else service.kind


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _window(hours: int, now: datetime) -> models.Window:
    return models.Window(hours=hours, start=now - timedelta(hours=hours), end=now)


def _incident(incident: IncidentView) -> models.Incident:
    return models.Incident(
        start=incident.start,
        end=incident.end,
        ongoing=incident.end is None,
        duration_seconds=incident.duration_seconds,
        down_seconds=incident.down_seconds,
        unknown_seconds=incident.unknown_seconds,
        seconds_in_window=incident.seconds_in_window,
        maintenance_seconds=incident.maintenance_seconds,
    )


def _seconds(summary: ServiceSummary) -> models.StateSeconds:
    seconds = summary.seconds
    return models.StateSeconds(
        up=seconds[Status.UP],
        degraded=seconds[Status.DEGRADED],
        down=seconds[Status.DOWN],
        unknown=seconds[Status.UNKNOWN],
        maintenance=summary.maintenance_seconds,
    )


def planned(state: ProjectionState, name: str, start: datetime, end: datetime) -> list[Interval]:
    """The time in ``[start, end)`` maintenance windows cover for ``name``."""
    if not state.maintenance.windows:
        return []
    return state.maintenance.intervals(name, start, end)


def down_parents(settings: Settings, state: ProjectionState, name: str, at: datetime) -> list[str]:
    """The service's parents (``depends_on``) whose last verdict at ``at`` is down."""
    service = settings.services.get(name)
    if service is None or not service.depends_on:
        return []
    return [
        parent
        for parent in service.depends_on
        if (projection := state.services.get(parent)) is not None
        and last_verdict(projection, at) is Status.DOWN
    ]


def window_view(window: Window, now: datetime) -> models.MaintenanceWindowView:
    """One maintenance window for the API."""
    return models.MaintenanceWindowView(
        id=window.id,
        services=sorted(window.services),
        start=window.start,
        end=window.end,
        cron=window.cron,
        duration_seconds=None if window.duration is None else window.duration.total_seconds(),
        timezone=window.timezone,
        reason=window.reason,
        source=window.source,
        declared_at=window.declared_at,
        declared_by=window.declared_by,
        ended_at=window.ended_at,
        cancelled=window.cancelled,
        state=maintenance.status_of(window, now),
    )


def _checks(summary: ServiceSummary) -> models.CheckCounts:
    return models.CheckCounts(
        total=summary.checks.total,
        up=summary.checks.up,
        degraded=summary.checks.degraded,
        down=summary.checks.down,
        inconclusive=summary.checks.inconclusive,
        up_ratio=summary.checks.up_ratio,
    )


def _response(summary: ServiceSummary) -> models.ResponseTime:
    return models.ResponseTime(
        samples=summary.response.samples,
        avg_ms=_ms(summary.response.average),
        p50_ms=_ms(summary.response.p50),
        p95_ms=_ms(summary.response.p95),
        p99_ms=_ms(summary.response.p99),
        relative_error=summary.response.relative_error,
    )


def quorum(settings: Settings, projection: ServiceProjection) -> models.Quorum:
    """The quorum the figures were computed with (the newest event's), else the configured one."""
    if projection.quorum_of:
        k, locations = projection.quorum, list(projection.quorum_of)
    else:
        placement = settings.placement(projection.name)
        k, locations = placement.quorum, list(placement.locations)
    return models.Quorum(k=k, n=len(locations), locations=locations)


def _locations(
    projection: ServiceProjection, *, hours: int, now: datetime, excluded: list[Interval]
) -> dict[str, models.LocationUptime]:
    found = {}
    records = projection.location_records()
    for location in sorted(records):
        record = records[location]
        summary = summarize(record, now=now, hours=hours, maintenance=excluded)
        found[location] = models.LocationUptime(
            status=summary.status,
            since=summary.since,
            last_check=summary.last_check,
            seconds=_seconds(summary),
            checks=_checks(summary),
            response_time=_response(summary),
        )
    return found


def service_uptime(
    settings: Settings, state: ProjectionState, name: str, *, hours: int, now: datetime
) -> models.ServiceUptime:
    """Every figure of one service over ``hours``: the quorum verdict's, and each location's."""
    projection = _projection(state, name)
    excluded = planned(state, name, now - timedelta(hours=hours), now)
    summary = summarize(projection, now=now, hours=hours, maintenance=excluded)
    return models.ServiceUptime(
        service=name,
        kind=_kind(settings, name),
        configured=name in settings.services,
        status=summary.status,
        since=summary.since,
        last_check=summary.last_check,
        in_maintenance=bool(excluded) and excluded[-1][1] >= now,
        suppressed_by=down_parents(settings, state, name, now),
        last_response_ms=_ms(summary.last_response_seconds),
        window=_window(hours, now),
        uptime_ratio=summary.uptime_ratio,
        availability_ratio=summary.availability_ratio,
        seconds=_seconds(summary),
        checks=_checks(summary),
        response_time=_response(summary),
        incidents=[_incident(incident) for incident in summary.incidents],
        mttr_seconds=summary.mttr_seconds,
        mtbf_seconds=summary.mtbf_seconds,
        longest_outage_seconds=summary.longest_outage_seconds,
        quorum=quorum(settings, projection),
        locations=_locations(projection, hours=hours, now=now, excluded=excluded),
    )


def overall(statuses: Sequence[str]) -> str:
    """Worst current status: any down → down; any degraded or unknown → degraded; else ok."""
    if "down" in statuses:
        return "down"
    if "degraded" in statuses or "unknown" in statuses:
        return "degraded"
    return "ok"


def location_record(state: ProjectionState, name: str, location: str) -> ServiceProjection | None:
    """One location's record of a service, if that location has checked it."""
    return _projection(state, name).location_records().get(location)


def has_location(settings: Settings, state: ProjectionState, name: str, location: str) -> bool:
    """Whether ``location`` checked the service or is one of its locations."""
    projection = _projection(state, name)
    return (
        location in projection.location_records()
        or location in quorum(settings, projection).locations
    )


def timeline(
    state: ProjectionState,
    name: str,
    *,
    hours: int,
    now: datetime,
    location: str | None = None,
) -> models.Timeline:
    """Contiguous periods of one service (its quorum verdict), or of one location's own view."""
    projection = _projection(state, name)
    if location is not None:
        projection = location_record(state, name, location) or ServiceProjection(name)
    periods = service_timeline(projection, now=now, hours=hours)
    excluded = planned(state, name, now - timedelta(hours=hours), now)
    return models.Timeline(
        service=name,
        location=location,
        window=_window(hours, now),
        periods=[
            models.Period(
                status=status,  # a Status value or "maintenance", validated by the model
                start=start,
                end=end,
                duration_seconds=(end - start).total_seconds(),
            )
            for status, start, end in with_maintenance(periods, excluded)
        ],
    )


def brief(
    settings: Settings, state: ProjectionState, name: str, now: datetime
) -> models.ServiceStatusBrief:
    """Current status of one service."""
    projection = _projection(state, name)
    return models.ServiceStatusBrief(
        service=name,
        kind=_kind(settings, name),
        configured=name in settings.services,
        status=current_status(projection, now),
        since=projection.since,
        last_check=projection.last_check,
        in_maintenance=bool(state.maintenance.windows)
        and bool(state.maintenance.active(name, now)),
        suppressed_by=down_parents(settings, state, name, now),
    )


def max_hours(state: ProjectionState) -> int:
    """The longest window the projection can answer: its retention."""
    return int(state.retention_seconds // HOUR_SECONDS)


def _group(settings: Settings, name: str) -> str | None:
    service = settings.services.get(name)
    return None if service is None else service.group


def page_rows(
    settings: Settings,
    state: ProjectionState,
    last_probe: Mapping[str, LastProbe],
    *,
    now: datetime,
) -> list[dict[str, object]]:
    """``StatusPage.services``: one ``PageRow`` per configured service, in config order, as JSON.

    Plain dicts with the wire's camelCase keys, a key holding its default left out: this answer is
    10,000 services long on a large configuration, so it is built without a model per row and
    without any window figure (no summarize, no daily bars): status, since, maintenance, the last
    check's reason and held alerts are all read off the projection as they stand.
    """
    windows = bool(state.maintenance.windows)
    rows: list[dict[str, object]] = []
    for name, service in settings.services.items():
        projection = state.services.get(name)
        row: dict[str, object] = {"service": name}
        if service.group is not None:
            row["group"] = service.group
        if projection is None:
            row["status"] = Status.UNKNOWN.value
        else:
            row["status"] = current_status(projection, now).value
            if projection.since is not None:
                row["since"] = to_iso_millis(projection.since)
        if windows and state.maintenance.active(name, now):
            row["inMaintenance"] = True
        last = last_probe.get(name)
        if last is not None and last.reason is not None:
            row["lastReason"] = last.reason
        if service.depends_on and (held := down_parents(settings, state, name, now)):
            row["suppressedBy"] = held
        rows.append(row)
    return rows


PAGE_DAYS = 90
PAGE_INCIDENTS = 5


def page_service(
    settings: Settings,
    state: ProjectionState,
    name: str,
    *,
    now: datetime,
    last: LastProbe | None = None,
) -> models.PageService:
    """The status page's figures for one service: uptimes, 90 daily bars, 24 h response times."""
    projection = _projection(state, name)
    today = datetime(now.year, now.month, now.day, tzinfo=now.tzinfo)
    first_day = today - timedelta(days=PAGE_DAYS - 1)
    excluded = planned(state, name, first_day, now)
    days = []
    for back in range(PAGE_DAYS - 1, -1, -1):
        start = today - timedelta(days=back)
        end = min(start + timedelta(days=1), now)
        day_excluded = [
            (max(lo, start), min(hi, end)) for lo, hi in excluded if lo < end and hi > start
        ]
        seconds = seconds_in_window(projection, start, end, day_excluded)
        known = seconds[Status.UP] + seconds[Status.DEGRADED] + seconds[Status.DOWN]
        days.append(
            models.DayBar(
                date=start.date().isoformat(),
                up=seconds[Status.UP],
                degraded=seconds[Status.DEGRADED],
                down=seconds[Status.DOWN],
                unknown=seconds[Status.UNKNOWN],
                maintenance=sum((hi - lo).total_seconds() for lo, hi in day_excluded),
                uptime_ratio=seconds[Status.UP] / known if known else None,
            )
        )
    current_hour = int(now.timestamp()) // HOUR_SECONDS
    hourly: list[float | None] = []
    for hour in range(current_hour - 23, current_hour + 1):
        response = projection.buckets.response(hour)
        hourly.append(
            round(response[0] / response[1] * 1000, 3) if response and response[1] else None
        )
    ratios = {
        hours: summarize(
            projection,
            now=now,
            hours=hours,
            maintenance=planned(state, name, now - timedelta(hours=hours), now),
        ).uptime_ratio
        for hours in (24, 24 * 7, 24 * 30)
    }
    retained = max_hours(state)
    incidents = summarize(
        projection,
        now=now,
        hours=retained,
        maintenance=planned(state, name, now - timedelta(hours=retained), now),
    ).incidents[-PAGE_INCIDENTS:]
    active = state.maintenance.active(name, now) if state.maintenance.windows else []
    return models.PageService(
        service=name,
        kind=_kind(settings, name),
        group=_group(settings, name),
        configured=name in settings.services,
        status=current_status(projection, now),
        since=projection.since,
        in_maintenance=bool(active),
        maintenance_reason=(active[0].reason or "maintenance") if active else None,
        suppressed_by=down_parents(settings, state, name, now),
        last_reason=None if last is None else last.reason,
        last_detail=None if last is None else last.detail,
        uptime_24h=ratios[24],
        uptime_7d=ratios[24 * 7],
        uptime_30d=ratios[24 * 30],
        days=days,
        response_ms_hourly=hourly,
        locations=[
            models.PageLocation(
                location=location, status=current_status(record, now), since=record.since
            )
            for location, record in sorted(projection.locations.items())
        ],
        incidents=[_incident(i) for i in reversed(incidents)],
    )
