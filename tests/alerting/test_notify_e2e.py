"""Notifications end to end: one real daemon (SQLite), real targets and real receivers on loopback.

Every figure is what a receiver saw (webhook requests, SMTP messages, heartbeat GETs) or what the
log says through the daemon's read API (the notification streams, ``/uptime``, ``/metrics``):
nothing is read from the notifier itself.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from tests.alerting.receivers import SmtpReceiver, Target, WebhookReceiver
from tests.conftest import DaemonProcess, get_json
from tests.polling import wait_until

INTERVAL_SECONDS = 0.5
CHANNEL = "hook"
RECIPIENT = "oncall@example.test"


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(path="/hook") as receiver:
        yield receiver


def _config(target: Target, channels: str, services: str = "", extra: str = "") -> str:
    return (
        "[scheduler]\njitter_seconds = 0\n"
        f"[defaults]\ninterval_seconds = {INTERVAL_SECONDS}\ntimeout_seconds = 0.4\n"
        "failures_before_down = 1\n"
        + (services or f'[services.web]\nkind = "http"\nurl = "{target.url("/web")}"\n')
        + channels
        + extra
    )


def _webhook(receiver: WebhookReceiver, **options: object) -> str:
    lines = "".join(f"{key} = {_toml(value)}\n" for key, value in options.items())
    return f'[notifications.{CHANNEL}]\nkind = "webhook"\nurl = "{receiver.url}"\n{lines}'


def _toml(value: object) -> str:
    return orjson.dumps(value).decode()


def _changed_to(status: str, service: str = "web") -> Callable[[dict[str, Any]], bool]:
    return lambda e: (
        e.get("event") == "service_status_changed"
        and e.get("service") == service
        and e.get("status") == status
    )


def _start(factory: Callable[..., DaemonProcess], body: str, *services: str) -> DaemonProcess:
    """A daemon whose notifier runs and whose services were seen up once."""
    daemon = factory(body)
    daemon.wait_for_log(lambda e: e.get("event") == "notifier_started")
    for service in services or ("web",):
        daemon.wait_for_log(_changed_to("up", service))
    return daemon


def _stream_events(daemon: DaemonProcess, stream: str) -> list[dict[str, Any]]:
    """A stream's events through ``GET /streams/{name}/events`` (``[]`` while it does not exist)."""
    try:
        found = get_json(f"{daemon.url}/streams/{stream}/events?limit=1000")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # not written yet
            return []
        raise
    return list(found["events"])


def _transitions(daemon: DaemonProcess, service: str) -> list[dict[str, Any]]:
    """The service's status changes as stored (``ServiceStatusChanged`` with ``changed``)."""
    return [
        e["data"]
        for e in _stream_events(daemon, f"service-uptime-{service}")
        if e["eventType"] == "ServiceStatusChanged" and e["data"]["changed"]
    ]


def _latest(daemon: DaemonProcess, status: str, service: str = "web") -> dict[str, Any]:
    """The service's latest stored status change, once it is one to ``status``."""

    def stored() -> dict[str, Any]:
        found = _transitions(daemon, service)
        return found[-1] if found and found[-1]["status"] == status else {}

    return wait_until(stored, within=10, what=f"{service} stored as {status}")


def _outage(daemon: DaemonProcess, service: str = "web") -> tuple[dict[str, Any], dict[str, Any]]:
    """The service's latest stored outage: its change to ``down`` and the change back to ``up``."""

    def stored() -> list[dict[str, Any]]:
        found = _transitions(daemon, service)[-2:]
        return found if [t["status"] for t in found] == ["down", "up"] else []

    went_down, came_back = wait_until(stored, within=10, what=f"{service}'s outage stored")
    return went_down, came_back


def _millis(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def _notification_stream(service: str, at: str, kind: str, channel: str = CHANNEL) -> str:
    """The documented name: ``system-notification-{service}-{at ms}-{kind}-{channel}``."""
    return f"system-notification-{service}-{_millis(at)}-{kind}-{channel}"


def _settled(daemon: DaemonProcess, stream: str) -> list[dict[str, Any]]:
    """The stream's events once it holds an outcome (polling helper: ``[]`` until then)."""
    found = _stream_events(daemon, stream)
    outcomes = {"NotificationDelivered", "NotificationSuppressed", "NotificationAbandoned"}
    return found if any(e["eventType"] in outcomes for e in found) else []


def _of(receiver: WebhookReceiver, event: str, service: str = "web") -> list[dict[str, Any]]:
    return [
        body
        for body in receiver.bodies()
        if isinstance(body, dict) and body["event"] == event and body["service"] == service
    ]


def _delivered(daemon: DaemonProcess, key: str) -> Callable[[], bool]:
    """Whether the daemon logged the delivery of ``key`` (it logs after the receiver answered)."""
    return lambda: any(
        e.get("event") == "notification_delivered" and e.get("key") == key for e in daemon.lines
    )


def _checks_after(daemon: DaemonProcess, n: int, service: str = "web") -> Callable[[], bool]:
    """``n`` more checks of ``service`` completed from now on: the daemon kept going meanwhile."""
    start = len(daemon.lines)
    return lambda: (
        sum(
            1
            for e in daemon.lines[start:]
            if e.get("event") == "probe_completed" and e.get("service") == service
        )
        >= n
    )


def _metrics(daemon: DaemonProcess) -> str:
    with urllib.request.urlopen(f"{daemon.url}/metrics", timeout=10) as response:  # noqa: S310 - loopback
        return str(response.read().decode())


def _request(daemon: DaemonProcess, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """``method path`` with ``body`` as JSON (none at all when ``None``, as the README's curl)."""
    request = urllib.request.Request(  # noqa: S310 - a loopback URL the test built
        f"{daemon.url}{path}",
        data=None if body is None else orjson.dumps(body),
        method=method,
        headers={} if body is None else {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return int(response.status), orjson.loads(response.read())


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- 1. one outage: one down, one up ------------------------------------------------------------


def test_an_outage_is_told_once_and_its_end_once_with_the_right_fields(
    daemon_factory: Callable[..., DaemonProcess], target: Target, hook: WebhookReceiver
) -> None:
    """Target down then up: exactly one ``down`` then one ``up``, each field as the log says."""
    daemon = _start(daemon_factory, _config(target, _webhook(hook)))

    target.stop()
    [down] = wait_until(lambda: _of(hook, "down"), within=15, what="the down notification")
    target.start()
    [up] = wait_until(lambda: _of(hook, "up"), within=15, what="the up notification")
    wait_until(_delivered(daemon, up["key"]), within=10, what="the up delivery recorded")
    wait_until(_checks_after(daemon, 4), within=10, what="four more checks, all fine")

    assert [body["event"] for body in hook.bodies()] == ["down", "up"]
    assert [r.status for r in hook.requests] == [200, 200]
    keys = hook.keys()
    assert keys == [down["key"], up["key"]], "the Idempotency-Key header is the body's key"
    assert len(set(keys)) == 2
    assert all(uuid.UUID(key).version == 5 for key in keys)

    went_down, came_back = _outage(daemon)
    assert went_down["status"] == "down"
    assert came_back["status"] == "up"
    assert {k: down[k] for k in ("service", "event", "status", "previousStatus", "channel")} == {
        "service": "web",
        "event": "down",
        "status": "down",
        "previousStatus": "up",
        "channel": CHANNEL,
    }
    assert down["at"] == went_down["timestamp"], "when the check that turned it down completed"
    assert down["detail"] == went_down["probe"]["detail"]
    assert down["detail"], "a refused connection says so"
    assert down["resolves"] == []
    assert down["reminder"] == 0
    assert {k: up[k] for k in ("service", "event", "status", "previousStatus")} == {
        "service": "web",
        "event": "up",
        "status": "up",
        "previousStatus": "down",
    }
    assert up["at"] == came_back["timestamp"]
    assert up["detail"] == came_back["probe"]["detail"]
    assert up["resolves"] == [{"event": "down", "at": down["at"]}], "it names the outage it ends"

    # The log keeps the decision: each stream ends delivered, under the key the receiver saw.
    for body in (down, up):
        stream = _notification_stream("web", body["at"], body["event"])
        recorded = _settled(daemon, stream)
        assert [e["eventType"] for e in recorded] == [
            "NotificationClaimed",
            "NotificationDelivered",
        ]
        assert recorded[0]["data"]["key"] == body["key"]
    assert daemon.stop() == 0


# --- 2. an outage shorter than min_down_seconds ---------------------------------------------------


MIN_DOWN_SECONDS = 4.0


def test_an_outage_shorter_than_min_down_seconds_is_suppressed_not_sent(
    daemon_factory: Callable[..., DaemonProcess], target: Target, hook: WebhookReceiver
) -> None:
    """A blip shorter than ``min_down_seconds``: nothing sent; the decision is recorded with why."""
    daemon = _start(
        daemon_factory, _config(target, _webhook(hook, min_down_seconds=MIN_DOWN_SECONDS))
    )

    target.stop()
    daemon.wait_for_log(_changed_to("down"), timeout=10)
    target.start()
    daemon.wait_for_log(_changed_to("up"), timeout=10)
    went_down, came_back = _outage(daemon)
    lasted = _millis(came_back["timestamp"]) - _millis(went_down["timestamp"])
    assert lasted < MIN_DOWN_SECONDS * 1000, "the outage was short (else the test proves nothing)"

    stream = _notification_stream("web", went_down["timestamp"], "down")
    [suppressed] = wait_until(
        lambda: _settled(daemon, stream), within=MIN_DOWN_SECONDS + 10, what=stream
    )
    assert suppressed["eventType"] == "NotificationSuppressed"
    assert "min_down_seconds" in suppressed["data"]["reason"]
    assert hook.requests == [], "nothing reached the receiver"
    # No resolution comes alone: its end is not sent either (nor claimed).
    up_stream = _notification_stream("web", came_back["timestamp"], "up")
    assert [e["eventType"] for e in _stream_events(daemon, up_stream)] in (
        [],
        ["NotificationSuppressed"],
    )
    assert daemon.stop() == 0


# --- 3. depends_on ----------------------------------------------------------------------------------


def test_a_child_of_a_down_parent_is_suppressed_and_gets_no_orphan_resolution(
    daemon_factory: Callable[..., DaemonProcess], target: Target, hook: WebhookReceiver
) -> None:
    """Parent and child down together: the parent is told, the child suppressed naming it.

    Back up: the parent's end is told, the child's is not (it was never announced). A third,
    unrelated service going down afterwards is the fence: the notifier works its jobs in time
    order, so by its delivery the child's resolution was decided.
    """
    services = (
        f'[services.db]\nkind = "http"\nurl = "{target.url("/db")}"\n'
        f'[services.web]\nkind = "http"\nurl = "{target.url("/web")}"\ndepends_on = ["db"]\n'
        f'[services.canary]\nkind = "http"\nurl = "{target.url("/canary")}"\n'
    )
    daemon = _start(
        daemon_factory,
        _config(target, _webhook(hook, min_down_seconds=2), services),
        "db",
        "web",
        "canary",
    )

    target.failing |= {"/db", "/web"}
    [parent_down] = wait_until(lambda: _of(hook, "down", "db"), within=15, what="db down told")
    child_went_down = _latest(daemon, "down")
    child_stream = _notification_stream("web", child_went_down["timestamp"], "down")
    [suppressed] = wait_until(lambda: _settled(daemon, child_stream), within=10, what=child_stream)
    assert suppressed["eventType"] == "NotificationSuppressed"
    assert suppressed["data"]["reason"] == "parent db is down"
    assert parent_down["previousStatus"] == "up"
    assert get_json(f"{daemon.url}/uptime/service/web?hours=1")["suppressedBy"] == ["db"]

    target.failing -= {"/db", "/web"}
    [parent_up] = wait_until(lambda: _of(hook, "up", "db"), within=15, what="db up told")
    daemon.wait_for_log(_changed_to("up", "web"), timeout=10)
    assert parent_up["resolves"] == [{"event": "down", "at": parent_down["at"]}]

    target.failing.add("/canary")
    wait_until(lambda: _of(hook, "down", "canary"), within=15, what="the canary's down told")
    assert [(b["service"], b["event"]) for b in hook.bodies()] == [
        ("db", "down"),
        ("db", "up"),
        ("canary", "down"),
    ], "nothing about web: neither its outage nor an orphan resolution"
    child_came_back = _latest(daemon, "up")
    up_stream = _notification_stream("web", child_came_back["timestamp"], "up")
    assert [e["eventType"] for e in _stream_events(daemon, up_stream)] in (
        [],
        ["NotificationSuppressed"],
    )
    assert daemon.stop() == 0


# --- 4. maintenance now ---------------------------------------------------------------------------


def test_an_outage_inside_a_maintenance_window_is_suppressed(
    daemon_factory: Callable[..., DaemonProcess], target: Target, hook: WebhookReceiver
) -> None:
    """A window covering now (declared through the API): no ``down`` sent, the window named."""
    daemon = _start(daemon_factory, _config(target, _webhook(hook)))
    now = datetime.now(UTC)
    status, window = _request(
        daemon,
        "POST",
        "/maintenance",
        {
            "services": ["web"],
            "start": _iso(now - timedelta(minutes=1)),
            "end": _iso(now + timedelta(minutes=10)),
            "reason": "database upgrade",
        },
    )
    assert status == 201
    assert window["services"] == ["web"]
    assert 'uptime_service_in_maintenance{service="web"} 1.0' in _metrics(daemon)
    assert get_json(f"{daemon.url}/uptime/service/web?hours=1")["inMaintenance"] is True

    target.stop()
    daemon.wait_for_log(_changed_to("down"), timeout=10)
    went_down = _latest(daemon, "down")
    stream = _notification_stream("web", went_down["timestamp"], "down")
    [suppressed] = wait_until(lambda: _settled(daemon, stream), within=10, what=stream)
    assert suppressed["eventType"] == "NotificationSuppressed"
    assert window["id"] in suppressed["data"]["reason"]
    assert "database upgrade" in suppressed["data"]["reason"]
    assert hook.requests == []

    target.start()
    daemon.wait_for_log(_changed_to("up"), timeout=10)
    came_back = _latest(daemon, "up")
    up_stream = _notification_stream("web", came_back["timestamp"], "up")
    wait_until(_checks_after(daemon, 4), within=10, what="four more checks")
    assert hook.requests == [], "no resolution of an outage nobody was told of"
    assert [e["eventType"] for e in _stream_events(daemon, up_stream)] in (
        [],
        ["NotificationSuppressed"],
    )
    assert 'uptime_service_in_maintenance{service="web"} 1.0' in _metrics(daemon)

    status, ended = _request(daemon, "POST", f"/maintenance/{window['id']}/end")
    assert status == 200
    assert ended["endedAt"] is not None
    assert 'uptime_service_in_maintenance{service="web"} 0.0' in _metrics(daemon)
    assert get_json(f"{daemon.url}/uptime/service/web?hours=1")["inMaintenance"] is False
    assert daemon.stop() == 0


# --- 5. maintenance after the fact ------------------------------------------------------------------


def _web(daemon: DaemonProcess) -> dict[str, Any]:
    return dict(get_json(f"{daemon.url}/uptime/service/web?hours=1"))


def test_a_window_declared_after_an_outage_turns_its_downtime_into_maintenance(
    daemon_factory: Callable[..., DaemonProcess], target: Target, hook: WebhookReceiver
) -> None:
    """An outage told, then a past window over it: its downtime is maintenance, its incident gone.

    Cancelling the window brings the downtime and the incident back.
    """
    daemon = _start(daemon_factory, _config(target, _webhook(hook)))
    target.stop()
    [down] = wait_until(lambda: _of(hook, "down"), within=15, what="the down notification")
    wait_until(lambda: _web(daemon)["seconds"]["down"] >= 1.0, within=10, what="a second down")
    target.start()
    [up] = wait_until(lambda: _of(hook, "up"), within=15, what="the up notification")
    outage = (_millis(up["at"]) - _millis(down["at"])) / 1000
    before = _web(daemon)
    assert before["seconds"]["down"] == pytest.approx(outage, abs=0.01)
    assert len(before["incidents"]) == 1
    assert before["seconds"]["maintenance"] == 0

    status, window = _request(
        daemon,
        "POST",
        "/maintenance",
        {"services": ["web"], "start": down["at"], "end": up["at"], "reason": "it was planned"},
    )
    assert status == 201
    after = _web(daemon)  # the answer waited for the fold
    assert after["seconds"]["maintenance"] == pytest.approx(outage, abs=0.01)
    assert after["seconds"]["down"] == pytest.approx(0, abs=0.01)
    assert after["incidents"] == []
    assert after["inMaintenance"] is False, "the window is over"
    assert [w["id"] for w in get_json(f"{daemon.url}/maintenance")["windows"]] == [window["id"]]

    status, _cancelled = _request(daemon, "DELETE", f"/maintenance/{window['id']}")
    assert status == 200
    restored = _web(daemon)
    assert restored["seconds"]["down"] == pytest.approx(outage, abs=0.01)
    assert restored["seconds"]["maintenance"] == 0
    assert len(restored["incidents"]) == 1
    assert len(hook.requests) == 2, "declaring and cancelling a past window sends nothing"
    assert daemon.stop() == 0


# --- 6. the receiver is down for a while ------------------------------------------------------------


def test_a_notification_waits_for_a_receiver_that_is_down_and_arrives_once(
    daemon_factory: Callable[..., DaemonProcess], target: Target, hook: WebhookReceiver
) -> None:
    """Receiver gone when the outage begins: the attempt fails; back on its port: delivered once."""
    daemon = _start(daemon_factory, _config(target, _webhook(hook)))
    hook.stop()
    target.stop()
    failed = daemon.wait_for_log(lambda e: e.get("event") == "notification_failed", timeout=15)
    assert failed["retry_in_seconds"] == 5.0
    assert hook.requests == []

    hook.start()
    [down] = wait_until(lambda: _of(hook, "down"), within=15, what="the retried down")
    wait_until(_delivered(daemon, down["key"]), within=10, what="the delivery recorded")
    delivered = next(
        e
        for e in daemon.lines
        if e.get("event") == "notification_delivered" and e.get("key") == down["key"]
    )
    assert delivered["attempt"] == 2
    target.start()
    [up] = wait_until(lambda: _of(hook, "up"), within=15, what="the up notification")
    wait_until(_delivered(daemon, up["key"]), within=10, what="the up delivery recorded")
    assert hook.keys() == [down["key"], up["key"]], "each once: no repeat of the retried one"
    assert daemon.stop() == 0


# --- 7. email -----------------------------------------------------------------------------------------


def test_email_sends_one_message_per_transition_keyed_by_message_id(
    daemon_factory: Callable[..., DaemonProcess], target: Target
) -> None:
    """Plain SMTP (no TLS offered): one message per transition, the key in its ``Message-ID``."""
    with SmtpReceiver() as smtp:
        channel = (
            f'[notifications.mail]\nkind = "email"\nurl = "{smtp.url}"\n'
            f'to = ["{RECIPIENT}"]\nfrom = "uptime@example.test"\n'
        )
        daemon = _start(daemon_factory, _config(target, channel))
        target.stop()
        wait_until(lambda: len(smtp.messages) == 1, within=15, what="the down email")
        target.start()
        wait_until(lambda: len(smtp.messages) == 2, within=15, what="the up email")
        wait_until(_checks_after(daemon, 4), within=10, what="four more checks")
        down, up = smtp.messages
    assert len(smtp.messages) == 2
    assert [m.message["Subject"] for m in (down, up)] == [
        "[uptime] web is DOWN",
        "[uptime] web is UP again",
    ]
    keys = []
    for mail in (down, up):
        assert mail.rcpt_tos == (RECIPIENT,)
        assert mail.mail_from == "uptime@example.test"
        assert mail.tls is False
        key = mail.message["X-Uptime-Idempotency-Key"]
        assert mail.message["Message-ID"] == f"<{key}@uptime-daemon>"
        assert uuid.UUID(key).version == 5
        keys.append(key)
    assert keys[0] != keys[1]
    went_down, came_back = _outage(daemon)
    assert f"At: {went_down['timestamp']}" in down.message.get_content()
    assert f"At: {came_back['timestamp']}" in up.message.get_content()
    assert daemon.stop() == 0


# --- 8. outgoing heartbeat --------------------------------------------------------------------------


def test_the_outgoing_heartbeat_pings_while_ready(
    daemon_factory: Callable[..., DaemonProcess], target: Target
) -> None:
    """``[alerting] heartbeat_url``: GETs arrive every ``heartbeat_seconds`` while the daemon is ready."""
    daemon = _start(
        daemon_factory,
        _config(
            target,
            "",
            extra=f'[alerting]\nheartbeat_url = "{target.url("/ping")}"\nheartbeat_seconds = 0.5\n',
        ),
    )
    assert get_json(f"{daemon.url}/health/ready")["ready"] is True

    def four_pings() -> list[datetime]:
        found = target.gets("/ping")
        return found if len(found) >= 4 else []

    pings = wait_until(four_pings, within=15, what="four heartbeat GETs")
    spread = (pings[3] - pings[0]).total_seconds()
    assert 1.0 <= spread < 5.0, "about one every half second: neither a burst nor a stall"
    assert not [e for e in daemon.lines if e.get("event") == "heartbeat_failed"]
    assert daemon.stop() == 0


# --- 9. a restart while a delivery is in flight -------------------------------------------------


def test_a_notification_in_flight_at_shutdown_is_delivered_after_the_restart(
    daemon_factory: Callable[..., DaemonProcess], target: Target, hook: WebhookReceiver
) -> None:
    """SIGTERM while the receiver holds the ``down`` (and will refuse it): the restart sends it.

    README: the notifier "keeps its own checkpoint …, so a restart resumes where it stopped". The
    restarted daemon finds its own old claim, lets its (1 s) lease run out and takes it over.
    """
    body = _config(
        target, _webhook(hook, timeout_seconds=0.5), extra="[alerting]\nlease_seconds = 1\n"
    )
    daemon = _start(daemon_factory, body)
    hook.respond_with(503)  # decided on arrival: the held request will not count as accepted
    hook.stall()
    target.stop()
    [held] = wait_until(lambda: _of(hook, "down"), within=15, what="the down in flight")
    assert daemon.stop() == 0
    hook.respond_with(200)
    hook.resume()

    restarted = daemon_factory(body)
    restarted.wait_for_log(lambda e: e.get("event") == "notifier_started")
    accepted = wait_until(
        lambda: [r for r in hook.accepted() if r.key == held["key"]],
        within=10,
        what="the down delivered after the restart",
    )
    assert len(accepted) == 1
    assert accepted[0].json == held
    assert restarted.stop() == 0
