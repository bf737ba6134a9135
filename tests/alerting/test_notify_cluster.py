"""Notifications from three daemons sharing one KurrentDB (the stand-in): each transition told once.

Three real daemon processes with ``[cluster]`` (one replica per service, so one of them probes the
target) and the same channels: every one of them folds the transition and plans its notification,
the claim decides who sends. What counts is what the receivers saw — every request, raw, and the
ones a receiver honouring the ``Idempotency-Key`` accepts — and the raw events in the store.
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.alerting.receivers import (
    AlertmanagerProcess,
    ReceivedRequest,
    Target,
    WebhookReceiver,
    require_alertmanager,
)
from tests.conftest import DaemonProcess, get_json
from tests.kurrentdb_standin import ThreadedStandIn
from tests.polling import wait_until

INSTANCES = ("n1", "n2", "n3")
LEASE_SECONDS = 2
CHANNEL = "hook"


@pytest.fixture
def steady() -> Iterator[Target]:
    """The other services' target: never taken down."""
    server = Target().start()
    yield server
    server.stop()


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(path="/hook", honours_keys=True) as receiver:
        yield receiver


def _config(target: Target, steady: Target, hook: WebhookReceiver, extra_channels: str = "") -> str:
    """``web`` on ``target``, two more services sharing the work on ``steady``; one webhook."""
    others = "".join(
        f'[services.{name}]\nkind = "http"\nurl = "http://127.0.0.1:{steady.port}/{name}"\n'
        for name in ("api", "shop")
    )
    return (
        "[scheduler]\njitter_seconds = 0\n"
        "[defaults]\ninterval_seconds = 0.5\ntimeout_seconds = 0.4\nfailures_before_down = 1\n"
        "[cluster]\nreplicas = 1\nheartbeat_seconds = 0.2\nmember_ttl_seconds = 1.0\n"
        f"[alerting]\nlease_seconds = {LEASE_SECONDS}\n"
        f'[services.web]\nkind = "http"\nurl = "http://127.0.0.1:{target.port}/web"\n'
        + others
        + f'[notifications.{CHANNEL}]\nkind = "webhook"\nurl = "{hook.url}"\n'
        + "timeout_seconds = 1.5\n"  # shorter than the lease, as the config requires
        + extra_channels
    )


def _alive(daemon: DaemonProcess) -> list[str]:
    members = get_json(f"{daemon.url}/health/comprehensive")["members"]
    return sorted(m["instance"] for m in members if m["alive"])


def _web_status(daemon: DaemonProcess) -> str:
    return str(get_json(f"{daemon.url}/uptime/service/web?hours=1")["status"])


def _cluster(
    factory: Callable[..., DaemonProcess], standin: ThreadedStandIn, body: str
) -> dict[str, DaemonProcess]:
    """Three members, each seeing the others, each notifier running, ``web`` folded as up."""
    daemons = {
        name: factory(body, env={"KURRENTDB_URL": standin.url, "UPTIME_INSTANCE": name})
        for name in INSTANCES
    }
    wait_until(
        lambda: all(_alive(d) == list(INSTANCES) for d in daemons.values()),
        within=20,
        what="every member seeing all three",
    )
    for daemon in daemons.values():
        daemon.wait_for_log(lambda e: e.get("event") == "notifier_started")
    wait_until(
        lambda: all(_web_status(d) == "up" for d in daemons.values()),
        within=15,
        what="web up on every member",
    )
    return daemons


def _of(requests: list[ReceivedRequest], event: str) -> list[ReceivedRequest]:
    return [
        r
        for r in requests
        if isinstance(r.json, dict) and r.json["service"] == "web" and r.json["event"] == event
    ]


def _stream(body: dict[str, Any]) -> str:
    """The documented notification stream name of a webhook body."""
    millis = round(datetime.fromisoformat(body["at"]).timestamp() * 1000)
    return f"system-notification-{body['service']}-{millis}-{body['event']}-{body['channel']}"


def _recorded(standin: ThreadedStandIn, stream: str) -> list[tuple[str, dict[str, Any]]]:
    return [(r.type, orjson.loads(r.data)) for r in standin.records(stream)]


def _delivered(standin: ThreadedStandIn, stream: str) -> list[tuple[str, dict[str, Any]]]:
    found = _recorded(standin, stream)
    return found if found and found[-1][0] == "NotificationDelivered" else []


def _said(event: str, stream: str) -> Callable[[dict[str, Any]], bool]:
    """A daemon log line of ``event`` about ``stream``."""
    return lambda entry: entry.get("event") == event and entry.get("stream") == stream


# --- 1. nothing goes wrong: once each, and Alertmanager agrees ----------------------------------


def _alertmanager_notifications(receiver: WebhookReceiver, status: str) -> list[dict[str, Any]]:
    return [b for b in receiver.bodies() if isinstance(b, dict) and b["status"] == status]


@pytest.mark.system
def test_three_daemons_tell_an_outage_once_and_alertmanager_fires_and_resolves_once(
    daemon_factory: Callable[..., DaemonProcess],
    standin: ThreadedStandIn,
    target: Target,
    steady: Target,
    hook: WebhookReceiver,
    tmp_path: Path,
) -> None:
    """Down then up with three daemons: the webhook gets one ``down`` and one ``up``, raw.

    The same transitions pushed into the real Alertmanager: one alert while down, one firing and
    one resolved notification out of it.
    """
    require_alertmanager()
    with (
        WebhookReceiver(path="/alertmanager") as am_hook,
        AlertmanagerProcess(am_hook.url, tmp_path) as alertmanager,
    ):
        channel = (
            f'[notifications.am]\nkind = "alertmanager"\nurl = "{alertmanager.url}"\n'
            "timeout_seconds = 1.5\n"
        )
        daemons = _cluster(daemon_factory, standin, _config(target, steady, hook, channel))

        target.stop()
        [down] = wait_until(lambda: _of(hook.requests, "down"), within=15, what="down told")
        [alert] = wait_until(alertmanager.alerts, within=10, what="the alert in Alertmanager")
        assert alert["labels"]["service"] == "web"
        assert alert["labels"]["alertname"] == "UptimeServiceDown"
        assert alert["status"]["state"] == "active"
        [firing] = wait_until(
            lambda: _alertmanager_notifications(am_hook, "firing"), within=15, what="firing"
        )
        assert [a["labels"]["service"] for a in firing["alerts"]] == ["web"]

        target.start()
        [up] = wait_until(lambda: _of(hook.requests, "up"), within=15, what="up told")
        [resolved] = wait_until(
            lambda: _alertmanager_notifications(am_hook, "resolved"), within=15, what="resolved"
        )
        assert [(a["labels"]["service"], a["status"]) for a in resolved["alerts"]] == [
            ("web", "resolved")
        ]
        wait_until(lambda: alertmanager.alerts() == [], within=10, what="no alert left")
        for body in (down, up):
            for stream in (_stream(body.json), _stream({**body.json, "channel": "am"})):
                wait_until(functools.partial(_delivered, standin, stream), within=10, what=stream)
        assert len(_alertmanager_notifications(am_hook, "firing")) == 1, "none in between"
        assert len(_alertmanager_notifications(am_hook, "resolved")) == 1

    assert [r.json["event"] for r in hook.requests] == ["down", "up"], "raw: once each"
    assert hook.duplicates() == [], "nothing was killed: not even a repeat"
    assert len(hook.accepted()) == 2
    assert len(set(hook.keys())) == 2
    assert up.json["resolves"] == [{"event": "down", "at": down.json["at"]}]
    claims = [
        data["by"]
        for body in (down, up)
        for kind, data in _recorded(standin, _stream(body.json))
        if kind == "NotificationClaimed"
    ]
    assert len(claims) == 2, "one claim per notification: the others watched"
    for daemon in daemons.values():
        assert daemon.stop() == 0


# --- 2. the sender dies between claim and delivery ---------------------------------------------------


def test_a_sender_killed_mid_delivery_is_taken_over_and_the_key_is_accepted_once(
    daemon_factory: Callable[..., DaemonProcess],
    standin: ThreadedStandIn,
    target: Target,
    steady: Target,
    hook: WebhookReceiver,
) -> None:
    """SIGKILL the daemon holding the claim while the receiver holds its request.

    Another member takes the claim over once the lease has run out and sends the same message
    under the same key: the receiver accepts that key once (the repeat is a duplicate it drops).
    """
    daemons = _cluster(daemon_factory, standin, _config(target, steady, hook))
    hook.stall()
    target.stop()
    [stuck] = wait_until(lambda: _of(hook.requests, "down"), within=15, what="a down in flight")
    stream = _stream(stuck.json)
    claims = [data for kind, data in _recorded(standin, stream) if kind == "NotificationClaimed"]
    assert [c["by"] for c in claims] == [stuck.json["sentBy"]], "its sender holds the one claim"
    victim = daemons.pop(stuck.json["sentBy"])
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=10)
    hook.resume()

    recorded = wait_until(lambda: _delivered(standin, stream), within=LEASE_SECONDS + 15)
    [(_, delivered)] = [(k, d) for k, d in recorded if k == "NotificationDelivered"]
    taker = daemons[delivered["by"]]
    # Its log lines reach us through a pipe, read by another thread: a moment after the store has
    # the event (CI once read them before the line came). wait_for_log fails if they never come.
    for said in ("notification_taken_over", "notification_delivered"):  # it took over, delivered
        taker.wait_for_log(_said(said, stream), timeout=10)
    assert [kind for kind, _ in recorded] == [
        "NotificationClaimed",
        "NotificationClaimed",
        "NotificationDelivered",
    ]
    assert recorded[1][1]["by"] == delivered["by"] != stuck.json["sentBy"]

    downs = _of(hook.requests, "down")
    repeats = _of(hook.duplicates(), "down")
    assert len(downs) == 1, "accepted once"
    assert len(repeats) == 1, "sent again once, by the one member whose takeover claim won"
    assert {r.key for r in downs + repeats} == {stuck.key}, "one key for every attempt"
    assert repeats[0].json == {**stuck.json, "sentBy": delivered["by"]}, "the very same message"

    target.start()
    [up] = wait_until(lambda: _of(hook.requests, "up"), within=15, what="up told")
    wait_until(lambda: _delivered(standin, _stream(up.json)), within=10)
    assert up.json["resolves"] == [{"event": "down", "at": stuck.json["at"]}]
    assert _of(hook.duplicates(), "up") == []
    for daemon in daemons.values():
        assert daemon.stop() == 0


# --- 3. the store is down when the outage begins -----------------------------------------------------


def _saw_web_down(daemon: DaemonProcess) -> bool:
    return any(
        e.get("event") == "service_status_changed"
        and e.get("service") == "web"
        and e.get("status") == "down"
        for e in daemon.lines
    )


def test_a_transition_during_a_store_outage_is_told_once_when_the_store_is_back(
    daemon_factory: Callable[..., DaemonProcess],
    standin: ThreadedStandIn,
    target: Target,
    steady: Target,
    hook: WebhookReceiver,
) -> None:
    """Store stopped, target down meanwhile, store back: the late ``down`` is delivered, once.

    The store stays away until every member has lost sight of the others and seen ``web`` down
    itself (each side goes on alone): three spools hold the outage when the store comes back (the
    same slot written twice is deduplicated by its event id, so which of them lands varies).
    """
    daemons = _cluster(daemon_factory, standin, _config(target, steady, hook))
    standin.stop()
    target.stop()
    wait_until(
        lambda: all(_saw_web_down(d) for d in daemons.values()),
        within=15,
        what="every member, alone, seeing web down while the store is away",
    )
    assert hook.requests == [], "nothing can be claimed while the store is down"

    standin.start()
    [down] = wait_until(lambda: _of(hook.requests, "down"), within=20, what="the late down")
    wait_until(lambda: _delivered(standin, _stream(down.json)), within=10)
    target.start()
    [up] = wait_until(lambda: _of(hook.requests, "up"), within=20, what="its end")
    wait_until(lambda: _delivered(standin, _stream(up.json)), within=10)
    assert [r.json["event"] for r in hook.requests] == ["down", "up"], "raw: once each"
    assert hook.duplicates() == []
    assert up.json["resolves"] == [{"event": "down", "at": down.json["at"]}]
    for daemon in daemons.values():
        assert daemon.stop() == 0
