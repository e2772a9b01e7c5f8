"""After a restart: the calls the daemon had taken, and the seats that were on them.

Pure (no I/O): the adapter (:mod:`cti.adapters.restart`) reads what the database remembers
and hands it over as the frozen records below; the core decides once the first
``CoreShowChannels`` list of a node is complete, i.e. once it knows which calls are still up.

* A **taken call** is one whose ticket draft was written (an outbox ``create``) but whose end
  never was (no ``update``, no call record). If it is still up, the daemon follows it as if it
  had never been away: its end writes the ticket's facts. If it is gone, it ended while the
  daemon was down: :func:`reconstruct` builds its call record and ticket facts from what is
  known (the draft, the seats' stored state changes for it), marked as reconstructed, with its
  end bounded by the outage — after the daemon was last known alive (its heartbeat), before
  the restart's channel list.
* A **busy seat** is one whose last stored state was reserved, ringing, talking or wrap-up.
  It comes back in that state, on that call; when the call turns out to be over, the seat goes
  on as if it had just ended (wrap-up, then what the agent last chose) — see
  ``numberplan.queue.after_restart``.
"""

from __future__ import annotations

from dataclasses import replace

from cti.calls.model import CallSummary
from cti.core.messages import TakenCall
from cti.workorders.model import TicketCallFacts

__all__ = ["reconstruct"]


def reconstruct(
    call: TakenCall,
    *,
    ended_after: float,
    ended_before: float,
    recording: str | None = None,
) -> tuple[CallSummary, TicketCallFacts]:
    """The call record and ticket facts of a call that ended while the daemon was down.

    What is known: who called which line and when it was taken (the draft), the seats that
    rang and the one that answered, and when (the stored seat states). What is not: how and
    exactly when it ended. ``ended_at`` is the lower bound (the daemon's last sign of life, or
    the call's last stored event if later) — as for a call found gone at an AMI resync — and
    the facts carry the upper bound (``ended_before``) and ``reconstructed: true``. A call
    nobody answered counts as abandoned (the caller may also have been answered by the
    fallback ``Queue()``; the daemon cannot tell).
    """
    d = call.draft
    rang: list[str] = []
    answered_by: str | None = None
    answered_at: float | None = None
    last = d.created_at
    for mark in call.marks:
        last = max(last, mark.at)
        if mark.status in ("ringing", "talking") and mark.seat_id not in rang:
            rang.append(mark.seat_id)
        if mark.status == "talking" and answered_at is None:
            answered_by, answered_at = mark.seat_id, mark.at
    ended_at = max(ended_after, last)
    ended_before = max(ended_before, ended_at)
    wait = (answered_at if answered_at is not None else ended_at) - d.created_at
    summary = CallSummary(
        call_id=call.linkedid,
        node=d.node,
        caller=d.caller,
        caller_name=d.caller_name,
        dialed=d.line,
        line=d.line,
        started_at=d.created_at,
        answered_at=answered_at,
        ended_at=ended_at,
        answered_by=answered_by,
        rang=tuple(rang),
        outcome="answered" if answered_by is not None else "abandoned",
        hangup_by="system",
        cause=None,
        transfers=(),
        wait_s=round(max(0.0, wait), 3),
        talk_s=None if answered_at is None else round(max(0.0, ended_at - answered_at), 3),
        history_complete=False,
    )
    facts = TicketCallFacts.from_summary(
        summary, recording=recording if answered_by is not None else None
    )
    return summary, replace(facts, reconstructed=True, ended_before=ended_before)
