"""The status page with 1,000 configured services, in headless Chromium (issue #19, items 3 and 4).

One daemon for the module: 1,000 HTTP services on one loopback ``http.server``, each on its own path
(a file there is up, a missing one answers 404: down), checked once at start (interval one hour),
then on demand with ``POST /uptime/check``. Twenty are down, five degraded. The assertions are what
on-call needs at that size, never timings (those are ``bench/status_page.py``): the down services on
the first screen without scrolling, a bounded DOM, healthy groups folded to one row, a search that
narrows to one row and survives a reload through the URL, a service going down moving to the top
live, and a ``/status/data`` of at most 100 bytes a service.
"""

from __future__ import annotations

import gzip
import os
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import orjson
import pytest

from tests.browser import chromium, needs_chromium
from tests.conftest import ROOT, DaemonProcess, free_port, get_json, start_http_target, write_config
from tests.polling import wait_until
from uptime_daemon.api import models

pytestmark = [
    needs_chromium,
    pytest.mark.slow,
    pytest.mark.system,
]
SCREENSHOT: Final = ROOT / "docs/screenshots/status-page-1000.png"
SERVICES: Final = 1000
GROUPS: Final = ("payments", "search", "ledger", "identity", "media", "edge")
"""Services 0-599 are in these groups, a hundred each (by ``i % 6``); 600-999 have none."""
DOWN: Final = tuple(f"svc-{i:04d}" for i in range(7, SERVICES, 50))
"""Twenty: in ``search``, ``identity`` and ``edge`` (index % 6 is 1, 3 or 5) and ungrouped; none in
``ledger`` (% 6 == 2), so that group stays healthy."""
DEGRADED: Final = ("svc-0901", "svc-0902", "svc-0903", "svc-0904", "svc-0905")
GOES_DOWN: Final = "svc-0501"
"""Up, in ``identity`` (501 % 6 == 3), so folded in its group's row until it fails."""
BYTES_PER_SERVICE: Final = 100


def _group(i: int) -> str | None:
    return GROUPS[i % 6] if i < 600 else None


def _config(target: str) -> str:
    tables = []
    for i in range(SERVICES):
        name = f"svc-{i:04d}"
        table = f'[services.{name}]\nkind = "http"\nurl = "{target}/{name}"\n'
        if (group := _group(i)) is not None:
            table += f'group = "{group}"\n'
        if name in DEGRADED:
            table += "degraded_after_seconds = 0.000001\n"  # any answer is slower than that
        tables.append(table)
    return (
        "[scheduler]\njitter_seconds = 0\nmax_concurrency = 64\n"
        "[defaults]\ninterval_seconds = 3600\ntimeout_seconds = 5\nfailures_before_down = 1\n"
        + "".join(tables)
    )


class Site:
    """The module's daemon, its target's directory and the base URL."""

    def __init__(self, daemon: DaemonProcess, files: Path) -> None:
        self.daemon = daemon
        self.files = files
        self.url = daemon.url.rstrip("/")

    def data(self) -> dict[str, Any]:
        return dict(get_json(f"{self.url}/status/data"))

    def check(self, service: str) -> None:
        request = urllib.request.Request(  # noqa: S310 - the daemon's loopback URL
            f"{self.url}/uptime/check?service={service}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            assert response.status == 200


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """1,000 services checked once: 20 down (no file), 5 degraded, the rest up."""
    work = tmp_path_factory.mktemp("scale")
    files = work / "target"
    files.mkdir()
    for i in range(SERVICES):
        name = f"svc-{i:04d}"
        if name not in DOWN:
            (files / name).write_text("ok\n")
    port = free_port()
    target = start_http_target(port, files)
    daemon = DaemonProcess(write_config(work, _config(f"http://127.0.0.1:{port}")))
    try:
        served = Site(daemon, files)

        def settled() -> bool:
            statuses = [row["status"] for row in served.data()["services"]]
            return statuses.count("unknown") == 0 and statuses.count("down") == len(DOWN)

        wait_until(settled, within=60, what="every service checked once")
        yield served
    finally:
        daemon.stop()
        target.kill()
        target.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium (tests/browser.py), a desktop window."""
    with chromium("--window-size=1100,1400") as driver:
        yield driver


def _until(condition: Callable[[], object], within: float = 15.0) -> Any:
    return wait_until(condition, within=within, what="the page getting there")


def _open(driver: Any, url: str) -> None:
    driver.get(url)
    _until(lambda: driver.execute_script("return document.documentElement.dataset.ready;"))


ROWS_JS: Final = """
return [...document.querySelectorAll('#services > li')].map((li) => {
  const box = li.getBoundingClientRect();
  return {service: li.dataset.service || null, group: li.dataset.group || null,
          status: li.dataset.status || null, text: li.textContent.replace(/\\s+/g, ' ').trim(),
          onScreen: box.top >= 0 && box.bottom <= window.innerHeight};
});
"""


def _rows(driver: Any) -> list[dict[str, Any]]:
    return list(driver.execute_script(ROWS_JS))


def test_status_data_is_a_few_dozen_bytes_a_service(site: Site) -> None:
    """Every configured service, each in a bounded row; the figures are one request per service."""
    with urllib.request.urlopen(f"{site.url}/status/data", timeout=10) as response:  # noqa: S310
        raw = response.read()
    page = models.StatusPage.model_validate_json(raw)  # the declared model describes the answer
    assert len(page.services) == SERVICES
    assert len(raw) <= BYTES_PER_SERVICE * SERVICES, f"{len(raw) / SERVICES:.1f} bytes a service"
    rows = orjson.loads(raw)["services"]
    assert "days" not in rows[0]
    assert {row["service"] for row in rows if row["status"] == "down"} == set(DOWN)
    assert all(row["lastReason"] == "http_status" for row in rows if row["status"] == "down")
    assert {row["service"]: row.get("group") for row in rows}["svc-0000"] == "payments"

    request = urllib.request.Request(  # noqa: S310 - the daemon's loopback URL
        f"{site.url}/status/data", headers={"Accept-Encoding": "gzip"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.headers["Content-Encoding"] == "gzip"
        compressed = response.read()
    assert len(compressed) < len(raw) / 4
    assert orjson.loads(gzip.decompress(compressed))["services"] == rows

    details = get_json(f"{site.url}/status/service/{DOWN[0]}")
    assert details["group"] == _group(int(DOWN[0][4:]))
    assert len(details["days"]) == 90
    assert details["incidents"][0]["ongoing"] is True


def test_the_down_services_are_on_the_first_screen(site: Site, browser: Any) -> None:
    """Problems first: all twenty down, then the degraded, without scrolling; a bounded DOM."""
    _open(browser, f"{site.url}/")
    rows = _rows(browser)
    assert browser.execute_script("return window.scrollY;") == 0
    down = [row for row in rows if row["status"] == "down"]
    assert {row["service"] for row in down} == set(DOWN)
    if os.environ.get("UPDATE_SCREENSHOTS"):  # the README's picture at 1,000 services
        browser.save_screenshot(str(SCREENSHOT))
    assert all(row["onScreen"] for row in down), [r["service"] for r in down if not r["onScreen"]]
    assert [row["status"] for row in rows[: len(DOWN) + len(DEGRADED)]] == ["down"] * len(DOWN) + [
        "degraded"
    ] * len(DEGRADED)
    assert len(rows) <= 100  # one page of rows in the DOM, not a thousand cards
    assert browser.find_element("id", "more").is_displayed()
    assert "20 services down" in browser.find_element("id", "overall").text
    if os.environ.get("UPDATE_SCREENSHOTS"):  # the README's picture at 1,000 services
        browser.save_screenshot(str(SCREENSHOT))


def test_a_healthy_group_folds_to_one_row_with_a_count(site: Site, browser: Any) -> None:
    """``ledger`` has no problem: one row says how many are up, and opens the group by its URL."""
    _open(browser, f"{site.url}/")
    rows = _rows(browser)
    (ledger,) = [row for row in rows if row["group"] == "ledger"]
    assert "100 services up" in ledger["text"]
    assert not [row for row in rows if row["service"] and row["text"].count("ledger")]
    (search,) = [row for row in rows if row["group"] == "search"]
    assert "listed above" in search["text"]  # its down services are at the top

    browser.find_element("css selector", "li[data-group='ledger'] button").click()
    _until(lambda: browser.execute_script("return location.search;") == "?group=ledger")
    _until(lambda: len(_rows(browser)) == 100)
    assert all("ledger" in row["text"] for row in _rows(browser))


def test_a_search_narrows_to_one_row_and_the_url_keeps_it(site: Site, browser: Any) -> None:
    """Typing a name leaves one row; the filter is in the URL, so a reload shows the same view."""
    _open(browser, f"{site.url}/")
    box = browser.find_element("id", "q")
    box.send_keys("svc-0123")
    _until(lambda: [row["service"] for row in _rows(browser)] == ["svc-0123"])
    assert browser.execute_script("return location.search;") == "?q=svc-0123"
    assert "1 service matches" in browser.find_element("id", "shown").text

    from selenium.webdriver.support.select import Select  # noqa: PLC0415

    box.clear()
    box.send_keys("svc-0")  # every service: only the status narrows
    Select(browser.find_element("id", "status-filter")).select_by_value("down")
    _until(lambda: len(_rows(browser)) == len(DOWN))
    assert browser.execute_script("return location.search;") == "?q=svc-0&status=down"
    browser.refresh()
    _until(lambda: browser.execute_script("return document.documentElement.dataset.ready;"))
    assert {row["service"] for row in _rows(browser)} == set(DOWN)
    assert browser.find_element("id", "q").get_attribute("value") == "svc-0"
    assert Select(browser.find_element("id", "status-filter")).first_selected_option.text == "Down"


def test_a_row_opens_its_details_from_the_keyboard(site: Site, browser: Any) -> None:
    """A row is a button: Enter opens the figures below it (fetched then), and says it is open."""
    from selenium.webdriver.common.keys import Keys  # noqa: PLC0415

    _open(browser, f"{site.url}/")
    button = browser.find_element("css selector", "#services > li:first-child > button")
    assert button.get_attribute("aria-expanded") == "false"
    button.send_keys(Keys.ENTER)
    _until(lambda: button.get_attribute("aria-expanded") == "true")
    details = _until(
        lambda: browser.find_elements(
            "css selector", "#services > li:first-child .details[data-loaded]"
        )
    )[0]
    assert len(details.find_elements("css selector", ".bars .bar")) == 90
    assert button.get_attribute("aria-controls") == details.get_attribute("id")
    assert details.find_element("css selector", ".last-check").text.startswith(
        "Last check failed (http_status)"
    )


def test_the_page_fits_a_phone_with_a_thousand_services(site: Site, browser: Any) -> None:
    """At 375 px nothing scrolls sideways and the first rows are the down services."""
    browser.set_window_size(375, 800)
    try:
        _open(browser, f"{site.url}/")
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth;"
        )
        assert overflow <= 0
        first = [row for row in _rows(browser) if row["onScreen"]]
        assert first
        assert {row["status"] for row in first} == {"down"}
    finally:
        browser.set_window_size(1100, 1400)


def test_a_service_going_down_moves_to_the_top_live(site: Site, browser: Any) -> None:
    """A folded, healthy service fails: it is the first row without a reload, and it is said."""
    _open(browser, f"{site.url}/")
    _until(lambda: browser.find_element("id", "live").text == "live")
    browser.execute_script("window.__noReload = 19;")
    assert GOES_DOWN not in [row["service"] for row in _rows(browser)]  # folded in its group
    (site.files / GOES_DOWN).unlink()
    site.check(GOES_DOWN)
    _until(lambda: _rows(browser)[0]["service"] == GOES_DOWN, within=5)
    first = _rows(browser)[0]
    assert first["status"] == "down"
    assert first["onScreen"]
    assert browser.execute_script("return window.__noReload;") == 19
    assert "21 services down" in browser.find_element("id", "overall").text
    announce = browser.find_element("id", "announce")  # visually hidden: read its text content
    _until(lambda: f"{GOES_DOWN} is down" in (announce.get_attribute("textContent") or ""))
    # The page moved one row: the twenty others follow it.
    assert {row["service"] for row in _rows(browser)[1:21]} == set(DOWN)
