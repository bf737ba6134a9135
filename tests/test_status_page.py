"""The status page in headless Chromium: live outages, maintenance, held alerts, phone width."""

from __future__ import annotations

import os
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.browser import chromium, needs_chromium
from tests.conftest import ROOT, DaemonProcess, free_port, start_http_target
from tests.polling import wait_until

pytestmark = needs_chromium
SCREENSHOT = ROOT / "docs/screenshots/status-page.png"


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Debian Chromium (tests/browser.py)."""
    with chromium() as driver:
        yield driver


def _until(condition: Callable[[], object], within: float = 15.0) -> None:
    wait_until(condition, within=within, what="the page getting there")


def _status(driver: Any, service: str) -> str | None:
    value = driver.execute_script(
        "const li = document.querySelector(`#services > li[data-service='${arguments[0]}']`);"
        "return li ? li.dataset.status : null;",
        service,
    )
    return None if value is None else str(value)


def _text(driver: Any, service: str, selector: str) -> str | None:
    """The visible text of ``selector`` in the service's card; None while it is hidden or absent."""
    value = driver.execute_script(
        "const li = document.querySelector(`#services > li[data-service='${arguments[0]}']`);"
        "const el = li && li.querySelector(arguments[1]);"
        "return el && !el.hidden && el.offsetParent !== null ? el.textContent : null;",
        service,
        selector,
    )
    return None if value is None else str(value)


def _open_details(driver: Any, service: str) -> None:
    """Open the service's row (a button) and wait for its figures to arrive."""
    driver.find_element("css selector", f"li[data-service='{service}'] > button").click()
    _until(
        lambda: driver.find_elements(
            "css selector", f"li[data-service='{service}'] .details[data-loaded]"
        )
    )


def _declare_maintenance(daemon: DaemonProcess, services: list[str], reason: str) -> None:
    """``POST /maintenance``: a window from a minute ago to an hour from now."""
    now = datetime.now(UTC)
    body = {
        "services": services,
        "start": (now - timedelta(minutes=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
        "reason": reason,
    }
    request = urllib.request.Request(  # noqa: S310 - the daemon's loopback URL
        f"{daemon.url.rstrip('/')}/maintenance",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 201


def test_page_lists_services_and_turns_red_live(
    daemon_factory: Callable[..., DaemonProcess], browser: Any, tmp_path: Path
) -> None:
    """Services are listed; a target taken down shows as down without a reload, within one check interval."""
    port = free_port()
    target = start_http_target(port, tmp_path)
    try:
        daemon = daemon_factory(
            "[scheduler]\njitter_seconds = 0\n"
            f'[services.web]\nkind = "http"\nurl = "http://127.0.0.1:{port}/"\ninterval_seconds = 1\n'
            "failures_before_down = 2\n"
            '[services.database]\nkind = "database"\ninterval_seconds = 1\n'
        )
        browser.get(f"{daemon.url}/")
        _until(lambda: _status(browser, "web") == "up" and _status(browser, "database") == "up")
        assert "All services are up" in browser.find_element("id", "overall").text
        assert browser.find_element("id", "live").text == "live"
        browser.execute_script("window.__noReload = 42;")
        assert browser.save_screenshot(str(tmp_path / "status.png"))
        assert (tmp_path / "status.png").stat().st_size > 10_000

        target.kill()
        target.wait(timeout=10)
        down = daemon.wait_for_log(
            lambda e: e.get("event") == "service_status_changed" and e.get("status") == "down"
        )
        noticed = time.monotonic()
        _until(lambda: _status(browser, "web") == "down", within=1.0)  # one check interval
        assert time.monotonic() - noticed < 1.0
        assert down["service"] == "web"
        assert browser.execute_script("return window.__noReload;") == 42
        pill = browser.find_element("css selector", "li[data-service='web'] .pill")
        assert pill.text.strip().endswith("Down")  # said in words, not only in red
        assert "1 service down" in browser.find_element("id", "overall").text
        _open_details(browser, "web")  # the figures are fetched when the row is opened
        uptime = browser.find_element("css selector", "li[data-service='web'] .u24").text
        assert uptime.endswith("%"), uptime  # real figures, not a placeholder
        assert 0 < float(uptime.rstrip("%")) < 100
        today = browser.find_element("css selector", "li[data-service='web'] .bars .bar:last-child")
        # Today was observed and had an outage: coloured by its uptime, not grey like unseen days.
        assert today.get_attribute("data-grade") == "poor"
        assert "% up" in (today.get_attribute("title") or "")
        first = browser.find_element(
            "css selector", "li[data-service='web'] .bars .bar:first-child"
        )
        assert first.get_attribute("data-grade") == "none"
        if os.environ.get(
            "UPDATE_SCREENSHOTS"
        ):  # the README's picture: an outage as on-call sees it
            browser.save_screenshot(str(SCREENSHOT))
        assert daemon.stop() == 0
    finally:
        target.kill()
        target.wait(timeout=10)


def test_page_fits_a_phone_and_fetches_nothing_external(
    daemon_factory: Callable[..., DaemonProcess], browser: Any
) -> None:
    """At 375 px nothing scrolls sideways; every resource the page loaded came from the daemon."""
    daemon = daemon_factory('[services.database]\nkind = "database"\ninterval_seconds = 1\n')
    browser.set_window_size(375, 800)
    browser.get(f"{daemon.url}/")
    _until(lambda: _status(browser, "database") == "up")
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth;"
    )
    assert overflow <= 0
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin);"
    )
    assert origins
    assert set(origins) == {daemon.url.rstrip("/")}
    assert daemon.stop() == 0


def test_page_reconnects_after_the_daemon_restarts(
    daemon_factory: Callable[..., DaemonProcess], browser: Any
) -> None:
    """When the daemon restarts on the same port, the open page reconnects and goes live again."""
    port = free_port()
    body = '[services.database]\nkind = "database"\ninterval_seconds = 1\n'
    first = daemon_factory(body, env={"HTTP_PORT": str(port)})
    browser.get(f"{first.url}/")
    _until(lambda: browser.find_element("id", "live").text == "live")
    browser.execute_script("window.__noReload = 7;")
    assert first.stop() == 0
    _until(lambda: browser.find_element("id", "live").text == "reconnecting")
    second = daemon_factory(body, env={"HTTP_PORT": str(port)})
    _until(lambda: browser.find_element("id", "live").text == "live", within=20)
    assert browser.execute_script("return window.__noReload;") == 7
    _until(lambda: _status(browser, "database") == "up")
    assert second.stop() == 0


def test_a_service_removed_from_the_config_leaves_the_page(
    daemon_factory: Callable[..., DaemonProcess], browser: Any
) -> None:
    """Its history stays in the store and the API, but on-call is not shown a service nobody checks."""
    old = daemon_factory(
        '[services.database]\nkind = "database"\ninterval_seconds = 1\n'
        '[services.retired]\nkind = "database"\ninterval_seconds = 1\nstream = "system-retired"\n'
    )
    old.wait_for_log(
        lambda e: e.get("event") == "probe_completed" and e.get("service") == "retired"
    )
    assert old.stop() == 0
    daemon = daemon_factory('[services.database]\nkind = "database"\ninterval_seconds = 1\n')
    # Count what the page's socket receives, so the test knows the live health_status has arrived.
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": "window.__received = 0; const Native = window.WebSocket;"
            "window.WebSocket = function (url) { const ws = new Native(url);"
            " ws.addEventListener('message', () => { window.__received += 1; }); return ws; };"
        },
    )
    browser.get(f"{daemon.url}/")
    _until(lambda: _status(browser, "database") == "up")
    _until(lambda: browser.execute_script("return window.__received;") >= 1)
    data = browser.execute_script("return fetch('/status/data').then(r => r.json());")
    assert [s["service"] for s in data["services"]] == ["database"]  # configured services only
    history = browser.execute_script("return fetch('/status/service/retired').then(r => r.json());")
    assert history["configured"] is False  # its history stays in the API
    assert _status(browser, "retired") is None
    assert "All services are up" in browser.find_element("id", "overall").text
    assert daemon.stop() == 0


def test_a_maintenance_window_shows_live_on_its_service_only(
    daemon_factory: Callable[..., DaemonProcess], browser: Any
) -> None:
    """A window declared while the page is open shows as a badge with its reason, on that service only."""
    daemon = daemon_factory(
        '[services.router]\nkind = "database"\ninterval_seconds = 1\nstream = "system-router"\n'
        '[services.database]\nkind = "database"\ninterval_seconds = 1\n'
    )
    browser.get(f"{daemon.url}/")
    _until(lambda: _status(browser, "router") == "up" and _status(browser, "database") == "up")
    _until(lambda: browser.find_element("id", "live").text == "live")
    _open_details(browser, "router")
    _open_details(browser, "database")
    assert _text(browser, "router", ".in-maintenance") is None
    assert _text(browser, "router", ".maintenance-note") is None
    browser.execute_script("window.__noReload = 5;")

    _declare_maintenance(daemon, ["router"], "router swap")
    # No status changes: the next health_status on the socket (every 10 s) says a window covers
    # the service; its row says so, and its open details fetch the reason.
    _until(lambda: _text(browser, "router", ".in-maintenance") == "Maintenance", within=15.0)
    _until(lambda: _text(browser, "router", ".maintenance-note") == "Maintenance: router swap")
    assert browser.execute_script("return window.__noReload;") == 5
    assert _text(browser, "database", ".in-maintenance") is None
    assert _text(browser, "database", ".maintenance-note") is None
    assert _status(browser, "router") == "up"  # the checks' verdict still shows beside it
    assert "1 in maintenance" in browser.find_element("id", "overall").text
    today = browser.find_element("css selector", "li[data-service='router'] .bars .bar:last-child")
    assert today.get_attribute("data-maintenance") == "true"
    assert today.find_element("css selector", ".maintenance").size["height"] > 0
    assert re.search(r", \d+[ms]( \d+s)? maintenance$", today.get_attribute("title") or "")
    badge, band, down = browser.execute_script(
        "const css = (selector, pseudo) => getComputedStyle("
        "document.querySelector(`li[data-service='router'] ${selector}`), pseudo);"
        "return [css('.in-maintenance').color, css('.bar:last-child .maintenance').backgroundColor,"
        " css('.scale .poor', '::before').backgroundColor];"
    )
    assert badge == band != down  # one colour for maintenance, and not the outage red
    other = browser.find_element(
        "css selector", "li[data-service='database'] .bars .bar:last-child"
    )
    assert other.get_attribute("data-maintenance") is None
    assert daemon.stop() == 0


def test_a_child_of_a_down_parent_says_its_alerts_are_held(
    daemon_factory: Callable[..., DaemonProcess], browser: Any, tmp_path: Path
) -> None:
    """When a parent goes down, the open page notes on its child that the child's alerts are held."""
    port = free_port()
    target = start_http_target(port, tmp_path)
    try:
        daemon = daemon_factory(
            "[scheduler]\njitter_seconds = 0\n"
            f'[services.router]\nkind = "http"\nurl = "http://127.0.0.1:{port}/"\n'
            "interval_seconds = 1\nfailures_before_down = 1\n"
            '[services.app]\nkind = "database"\ninterval_seconds = 1\ndepends_on = ["router"]\n'
        )
        browser.get(f"{daemon.url}/")
        _until(lambda: _status(browser, "router") == "up" and _status(browser, "app") == "up")
        _until(lambda: browser.find_element("id", "live").text == "live")
        _open_details(browser, "app")
        _open_details(browser, "router")
        assert _text(browser, "app", ".held") is None

        target.kill()
        target.wait(timeout=10)
        # Sooner than the next health_status (10 s): open rows refetch on the status change.
        _until(lambda: _text(browser, "app", ".held") == "Alerts held: router is down", within=5.0)
        assert _status(browser, "router") == "down"
        assert _status(browser, "app") == "up"
        assert _text(browser, "router", ".held") is None
        # What the newest check saw, in words: the failure reason and the probe's detail (refused;
        # or reset, when the check had connected just before the kill).
        failed = _text(browser, "router", ".last-check") or ""
        assert re.match(
            r"Last check failed \((connection_refused|connection_error)\): \S", failed
        ), failed
        assert daemon.stop() == 0
    finally:
        target.kill()
        target.wait(timeout=10)
