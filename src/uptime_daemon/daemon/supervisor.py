"""Root tasks must not die quietly: if one ends, the daemon stops with a failure status."""

from __future__ import annotations

import asyncio

import structlog

log = structlog.get_logger(__name__)


class Supervisor:
    """Holds the stop request and whether the daemon failed; watches the root tasks."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.reason = ""
        self.failed = False

    def request_stop(self, reason: str) -> None:
        """Ask the serve loop to shut down gracefully."""
        if self.stop.is_set():
            log.info("stop_already_under_way", reason=reason, stopping_for=self.reason)
            return
        self.reason = reason
        self.stop.set()

    def watch(self, task: asyncio.Task[None]) -> None:
        """Stop the daemon (exit 1) if ``task`` ends for any reason but cancellation."""

        def done(finished: asyncio.Task[None]) -> None:
            if finished.cancelled():
                return
            error = finished.exception()
            if error is not None:
                log.error(
                    "task_failed", task=finished.get_name(), error=repr(error), exc_info=error
                )
            else:
                log.error("task_exited_unexpectedly", task=finished.get_name())
            self.failed = True
            self.request_stop(f"root task {finished.get_name()} ended")

        task.add_done_callback(done)
