"""The fold's cost per check: this tree's ``projector.fold.apply`` against another tree's, same run.

Builds the same checks for both (1,000 services, a check a minute each, 1 % down in stretches, two
locations for a tenth of them) and times folding them from an empty state, best of ``--repeat``,
each tree in its own child process (``--baseline-src DIR``: e.g. a worktree of an older commit's
``src``). The two trees' children take turns for ``--rounds`` rounds and each keeps its best, so
a neighbour's load on the machine falls on both alike. Prints figures; never asserts.

    git worktree add /tmp/before <commit> && python bench/fold.py --baseline-src /tmp/before/src
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import emit, machine

CHILD = "--child"


def measure(checks: int, repeat: int) -> dict[str, float]:
    """In this process: fold ``checks`` checks ``repeat`` times; the best µs per check."""
    from uptime_daemon.projector.fold import Observation, ProjectionState, apply  # noqa: PLC0415
    from uptime_daemon.status import Status  # noqa: PLC0415

    start = datetime(2026, 11, 1, tzinfo=UTC)
    services = 1000
    observations = []
    for i in range(checks):
        service = i % services
        minute = i // services
        at = start + timedelta(minutes=minute, seconds=service * 0.06)
        down = (minute + service) % 400 < 4
        where = ("eu", "us")[minute % 2] if service % 10 == 0 else "eu"
        of = ("eu", "us") if service % 10 == 0 else ()
        observations.append(
            Observation(
                f"svc-{service}",
                at,
                Status.DOWN if down else Status.UP,
                0.05,
                150.0,
                where,
                at,
                1,
                of,
            )
        )
    best = float("inf")
    for _ in range(repeat):
        state = ProjectionState()
        started = time.process_time()
        for observation in observations:
            apply(state, observation)
        best = min(best, time.process_time() - started)
    return {"checks": checks, "cpu_us_per_check": round(best / checks * 1e6, 3)}


def child(src: str, checks: int, repeat: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, __file__, CHILD, "--checks", str(checks), "--repeat", str(repeat)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(CHILD, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checks", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="turns each tree takes")
    parser.add_argument("--baseline-src", help="another tree's src directory to compare with")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.checks, args.repeat)))
        return
    emit("machine", **machine())
    here = str(Path(__file__).resolve().parents[1] / "src")
    trees = [here] if args.baseline_src is None else [here, args.baseline_src]
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for tree in trees:
            figure = child(tree, args.checks, args.repeat)
            if tree not in best or figure["cpu_us_per_check"] < best[tree]["cpu_us_per_check"]:
                best[tree] = figure
    now = best[here]
    emit("fold", tree="this", **now)
    if args.baseline_src:
        before = best[args.baseline_src]
        emit("fold", tree=args.baseline_src, **before)
        emit(
            "fold_ratio",
            this_over_baseline=round(now["cpu_us_per_check"] / before["cpu_us_per_check"], 3),
        )


if __name__ == "__main__":
    main()
