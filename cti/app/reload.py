"""Reloading the configuration without a restart: SIGHUP, ``systemctl reload``, ``cti reload``.

The daemon re-reads the file it was started with (``cti run -c FILE``), in the same
environment, through the same loader as ``cti check-config``:

* a file with errors is refused with those errors (``config_reload_refused``, each
  problem as ``cti check-config`` prints it); the running configuration stays, whole;
* else :func:`~cti.settings.reload.plan_reload` says what applies live — the number plan
  (handed to the core as :class:`~cti.core.PlanReloaded`, so the core learns it through
  ``handle`` like every other input) and the HTTP bearer tokens — and what changed but
  needs a restart (reported in ``config_reloaded`` as ``needs_restart``, left as it was).

The dialplan on Asterisk is generated from the number plan (``cti dialplan``); the daemon
cannot write Asterisk's files, so when the reloaded plan would generate another dialplan
(or fallback queues) it says so (``dialplan_stale``) with the commands to run. The outcome
of each reload is counted (``cti_config_reloads_total{result}`` in /metrics) and, when the
daemon has a pidfile, written next to it for ``cti reload`` to print (:mod:`.pidfile`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from structlog.typing import FilteringBoundLogger

from cti.app.pidfile import write_status
from cti.dialplan.dialstrings import DialplanError
from cti.dialplan.generate import generate_dialplan, generate_queues
from cti.settings import ConfigError, Settings, load_settings
from cti.settings.reload import ReloadPlan, plan_reload

__all__ = ["REGENERATE_HINT", "ReloadStats", "Reloader"]

REGENERATE_HINT: Final = (
    "cti dialplan -o /etc/asterisk/extensions_cti.conf && "
    "cti dialplan --queues -o /etc/asterisk/queues_cti.conf && "
    "asterisk -rx 'dialplan reload' && asterisk -rx 'queue reload all'"
)


@dataclass(slots=True)
class ReloadStats:
    """What /metrics shows of the reloads since start."""

    applied: int = 0
    refused: int = 0
    needs_restart: tuple[str, ...] = ()  # changed in the file, waiting for a restart
    dialplan_stale: bool = False
    last: dict[str, Any] = field(default_factory=dict)


class Reloader:
    """Re-reads the configuration on :meth:`request` (a signal handler), one at a time.

    Args:
        path: the file the daemon was started with (``None``: it cannot reload).
        current: the configuration running now.
        apply: carries a :class:`ReloadPlan` out (the daemon's parts).
        status_file: where each outcome is written for ``cti reload`` (or ``None``).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        current: Callable[[], Settings],
        apply: Callable[[ReloadPlan], None],
        stats: ReloadStats,
        log: FilteringBoundLogger,
        status_file: Path | None = None,
    ) -> None:
        self._path = path
        self._current = current
        self._apply = apply
        self.stats = stats
        self._log = log
        self._status_file = status_file
        self._wanted = asyncio.Event()
        self._seq = 0

    def request(self) -> None:
        """Ask for a reload (SIGHUP). Several before it runs are one reload."""
        self._wanted.set()

    async def run(self) -> None:
        """The reload task: one reload per request, in the one TaskGroup."""
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            await self.reload()

    async def reload(self) -> dict[str, Any]:
        """Re-read the file now; returns the outcome (also logged, counted and written)."""
        self._seq += 1
        if self._path is None:
            return self._refused(["no configuration file is known to this daemon"])
        try:
            # a thread: a file on a slow disk must not hold up the calls
            loaded = await asyncio.to_thread(load_settings, self._path)
        except ConfigError as exc:
            return self._refused([str(p) for p in exc.problems])
        running = self._current()
        plan = plan_reload(running, loaded)
        try:
            # generated four times: off the loop too
            stale = await asyncio.to_thread(
                _dialplan_differs, running, plan.settings, source=str(self._path)
            )
        except DialplanError as exc:  # what `cti dialplan` would refuse
            return self._refused([f"dialplan: {exc}"])
        self._apply(plan)
        self.stats.applied += 1
        self.stats.needs_restart = plan.needs_restart
        self.stats.dialplan_stale = self.stats.dialplan_stale or stale
        outcome = {
            "result": "applied",
            "applied": list(plan.applied),
            "needs_restart": list(plan.needs_restart),
            "dialplan_stale": self.stats.dialplan_stale,
        }
        self._log.info("config_reloaded", path=str(self._path), **_without_result(outcome))
        if plan.needs_restart:
            self._log.warning(
                "config_needs_restart",
                settings=list(plan.needs_restart),
                hint="these changed in the file and take effect only after a restart "
                "(systemctl restart hotline-cti); until then the old values stay",
            )
        if stale:
            self._log.warning(
                "dialplan_stale",
                hint="the reloaded number plan generates another dialplan: " + REGENERATE_HINT,
            )
        return self._done(outcome)

    def _refused(self, errors: list[str]) -> dict[str, Any]:
        self.stats.refused += 1
        self._log.error(
            "config_reload_refused",
            path=str(self._path),
            error="; ".join(errors),
            problems=errors,
            hint="the running configuration stays; fix the file (cti check-config) and "
            "reload again",
        )
        return self._done({"result": "refused", "errors": errors})

    def _done(self, outcome: dict[str, Any]) -> dict[str, Any]:
        outcome = {"seq": self._seq, "at": time.time(), **outcome}
        self.stats.last = outcome
        if self._status_file is not None:
            try:
                write_status(self._status_file, outcome)
            except OSError as exc:  # cti reload then says it saw no answer; the log has it
                self._log.warning(
                    "reload_status_not_written", file=str(self._status_file), error=str(exc)
                )
        return outcome


def _dialplan_differs(old: Settings, new: Settings, *, source: str) -> bool:
    """Whether `new` generates another dialplan or fallback queues than `old`.

    Raises:
        DialplanError: `new` cannot be generated (what `cti dialplan` refuses).
    """
    after = (
        generate_dialplan(new.numberplan, new.dialplan, source=source),
        generate_queues(new.numberplan, new.dialplan, source=source),
    )
    try:
        before = (
            generate_dialplan(old.numberplan, old.dialplan, source=source),
            generate_queues(old.numberplan, old.dialplan, source=source),
        )
    except DialplanError:  # the running plan never generated one: whatever is there is stale
        return True
    return before != after


def _without_result(outcome: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in outcome.items() if k != "result"}
