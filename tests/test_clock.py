"""Timestamps in and out: ``parse_iso`` gives what its definition gives, shortcut or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uptime_daemon.clock import parse_iso, to_iso_micros, to_iso_millis


def _by_definition(text: str) -> datetime:
    """``parse_iso`` as first written: parse, a naive time is UTC, then convert to UTC."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2024-01-15T10:30:00.000Z", id="ours"),
        pytest.param("2024-01-15T10:30:00Z", id="no-fraction"),
        pytest.param("2024-01-15T10:30:00.123456Z", id="microseconds"),
        pytest.param("2024-02-29T23:59:59.999Z", id="leap-day"),
        pytest.param("2024-01-15T10:30:00+00:00", id="plus-zero"),
        pytest.param("2024-01-15T10:30:00-00:00", id="minus-zero"),
        pytest.param("2024-01-15T10:30:00.5+05:30", id="east"),
        pytest.param("2024-01-01T00:30:00-01:00", id="west-across-the-year"),
        pytest.param("2024-01-15T10:30:00", id="naive"),
        pytest.param("2024-01-15", id="date-only"),
        pytest.param("0001-01-01T00:00:00Z", id="first-moment"),
        pytest.param("9999-12-31T23:59:59.999Z", id="last-millisecond"),
    ],
)
def test_parse_iso_is_its_definition(text: str) -> None:
    parsed = parse_iso(text)
    assert parsed == _by_definition(text)
    assert parsed.tzinfo is UTC
    assert to_iso_micros(parsed) == to_iso_micros(_by_definition(text))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("2024-13-01T00:00:00Z", id="month-13"),
        pytest.param("2024-01-15T10:30:00.000ZZ", id="two-zones"),
        pytest.param("yesterday", id="words"),
    ],
)
def test_parse_iso_refuses_what_its_definition_refuses(text: str) -> None:
    with pytest.raises(ValueError) as by_definition:  # noqa: PT011 - the message is compared next
        _by_definition(text)
    with pytest.raises(ValueError) as refused:  # noqa: PT011
        parse_iso(text)
    assert str(refused.value) == str(by_definition.value)


@given(
    st.datetimes(
        min_value=datetime(2, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=datetime(9998, 12, 31),  # noqa: DTZ001
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
        ),
    )
)
def test_parse_iso_reads_any_offset_as_utc(moment: datetime) -> None:
    for text in (moment.isoformat(), to_iso_millis(moment), to_iso_micros(moment)):
        parsed = parse_iso(text)
        assert parsed == _by_definition(text)
        assert parsed.tzinfo is UTC
