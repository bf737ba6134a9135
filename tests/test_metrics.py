"""The write path's per-service series, with and without per-service histograms.

Which series exist, lines that follow their counts from scrape to scrape, both exposition formats.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from uptime_daemon.exposition import escape, exposition, series, template
from uptime_daemon.metrics import PROBE_BUCKETS, Metrics
from uptime_daemon.results import FailureReason, ProbeResult

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
PROMTOOL = shutil.which("promtool") or ""
Labels = tuple[tuple[str, str], ...]


def scrape(metrics: Metrics, accept: str = "") -> bytes:
    return b"".join(exposition(metrics.registry, [metrics.services], accept)[0])


def samples(metrics: Metrics) -> dict[tuple[str, Labels], float]:
    """A scrape's samples by name and sorted labels; the OpenMetrics scrape must parse as well."""
    list(openmetrics_families(scrape(metrics, OPENMETRICS).decode()))  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scrape(metrics).decode())
        for s in family.samples
    }


def probe(metrics: Metrics, service: str, seconds: float, *, ok: bool = True) -> None:
    failure = None if ok else FailureReason.TIMEOUT
    result = ProbeResult(ok=ok, duration_seconds=seconds, failure=failure)
    metrics.observe_probe(service, "http", result, changed_to=None if ok else "down")


def duration_labels(found: dict[tuple[str, Labels], float]) -> set[Labels]:
    return {labels for name, labels in found if name.startswith("uptime_probe_duration_seconds")}


def test_by_default_the_duration_histogram_is_per_kind_and_each_service_has_its_mean() -> None:
    metrics = Metrics(CollectorRegistry(), version="test")
    probe(metrics, "web", 0.02)
    probe(metrics, "web", 0.04)
    probe(metrics, "api", 3.0, ok=False)
    found = samples(metrics)
    assert {dict(labels).get("service") for labels in duration_labels(found)} == {None}
    assert found[("uptime_probe_duration_seconds_count", (("kind", "http"),))] == 3
    web = (("kind", "http"), ("service", "web"))
    assert found[("uptime_service_probe_duration_seconds_count", web)] == 2
    assert found[("uptime_service_probe_duration_seconds_sum", web)] == pytest.approx(0.06)
    assert found[("uptime_probes_total", (*web[:1], ("result", "ok"), *web[1:]))] == 2
    api = (("kind", "http"), ("result", "timeout"), ("service", "api"))
    assert found[("uptime_probes_total", api)] == 1
    assert found[("uptime_status_changes_total", (("service", "api"), ("to", "down")))] == 1


def test_per_service_histograms_give_each_service_its_buckets() -> None:
    metrics = Metrics(CollectorRegistry(), version="test", per_service_histograms=True)
    probe(metrics, "web", 0.02)
    probe(metrics, "api", 3.0)
    found = samples(metrics)
    assert {dict(labels).get("service") for labels in duration_labels(found)} == {"web", "api"}
    web = {
        dict(labels)["le"]: value
        for (name, labels), value in found.items()
        if name == "uptime_probe_duration_seconds_bucket" and dict(labels)["service"] == "web"
    }
    assert len(web) == len(PROBE_BUCKETS) + 1
    assert web["0.01"] == 0
    assert web["0.025"] == web["+Inf"] == 1
    api = (("kind", "http"), ("service", "api"))
    assert found[("uptime_probe_duration_seconds_sum", api)] == 3.0
    assert found[("uptime_service_probe_duration_seconds_count", api)] == 1  # kept: dashboards


NAMES = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)


@settings(max_examples=60, deadline=None)
@given(NAMES, st.dictionaries(st.sampled_from(["kind", "le", "to", "window"]), NAMES, max_size=3))
def test_a_template_filled_in_is_the_series_line(service: str, labels: dict[str, str]) -> None:
    """What a service's lines are made of: its escaped name in the shared template."""
    made = template("uptime_x", **labels).line(escape(service), "1.5")
    assert made == f"{series('uptime_x', service=service, **labels)}1.5\n"


@settings(max_examples=30, deadline=None)
@given(NAMES)
def test_any_service_name_reads_back_from_the_scrape(service: str) -> None:
    """Quotes, backslashes, line breaks: each series carries the name, as the parser reads it."""
    metrics = Metrics(CollectorRegistry(), version="test", per_service_histograms=True)
    probe(metrics, service, 0.2, ok=False)
    mine = [dict(labels) for _, labels in samples(metrics) if "service" in dict(labels)]
    histogram = len(PROBE_BUCKETS) + 1 + 2  # its buckets, +Inf, _sum and _count
    assert len(mine) == 1 + 2 + histogram + 1  # probes, the summary, the histogram, the change
    assert {labels["service"] for labels in mine} == {service}


def test_each_scrape_shows_the_probes_since_the_last_and_no_counter_goes_backwards() -> None:
    """Only ``web`` is probed between scrapes: its series move, ``api``'s stay as they were."""
    metrics = Metrics(CollectorRegistry(), version="test", per_service_histograms=True)
    probe(metrics, "web", 0.02)
    probe(metrics, "api", 0.02)
    previous = samples(metrics)
    for round_ in range(1, 6):
        for _ in range(round_):
            probe(metrics, "web", 0.3 * round_, ok=round_ % 2 == 0)
        found = samples(metrics)
        for key, value in found.items():
            if key[0].endswith(("_total", "_count", "_sum", "_bucket")):
                assert value >= previous.get(key, 0.0), key
            if dict(key[1]).get("service") == "api":
                assert value == previous[key], key
        previous = found
    web_count = (("kind", "http"), ("service", "web"))
    assert previous[("uptime_service_probe_duration_seconds_count", web_count)] == 1 + 15


@pytest.mark.skipif(not PROMTOOL, reason="promtool (Debian package prometheus) not installed")
@pytest.mark.parametrize(
    "histograms", [pytest.param(False, id="default"), pytest.param(True, id="per-service")]
)
def test_promtool_accepts_the_scrape(histograms: bool) -> None:
    metrics = Metrics(CollectorRegistry(), version="test", per_service_histograms=histograms)
    probe(metrics, 'quote"and\\backslash', 0.02)
    probe(metrics, "web", 0.5, ok=False)
    check = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=scrape(metrics), capture_output=True, check=False
    )
    assert (check.returncode, check.stdout + check.stderr) == (0, b"")
