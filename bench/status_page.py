"""Status page at 1,000 and 10,000 services: its data, and what on-call sees in headless Chromium.

Per scenario a fresh daemon (SQLite store) with N HTTP services on loopback ``http.server`` targets
(one target process per 1,000 services, each service on its own path: a file there is up, a missing
one answers 404, down). Sixty per cent of the services are in 20 groups; 20 are down. Interval one
hour: every service is checked once at start, then only on demand (``POST /uptime/check``), so the
figures are the page's, not the probes'. Once every service has a verdict:

* ``GET /status/data``: bytes raw and gzipped, bytes a service, median time of 5 requests (client
  side, loopback); ``GET /status/service/NAME`` likewise (one opened row); the size of one
  ``health_status`` message of ``/ws/health`` (every service: what the live feed sends each 10 s).
* Chromium (Debian's, headless, through chromedriver; a 1100 × 1400 window): the time from
  navigation start to the first rows in the DOM (the page's ``status-first-rows`` mark) and to the
  ``load`` event; how many down services are on the first screen without scrolling; the number of
  DOM elements; the time for a search to narrow the list to one row (input event to the next paint,
  measured in the page); the time from ``POST /uptime/check`` of a service taken down to its row
  being the first one (polled from the test driver every 10 ms, so up to ~15 ms of slack), five
  services one after another: median and max, beside the median time of the check's own answer.

Prints one JSON line per scenario with the machine's CPU model; asserts nothing.

    python bench/status_page.py                      # 1,000 and 10,000
    python bench/status_page.py --services 2000      # one scenario
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import shutil
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Final

import orjson
from _common import (
    Processes,
    daemon_config,
    emit,
    free_port,
    machine,
    processes,
    start_daemon,
    wait_for,
)
from selenium.webdriver.remote.webdriver import WebDriver

GROUPS: Final = 20
DOWN: Final = 20
PER_TARGET: Final = 1000
SETTLE_SECONDS: Final = 600.0
WINDOW: Final = (1100, 1400)
LIVE_RUNS: Final = 5


def _name(i: int, width: int) -> str:
    return f"svc-{i:0{width}d}"


def _group(i: int, count: int) -> str | None:
    return f"team-{i % GROUPS:02d}" if i < count * 6 // 10 else None


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[bytes, float, str | None]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback URL we built
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        body = response.read()
        encoding = response.headers.get("Content-Encoding")
    return body, (time.perf_counter() - start) * 1000, encoding


def _median_get(url: str, headers: dict[str, str] | None = None) -> tuple[bytes, float, str | None]:
    runs = [_get(url, headers) for _ in range(5)]
    return runs[-1][0], round(statistics.median(run[1] for run in runs), 1), runs[-1][2]


async def _health_status_bytes(base: str) -> int:
    import aiohttp  # noqa: PLC0415

    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(base.replace("http://", "ws://") + "/ws/health", max_msg_size=0) as ws,
    ):
        while True:
            message = await ws.receive(timeout=60)
            if orjson.loads(message.data).get("type") == "health_status":
                return len(message.data.encode())


def _browser() -> WebDriver:
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        sys.exit("needs chromium and chromium-driver (Debian packages)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)


def _poll(driver: WebDriver, script: str, seconds: float = 60, *args: object) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = driver.execute_script(script, *args)
        if value:
            return value
        time.sleep(0.01)  # the driver's poll interval, bounded by the deadline
    sys.exit(f"the page did not get there: {script[:80]}")


ROWS: Final = """
return [...document.querySelectorAll('#services > li')].map((li) => {
  const box = li.getBoundingClientRect();
  return [li.dataset.service || null, li.dataset.status || null,
          box.top >= 0 && box.bottom <= window.innerHeight];
});
"""
SEARCH: Final = """
const [name, done] = [arguments[0], arguments[arguments.length - 1]];
const box = document.getElementById('q');
const start = performance.now();
box.value = name;
box.dispatchEvent(new Event('input', {bubbles: true}));
requestAnimationFrame(() => setTimeout(() => done([
  performance.now() - start, document.querySelectorAll('#services > li').length])));
"""


def scenario(count: int) -> dict[str, Any]:
    width = len(str(count - 1))
    names = [_name(i, width) for i in range(count)]
    down = set(names[count // (2 * DOWN) :: count // DOWN][:DOWN])
    with processes() as procs:
        files = procs.work / "target"
        files.mkdir()
        for name in names:
            if name not in down:
                (files / name).write_text("ok\n")
        bases = [_target(procs, files, n) for n in range((count + PER_TARGET - 1) // PER_TARGET)]
        tables = []
        for i, name in enumerate(names):
            table = f'[services.{name}]\nkind = "http"\nurl = "{bases[i // PER_TARGET]}/{name}"\n'
            table += "failures_before_down = 1\n"
            if (group := _group(i, count)) is not None:
                table += f'group = "{group}"\n'
            tables.append(table)
        config, base = daemon_config(procs, "".join(tables), interval_seconds=3600)
        start_daemon(procs, config, base)
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            rows = orjson.loads(_get(f"{base}/status/data")[0])["services"]
            statuses = [row["status"] for row in rows]
            if statuses.count("unknown") == 0 and statuses.count("down") == DOWN:
                break
            if time.monotonic() > deadline:
                sys.exit(f"{count} services: not all checked within {SETTLE_SECONDS:g} s")
            time.sleep(1)  # the first round of checks is spread over N / 500 s

        raw, data_ms, _ = _median_get(f"{base}/status/data")
        packed, gzip_ms, encoding = _median_get(f"{base}/status/data", {"Accept-Encoding": "gzip"})
        if encoding != "gzip" or not gzip.decompress(packed):
            sys.exit("/status/data: no gzip answer for Accept-Encoding: gzip")
        details, details_ms, _ = _median_get(f"{base}/status/service/{min(down)}")
        health_bytes = asyncio.run(_health_status_bytes(base))
        figures: dict[str, Any] = {
            "services": count,
            "data_bytes": len(raw),
            "data_bytes_per_service": round(len(raw) / count, 1),
            "data_gzip_bytes": len(packed),
            "data_ms": data_ms,
            "data_gzip_ms": gzip_ms,
            "details_bytes": len(details),
            "details_ms": details_ms,
            "health_status_bytes": health_bytes,
        }
        figures |= _in_chromium(base, files, names, down, count)
        return figures


def _target(procs: Processes, files: Path, index: int) -> str:
    port = free_port()
    procs.start(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(files)],
        log_name=f"target-{index}.log",
    )
    wait_for(f"http://127.0.0.1:{port}/")
    return f"http://127.0.0.1:{port}"


def _in_chromium(
    base: str, files: Path, names: list[str], down: set[str], count: int
) -> dict[str, Any]:
    driver = _browser()
    try:
        driver.get(f"{base}/")
        _poll(driver, "return document.documentElement.dataset.ready;")
        first_rows = driver.execute_script(
            "return performance.getEntriesByName('status-first-rows')[0].startTime;"
        )
        _poll(driver, "return performance.getEntriesByType('navigation')[0].loadEventEnd > 0;")
        load = driver.execute_script(
            "return performance.getEntriesByType('navigation')[0].loadEventEnd;"
        )
        rows = driver.execute_script(ROWS)
        on_screen = sum(1 for name, _, visible in rows if name in down and visible)
        elements = driver.execute_script("return document.getElementsByTagName('*').length;")
        target = names[count // 2 + 1]  # up, grouped: folded in its group's row
        search_ms, left = driver.execute_async_script(SEARCH, target)
        driver.execute_async_script(SEARCH, "")
        _poll(driver, "return document.getElementById('live').textContent === 'live';")
        checks, lives = [], []
        for offset in range(LIVE_RUNS):  # up and grouped services, one after the other
            name = names[count // 2 + 1 + offset]
            (files / name).unlink()
            request = urllib.request.Request(  # noqa: S310 - loopback URL we built
                f"{base}/uptime/check?service={name}", method="POST"
            )
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30):  # noqa: S310
                checks.append((time.perf_counter() - start) * 1000)
            _poll(
                driver,
                "const li = document.querySelector('#services > li');"
                "return li && li.dataset.service === arguments[0];",
                30,
                name,
            )
            lives.append((time.perf_counter() - start) * 1000)
        return {
            "first_rows_ms": round(first_rows, 1),
            "load_event_ms": round(load, 1),
            "down_on_first_screen": on_screen,
            "down": len(down),
            "rows_in_dom": len(rows),
            "dom_elements": elements,
            "search_to_one_ms": round(search_ms, 1),
            "search_rows_left": left,
            "live_down_to_top_ms_median": round(statistics.median(lives), 1),
            "live_down_to_top_ms_max": round(max(lives), 1),
            "check_answer_ms_median": round(statistics.median(checks), 1),
        }
    finally:
        driver.quit()


def main() -> None:
    """One scenario per ``--services`` value."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--services", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    for count in args.services:
        emit("status_page", **scenario(count), **machine())


if __name__ == "__main__":
    main()
