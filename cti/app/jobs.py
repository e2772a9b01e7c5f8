"""Short background jobs, started from synchronous code, run in the daemon's one TaskGroup.

An effect is carried out synchronously (`Daemon.feed` never awaits), but a few need a
coroutine: a database write (the callback list, an escalation notice) or an AMI read whose
answer goes back into the core. Each becomes a named task in the one TaskGroup, so
shutdown cancels it with the rest and nothing runs unsupervised (STYLE.md 8). A job that
fails is logged with its name and costs that job only: it never stops the daemon.

Jobs started before the group runs (while the database state is loaded) wait and start
with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from structlog.typing import FilteringBoundLogger

__all__ = ["Jobs"]


class Jobs:
    """Named background jobs in the daemon's TaskGroup, each failure logged on its own."""

    def __init__(self, *, log: FilteringBoundLogger) -> None:
        self._log = log
        self._group: asyncio.TaskGroup | None = None
        self._waiting: list[tuple[Coroutine[Any, Any, None], str]] = []

    def attach(self, group: asyncio.TaskGroup) -> None:
        """Run jobs in `group` from now on (and those started before it ran)."""
        self._group = group
        waiting, self._waiting = self._waiting, []
        for coro, name in waiting:
            self.start(coro, name)

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run `coro` as the task `job.<name>`; never raises."""
        if self._group is None:
            self._waiting.append((coro, name))
            return
        job = self._guarded(coro, name)
        try:
            self._group.create_task(job, name=f"job.{name}")
        except RuntimeError:  # the group is shutting down: the job would be cancelled anyway
            job.close()
            coro.close()
            self._log.warning("background_task_dropped", task=name, reason="shutting down")

    async def _guarded(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await coro
        except Exception as exc:  # noqa: BLE001 - a job's failure costs that job only
            self._log.error("background_task_failed", task=name, error=repr(exc))
