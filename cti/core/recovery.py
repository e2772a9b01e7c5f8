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

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace

from structlog.typing import FilteringBoundLogger

from cti.calls.model import CallState, CallSummary
from cti.calls.tracker import CallTracker
from cti.core.messages import Effect, StoreCall, TakenCall
from cti.core.parts import Route
from cti.core.screen import Screen, call_event
from cti.core.tickets import TicketBook
from cti.routing.dispatcher import Dispatcher
from cti.workorders.model import OutboxOp, TicketCallFacts

__all__ = ["Recovery", "reconstruct"]


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


class Recovery:
    """The calls taken before a restart, by node, until the node's first channel list;
    the daemon's last sign of life per node."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        tracker: CallTracker,
        screen: Screen,
        tickets: TicketBook,
        route: Route,
        log: FilteringBoundLogger,
        counts: Counter[str],
    ) -> None:
        self._dispatcher = dispatcher
        self._tracker = tracker
        self._screen = screen
        self._tickets = tickets
        self._route = route
        self._log = log
        self._counts = counts
        self._restart_calls: dict[str, dict[str, TakenCall]] = {}
        self._restart_call_node: dict[str, str] = {}  # linkedid -> node
        self._last_alive: dict[str, float] = {}
        self._listed: set[str] = set()  # nodes whose first channel list is complete
        self._taken_by_id: dict[str, TakenCall] = {}  # linkedid -> taken before the restart

    def restore(self, taken: Iterable[TakenCall], last_alive: Mapping[str, float]) -> None:
        for call in taken:
            self._restart_calls.setdefault(call.node, {})[call.linkedid] = call
            self._restart_call_node[call.linkedid] = call.node
            self._taken_by_id[call.linkedid] = call
        self._last_alive.update(last_alive)

    def first_list(self, node: str, at: float, out: list[Effect]) -> None:
        """The node's first channel list after the start is in: every call taken before the
        restart is either still up (followed from now on: its end writes its ticket's facts)
        or ended during the outage (its record and facts reconstructed); every seat restored
        on a call goes on accordingly."""
        if node in self._listed:
            return
        self._listed.add(node)
        since = self._last_alive.get(node, at)
        gone: dict[str, CallSummary] = {}
        for linkedid, call in self._restart_calls.pop(node, {}).items():
            if self._tracker.call(node, linkedid) is not None:
                self._tickets.opened(linkedid)
                self._screen.keep(linkedid, call.draft)
                continue
            summary, facts = reconstruct(
                call,
                ended_after=min(since, at),
                ended_before=at,
                recording=self._screen.recording(linkedid),
            )
            self._counts["reconstructed"] += 1
            gone[linkedid] = summary
            self._log.info(
                "call_reconstructed",
                linkedid=linkedid,
                node=node,
                seat=summary.answered_by,
                ended_after=facts.ended_at,
                ended_before=facts.ended_before,
            )
            missed = summary.answered_by is None and bool(summary.caller)
            ops = (OutboxOp.update(facts),)
            out.append(StoreCall(summary=summary, ticket_ops=ops, missed=missed))
            body = summary.to_json()
            del body["call_id"]
            out.append(
                call_event(
                    "ended", linkedid, reconstructed=True, ended_before=facts.ended_before, **body
                )
            )
        for seat_id, call_id in self._dispatcher.resuming().items():
            owner = self._restart_call_node.get(call_id, node)
            if owner != node:
                continue
            active = self._tracker.call(node, call_id)
            if call_id in gone:
                self._end_late(seat_id, gone[call_id], out)
            talking = active is not None and active.state is CallState.TALKING
            here = talking and active is not None and active.answered_by == seat_id
            self._route(
                self._dispatcher.resume_seat(seat_id, talking=talking, now=at, answered_here=here),
                out,
            )
            if here:
                self._pop_late(seat_id, call_id, out)
        for linkedid in [k for k, v in self._taken_by_id.items() if v.node == node]:
            del self._taken_by_id[linkedid]

    def _end_late(self, seat_id: str, summary: CallSummary, out: list[Effect]) -> None:
        """The seat was on a call (offered, ringing or talking) that ended while the daemon
        was down: an `end` pop, late and reconstructed, so the agent's console shows who it
        was — the agent may have answered it without a card (issue 15)."""
        taken = self._taken_by_id.get(summary.call_id)
        if taken is None:
            return
        offers = sum(1 for m in taken.marks if m.status == "reserved")
        self._counts["pop_late"] += 1
        self._log.info("pop_late", linkedid=summary.call_id, seat=seat_id, kind="end")
        out.append(
            self._screen.ended_late(
                summary.call_id,
                seat_id,
                max(1, offers),
                taken.draft,
                reconstructed=True,
                outcome=summary.outcome,
                wait_s=summary.wait_s,
                talk_s=summary.talk_s,
                hangup_by=summary.hangup_by,
                transfers=[],
                recording=None,
            )
        )

    def _pop_late(self, seat_id: str, call_id: str, out: list[Effect]) -> None:
        """The seat talks with a call the daemon took before its restart: its answer pop,
        marked late (it answered while the daemon was down, or the pop may not have gone out
        before the stop), so the agent's card shows the caller."""
        taken = self._taken_by_id.get(call_id)
        if taken is not None:
            self._screen.keep(call_id, taken.draft)
        marks = taken.marks if taken is not None else ()
        offers = sum(1 for m in marks if m.status == "reserved")
        # the stored talking mark, if the daemon saw the answer; else unknown (null)
        answered_at = next(
            (m.at for m in marks if m.status == "talking" and m.seat_id == seat_id), None
        )
        self._counts["pop_late"] += 1
        self._log.info("pop_late", linkedid=call_id, seat=seat_id)
        out.append(
            self._screen.answered_late(
                call_id,
                seat_id,
                max(1, offers),
                answered_at,
                recording=self._screen.recording(call_id),
            )
        )
