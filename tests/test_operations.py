"""Operating the daemon: systemd notify, the unit file, reload, shutdown, secrets, Prometheus."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from tests.conftest import ROOT, DaemonProcess, free_port
from tests.polling import wait_until
from uptime_daemon.projector import snapshot

PROMETHEUS = shutil.which("prometheus") or ""
PROMTOOL = shutil.which("promtool") or ""
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or ""
needs_promtool = pytest.mark.skipif(
    not PROMTOOL, reason="promtool (Debian package prometheus) not installed"
)


def _get(url: str, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback test URL
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return bytes(response.read())


SLOW_TARGET = """
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(sys.argv[3], "a") as seen:  # announce the request before answering it
            seen.write("GET\\n")
        time.sleep(float(sys.argv[2]))
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


@dataclass
class SlowTarget:
    """An HTTP target in its own process that answers after ``delay`` and notes every request."""

    port: int
    proc: subprocess.Popen[bytes]
    seen: Path

    def requests(self) -> int:
        """Requests received so far (each noted before its answer is delayed)."""
        return self.seen.read_text().count("GET") if self.seen.exists() else 0


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Callable[..., SlowTarget]]:
    """Start HTTP targets (in their own processes) answering after a delay."""
    started: list[SlowTarget] = []

    def start(delay: float = 0.0, port: int | None = None) -> SlowTarget:
        port = port or free_port()
        seen = tmp_path / f"target-{port}-{len(started)}.requests"
        args = [sys.executable, "-c", SLOW_TARGET, str(port), str(delay), str(seen)]
        started.append(SlowTarget(port, subprocess.Popen(args), seen))

        def listening() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, what=f"target on port {port}")
        return started[-1]

    yield start
    for each in started:
        each.proc.kill()
        each.proc.wait(timeout=10)


def test_systemd_notify_ready_watchdog_stopping(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """Over a real NOTIFY_SOCKET: READY=1 once serving, WATCHDOG=1 repeatedly, STOPPING=1 on SIGTERM."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(10)
        daemon = daemon_factory(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
        messages = [sock.recv(4096).decode() for _ in range(3)]
        assert messages[0].startswith("READY=1")
        assert messages[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
        daemon.proc.send_signal(signal.SIGTERM)
        while (message := sock.recv(4096).decode()) == "WATCHDOG=1":
            pass
        assert message.startswith("STOPPING=1")
        assert daemon.stop() == 0


@pytest.mark.skipif(not SYSTEMD_ANALYZE, reason="systemd-analyze not installed")
def test_unit_file_verifies_and_is_hardened(tmp_path: Path) -> None:
    """systemd-analyze verify is clean and the exposure score stays low (README states it)."""
    unit = (ROOT / "deploy/systemd/uptime-daemon.service").read_text()
    assert "Type=notify" in unit
    assert "WatchdogSec=" in unit
    local = tmp_path / "uptime-daemon.service"
    local.write_text(
        unit.replace(
            "/opt/uptime-daemon/bin/uptime-daemon",
            str(Path(sys.executable).with_name("uptime-daemon")),
        )
    )
    verify = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(local)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout + verify.stderr == ""
    security = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", str(local)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert match, security.stdout[-500:]
    assert float(match.group(1)) <= 1.5


def test_sighup_reload_adds_removes_and_rejects(
    daemon_factory: Callable[..., DaemonProcess], target: Callable[..., SlowTarget]
) -> None:
    """Reload adds and removes services keeping projection history; a bad file keeps the old config."""
    port = target(0.0).port
    service = (
        '[services.{name}]\nkind = "http"\nurl = "http://127.0.0.1:'
        + str(port)
        + '/"\ninterval_seconds = 0.3\n'
    )
    daemon = daemon_factory(service.format(name="first"))
    daemon.wait_until(
        lambda lines: (
            sum(e.get("service") == "first" and e.get("event") == "probe_completed" for e in lines)
            >= 3
        )
    )
    base = daemon.config.read_text().split("[services.first]")[0]
    daemon.config.write_text(base + service.format(name="second"))
    daemon.proc.send_signal(signal.SIGHUP)
    reloaded = daemon.wait_for_log(lambda e: e.get("event") == "config_reloaded")
    assert (reloaded["added"], reloaded["removed"]) == (["second"], ["first"])
    daemon.wait_until(
        lambda lines: (
            sum(e.get("service") == "second" and e.get("event") == "probe_completed" for e in lines)
            >= 2
        )
    )
    summary = orjson.loads(_get(f"{daemon.url}/uptime/summary?hours=1"))
    by_name = {s["service"]: s for s in summary["services"]}
    assert by_name["first"]["configured"] is False
    assert by_name["first"]["checks"]["total"] >= 3  # history kept
    daemon.config.write_text(base + "[services.second]\nkind = 'smtp'\n")
    daemon.proc.send_signal(signal.SIGHUP)
    failed = daemon.wait_for_log(lambda e: e.get("event") == "config_reload_failed")
    assert "unknown kind 'smtp'" in failed["error"]
    before = len(daemon.lines)
    daemon.wait_until(
        lambda lines: any(
            e.get("service") == "second" and e.get("event") == "probe_completed"
            for e in lines[before:]
        )
    )
    metrics = _get(f"{daemon.url}/metrics").decode()
    assert "uptime_config_last_reload_successful 0.0" in metrics
    assert daemon.stop() == 0


def test_sigterm_lets_the_in_flight_probe_finish_and_checkpoints(
    daemon_factory: Callable[..., DaemonProcess],
    target: Callable[..., SlowTarget],
    tmp_path: Path,
) -> None:
    """SIGTERM during a 1.5 s probe: the probe completes and is stored, the snapshot is written, exit 0."""
    slow = target(1.5)
    daemon = daemon_factory(
        "[scheduler]\njitter_seconds = 0\n"
        f'[services.slow]\nkind = "http"\nurl = "http://127.0.0.1:{slow.port}/"\ninterval_seconds = 30\ntimeout_seconds = 5\n'
    )
    wait_until(slow.requests, what="the first (slow) probe reaching the target")
    assert daemon.stop(signal.SIGTERM) == 0
    events = [e.get("event") for e in daemon.lines]
    assert events.index("probe_completed") < events.index("daemon_stopped")
    assert any(
        e.get("event") == "scheduler_stopped" and e.get("cancelled_checks") == 0
        for e in daemon.lines
    )
    stored = snapshot.read(tmp_path / "events.db.projection.json")
    assert stored is not None
    assert "slow" in stored.state.services
    assert [e for e in daemon.lines if e.get("level") in {"error", "critical"}] == []


def test_sigterm_past_the_bound_cancels_the_check_without_error_lines(
    daemon_factory: Callable[..., DaemonProcess], target: Callable[..., SlowTarget]
) -> None:
    """A probe that outlasts the shutdown bound is cancelled: said once at info, exit 0, no errors."""
    stuck = target(30)
    daemon = daemon_factory(
        "[scheduler]\njitter_seconds = 0\n"  # the test config's shutdown bound is 5 s
        f'[services.stuck]\nkind = "http"\nurl = "http://127.0.0.1:{stuck.port}/"\n'
        "interval_seconds = 60\ntimeout_seconds = 50\n"
    )
    wait_until(stuck.requests, what="the probe reaching the target")
    assert daemon.stop(signal.SIGTERM) == 0
    assert any(
        e.get("event") == "scheduler_stopped" and e.get("cancelled_checks") == 1
        for e in daemon.lines
    )
    assert [e for e in daemon.lines if e.get("level") in {"error", "critical"}] == []


def test_secrets_never_leave_the_process(
    daemon_factory: Callable[..., DaemonProcess],
    target: Callable[..., SlowTarget],
    tmp_path: Path,
) -> None:
    """Tokens, passwords and URL credentials appear in no log line, API answer, stored event or config dump."""
    port = target(0.0).port
    dead = free_port()
    body = (
        f'[services.tok]\nkind = "http"\nurl = "http://127.0.0.1:{port}/"\nbearer_token = "tok-SECRET-1"\ninterval_seconds = 0.5\n'
        f'[services.creds]\nkind = "http"\nurl = "http://user:pw-SECRET-2@127.0.0.1:{dead}/"\ninterval_seconds = 0.5\n'
    )
    daemon = daemon_factory(body, env={"KURRENTDB_PASSWORD": "env-SECRET-3"})
    daemon.wait_until(lambda lines: sum(e.get("event") == "probe_completed" for e in lines) >= 4)
    answers = [
        _get(f"{daemon.url}{path}")
        for path in (
            "/health",
            "/health/kurrentdb",
            "/health/comprehensive",
            "/uptime/summary",
            "/streams",
            "/streams/service-uptime-creds/events?limit=20",
            "/metrics",
            "/api/openapi.json",
        )
    ]
    assert daemon.stop() == 0
    validate = subprocess.run(
        [
            sys.executable,
            "-m",
            "uptime_daemon",
            "--config",
            str(daemon.config),
            "config",
            "validate",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"KURRENTDB_PASSWORD": "env-SECRET-3", "PATH": "/usr/bin:/bin"},
    )
    assert validate.returncode == 0, validate.stderr
    stored = (tmp_path / "events.db").read_bytes()
    for blob in [*answers, "".join(daemon.raw).encode(), validate.stdout.encode(), stored]:
        assert b"SECRET" not in blob


LIVE_METRICS_SERVICES = (
    '[services.db]\nkind = "database"\ninterval_seconds = 0.5\n'
    '[services.store]\nkind = "database"\ninterval_seconds = 0.5\n'
    '[services.gone]\nkind = "http"\nurl = "http://127.0.0.1:9/"\ninterval_seconds = 0.5\n'
    "timeout_seconds = 0.4\n"
)


@needs_promtool
@pytest.mark.parametrize(
    "histograms", [pytest.param(False, id="default"), pytest.param(True, id="per-service")]
)
def test_live_metrics_pass_promtool(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path, histograms: bool
) -> None:
    """A live /metrics, a few services up and down: promtool reads it as text and as OpenMetrics.

    ``promtool check metrics`` lints the text format; for OpenMetrics promtool's own parser reads it
    by backfilling a block from it (which wants a timestamp on every sample), and the client
    library's strict parser too.
    """
    setting = f"[metrics]\nper_service_histograms = {str(histograms).lower()}\n"
    daemon = daemon_factory(setting + LIVE_METRICS_SERVICES)

    def scraped_every_service() -> bytes:
        body = _get(f"{daemon.url}/metrics")
        seen = all(
            f'uptime_service_up{{service="{service}"}}'.encode() in body
            and f'_seconds_count{{kind="{kind}",service="{service}"}}'.encode() in body
            for service, kind in (("db", "database"), ("store", "database"), ("gone", "http"))
        )
        return body if seen else b""

    text = wait_until(scraped_every_service, within=30, what="every service in /metrics")
    openmetrics = _get(
        f"{daemon.url}/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert daemon.stop() == 0
    check = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert (check.returncode, check.stdout + check.stderr) == (0, b"")
    assert openmetrics.endswith(b"\n# EOF\n")
    stamped = b"".join(
        line if line.startswith(b"#") else line.rstrip(b"\n") + b" 1700000000\n"
        for line in openmetrics.splitlines(keepends=True)
    )
    (tmp_path / "scrape.om").write_bytes(stamped)
    backfill = subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "scrape.om", "blocks"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    families = {f.name: f for f in openmetrics_families(openmetrics.decode())}  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated
    for name in (
        "uptime_service_up",
        "uptime_probes",
        "uptime_service_state_seconds",
        "uptime_spool_events",
        "uptime_build_info",
        "uptime_scheduler_lateness_seconds",
        "uptime_service_probe_duration_seconds",
    ):
        assert name in families
        assert name.encode() in text
    services = {s.labels.get("service") for s in families["uptime_probe_duration_seconds"].samples}
    assert services == ({"db", "store", "gone"} if histograms else {None})


@needs_promtool
def test_alert_rules_check_and_unit_tests_pass() -> None:
    """The shipped rules parse and behave as their promtool unit tests say."""
    rules = ROOT / "deploy/prometheus"
    check = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [PROMTOOL, "test", "rules", str(rules / "alerts_test.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_dashboard_uses_only_our_metrics() -> None:
    """Every metric the Grafana dashboard queries is one the daemon exports."""
    dashboard = orjson.loads((ROOT / "deploy/prometheus/grafana-dashboard.json").read_bytes())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    names = set(re.findall(r"\b(uptime_[a-z_]+)", exprs))
    exported = {
        "uptime_service_up",
        "uptime_service_availability_ratio",
        "uptime_service_uptime_ratio",
        "uptime_service_state_seconds_total",
        "uptime_probe_duration_seconds_bucket",
        "uptime_service_probe_duration_seconds_sum",
        "uptime_service_probe_duration_seconds_count",
        "uptime_probes_total",
        "uptime_status_changes_total",
        "uptime_scheduler_lateness_seconds_bucket",
        "uptime_events_appended_total",
        "uptime_store_up",
        "uptime_spool_events",
        "uptime_projector_lag_seconds",
    }
    assert names
    assert names <= exported


@pytest.mark.skipif(not PROMETHEUS, reason="prometheus (Debian package) not installed")
def test_real_prometheus_sees_a_target_go_down_and_come_back(
    daemon_factory: Callable[..., DaemonProcess],
    target: Callable[..., SlowTarget],
    tmp_path: Path,
) -> None:
    """A real Prometheus scraping the daemon: uptime_service_up goes 1 → 0 → 1 and counters move."""
    web = target(0.0)
    port, proc = web.port, web.proc
    daemon = daemon_factory(
        f'[services.web]\nkind = "http"\nurl = "http://127.0.0.1:{port}/"\ninterval_seconds = 0.5\ntimeout_seconds = 0.4\n'
    )
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: uptime\n    static_configs:\n      - targets: ['{daemon.url.removeprefix('http://')}']\n"
    )
    prometheus = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{prom_port}/api/v1/query?query="

    def query(promql: str) -> list[dict[str, Any]]:
        try:
            data = orjson.loads(_get(api + urllib.parse.quote(promql)))
        except OSError:
            return []
        return list(data["data"]["result"])

    def until(predicate: Callable[[], bool]) -> None:
        wait_until(predicate, within=60, interval=0.5, what="Prometheus seeing it")

    def up_is(value: str) -> bool:
        return any(r["value"][1] == value for r in query('uptime_service_up{service="web"}'))

    try:
        until(lambda: up_is("1"))
        probes_before = float(
            query('uptime_probes_total{service="web",result="ok"}')[0]["value"][1]
        )
        proc.kill()
        proc.wait(timeout=10)
        until(lambda: up_is("0"))
        assert query('uptime_probes_total{service="web",result="connection_refused"}')
        target(0.0, port)
        until(lambda: up_is("1"))
        probes_after = float(query('uptime_probes_total{service="web",result="ok"}')[0]["value"][1])
        assert probes_after > probes_before
        assert query('uptime_status_changes_total{service="web",to="down"} >= 1')
        down = query('uptime_service_state_seconds_total{service="web",state="down"} > 0')
        assert down
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
    assert daemon.stop() == 0
