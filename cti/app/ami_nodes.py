"""What the daemon itself does with the AMI connections' events (the core gets them too).

Each node's connection going up or down is logged once with the gap between; an
overflowed event queue asks that node for a resync; on a node's first login, a check that
the configured prompts exist on that Asterisk (its answers arrive as UserEvents through the
same event queue, so the pump hands them here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from structlog.typing import FilteringBoundLogger

from cti.adapters.ami import AmiClient, QueueItem
from cti.adapters.prompt_check import PromptCheck, configured_prompts, run_check
from cti.app.jobs import Jobs
from cti.events import AmiConnected, AmiDisconnected, AmiEvent, AmiEventsLost
from cti.settings import Settings

__all__ = ["AmiNodes"]

_PROMPT_CHECK_S = 30  # how long a node's prompt check may take


class AmiNodes:
    """Watches each node's connection events and runs the prompt check."""

    def __init__(
        self,
        settings: Settings,
        clients: Mapping[str, AmiClient],
        *,
        jobs: Jobs,
        log: FilteringBoundLogger,
    ) -> None:
        self._settings = settings
        self._clients = clients
        self._jobs = jobs
        self._log = log
        self._gap_since: dict[str, float] = {}  # node -> when its connection went down
        self._prompt_checks: dict[str, PromptCheck] = {}  # check id -> the check running
        self._on: dict[type, Callable[[Any], None]] = {
            AmiConnected: self._up,
            AmiDisconnected: self._down,
            AmiEventsLost: self._lost,
        }

    def observe(self, item: QueueItem) -> None:
        """One item of the event queue, before the core handles it."""
        if isinstance(item, AmiEvent):
            if item.name == "UserEvent" and self._prompt_checks:
                for check in self._prompt_checks.values():
                    check.feed(item.headers)
            return
        handler = self._on.get(type(item))
        if handler is not None:
            handler(item)

    def _up(self, item: AmiConnected) -> None:
        transit = {n.name for n in self._settings.ami.nodes if n.transit}
        # a transit (county) node runs no IVR: its prompts are the city's concern
        if not item.reconnect and item.node not in transit:
            self._jobs.start(self._check_prompts(item.node), f"ami[{item.node}].prompts")
        since = self._gap_since.pop(item.node, None)
        gap = round(item.time - since, 3) if since is not None else None
        self._log.info(
            "ami_node_up",
            node=item.node,
            version=item.version,
            reconnect=item.reconnect,
            gap_s=gap,
            resync="CoreShowChannels",
        )

    def _down(self, item: AmiDisconnected) -> None:
        self._gap_since.setdefault(item.node, item.time)
        self._log.warning("ami_node_down", node=item.node, reason=item.reason)

    def _lost(self, item: AmiEventsLost) -> None:
        self._log.error("ami_events_lost", node=item.node, count=item.count, resync=True)
        client = self._clients.get(item.node)
        if client is not None:
            client.request_resync()

    async def _check_prompts(self, node: str) -> None:
        """Are the configured prompts on this Asterisk? Missing ones are a warning: the
        IVR would say nothing where they should be (docs/ivr.md)."""
        client = self._clients.get(node)
        if client is None:
            return
        prompts = configured_prompts(self._settings)
        try:
            check = await run_check(client, prompts)
            self._prompt_checks[check.check_id] = check
            async with asyncio.timeout(_PROMPT_CHECK_S):
                await check.done.wait()
            missing = check.missing()
        except Exception as exc:  # noqa: BLE001 - a check, not a reason to stop
            self._log.warning("prompts_check_failed", node=node, error=repr(exc))
            return
        finally:
            self._prompt_checks.clear()
        if missing:
            self._log.warning(
                "prompts_missing",
                node=node,
                missing=missing,
                hint="record them or fix the names in ivr: (cti check-config --live)",
            )
        else:
            self._log.info("prompts_checked", node=node, prompts=len(prompts))
