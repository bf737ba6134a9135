"""The ``uptime-daemon`` command: ``run``, ``check``, ``config validate``.

Configuration errors end the process with exit status 2 and one readable line on stderr, never a
traceback; store failures at start-up exit 1 with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from uptime_daemon import __version__
from uptime_daemon.config.load import (
    ENVIRONMENTS,
    load_settings,
    masked_settings,
    resolve_config_path,
)
from uptime_daemon.config.model import Settings
from uptime_daemon.errors import ConfigError, EventStoreError

EXIT_CONFIG: Final = 2
EXIT_FAILURE: Final = 1
EXIT_BROKEN_PIPE: Final = 141
"""128 + SIGPIPE, what a shell reports for a writer whose reader closed the pipe."""
EVENT_LOOP_ENV: Final = "UPTIME_EVENT_LOOP"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uptime-daemon", description="Uptime monitoring with an exact, replayable event log."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--env", choices=ENVIRONMENTS, help="config/ENV.toml (default: $UPTIME_ENV or dev)"
    )
    where.add_argument("--config", type=Path, metavar="PATH", help="a config file instead of --env")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    check = commands.add_parser("check", help="probe services once now and print the results")
    check.add_argument("service", nargs="?", help="one service (default: all)")
    summary = commands.add_parser("summary", help="uptime of every service, from the event log")
    summary.add_argument("--hours", type=int, default=24, help="window length (default 24)")
    summary.add_argument(
        "--json", action="store_true", help="print the API's JSON instead of a table"
    )
    commands.add_parser(
        "replay", help="rebuild the projection snapshot from the whole log (daemon stopped)"
    )
    export = commands.add_parser("export", help="write the uptime log as JSON lines")
    export.add_argument("--output", type=Path, help="file to write (default: standard output)")
    importer = commands.add_parser(
        "import", help="append events from a JSON-lines export (idempotent)"
    )
    importer.add_argument("path", type=Path, help="a file written by export")
    migrate = commands.add_parser("migrate", help="copy the uptime log to another store, resumably")
    migrate.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="kurrentdb://… (KURRENTDB_USERNAME/PASSWORD apply)",
    )
    migrate.add_argument(
        "--restart", action="store_true", help="ignore the checkpoint and copy from the start"
    )
    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_commands.add_parser(
        "validate", help="validate and print the effective config, secrets masked"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        args.config_path = resolve_config_path(config=args.config, env=args.env)
        settings = load_settings(args.config_path)
    except ConfigError as exc:
        print(f"uptime-daemon: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return _dispatch(args, settings)
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except ConfigError as exc:
        print(f"uptime-daemon: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (EventStoreError, OSError) as exc:
        print(f"uptime-daemon: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop: uvloop where installed (cheaper per probe), unless ``UPTIME_EVENT_LOOP=asyncio``.

    ``None`` means asyncio's own loop. An unknown value is refused rather than guessed at.
    """
    choice = os.environ.get(EVENT_LOOP_ENV, "auto")
    if choice not in {"auto", "uvloop", "asyncio"}:
        raise ConfigError(f"{EVENT_LOOP_ENV}: must be auto, uvloop or asyncio, got {choice!r}")
    if choice == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415 - optional at run time
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(f"{EVENT_LOOP_ENV}=uvloop but uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run a command's coroutine on the chosen event loop."""
    try:
        factory = event_loop_factory()
    except ConfigError:
        main.close()  # never awaited: say so instead of warning about it
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command != "run":
        from uptime_daemon.logging import configure_logging  # noqa: PLC0415

        # Commands print their results on stdout (export writes data there): logs go to stderr.
        configure_logging(settings.log.level, "console", stream=sys.stderr)
    if args.command == "config":
        print(orjson.dumps(masked_settings(settings), option=orjson.OPT_INDENT_2).decode())
        return 0
    if args.command == "check":
        return run_async(_check(settings, args.service))
    if args.command == "summary":
        return run_async(_summary(settings, args.hours, as_json=args.json))
    if args.command == "replay":
        return run_async(_replay(settings))
    if args.command in {"export", "import", "migrate"}:
        return run_async(_transfer(settings, args))
    return _run(settings, args.config_path)


def _run(settings: Settings, path: Path) -> int:
    from uptime_daemon.app import serve  # noqa: PLC0415 - keep `config validate` light
    from uptime_daemon.logging import configure_logging  # noqa: PLC0415

    configure_logging(settings.log.level, settings.log.format)
    return run_async(serve(settings, reload=functools.partial(load_settings, path)))


async def _check(settings: Settings, only: str | None) -> int:
    """Probe now from this machine (the running daemon's own URL for relative targets); no events."""
    from uptime_daemon.app import open_store  # noqa: PLC0415
    from uptime_daemon.clock import SystemClock  # noqa: PLC0415
    from uptime_daemon.probes import PROBERS  # noqa: PLC0415
    from uptime_daemon.probes.base import ProbeContext  # noqa: PLC0415
    from uptime_daemon.probes.http import make_client_session  # noqa: PLC0415
    from uptime_daemon.results import CheckKind  # noqa: PLC0415
    from uptime_daemon.runner import probe_with_deadline  # noqa: PLC0415

    if only is not None and only not in settings.services:
        print(f"uptime-daemon: unknown service {only!r}", file=sys.stderr)
        return EXIT_CONFIG
    names = [only] if only else list(settings.services)
    host = "127.0.0.1" if settings.server.host in {"0.0.0.0", "::"} else settings.server.host  # noqa: S104
    clock = SystemClock()
    store = await open_store(settings)
    session = make_client_session()
    failed = 0
    try:
        ctx = ProbeContext(
            session=session,
            clock=clock,
            store=store,
            self_base_url=f"http://{host}:{settings.server.port}",
        )
        for name in names:
            service = settings.services[name]
            result = await probe_with_deadline(
                PROBERS[CheckKind(service.kind)], service, ctx, clock
            )
            failed += not result.ok
            verdict = "ok  " if result.ok else f"FAIL {result.failure}"
            millis = result.duration_seconds * 1000
            print(f"{name:<24} {verdict:<24} {millis:8.1f} ms  {result.detail}")
    finally:
        await session.close()
        await store.close()
    return EXIT_FAILURE if failed else 0


async def _projection(settings: Settings, *, from_snapshot: bool) -> tuple[Any, Any, int]:
    """Open the store and fold the log (from the snapshot when allowed); return it, its store, count."""
    from uptime_daemon.app import gap_seconds, open_store, snapshot_path  # noqa: PLC0415
    from uptime_daemon.clock import SystemClock  # noqa: PLC0415
    from uptime_daemon.projector.runner import Projector  # noqa: PLC0415

    store = await open_store(settings)
    projector = Projector(
        store=store,
        clock=SystemClock(),
        default_gap_seconds=functools.partial(gap_seconds, settings),
        snapshot_path=snapshot_path(settings),
        retention_seconds=settings.projector.retention_days * 86_400,
    )
    if from_snapshot:
        projector.load_snapshot()
    try:
        folded = await projector.catch_up()
    except BaseException:
        await store.close()
        raise
    return projector, store, folded


async def _summary(settings: Settings, hours: int, *, as_json: bool) -> int:
    """Print every service's figures over ``hours`` (read-only: the snapshot is not rewritten)."""
    from uptime_daemon.api import views  # noqa: PLC0415
    from uptime_daemon.api.models import UptimeSummary  # noqa: PLC0415
    from uptime_daemon.clock import SystemClock  # noqa: PLC0415

    if not 1 <= hours <= settings.projector.retention_days * 24:
        print(
            f"uptime-daemon: --hours must be 1..{settings.projector.retention_days * 24}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    projector, store, _ = await _projection(settings, from_snapshot=True)
    await store.close()
    now = SystemClock().now()
    services = [
        views.service_uptime(settings, projector.state, name, hours=hours, now=now)
        for name in views.service_names(settings, projector.state)
    ]
    summary = UptimeSummary(
        generated_at=now,
        hours=hours,
        status=views.overall([s.status for s in services if s.configured]),
        services=services,
    )
    if as_json:
        print(summary.model_dump_json(by_alias=True, indent=2))
        return 0
    print(
        f"{'SERVICE':<24} {'STATUS':<9} {'UPTIME':>9} {'DOWN':>9} {'UNKNOWN':>9} {'CHECKS':>7} {'P95':>9} INCIDENTS"
    )
    for s in services:
        uptime = "-" if s.uptime_ratio is None else f"{s.uptime_ratio * 100:.3f}%"
        p95 = "-" if s.response_time.p95_ms is None else f"{s.response_time.p95_ms:.1f}ms"
        print(
            f"{s.service:<24} {s.status:<9} {uptime:>9} {s.seconds.down:>8.0f}s "
            f"{s.seconds.unknown:>8.0f}s {s.checks.total:>7} {p95:>9} {len(s.incidents)}"
        )
    return 0


async def _replay(settings: Settings) -> int:
    """Fold the whole log from position zero, write a fresh snapshot, report the replay rate."""
    from uptime_daemon.clock import SystemClock  # noqa: PLC0415

    clock = SystemClock()
    started = clock.monotonic()
    projector, store, folded = await _projection(settings, from_snapshot=False)
    await store.close()
    seconds = max(clock.monotonic() - started, 1e-9)
    projector.save_snapshot()
    print(
        f"replayed {folded} events into {len(projector.state.services)} services "
        f"in {seconds:.2f} s ({folded / seconds:,.0f} events/s); "
        f"snapshot at position {projector.position}"
    )
    return 0


async def _transfer(settings: Settings, args: argparse.Namespace) -> int:
    """``export`` / ``import`` / ``migrate``; errors end with one line and status 1."""
    from uptime_daemon import transfer  # noqa: PLC0415
    from uptime_daemon.app import open_store  # noqa: PLC0415
    from uptime_daemon.config.load import mask_url  # noqa: PLC0415
    from uptime_daemon.store.kurrentdb import KurrentDBEventStore, connection_uri  # noqa: PLC0415
    from uptime_daemon.store.sqlite import sqlite_path_from_url  # noqa: PLC0415

    store = await open_store(settings)
    try:
        if args.command == "export":
            if args.output is None:
                done = await transfer.export_jsonl(store, sys.stdout)
            else:
                with args.output.open("w", encoding="utf-8") as out:
                    done = await transfer.export_jsonl(store, out)
            print(f"exported {done.events} events", file=sys.stderr)
            return 0
        if args.command == "import":
            with args.path.open(encoding="utf-8") as lines:
                done = await transfer.import_jsonl(store, lines)
            print(
                f"imported {done.events} events in {done.appends} appends (already present ones unchanged)"
            )
            return 0
        if not settings.store.url.startswith("sqlite:"):
            print(
                "uptime-daemon: migrate copies from the embedded SQLite store; store.url is not sqlite",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        uri = connection_uri(
            args.to,
            username=os.environ.get("KURRENTDB_USERNAME"),
            password=os.environ.get("KURRENTDB_PASSWORD"),
        )
        target = await KurrentDBEventStore.open(
            uri, timeout_seconds=settings.store.operation_timeout_seconds
        )
        try:
            checkpoint = transfer.checkpoint_path(sqlite_path_from_url(settings.store.url), uri)
            done = await transfer.migrate(store, target, checkpoint, restart=args.restart)
        finally:
            await target.close()
        print(f"migrated {done.events} events to {mask_url(uri)} (checkpoint {checkpoint})")
        return 0  # noqa: TRY300 - one exit per command; the except below is for all of them
    except (transfer.TransferError, OSError) as exc:
        print(f"uptime-daemon: {args.command} failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        await store.close()
