"""The missed-call callback list (回拨) in the daemon: one click calls back, the call's end
closes the entry.

The list itself is a table (cti/adapters/db/tables.py, queried in cti/adapters/db/callbacks.py);
the call back is the core's (`CallbackRequested` -> an Originate, `CallbackDone` when it
ends). The list is an aid to
the seats: the call records hold everything, so a failed list write is logged, not retried.
"""

from __future__ import annotations

import time
from typing import Any

from structlog.typing import FilteringBoundLogger

from cti.adapters.db.callbacks import get_callback, mark_callback
from cti.adapters.db.store import Store
from cti.adapters.http import error_envelope
from cti.app.feed import Feed
from cti.core import CallbackDone, CallbackReply, CallbackRequested

__all__ = ["Callbacks"]


class Callbacks:
    """`call_back` for the HTTP router (:class:`~cti.adapters.http.callbacks.CallbackHandler`),
    and `close` for the `CallbackDone` effect."""

    def __init__(self, store: Store, *, feed: Feed, log: FilteringBoundLogger) -> None:
        self.store = store  # the router reads the list from it (GET /api/v1/callbacks)
        self._feed = feed
        self._log = log

    async def call_back(self, call_id: str, seat: str) -> tuple[int, dict[str, Any]]:
        """One-click callback of a missed call from `seat` (HTTP)."""
        entry = await get_callback(self.store, call_id)
        if entry is None:
            return 404, error_envelope(
                "not_found", f"no missed call {call_id!r} on the callback list"
            )
        if entry["status"] != "open":
            return 409, error_envelope("not_open", f"the entry is {entry['status']}")
        kept = self._feed(
            CallbackRequested(
                callback_id=call_id,
                node=entry["node"],
                seat=seat,
                number=entry["caller"],
                at=time.time(),
            ),
            keep=lambda e: isinstance(e, CallbackReply),
        )
        reply = next(e for e in kept if isinstance(e, CallbackReply))
        if not reply.ok:
            status = 404 if reply.code == "unknown_seat" else 409
            return status, error_envelope(reply.code, reply.message)
        await mark_callback(
            self.store,
            call_id,
            status="calling",
            attempts=entry["attempts"] + 1,
            last_seat=seat,
            last_at=time.time(),
        )
        return 202, {"ok": True, "call_id": call_id, "seat": seat, "status": "calling"}

    async def close(self, done: CallbackDone) -> None:
        """A callback call ended: answered closes the entry, anything else leaves it open."""
        answered = done.outcome == "answered"
        try:
            await mark_callback(
                self.store,
                done.callback_id,
                status="done" if answered else "open",
                last_outcome=done.outcome,
                last_at=done.at,
                callback_call_id=done.call_id,
            )
        except Exception:  # noqa: BLE001 - the list is an aid; the call record has it all
            self._log.exception("callback_mark_failed", linkedid=done.call_id)
        self._log.info(
            "callback_ended", linkedid=done.call_id, seat=done.seat_id, outcome=done.outcome
        )
