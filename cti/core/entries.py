"""Queue-entry facts (docs/kpis.md): one :class:`~cti.kpis.QueueEntry` per stay of a call
in the one line, emitted with the call's record when the call ends.

The core tells this part what it sees, in order: a call taken into the line
(:meth:`EntryBook.entered`), the dispatcher's commands for it (offered, ring cancelled =
RONA, answered, abandoned: :meth:`EntryBook.command`), an agent's transfer to a department
(a new entry, linked to the first by the call id and ``entry_seq``), a callback kept or a
message left, and the call's end (:meth:`EntryBook.ended`), which closes the open entry and
returns them all. A ring-no-answer put-back stays the same entry (``offers`` counts it).

A call that never entered the line but ended on a line of the plan used only the IVR (the
progress query; after hours, the message) or was refused (blacklist): it gets one entry
with that outcome, counted apart and never as offered.
"""

from __future__ import annotations

from dataclasses import dataclass

from cti.calls.model import CallSummary
from cti.kpis.facts import Origin, Outcome, QueueEntry, line_facts
from cti.numberplan import NumberPlan
from cti.routing import commands as rc

__all__ = ["EntryBook"]


@dataclass(slots=True)
class _Entry:
    seq: int
    line: str
    department: str | None
    origin: Origin
    priority: str
    entered_at: float
    first_offered_at: float | None = None
    ringing_since: float | None = None
    ring_s: float = 0.0
    offers: int = 0
    connected_at: float | None = None
    seat: str | None = None
    left_at: float | None = None
    outcome: Outcome | None = None
    talk_s: float = 0.0
    transferred_to: str | None = None

    def stop_ringing(self, now: float) -> None:
        if self.ringing_since is not None:
            self.ring_s += max(0.0, now - self.ringing_since)
            self.ringing_since = None


@dataclass(slots=True)
class _Call:
    node: str
    entries: list[_Entry]
    blacklisted: bool = False
    message_left: bool = False

    @property
    def current(self) -> _Entry:
        return self.entries[-1]


class EntryBook:
    """Each call's queue entries while it lasts; forgotten when it ends."""

    def __init__(self, plan: NumberPlan) -> None:
        self._plan = plan
        self._calls: dict[str, _Call] = {}

    def replan(self, plan: NumberPlan) -> None:
        """A reloaded number plan holds from now on (cti/core/core.py, PlanReloaded)."""
        self._plan = plan

    def __contains__(self, call_id: str) -> bool:
        return call_id in self._calls

    # ---------------------------------------------------------------- what the core sees

    def entered(
        self,
        call_id: str,
        *,
        node: str,
        line: str,
        at: float,
        entered_at: float | None = None,
        blacklisted: bool = False,
    ) -> None:
        """A call taken into the line (or refused at it, `blacklisted`); a second call
        for a call already known is ignored (a resync adopting it again)."""
        if call_id in self._calls:
            return
        department, origin, priority = line_facts(self._plan.line(line))
        start = entered_at if entered_at is not None and entered_at <= at else at
        entry = _Entry(
            seq=1,
            line=line,
            department=department,
            origin=origin,
            priority=priority,
            entered_at=start,
        )
        self._calls[call_id] = _Call(node=node, entries=[entry], blacklisted=blacklisted)

    def command(self, c: rc.Command, now: float) -> None:
        """A dispatcher command about a call, at `now` (the input being handled)."""
        if isinstance(c, rc.ConnectCall):
            e = self._open(c.call_id)
            if e is not None:
                if e.first_offered_at is None:
                    e.first_offered_at = now
                e.ringing_since = now
        elif isinstance(c, rc.CancelRing):
            e = self._open(c.call_id)
            if e is not None:
                e.stop_ringing(now)
                e.offers += 1  # put back in the line: the same entry
        elif isinstance(c, rc.CallAnswered):
            e = self._open(c.call_id)
            if e is not None:
                e.stop_ringing(now)
                e.connected_at = now
                e.seat = c.seat_id
                e.priority = c.priority_class
        elif isinstance(c, rc.RecordAbandonment):
            e = self._open(c.outcome.call_id)
            if e is not None:
                e.priority = c.outcome.priority_class

    def transferred(self, call_id: str, department: str, now: float) -> None:
        """An agent sent the call it talks to to `department` (a skill): the answered
        entry ends here, a new one starts on the department's line."""
        call = self._calls.get(call_id)
        if call is None or call.current.connected_at is None:
            return
        e = call.current
        e.left_at, e.outcome = now, Outcome.ANSWERED
        e.talk_s = max(0.0, now - e.connected_at) if e.connected_at is not None else 0.0
        e.transferred_to = department
        call.entries.append(
            _Entry(
                seq=e.seq + 1,
                line=e.line,
                department=department,
                origin=Origin.TRANSFER,
                priority=e.priority,
                entered_at=now,
            )
        )

    def message_left(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            call.message_left = True

    def ended(self, s: CallSummary, *, callback_kept: bool) -> tuple[QueueEntry, ...]:
        """The call ended: its entries, the open one closed (and the call forgotten)."""
        call = self._calls.pop(s.call_id, None)
        if call is None:
            return self._outside_the_line(s)
        end = s.ended_at
        e = call.current
        if e.outcome is None:
            e.stop_ringing(end)
            e.left_at = end
            if call.blacklisted:
                e.outcome = Outcome.BLACKLISTED
            elif e.connected_at is not None:
                e.outcome = Outcome.ANSWERED
                e.talk_s = max(0.0, _talk_end(s) - e.connected_at)
            elif callback_kept:
                e.outcome = Outcome.CALLBACK_REQUESTED
            elif call.message_left:
                e.outcome = Outcome.VOICEMAIL
            else:
                e.outcome = Outcome.ABANDONED
        return tuple(_fact(s.call_id, call.node, x) for x in call.entries)

    def _outside_the_line(self, s: CallSummary) -> tuple[QueueEntry, ...]:
        # never taken into the line: an IVR-only call on a line of ours, or nothing to count
        # (a seat's own call, an outbound leg, a call answered elsewhere)
        plan_line = self._plan.line(s.line)
        if s.answered_by is not None or plan_line is None:
            return ()
        outcome = Outcome.AFTER_HOURS if s.outcome == "voicemail" else Outcome.IVR_ONLY
        return (
            QueueEntry(
                call_id=s.call_id,
                node=s.node,
                line=s.line,
                department=plan_line.department or None,
                entered_at=s.started_at,
                left_at=max(s.started_at, s.ended_at),
                outcome=outcome,
            ),
        )

    def _open(self, call_id: str) -> _Entry | None:
        call = self._calls.get(call_id)
        if call is None or call.current.outcome is not None:
            return None
        return call.current


def _talk_end(s: CallSummary) -> float:
    """When the agent's leg ended (the tracker's talk end), else the call's end: a survey
    taken after the agent hung up is not talk."""
    if s.answered_at is not None and s.talk_s is not None:
        return min(s.ended_at, s.answered_at + s.talk_s)
    return s.ended_at


def _fact(call_id: str, node: str, e: _Entry) -> QueueEntry:
    left = e.left_at if e.left_at is not None else e.entered_at
    answered = e.outcome is Outcome.ANSWERED
    wait_end = e.connected_at if answered and e.connected_at is not None else left
    return QueueEntry(
        call_id=call_id,
        node=node,
        entry_seq=e.seq,
        line=e.line,
        department=e.department,
        origin=e.origin,
        priority=e.priority,
        entered_at=e.entered_at,
        first_offered_at=e.first_offered_at,
        connected_at=e.connected_at if answered else None,
        left_at=max(left, e.entered_at),
        outcome=e.outcome,
        seat=e.seat if answered else None,
        wait_s=max(0.0, wait_end - e.entered_at),
        ring_s=e.ring_s,
        talk_s=e.talk_s if answered else 0.0,
        offers=e.offers,
        transferred_to=e.transferred_to,
    )
