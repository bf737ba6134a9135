"""``GET /uptime/summary``, kept ready: the whole body, gzipped and tagged, rebuilt off the request path.

A 1,000-service summary costs tens of milliseconds to compute and is ~700 kB of JSON, so a request
never computes it. Per ``hours`` window the cache keeps an ``Answer``: the body, a gzipped copy and a
strong ``ETag`` (a hash of the body). With ``B = server.summary_max_age_seconds``:

* a request gets the answer as it is while it is younger than ``B / 16``;
* a request that finds it older starts one rebuild in the background and gets the previous answer,
  while that is younger than ``B / 4``;
* only a request that finds no answer (the window's first, after a reload, or after ``B / 4`` with no
  request at all) waits for the rebuild.

So every answer was built at most ``B / 4`` before it is sent (``generatedAt`` says when): a new
check, a status change, a reload or a maintenance window shows within ``B / 4``. A rebuild reuses
each service's part of the answer (its serialized JSON), computing it again only when the service
has a new check, its status went stale (so ``unknown``), or the part is older than ``3 B / 4`` —
the clock's advance (the open period growing, the window sliding); each service's ``window.end``
says when its figures were computed, at most ``B`` before the answer is sent. Each service's parts
expire on a grid of its own (its phase from its name), so expiries stay spread however the parts
were last computed: a rebuild computes a few parts, and it gives the event loop back every few of
them. Hashing and compressing run in a thread. A rebuild that changed no part keeps
the body and its ``ETag``.

``B = 0`` computes everything on every request: the answer is then exactly the model's serialization
at ``now``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Final

import orjson
import structlog

from uptime_daemon.api import views
from uptime_daemon.clock import to_iso_millis
from uptime_daemon.config.model import Settings
from uptime_daemon.projector.fold import ProjectionState, next_change

log = structlog.get_logger(__name__)

WINDOWS_KEPT: Final = 4
"""Distinct ``hours`` values cached at once (the least recently asked is dropped)."""
REFRESH_SHARE: Final = 1 / 16
"""An answer older than this share of the max age is rebuilt (in the background)."""
SERVE_SHARE: Final = 1 / 4
"""... and served meanwhile until it is this old; then a request waits for the rebuild."""
FRAGMENT_SHARE: Final = 1 - SERVE_SHARE
"""A service's part expires at this share of the max age: with the answer's age, at most all of it."""
SLICE_FRAGMENTS: Final = 4
"""Parts computed before a rebuild gives the event loop back (each is ~0.1-0.2 ms at 24 h)."""
GZIP_LEVEL: Final = 1
"""~2 ms for 700 kB (level 6: ~6 ms, 25 % smaller; summaries compress 10-50 × at either)."""
GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
"""A gzip header and trailer, not a zlib one (``Content-Encoding: gzip``)."""
GZIP_SUFFIX: Final = "-gzip"
_SPREAD: Final = 1 << 32


@dataclass(frozen=True, slots=True)
class Answer:
    """One window's answer, ready to send: what ``Answer.etag`` names, in both codings."""

    body: bytes
    gzipped: bytes
    digest: str
    """A hash of ``body``: what the ``ETag`` of either coding is made of."""
    built: float
    """Monotonic time its rebuild started (its age bounds how stale the answer is)."""

    def etag(self, *, gzipped: bool) -> str:
        """A strong validator, quoted; each coding has its own (RFC 9110 § 8.8.3), as Apache does."""
        return f'"{self.digest}{GZIP_SUFFIX if gzipped else ""}"'

    def matches(self, tags: Iterable[str]) -> bool:
        """Whether ``If-None-Match``'s tags (unquoted; weak compare) name this body in any coding."""
        return any(tag in {"*", self.digest, self.digest + GZIP_SUFFIX} for tag in tags)


def encode(body: bytes, *, built: float) -> Answer:
    """Hash and compress ``body`` (both release the GIL: call it in a thread for a large one)."""
    return Answer(
        body=body,
        gzipped=zlib.compress(body, GZIP_LEVEL, GZIP_WBITS),
        digest=hashlib.blake2b(body, digest_size=16).hexdigest(),
        built=built,
    )


@dataclass(frozen=True, slots=True)
class _Fragment:
    body: bytes
    last_check: datetime | None
    """The service's last check when this was built: a newer one means rebuild."""
    stale_at: datetime | None
    """When the service's status turns ``unknown`` (no check for 2 × interval + timeout)."""
    expires: float
    status: str
    configured: bool


@dataclass(slots=True)
class _Window:
    fragments: dict[str, _Fragment] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    services_json: bytes = b""
    """``,"services":[...]}`` as last rendered: reused whole while no fragment changes."""
    status: str = "ok"
    revision: int = 0
    """Counts changes of ``services_json`` (a rebuild that changed nothing keeps the answer)."""
    answer: Answer | None = None
    pending: asyncio.Task[Answer] | None = None
    """The rebuild under way, if any: at most one per window."""


class SummaryCache:
    """Keeps ``UptimeSummary`` answers ready, per window (see the module docstring)."""

    def __init__(self, *, monotonic: Callable[[], float]) -> None:
        """``monotonic`` ages answers and parts (the app's clock, so tests control it)."""
        self._monotonic = monotonic
        self._settings: Settings | None = None
        self._maintenance_revision = 0
        self._windows: OrderedDict[int, _Window] = OrderedDict()
        self.rebuilt = 0
        """Parts computed so far (what a test or a profile looks at)."""
        self.encoded = 0
        """Bodies hashed and compressed so far."""

    @property
    def windows(self) -> int:
        """Distinct ``hours`` values cached now (at most ``WINDOWS_KEPT``)."""
        return len(self._windows)

    async def answer(
        self, settings: Settings, state: ProjectionState, *, hours: int, now: datetime
    ) -> Answer:
        """The answer for ``hours``: the kept one while young enough, else after one rebuild.

        What a request sees, and when it waits, is in the module docstring.
        """
        self._follow(settings, state)
        max_age = settings.server.summary_max_age_seconds
        if max_age == 0:
            body = self.render(settings, state, hours=hours, now=now)
            self.encoded += 1
            return await asyncio.to_thread(encode, body, built=self._monotonic())
        window = self._window(hours)
        current = window.answer
        age = math.inf if current is None else self._monotonic() - current.built
        if current is not None and age < max_age * REFRESH_SHARE:
            return current
        pending = window.pending
        if pending is None:
            pending = window.pending = asyncio.create_task(
                self._rebuild(window, settings, state, hours=hours, now=now),
                name=f"summary-rebuild-{hours}h",
            )
            pending.add_done_callback(partial(_rebuilt, window))
        if current is not None and age < max_age * SERVE_SHARE:
            return current
        return await asyncio.shield(pending)  # a client that goes away leaves the rebuild running

    async def close(self) -> None:
        """On shutdown: cancel the rebuilds under way (nobody is left to answer)."""
        pending = [w.pending for w in self._windows.values() if w.pending is not None]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def render(
        self, settings: Settings, state: ProjectionState, *, hours: int, now: datetime
    ) -> bytes:
        """The body for ``hours`` at ``now``, computed at once (parts reused as ``answer`` does)."""
        self._follow(settings, state)
        window = self._window(hours)
        max_age = settings.server.summary_max_age_seconds * FRAGMENT_SHARE
        for _ in self._update(window, settings, state, hours=hours, now=now, max_age=max_age):
            pass
        return self._body(window, hours=hours, now=now)

    def _follow(self, settings: Settings, state: ProjectionState) -> None:
        """After a reload or a maintenance change, start every part again (keep the answers)."""
        revision = state.maintenance.revision
        if settings is self._settings and revision == self._maintenance_revision:
            return
        # A reload (kinds, names and order may all differ), or a maintenance window declared, ended
        # or cancelled (it may change any service's figures, also in the past). A rebuild under way
        # finishes on its own, now detached, window; the answers stay until they are too old.
        self._settings = settings
        self._maintenance_revision = revision
        self._windows = OrderedDict(
            (hours, _Window(answer=window.answer)) for hours, window in self._windows.items()
        )

    async def _rebuild(
        self,
        window: _Window,
        settings: Settings,
        state: ProjectionState,
        *,
        hours: int,
        now: datetime,
    ) -> Answer:
        started = self._monotonic()
        revision = window.revision
        max_age = settings.server.summary_max_age_seconds * FRAGMENT_SHARE
        parts = self._update(window, settings, state, hours=hours, now=now, max_age=max_age)
        for count, _ in enumerate(parts, 1):
            if count % SLICE_FRAGMENTS == 0:
                await asyncio.sleep(0)  # let requests through between a few parts
        previous = window.answer
        if previous is not None and window.revision == revision:
            answer = replace(previous, built=started)  # nothing changed: the same body and ETag
        else:
            body = self._body(window, hours=hours, now=now)
            self.encoded += 1
            answer = await asyncio.to_thread(encode, body, built=started)
        window.answer = answer
        return answer

    def _update(
        self,
        window: _Window,
        settings: Settings,
        state: ProjectionState,
        *,
        hours: int,
        now: datetime,
        max_age: float,
    ) -> Iterator[None]:
        """Bring ``window``'s parts up to date, yielding after each one computed.

        The per-service test is a few attribute reads, so an up-to-date window of 1,000 services
        costs well under a millisecond; the joined services are reused whole while nothing changed.
        """
        clock = self._monotonic()
        fragments = window.fragments
        projections = state.services
        names = views.service_names(settings, state)
        changed = names != window.names
        for name in names:
            fragment = fragments.get(name)
            projection = projections.get(name)
            last_check = None if projection is None else projection.last_check
            if (
                fragment is None
                or fragment.last_check != last_check
                or clock >= fragment.expires
                or (fragment.stale_at is not None and now > fragment.stale_at)
            ):
                fragments[name] = self._build(
                    settings,
                    state,
                    name,
                    hours=hours,
                    now=now,
                    expires=part_expiry(name, clock, max_age),
                )
                changed = True
                yield
        if changed:
            if len(fragments) > len(names):  # services that left the log and the config
                for gone in fragments.keys() - set(names):
                    del fragments[gone]
            window.names = names
            window.services_json = (
                b',"services":[' + b",".join(fragments[name].body for name in names) + b"]}"
            )
            window.status = views.overall(
                [fragments[name].status for name in names if fragments[name].configured]
            )
            window.revision += 1

    @staticmethod
    def _body(window: _Window, *, hours: int, now: datetime) -> bytes:
        head = orjson.dumps(
            {"generatedAt": to_iso_millis(now), "hours": hours, "status": window.status}
        )
        return head[:-1] + window.services_json

    def _window(self, hours: int) -> _Window:
        window = self._windows.get(hours)
        if window is None:
            window = self._windows[hours] = _Window()
            while len(self._windows) > WINDOWS_KEPT:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(hours)
        return window

    def _build(
        self,
        settings: Settings,
        state: ProjectionState,
        name: str,
        *,
        hours: int,
        now: datetime,
        expires: float,
    ) -> _Fragment:
        self.rebuilt += 1
        model = views.service_uptime(settings, state, name, hours=hours, now=now)
        projection = state.services.get(name)
        stale_at = None if projection is None else next_change(projection, now)
        return _Fragment(
            body=model.model_dump_json(by_alias=True).encode(),
            last_check=None if projection is None else projection.last_check,
            stale_at=stale_at,
            expires=expires,
            status=model.status,
            configured=model.configured,
        )


def part_expiry(name: str, clock: float, max_age: float) -> float:
    """When ``name``'s part, computed at ``clock``, expires: its next tick on its own grid.

    Each service's parts expire at the times ``phase + k × max_age`` (its phase from its name), not
    ``max_age`` after they were computed: a rebuild that had to compute every part (the first, or
    after an idle spell) does not make them all expire together again, so rebuilds stay a steady
    few parts each. A part is never older than ``max_age`` for it.
    """
    if max_age <= 0:
        return clock
    phase = max_age * zlib.crc32(name.encode()) / _SPREAD
    return clock + max_age - (clock - phase) % max_age


def _rebuilt(window: _Window, task: asyncio.Task[Answer]) -> None:
    """Let the next request start another rebuild; a failed one is logged (its waiters get a 500)."""
    window.pending = None
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("summary_rebuild_failed", error=repr(error))
