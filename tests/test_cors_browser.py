"""CORS in headless Chromium: a page on another loopback port calls a real daemon with ``fetch``."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from tests.browser import chromium, needs_chromium
from tests.conftest import DaemonProcess
from tests.polling import wait_until

pytestmark = [
    pytest.mark.system,
    needs_chromium,
]
OPERATOR = "operator-token-cors-1"
CONFIG = (
    "[scheduler]\nenabled = false\n"  # the only checks are the ones the page and the test ask for
    f'[server.auth]\noperator_tokens = ["{OPERATOR}"]\n'
    '[services.database]\nkind = "database"\ninterval_seconds = 60\n'
    '[services.witness]\nkind = "database"\ninterval_seconds = 60\nstream = "system-witness"\n'
)
CALLS: tuple[str, ...] = ("summary", "check", "denied", "credentialed")
FAILED_TO_FETCH = {"ok": False, "error": "TypeError", "message": "Failed to fetch"}
"""What a page's ``fetch`` throws when CORS refuses it (the page learns nothing more)."""
# The seeds' front end in miniature: each call writes what it got, or the error it threw, into
# the DOM as JSON (data-result), where the test reads it.
PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>another origin</title></head><body>
<output id="summary"></output><output id="check"></output>
<output id="denied"></output><output id="credentialed"></output>
<script>
const query = new URLSearchParams(location.search);
const api = query.get("api"), token = query.get("token");
function report(id, call) {
  call()
    .then(async (r) => ({ok: true, status: r.status, body: await r.json()}))
    .catch((e) => ({ok: false, error: e.name, message: e.message}))
    .then((result) => { document.getElementById(id).dataset.result = JSON.stringify(result); });
}
report("summary", () => fetch(`${api}/api/uptime/summary?hours=24`));
report("check", () => fetch(`${api}/api/uptime/check?service=database`,
  {method: "POST", headers: {Authorization: `Bearer ${token}`}}));
report("denied", () => fetch(`${api}/api/uptime/check`,
  {method: "POST", headers: {Authorization: "Bearer not-the-token"}}));
report("credentialed", () => fetch(`${api}/api/uptime/summary?hours=24`, {credentials: "include"}));
</script></body></html>
"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, fmt: str, *args: object) -> None:
        """Quiet: the test reads the DOM, not this server's log."""


@pytest.fixture
def serve_page() -> Iterator[Callable[[], str]]:
    """Serve ``PAGE`` from a fresh loopback port; returns that server's origin."""
    servers: list[ThreadingHTTPServer] = []

    def start() -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Debian Chromium (tests/browser.py)."""
    with chromium() as driver:
        yield driver


def _run_check(daemon: DaemonProcess, service: str) -> None:
    """``POST /uptime/check?service=...`` straight to the daemon (no browser, no CORS)."""
    request = urllib.request.Request(  # noqa: S310 - the daemon's loopback URL
        f"{daemon.url.rstrip('/')}/uptime/check?service={service}",
        headers={"Authorization": f"Bearer {OPERATOR}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200


def _results(browser: Any, page: str, daemon: DaemonProcess) -> dict[str, dict[str, Any]]:
    """Open the page on ``page`` (an origin) against ``daemon``; every call's result once all are in."""
    api = daemon.url.rstrip("/")
    browser.get(f"{page}/?api={api}&token={OPERATOR}")
    assert browser.execute_script("return location.origin;") == page
    assert page != api  # cross-origin: another port

    def reported() -> dict[str, dict[str, Any]]:
        """Every call's result; empty (falsy) while one is pending."""
        found = browser.execute_script(
            "return arguments[0].map((id) => document.getElementById(id).dataset.result || null);",
            list(CALLS),
        )
        if None in found:
            return {}
        return {call: orjson.loads(text) for call, text in zip(CALLS, found, strict=True)}

    return wait_until(reported, within=15.0, what="every fetch of the page settled")


def test_a_listed_origin_reads_the_api_and_an_unlisted_one_cannot(
    daemon_factory: Callable[..., DaemonProcess],
    browser: Any,
    serve_page: Callable[[], str],
) -> None:
    """The listed page reads, checks (a preflighted Bearer POST) and reads its 401; the other, nothing.

    Neither may fetch with ``credentials: "include"``: the daemon never allows credentials.
    """
    listed, unlisted = serve_page(), serve_page()
    daemon = daemon_factory(CONFIG, env={"ALLOWED_ORIGINS": f"{listed},http://localhost:5173"})

    seen = _results(browser, listed, daemon)
    assert seen["summary"]["status"] == 200, seen
    assert [s["service"] for s in seen["summary"]["body"]["services"]] == ["database", "witness"]
    assert seen["check"]["status"] == 200, seen
    assert [c["service"] for c in seen["check"]["body"]["checks"]] == ["database"]
    assert seen["denied"]["status"] == 401, seen  # the error is readable: it carries CORS headers
    assert seen["denied"]["body"]["error"] == "unauthorized"
    assert seen["credentialed"] == FAILED_TO_FETCH  # the token is enough; credentials never are

    refused = _results(browser, unlisted, daemon)
    assert refused == dict.fromkeys(CALLS, FAILED_TO_FETCH)
    # The refused preflight kept the POST from being sent at all: a check of the witness, run
    # after the page settled, is the second check the daemon logs; the page's would come before.
    _run_check(daemon, "witness")
    daemon.wait_for_log(lambda e: e.get("event") == "probe_completed" and e["service"] == "witness")
    checked = [e["service"] for e in daemon.lines if e.get("event") == "probe_completed"]
    assert checked == ["database", "witness"]
    assert daemon.stop() == 0


def test_any_origin_reads_but_never_with_credentials(
    daemon_factory: Callable[..., DaemonProcess],
    browser: Any,
    serve_page: Callable[[], str],
) -> None:
    """With ``*`` every page reads and checks with its token, but a credentialed fetch fails."""
    daemon = daemon_factory(CONFIG, env={"ALLOWED_ORIGINS": "*"})
    seen = _results(browser, serve_page(), daemon)
    assert seen["summary"]["status"] == 200, seen
    assert seen["check"]["status"] == 200, seen
    assert seen["denied"]["status"] == 401, seen
    assert seen["credentialed"] == FAILED_TO_FETCH
    assert daemon.stop() == 0
