"""Real notification receivers on 127.0.0.1: a webhook, an SMTP server and the real Alertmanager.

Each one runs on its own thread (or as its own process), never on a test's event loop, so sync
tests, async tests and end-to-end tests of the whole daemon can all use them. Everything they saw is
kept for assertions, behind a lock, and handed out as copies.
"""

from __future__ import annotations

import email.policy
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, cast

import orjson
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.conftest import free_port
from tests.polling import wait_until

ALERTMANAGER: Final = Path("/usr/bin/prometheus-alertmanager")
ALERTMANAGER_PACKAGE: Final = "prometheus-alertmanager"
_NO_BODY_STATUSES: Final = frozenset({204, 304})


# --- webhook ----------------------------------------------------------------------------------


class _Running:
    """``with receiver:`` starts it and stops it (subclasses define ``start``/``stop``)."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One POST as the webhook receiver saw it."""

    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes
    json: Any
    """The parsed body; ``None`` when it is not JSON."""
    at: datetime
    status: int
    """What it was answered (decided on arrival: a stalled request counts as answered)."""

    @property
    def key(self) -> str | None:
        """Its ``Idempotency-Key`` header."""
        return self.headers.get("idempotency-key")


class _WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, receiver: WebhookReceiver) -> None:
        super().__init__(("127.0.0.1", port), _WebhookHandler)
        self.receiver = receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A sender that gave up (timed out) before its answer is normal here: no traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _WebhookHandler(BaseHTTPRequestHandler):
    server: _WebhookServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        status = self.server.receiver._record(self.path, headers, body)
        self.server.receiver._wait_while_stalled()
        self.send_response(status)
        if status in _NO_BODY_STATUSES:
            self.end_headers()
            return
        payload = b"ok" if status < 300 else f"failing on purpose ({status})".encode()
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """Quiet: the test asserts on what was recorded."""


class WebhookReceiver(_Running):
    """A stdlib HTTP server on a thread that records every POST and answers as told.

    ``stop()`` then ``start()`` listens on the same port again (a receiver that goes down and comes
    back). With ``honours_keys`` a repeated ``Idempotency-Key`` of an accepted request is answered
    200 and kept apart, in ``duplicates()``, as a receiver that honours the key would drop it.
    """

    def __init__(self, *, path: str = "/", port: int = 0, honours_keys: bool = False) -> None:
        self.path = path
        self._port = port
        self.honours_keys = honours_keys
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._duplicates: list[ReceivedRequest] = []
        self._accepted_keys: set[str] = set()
        self._status = 200
        self._failures: list[int] = []
        self._released = threading.Event()
        self._released.set()
        self._server: _WebhookServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> Self:
        """Listen (on the port of the previous start, if any); returns at once, ready."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._server = _WebhookServer(self._port, self)
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how soon stop() is noticed
            name="webhook-receiver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; stalled requests are released. Recorded requests are kept."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        self._server = self._thread = None

    @property
    def port(self) -> int:
        """The port it listens on (chosen at the first ``start()``)."""
        if not self._port:
            raise RuntimeError("not started yet: the port is chosen by the first start()")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` plus the receiver's path."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    # behaviour

    def respond_with(self, status: int) -> None:
        """What POSTs are answered from now on (default 200)."""
        with self._lock:
            self._status = status

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` POSTs with ``status``, then as ``respond_with`` says."""
        with self._lock:
            self._failures.extend([status] * n)

    def stall(self) -> None:
        """Hold every answer from now on (the request is recorded; the sender waits) until ``resume()``."""
        self._released.clear()

    def resume(self) -> None:
        """Answer held and new requests again."""
        self._released.set()

    # what it saw

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every POST so far (duplicates of a key it honours excepted), in arrival order."""
        with self._lock:
            return list(self._requests)

    def bodies(self) -> list[Any]:
        """The parsed JSON bodies of ``requests``."""
        return [request.json for request in self.requests]

    def keys(self) -> list[str]:
        """The ``Idempotency-Key`` values of ``requests``, in arrival order."""
        return [request.key for request in self.requests if request.key is not None]

    def distinct_keys(self) -> list[str]:
        """``keys()`` without repeats, in order of first arrival."""
        return list(dict.fromkeys(self.keys()))

    def accepted(self) -> list[ReceivedRequest]:
        """The ``requests`` answered 2xx."""
        return [r for r in self.requests if 200 <= r.status < 300]

    def duplicates(self) -> list[ReceivedRequest]:
        """With ``honours_keys``: requests whose key was already accepted (answered 200, dropped)."""
        with self._lock:
            return list(self._duplicates)

    # called by the handler threads

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = None
        key = headers.get("idempotency-key")
        with self._lock:
            if self.honours_keys and key is not None and key in self._accepted_keys:
                self._duplicates.append(
                    ReceivedRequest(path, headers, body, document, datetime.now(UTC), 200)
                )
                return 200
            status = self._failures.pop(0) if self._failures else self._status
            if key is not None and 200 <= status < 300:
                self._accepted_keys.add(key)
            self._requests.append(
                ReceivedRequest(path, headers, body, document, datetime.now(UTC), status)
            )
            return status

    def _wait_while_stalled(self) -> None:
        self._released.wait()


# --- SMTP -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message as the SMTP receiver accepted it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    tls: bool
    """Whether the session was encrypted (STARTTLS or implicit TLS) when the message came."""
    login: str | None
    """The user the session authenticated as."""


def server_tls_context(ca: trustme.CA, *hosts: str) -> ssl.SSLContext:
    """A server-side context with a certificate from ``ca`` for ``hosts`` (default loopback)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(hosts or ("127.0.0.1", "localhost"))).configure_cert(context)
    return context


class _SmtpHandler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self.receiver.refuse.get(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        parsed = BytesParser(policy=email.policy.default).parsebytes(content)
        auth: object = session.auth_data  # typed None by aiosmtpd; a LoginPassword once logged in
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=parsed,
            tls=server.transport is not None
            and server.transport.get_extra_info("ssl_object") is not None,
            login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
        )
        with self.receiver._lock:
            self.receiver._messages.append(mail)
        return "250 Message accepted for delivery"


class SmtpReceiver(_Running):
    """aiosmtpd's ``Controller`` (its own thread and loop) on a free loopback port.

    ``tls_context`` offers STARTTLS (or, with ``implicit_tls``, wraps the connection from the first
    byte, as ``smtps://``); ``require_starttls`` refuses mail before it. ``auth`` is the one
    ``(username, password)`` accepted; with ``auth_require_tls`` (aiosmtpd's default) AUTH is offered
    only over TLS. ``refuse`` maps a recipient address to the reply it gets (``"550 5.1.1 no such
    user"``). Every AUTH attempt is kept in ``logins`` as ``(username, accepted)``.
    """

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        require_starttls: bool = False,
        auth: tuple[str, str] | None = None,
        auth_require_tls: bool = True,
        refuse: Mapping[str, str] | None = None,
    ) -> None:
        if implicit_tls and tls_context is None:
            raise ValueError("implicit_tls needs a tls_context")
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.require_starttls = require_starttls
        self.auth = auth
        self.auth_require_tls = auth_require_tls
        self.refuse = dict(refuse or {})
        self.port = free_port()
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._logins: list[tuple[str, bool]] = []
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        """``smtp://127.0.0.1:PORT`` (``smtps://`` with ``implicit_tls``)."""
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Listen; returns once the server answers."""
        options: dict[str, Any] = {
            "hostname": "127.0.0.1",
            "port": self.port,
            "server_hostname": "smtp.test",
            "auth_require_tls": self.auth_require_tls,
        }
        if self.implicit_tls:
            options["ssl_context"] = self.tls_context
        elif self.tls_context is not None:
            options |= {"tls_context": self.tls_context, "require_starttls": self.require_starttls}
        if self.auth is not None:
            options["authenticator"] = self._authenticate
        self._controller = Controller(_SmtpHandler(self), **options)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening; received messages are kept."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[ReceivedMail]:
        """Every accepted message, in arrival order."""
        with self._lock:
            return list(self._messages)

    @property
    def logins(self) -> list[tuple[str, bool]]:
        """Every AUTH attempt: ``(username, accepted)``."""
        with self._lock:
            return list(self._logins)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.auth is None:
            return AuthResult(success=False, handled=False)
        username, password = auth_data.login.decode(), auth_data.password.decode()
        accepted = (username, password) == self.auth
        with self._lock:
            self._logins.append((username, accepted))
        return AuthResult(success=accepted, handled=False, auth_data=auth_data)


# --- Alertmanager -----------------------------------------------------------------------------


def require_alertmanager() -> Path:
    """The Alertmanager binary, or skip the test naming the Debian package that provides it."""
    if not ALERTMANAGER.is_file():
        pytest.skip(f"needs {ALERTMANAGER} (Debian package {ALERTMANAGER_PACKAGE})")
    return ALERTMANAGER


class AlertmanagerProcess(_Running):
    """The real Alertmanager (Debian's binary), routing every alert to one webhook URL.

    Alerts are grouped by ``alertname`` and ``service`` and flushed after 1 s, so a test sees a
    notification within about a second; resolved alerts are sent too. No clustering (no gossip
    port). Its log goes to ``alertmanager.log`` in ``directory``.
    """

    def __init__(self, webhook_url: str, directory: Path) -> None:
        self.webhook_url = webhook_url
        self.directory = directory
        self.port = free_port()
        self.log_path = directory / "alertmanager.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the base URL an ``alertmanager`` channel is given."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, within: float = 20.0) -> Self:
        """Write the config, start the process and wait for ``/-/ready``."""
        binary = require_alertmanager()
        config = {
            "route": {
                "receiver": "hook",
                "group_by": ["alertname", "service"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "hook",
                    "webhook_configs": [{"url": self.webhook_url, "send_resolved": True}],
                }
            ],
        }
        config_path = self.directory / "alertmanager.yml"
        config_path.write_bytes(orjson.dumps(config))  # JSON is YAML
        storage = self.directory / "alertmanager-data"
        storage.mkdir(exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    str(binary),
                    f"--config.file={config_path}",
                    f"--storage.path={storage}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(self._ready, within=within, what="Alertmanager answering /-/ready")
        except AssertionError:
            self.stop()
            log_text = self.log_path.read_text(errors="replace")[-2000:]
            raise AssertionError(
                f"Alertmanager did not become ready; its log:\n{log_text}"
            ) from None
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate; kill it if it has not exited within ``timeout`` seconds."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def alerts(self) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: the alerts it holds that have not ended (resolved ones drop out)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as response:  # noqa: S310 - a loopback URL we built
            return cast("list[dict[str, Any]]", orjson.loads(response.read()))

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise AssertionError(f"Alertmanager exited with {self._proc.returncode}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:  # noqa: S310 - a loopback URL we built
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False


class Target(_Running):
    """A loopback HTTP target: 200 on every path, 503 on the ``failing`` ones.

    ``stop()`` then ``start()`` listens on the same port again (the target process dies and comes
    back: connection refused meanwhile). It also counts GETs per path, so it doubles as the
    heartbeat receiver.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.failing: set[str] = set()
        self._lock = threading.Lock()
        self._gets: list[tuple[str, datetime]] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Self:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with target._lock:
                    target._gets.append((self.path, datetime.now(UTC)))
                    status = 503 if self.path in target.failing else 200
                body = b"ok" if status == 200 else b"failing on purpose"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                """Quiet."""

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self._server = server
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def gets(self, path: str) -> list[datetime]:
        with self._lock:
            return [at for p, at in self._gets if p == path]
