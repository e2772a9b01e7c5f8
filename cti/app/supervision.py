"""Supervisor controls in the daemon (docs/supervision.md): the HTTP router's handler and
the audit log's writer.

A principal (the bearer token's name now; a session user later, by the same name) is looked
up in ``supervision.supervisors``; what it may do is the core's decision
(:mod:`cti.core.supervision`). Every action, refused or done, comes out of the core as a
`StoreAudit` (written here at once, not behind the call records' batch: a supervisor's
action must be in the log even if the daemon dies a second later) and a publish on
``cti/supervision/audit``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from structlog.typing import FilteringBoundLogger

from cti.adapters.db.audit import add_audit, audit_entries
from cti.adapters.db.store import Store
from cti.adapters.http import error_envelope
from cti.app.feed import Feed
from cti.core import Publish, StoreAudit, Supervisor, SupervisorAction, SupervisorRequested
from cti.settings.supervision import SupervisionSettings

__all__ = ["SupervisionDesk"]

# the core's refusal codes (cti/core/supervision.py) as HTTP statuses
_STATUS = {
    "forbidden": 403,
    "unknown_seat": 404,
    "no_call": 409,
    "no_spy": 409,
    "spy_active": 409,
    "spy_not_up": 409,
    "rejected": 409,
    "no_phone": 422,
    "invalid_reason": 422,
}


class SupervisionDesk:
    """`act` and `audit` for the HTTP router; `store` for the `StoreAudit` effect."""

    def __init__(
        self,
        settings: SupervisionSettings,
        store: Store,
        *,
        feed: Feed,
        spies: Callable[[], list[dict[str, Any]]],
        log: FilteringBoundLogger,
    ) -> None:
        self.settings = settings  # swapped by a reload (use_settings)
        self.spies = spies  # the core's answer: who listens to whom now
        self._store = store
        self._feed = feed
        # one audit write at a time, in the order the core decided them: each is its own
        # job, and two concurrent inserts got their ids (the log's order) the other way
        # round on the testbed. asyncio.Lock wakes its waiters first come, first served.
        self._audit_lock = asyncio.Lock()
        self._log = log

    def use_settings(self, settings: SupervisionSettings) -> None:
        self.settings = settings

    def supervisor(self, principal: str) -> Supervisor | None:
        """The supervisor a principal is, or ``None`` (not configured as one)."""
        config = self.settings.get(principal)
        if config is None:
            return None
        return Supervisor(name=config.name, lines=frozenset(config.lines), endpoint=config.endpoint)

    def act(
        self,
        principal: str,
        action: SupervisorAction,
        seat: str,
        *,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One action through the core: (HTTP status, the reply)."""
        who = self.supervisor(principal)
        if who is None:
            # no supervisor, no core decision: nothing is known of what they may supervise;
            # still in the log (who tried what on whom)
            who = Supervisor(name=principal, lines=frozenset())
        return self.act_as(who, action, seat, reason=reason, request_id=request_id)

    def act_as(
        self,
        who: Supervisor,
        action: SupervisorAction,
        seat: str,
        *,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One action of an already resolved supervisor (the board's session user,
        cti/app/board.py) through the same core decision."""
        topic = f"supervisors/{who.name}/reply"
        kept = self._feed(
            SupervisorRequested(
                supervisor=who,
                action=action,
                seat=seat,
                reason=reason,
                request_id=request_id,
                ring_timeout_s=self.settings.ring_timeout_s,
                at=time.time(),
            ),
            keep=lambda e: isinstance(e, Publish) and e.topic == topic,
        )
        reply = next((e.payload for e in kept if isinstance(e, Publish)), None)
        if reply is None:
            return 500, error_envelope("internal", "the core gave no reply")
        if reply.get("ok"):
            return 200, reply
        code = str(reply.get("error", {}).get("code", "rejected"))
        return _STATUS.get(code, 409), reply

    async def audit(
        self,
        *,
        seat: str | None,
        supervisor: str | None,
        limit: int,
        offset: int,
        visible_to: tuple[str, frozenset[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """Entries newest first; `visible_to` (a board user's name, the seats of their
        lines): only the entries on those seats and the user's own."""
        return await audit_entries(
            self._store.engine,
            seat=seat,
            supervisor=supervisor,
            limit=limit,
            offset=offset,
            visible_to=visible_to,
        )

    async def store(self, effect: StoreAudit) -> None:
        try:
            async with self._audit_lock:
                await add_audit(self._store.engine, effect.entry.to_json())
        except Exception:  # noqa: BLE001 - logged with every field: the log is the copy
            self._log.exception("supervision_audit_failed", **effect.entry.to_json())
