"""Carries out the core's AMI effects on each Asterisk node, in order (one queue per node);
the actions themselves come from :mod:`cti.adapters.ami_actions`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from structlog.typing import FilteringBoundLogger

from cti.adapters.ami import AmiActionError, AmiClient, AmiError
from cti.adapters.ami_actions import actions, originate_timeout
from cti.core.messages import (
    AddEmergencyLeg,
    AmiEffect,
    OriginateCallback,
    RedirectToSeat,
    ReturnToHold,
    StartSpy,
)

__all__ = ["AmiExecutor"]


class AmiExecutor:
    """Carries out the core's AMI effects, in order, one queue per Asterisk node.

    A failed action (the caller hung up meanwhile, the node is down) is logged with the
    call id and dropped: the core learns what really happened from the events, and an
    action is never re-sent blindly. So is one that cannot be sent at all (a value with a
    line break: refused by the encoder as an AMI header injection) and one that fails for
    any other reason: one effect's failure never ends a node's queue (issue 16).

    `acting` (active/standby, cti/core/leadership.py) is asked right before each action is
    written: a leader whose lease ran out by its own clock (a freeze, a lost database) sends
    nothing more, whatever is still queued; those actions are dropped and counted.
    """

    def __init__(
        self,
        clients: dict[str, AmiClient],
        *,
        log: FilteringBoundLogger,
        acting: Callable[[], bool] = lambda: True,
    ) -> None:
        self._clients = clients
        self._log = log
        self._acting = acting
        self._queues: dict[str, asyncio.Queue[AmiEffect]] = {n: asyncio.Queue() for n in clients}
        self.failed = 0
        self.not_leader = 0  # actions dropped: not (or no longer) the leader

    def submit(self, effect: AmiEffect) -> None:
        q = self._queues.get(effect.node)
        if q is None:
            self._log.error(
                "ami_effect_unknown_node", node=effect.node, effect=type(effect).__name__
            )
            return
        q.put_nowait(effect)

    async def run(self, node: str) -> None:
        q = self._queues[node]
        client = self._clients[node]
        async with asyncio.TaskGroup() as tg:
            while True:
                effect = await q.get()
                if isinstance(effect, AddEmergencyLeg | OriginateCallback | StartSpy):
                    # an async Originate is answered when the operator answers (or not):
                    # seconds later; the effects behind it must not wait for that
                    tg.create_task(
                        self._execute(client, node, effect, originate_timeout(effect)),
                        name=f"adapter.ami[{node}].originate",
                    )
                else:
                    await self._execute(client, node, effect)

    async def _execute(
        self, client: AmiClient, node: str, effect: AmiEffect, timeout: float | None = None
    ) -> None:
        try:
            for action in actions(effect):
                if not self._acting():
                    self.not_leader += 1
                    self._log.warning(
                        "ami_effect_dropped",
                        effect=type(effect).__name__,
                        node=node,
                        linkedid=getattr(effect, "call_id", None),
                        reason="not_leader",
                    )
                    return
                try:
                    await client.action(action, timeout=timeout)
                except AmiActionError as exc:
                    if not isinstance(effect, RedirectToSeat | ReturnToHold):
                        raise
                    # a held caller leaving a Dial (our ReturnToHold, or the Dial's own
                    # timeout, then at once the offer to the next seat) can be refused for
                    # a moment; the actions are idempotent: once more, a moment later
                    self._log.info("ami_effect_retry", effect=type(effect).__name__, error=str(exc))
                    await asyncio.sleep(0.3)
                    await client.action(action, timeout=timeout)
        except AmiError as exc:
            self.failed += 1
            self._log.warning(
                "ami_effect_failed",
                effect=type(effect).__name__,
                node=node,
                linkedid=getattr(effect, "call_id", None),
                error=str(exc),
            )
        except ValueError as exc:  # encode_action: CR/LF in a value; nothing was sent
            self.failed += 1
            self._log.error(
                "ami_effect_failed",
                effect=type(effect).__name__,
                node=node,
                linkedid=getattr(effect, "call_id", None),
                error=str(exc),
                refused=True,
            )
        except Exception:  # noqa: BLE001 - a bug costs this action, not the queue
            self.failed += 1
            self._log.exception(
                "ami_effect_failed",
                effect=type(effect).__name__,
                node=node,
                linkedid=getattr(effect, "call_id", None),
            )
