"""``/uptime/summary`` kept ready: one body, gzipped and tagged, rebuilt off the request path."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from openapi_spec_validator import validate

from tests.api.helpers import Client, TargetState
from tests.api.test_summary_cache import START, Monotonic, check, history, settings
from tests.polling import until
from uptime_daemon.api import models, openapi_document, views
from uptime_daemon.api.endpoint import accepts_gzip
from uptime_daemon.api.summary_cache import (
    FRAGMENT_SHARE,
    REFRESH_SHARE,
    SERVE_SHARE,
    Answer,
    SummaryCache,
    part_expiry,
)
from uptime_daemon.clock import SystemClock
from uptime_daemon.config.load import settings_from_mapping
from uptime_daemon.config.model import Settings
from uptime_daemon.daemon import build_app
from uptime_daemon.projector.fold import ProjectionState
from uptime_daemon.status import Status

MAX_AGE = 60.0
NOW = START + timedelta(hours=1)


def expected(config: Settings, state: ProjectionState, now: datetime) -> bytes:
    """What the handler answered before the cache: the model's serialization at ``now``."""
    services = [
        views.service_uptime(config, state, name, hours=2, now=now)
        for name in views.service_names(config, state)
    ]
    return (
        models.UptimeSummary(
            generated_at=now,
            hours=2,
            status=views.overall([s.status for s in services]),
            services=services,
        )
        .model_dump_json(by_alias=True)
        .encode()
    )


def checks_of(answer: Answer, name: str) -> int:
    (service,) = [s for s in orjson.loads(answer.body)["services"] if s["service"] == name]
    return int(service["checks"]["total"])


# --- the cache, on a clock the test moves ---------------------------------------------------------


async def test_a_first_answer_is_the_models_serialization_and_its_gzip_the_same_bytes() -> None:
    config, state = settings(3, MAX_AGE), history(3)
    answer = await SummaryCache(monotonic=Monotonic()).answer(config, state, hours=2, now=NOW)
    assert answer.body == expected(config, state, NOW)
    assert gzip.decompress(answer.gzipped) == answer.body
    assert len(answer.gzipped) < len(answer.body) / 4
    assert answer.etag(gzipped=False) == f'"{answer.digest}"'
    assert answer.etag(gzipped=True) == f'"{answer.digest}-gzip"'


async def test_max_age_zero_answers_exactly_at_now_every_time() -> None:
    config, state = settings(2, 0), history(2)
    cache = SummaryCache(monotonic=Monotonic())
    for now in (NOW, NOW + timedelta(seconds=7)):
        answer = await cache.answer(config, state, hours=2, now=now)
        assert answer.body == expected(config, state, now)
    assert cache.encoded == 2


async def test_a_young_answer_is_served_as_it_is() -> None:
    config, state, clock = settings(3, MAX_AGE), history(3), Monotonic()
    cache = SummaryCache(monotonic=clock)
    first = await cache.answer(config, state, hours=2, now=NOW)
    check(state, "s0", NOW, Status.DOWN)
    clock.value += MAX_AGE * REFRESH_SHARE - 0.01
    assert await cache.answer(config, state, hours=2, now=NOW) is first
    assert cache.encoded == 1


async def test_an_older_answer_is_served_while_one_rebuild_runs_in_the_background() -> None:
    """Past ``B / 16`` the previous answer goes out at once; the rebuild's shows soon after."""
    config, state, clock = settings(3, MAX_AGE), history(3), Monotonic()
    cache = SummaryCache(monotonic=clock)
    first = await cache.answer(config, state, hours=2, now=NOW)
    check(state, "s0", NOW, Status.DOWN)
    clock.value += MAX_AGE * REFRESH_SHARE
    later = NOW + timedelta(seconds=MAX_AGE * REFRESH_SHARE)
    served = [await cache.answer(config, state, hours=2, now=later) for _ in range(3)]
    assert all(answer is first for answer in served)

    async def rebuilt() -> Answer | None:
        answer = await cache.answer(config, state, hours=2, now=later)
        return answer if answer.digest != first.digest else None

    fresh = await until(rebuilt, what="the rebuilt answer")
    assert fresh is not None
    assert checks_of(fresh, "s0") == checks_of(first, "s0") + 1
    assert cache.encoded == 2  # one rebuild for all those requests
    assert gzip.decompress(fresh.gzipped) == fresh.body


async def test_no_answer_older_than_a_quarter_of_max_age_is_served() -> None:
    """Past ``B / 4`` a request waits for the rebuild: a new check shows within that bound."""
    config, state, clock = settings(3, MAX_AGE), history(3), Monotonic()
    cache = SummaryCache(monotonic=clock)
    first = await cache.answer(config, state, hours=2, now=NOW)
    check(state, "s0", NOW, Status.DOWN)
    clock.value += MAX_AGE * SERVE_SHARE
    answer = await cache.answer(config, state, hours=2, now=NOW + timedelta(seconds=15))
    assert checks_of(answer, "s0") == checks_of(first, "s0") + 1
    assert orjson.loads(answer.body)["generatedAt"] == "2026-03-01T13:00:15.000Z"


async def test_a_rebuild_that_changes_nothing_keeps_the_body_and_its_etag() -> None:
    config, state, clock = settings(1, MAX_AGE), history(1), Monotonic()
    part_age = MAX_AGE * FRAGMENT_SHARE
    while part_expiry("s0", clock.value, part_age) - clock.value <= MAX_AGE * SERVE_SHARE:
        clock.value += 1  # start where s0's part outlives the answer (within one part age)
    cache = SummaryCache(monotonic=clock)
    first = await cache.answer(config, state, hours=2, now=NOW)
    clock.value += MAX_AGE * SERVE_SHARE  # the answer is too old to serve; s0's part is not
    again = await cache.answer(config, state, hours=2, now=NOW + timedelta(seconds=15))
    assert again.digest == first.digest
    assert again.body is first.body
    assert (again.built, cache.encoded) == (clock.value, 1)


async def test_a_rebuild_gives_the_event_loop_back_between_a_few_parts() -> None:
    """200 parts to compute: other tasks run meanwhile, so a request never waits behind them all."""
    config, state = settings(200, MAX_AGE), history(200)
    cache = SummaryCache(monotonic=Monotonic())
    seen: set[int] = set()
    done = asyncio.Event()

    async def other_task() -> None:
        while not done.is_set():
            seen.add(cache.rebuilt)  # how many parts were computed when this task got a turn
            await asyncio.sleep(0)

    other = asyncio.create_task(other_task())
    await cache.answer(config, state, hours=2, now=NOW)
    done.set()
    await other
    between = {count for count in seen if 0 < count < 200}
    assert len(between) >= 200 // 4 // 2, sorted(between)
    assert cache.rebuilt == 200


async def test_after_a_reload_the_new_configuration_shows_within_the_bound() -> None:
    state, clock = history(2), Monotonic()
    cache = SummaryCache(monotonic=clock)
    await cache.answer(settings(2, MAX_AGE), state, hours=2, now=NOW)
    reloaded = settings(2, MAX_AGE, kind="database")
    clock.value += MAX_AGE * SERVE_SHARE
    answer = await cache.answer(reloaded, state, hours=2, now=NOW)
    assert {s["kind"] for s in orjson.loads(answer.body)["services"]} == {"database"}


@pytest.mark.parametrize(
    ("header", "gzipped"),
    [
        pytest.param("gzip", True, id="gzip"),
        pytest.param("gzip, deflate, br", True, id="browser"),
        pytest.param("GZip;q=0.5", True, id="case-and-quality"),
        pytest.param("x-gzip", True, id="x-gzip"),
        pytest.param("*", True, id="any"),
        pytest.param("", False, id="none"),
        pytest.param("identity", False, id="identity"),
        pytest.param("br, deflate", False, id="others"),
        pytest.param("gzip;q=0", False, id="refused"),
        pytest.param("gzip; q=0.000", False, id="refused-spelled-long"),
        pytest.param("*, gzip;q=0", False, id="refused-by-name-over-any"),
        pytest.param("gzip;q=nope", False, id="bad-quality"),
    ],
)
def test_accept_encoding(header: str, gzipped: bool) -> None:
    assert accepts_gzip(header) is gzipped


# --- over HTTP ------------------------------------------------------------------------------------


class ShiftedClock(SystemClock):
    """The system clock, whose monotonic time a test can move forward."""

    def __init__(self) -> None:
        self.shift = 0.0

    def monotonic(self) -> float:
        return super().monotonic() + self.shift


Factory = Callable[[float], Awaitable[tuple[Client, ShiftedClock]]]


@pytest.fixture
def make_client(
    aiohttp_client: Callable[..., Awaitable[Client]],
    tmp_path: Path,
    target: tuple[TestServer, TargetState],
) -> Factory:
    """The daemon's app with a given max age; the test client leaves gzipped bodies as they came."""
    server, _ = target

    async def make(max_age: float) -> tuple[Client, ShiftedClock]:
        config = settings_from_mapping(
            {
                "store": {"url": f"sqlite:///{tmp_path / 'events.db'}"},
                "scheduler": {"enabled": False},
                "server": {"summary_max_age_seconds": max_age},
                "services": {"web": {"kind": "http", "url": str(server.make_url("/ok"))}},
            },
            source="test",
            environ={},
        )
        clock = ShiftedClock()
        app = build_app(config, base_url="http://127.0.0.1:9", clock=clock)
        return await aiohttp_client(app, auto_decompress=False), clock

    return make


async def get(
    client: Client, path: str = "/uptime/summary?hours=1", **headers: str
) -> tuple[int, CIMultiDict[str], bytes]:
    sent = {"Accept-Encoding": "identity"} | {k.replace("_", "-"): v for k, v in headers.items()}
    async with client.get(path, headers=sent) as r:
        return r.status, CIMultiDict(r.headers), await r.read()


async def test_the_summary_has_a_stable_etag_and_asks_caches_to_revalidate(
    make_client: Factory,
) -> None:
    client, _ = await make_client(MAX_AGE)
    status, headers, body = await get(client)
    assert status == 200
    assert headers["ETag"].startswith('"')
    assert headers["Cache-Control"] == "no-cache"
    assert "Accept-Encoding" in headers["Vary"]
    assert "Content-Encoding" not in headers
    model = models.UptimeSummary.model_validate_json(body)
    assert model.model_dump_json(by_alias=True).encode() == body  # the model's own serialization
    for path in ("/uptime/summary?hours=1", "/api/uptime/summary?hours=1"):  # the seeds' alias too
        again = await get(client, path)
        assert (again[1]["ETag"], again[2]) == (headers["ETag"], body)


async def test_if_none_match_gets_a_304_without_a_body(make_client: Factory) -> None:
    client, _ = await make_client(MAX_AGE)
    _, headers, _ = await get(client)
    etag = headers["ETag"]
    for tags in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        status, answer, body = await get(client, If_None_Match=tags)
        assert (status, body, answer["ETag"]) == (304, b"", etag), tags
    status, _, body = await get(client, If_None_Match='"other"')
    assert status == 200
    assert orjson.loads(body)["hours"] == 1


async def test_gzip_is_the_identity_body_compressed_with_its_own_etag(
    make_client: Factory,
) -> None:
    client, _ = await make_client(MAX_AGE)
    _, plain_headers, plain = await get(client)
    status, headers, body = await get(client, Accept_Encoding="gzip, deflate")
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in headers["Vary"]
    assert gzip.decompress(body) == plain
    assert headers["ETag"] == plain_headers["ETag"][:-1] + '-gzip"'
    for tag in (headers["ETag"], plain_headers["ETag"]):  # either coding's tag: the same answer
        status, answer, _ = await get(client, Accept_Encoding="gzip", If_None_Match=tag)
        assert (status, answer["ETag"]) == (304, headers["ETag"])


async def test_a_new_check_changes_the_etag_within_the_bound(make_client: Factory) -> None:
    """With the default max age (1 s) the new check shows within 0.25 s: polled, not slept for."""
    client, _ = await make_client(1.0)
    _, headers, body = await get(client)
    before = orjson.loads(body)["services"][0]["checks"]["total"]
    async with client.post("/uptime/check?service=web") as response:
        assert response.status == 200
    asked = time.monotonic()

    async def counted() -> str | None:
        status, answer, body = await get(client, If_None_Match=headers["ETag"])
        if status != 200:
            return None
        total = orjson.loads(body)["services"][0]["checks"]["total"]
        return answer["ETag"] if total == before + 1 else None

    etag = await until(counted, what="the check in an answer with a new ETag")
    waited = time.monotonic() - asked
    assert etag != headers["ETag"]
    assert waited < 5, waited  # the bound is 0.25 s plus the fold; generous for a busy machine


async def test_past_a_quarter_of_max_age_the_answer_is_rebuilt_before_it_is_sent(
    make_client: Factory,
) -> None:
    client, clock = await make_client(MAX_AGE)
    _, headers, _ = await get(client)
    async with client.post("/uptime/check?service=web") as response:
        assert response.status == 200

    async def folded() -> bool:
        async with client.get("/uptime/service/web?hours=1") as response:
            return bool(orjson.loads(await response.read())["checks"]["total"] == 1)

    await until(folded)
    assert (await get(client, If_None_Match=headers["ETag"]))[0] == 304  # young: still served
    clock.shift += MAX_AGE * SERVE_SHARE
    status, answer, body = await get(client, If_None_Match=headers["ETag"])
    assert status == 200
    assert answer["ETag"] != headers["ETag"]
    assert orjson.loads(body)["services"][0]["checks"]["total"] == 1


def test_the_openapi_document_tells_the_304_and_the_headers() -> None:
    document = openapi_document()
    validate(document)
    for path in ("/uptime/summary", "/api/uptime/summary"):
        operation = document["paths"][path]["get"]
        assert {"ETag", "Content-Encoding"} <= set(operation["responses"]["200"]["headers"])
        assert "ETag" in operation["responses"]["304"]["headers"]
        headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
        assert headers == ["If-None-Match"]
    assert "304" not in document["paths"]["/uptime/service/{name}"]["get"]["responses"]


async def test_an_unknown_window_is_still_a_400_not_a_stale_answer(make_client: Factory) -> None:
    client, _ = await make_client(MAX_AGE)
    status, _, body = await get(client, "/uptime/summary?hours=0")
    assert status == 400
    assert orjson.loads(body)["field"] == "hours"
