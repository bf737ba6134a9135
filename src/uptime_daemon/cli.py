"""The ``uptime-daemon`` command: argument parsing and printing; the work is ``uptime_daemon.daemon``'s.

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
from uptime_daemon.errors import AlreadyInUse, ConfigError, EventStoreError

EXIT_CONFIG: Final = 2
EXIT_FAILURE: Final = 1
EXIT_BROKEN_PIPE: Final = 141
"""128 + SIGPIPE, what a shell reports for a writer whose reader closed the pipe."""
EXIT_INTERRUPTED: Final = 130
"""128 + SIGINT, what a shell reports for a command stopped with Ctrl-C."""
MAX_REPLAY_PROCESSES: Final = 8
"""``replay --processes`` at most: more shares than cores only add start-ups."""
EVENT_LOOP_ENV: Final = "UPTIME_EVENT_LOOP"


_AFTER: Final = "_after"
"""The ``dest`` suffix of ``--env``/``--config`` given after the command: kept apart from the ones
before it, so ``_one_where`` can compare the two."""


def _add_where(parser: argparse.ArgumentParser, *, after: bool) -> None:
    """``--env`` or ``--config``: one of them, before the command or after it (as users type them).

    After the command they default to nothing at all (``SUPPRESS``), so ``main`` sees what was given.
    """
    suffix, default = (_AFTER, argparse.SUPPRESS) if after else ("", None)
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--env",
        dest=f"env{suffix}",
        default=default,
        choices=ENVIRONMENTS,
        help="config/ENV.toml (default: $UPTIME_ENV or dev)",
    )
    where.add_argument(
        "--config",
        dest=f"config{suffix}",
        default=default,
        type=Path,
        metavar="PATH",
        help="a config file instead of --env",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uptime-daemon",
        description="Uptime monitoring with an exact, replayable event log.",
        epilog="--env and --config may also follow the command: uptime-daemon run --env dev",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_where(parser, after=False)
    after = argparse.ArgumentParser(add_help=False)
    _add_where(after, after=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, parents=[after])

    command("run", "run the daemon until SIGTERM/SIGINT")
    check = command("check", "probe services once now and print the results")
    check.add_argument("service", nargs="?", help="one service (default: all)")
    summary = command("summary", "uptime of every service, from the event log")
    summary.add_argument("--hours", type=int, default=24, help="window length (default 24)")
    summary.add_argument(
        "--json", action="store_true", help="print the API's JSON instead of a table"
    )
    replay = command(
        "replay", "rebuild the projection snapshot from the whole log (daemon stopped)"
    )
    replay.add_argument(
        "--processes",
        type=_processes,
        help="fold in this many processes, each a share of the services (default: 2 for an "
        "embedded store of 16 MiB or more on two or more cores, else 1)",
    )
    export = command("export", "write the uptime log as JSON lines")
    export.add_argument("--output", type=Path, help="file to write (default: standard output)")
    importer = command("import", "append events from a JSON-lines export (idempotent)")
    importer.add_argument("path", type=Path, help="a file written by export")
    migrate = command("migrate", "copy the uptime log to another store, resumably")
    migrate.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="kurrentdb://… (KURRENTDB_USERNAME/PASSWORD apply)",
    )
    migrate.add_argument(
        "--restart", action="store_true", help="ignore the checkpoint and copy from the start"
    )
    compact = command(
        "compact", "roll up raw checks older than raw_retention_days now (daemon stopped on SQLite)"
    )
    compact.add_argument(
        "--older-than-days",
        type=int,
        metavar="DAYS",
        help="this instead of [store] raw_retention_days (at least 1)",
    )
    command(
        "upgrade-store",
        "bring the SQLite file to this build's format now, with progress (the daemon stopped)",
    )
    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_commands.add_parser(
        "validate", help="validate and print the effective config, secrets masked", parents=[after]
    )
    return parser


def _one_where(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fold ``--env``/``--config`` given after the command into ``args.env``/``args.config``.

    Each side is mutually exclusive already; across the command they must be too, and an option
    given on both sides must say the same thing. Otherwise a usage error (exit status 2).
    """
    for name, other in (("env", "config"), ("config", "env")):
        if not hasattr(args, name + _AFTER):
            continue  # not given after the command (at most one of the two is)
        before, later = getattr(args, name), vars(args).pop(name + _AFTER)
        if before is not None and before != later:
            parser.error(
                f"--{name} given twice with different values: "
                f"'{before}' before the command, '{later}' after it"
            )
        if getattr(args, other) is not None:
            parser.error(f"argument --{name}: not allowed with argument --{other}")
        setattr(args, name, later)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    _one_where(parser, args)
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
    except AlreadyInUse as exc:
        print(f"uptime-daemon: {exc}", file=sys.stderr)
        return EXIT_FAILURE
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
    if args.command == "run":
        return _run(settings, args.config_path)
    command = _COMMANDS[args.command]
    try:
        return run_async(command(settings, args))
    except KeyboardInterrupt:  # Ctrl-C: the command said what it left, if anything
        return EXIT_INTERRUPTED


def _run(settings: Settings, path: Path) -> int:
    from uptime_daemon import malloc  # noqa: PLC0415 - the daemon's own, not the commands'
    from uptime_daemon.daemon import serve  # noqa: PLC0415 - keep `config validate` light
    from uptime_daemon.logging import configure_logging  # noqa: PLC0415

    configure_logging(settings.log.level, settings.log.format)
    malloc.map_large()  # before the snapshot is read: its pieces never settle in the heap
    return run_async(serve(settings, reload=functools.partial(load_settings, path)))


async def _check(settings: Settings, args: argparse.Namespace) -> int:
    """Probe now from this machine; no events are written."""
    from uptime_daemon.daemon import answers  # noqa: PLC0415

    only: str | None = args.service
    if only is not None and only not in settings.services:
        print(f"uptime-daemon: unknown service {only!r}", file=sys.stderr)
        return EXIT_CONFIG
    results = await answers.check(settings, [only] if only else list(settings.services))
    for name, result in results:
        verdict = "ok  " if result.ok else f"FAIL {result.failure}"
        millis = result.duration_seconds * 1000
        print(f"{name:<24} {verdict:<24} {millis:8.1f} ms  {result.detail}")
    return EXIT_FAILURE if any(not result.ok for _, result in results) else 0


async def _summary(settings: Settings, args: argparse.Namespace) -> int:
    """Every service's figures over ``--hours``, from the log (the snapshot is not rewritten)."""
    from uptime_daemon.daemon import answers  # noqa: PLC0415

    summary = await answers.summary(settings, args.hours)
    if args.json:
        print(summary.model_dump_json(by_alias=True, indent=2))
        return 0
    print(
        f"{'SERVICE':<24} {'STATUS':<9} {'UPTIME':>9} {'DOWN':>9} {'UNKNOWN':>9} {'CHECKS':>7} {'P95':>9} INCIDENTS"
    )
    for s in summary.services:
        uptime = "-" if s.uptime_ratio is None else f"{s.uptime_ratio * 100:.3f}%"
        p95 = "-" if s.response_time.p95_ms is None else f"{s.response_time.p95_ms:.1f}ms"
        print(
            f"{s.service:<24} {s.status:<9} {uptime:>9} {s.seconds.down:>8.0f}s "
            f"{s.seconds.unknown:>8.0f}s {s.checks.total:>7} {p95:>9} {len(s.incidents)}"
        )
    return 0


def _processes(text: str) -> int:
    """``--processes``: a whole number from 1 to 8."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_REPLAY_PROCESSES:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_REPLAY_PROCESSES}")
    return value


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    """Fold the whole log from position zero, write a fresh snapshot, report the replay rate."""
    from uptime_daemon.daemon import offline  # noqa: PLC0415

    done = await offline.replay(settings, processes=args.processes)
    print(
        f"replayed {done.events} events into {done.services} services "
        f"in {done.seconds:.2f} s ({done.events_per_second:,.0f} events/s"
        f"{'' if done.processes == 1 else f', {done.processes} processes'}); "
        f"snapshot at position {done.position}"
    )
    return 0


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    from uptime_daemon.daemon import offline  # noqa: PLC0415

    if args.output is None:
        events = await offline.export(settings, sys.stdout)
    else:
        with args.output.open("w", encoding="utf-8") as out:
            events = await offline.export(settings, out)
    print(f"exported {events} events", file=sys.stderr)
    return 0


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    from uptime_daemon.daemon import offline  # noqa: PLC0415

    with args.path.open(encoding="utf-8") as lines:
        done = await offline.import_(settings, lines)
    print(
        f"imported {done.events} events in {done.appends} appends (already present ones unchanged)"
    )
    return 0


async def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from uptime_daemon.daemon import offline  # noqa: PLC0415

    done = await offline.migrate(settings, args.to, restart=args.restart)
    print(f"migrated {done.events} events to {done.target} (checkpoint {done.checkpoint})")
    return 0


async def _compact(settings: Settings, args: argparse.Namespace) -> int:
    """Roll up aged raw checks; the projection is unchanged, the raw events go."""
    from uptime_daemon.daemon import offline  # noqa: PLC0415

    done = await offline.compact(settings, older_than_days=args.older_than_days)
    deleted = "" if done.deleted is None else f"; {done.deleted} deleted from the file"
    print(
        f"rolled up {done.events} raw events into {done.rollups} rollups "
        f"in {done.seconds:.2f} s{deleted}"
    )
    return 0


async def _upgrade_store(settings: Settings, _args: argparse.Namespace) -> int:
    """Upgrade the embedded store's file in place; progress on stderr, resumable if stopped."""
    from uptime_daemon.daemon import offline  # noqa: PLC0415

    def progress(done: int, total: int) -> None:
        print(
            f"upgrading: {done:,} of {total:,} events ({done / max(total, 1):.0%})", file=sys.stderr
        )

    try:
        done = await offline.upgrade_store(settings, progress)
    except asyncio.CancelledError:
        print(
            "uptime-daemon: upgrade stopped after its last whole chunk; run upgrade-store again "
            "(or start the daemon) to carry on from there",
            file=sys.stderr,
        )
        raise
    print(f"{done.path}: schema version {done.version}, {done.size_bytes:,} bytes")
    return 0


async def _transfer_errors(
    command: Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]],
    settings: Settings,
    args: argparse.Namespace,
) -> int:
    """``export`` / ``import`` / ``migrate`` failures end with one line naming the command, status 1."""
    from uptime_daemon.transfer import TransferError  # noqa: PLC0415

    try:
        return await command(settings, args)
    except (TransferError, OSError) as exc:
        print(f"uptime-daemon: {args.command} failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE


Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]
_COMMANDS: Final[dict[str, Command]] = {
    "check": _check,
    "summary": _summary,
    "replay": _replay,
    "compact": _compact,
    "upgrade-store": _upgrade_store,
    "export": functools.partial(_transfer_errors, _export),
    "import": functools.partial(_transfer_errors, _import),
    "migrate": functools.partial(_transfer_errors, _migrate),
}
