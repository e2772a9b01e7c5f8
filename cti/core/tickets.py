"""Ticket drafts (工单) and their origin: the one builder of a :class:`TicketDraft`, whether
the ticket is opened for a call the daemon took, for a 110 data transfer (no call), or for an
after-hours message (the IVR) — so the three never disagree on line, department and skill.

:class:`TicketBook` remembers which calls had their draft written (their end then writes
the call's facts to the same ticket) and the message a waiting caller left instead.
"""

from __future__ import annotations

from typing import Any, Final

from cti.calls.model import CallSummary
from cti.dispatch110 import Transfer110
from cti.numberplan import Line, NumberPlan
from cti.workorders.model import Origin, OutboxOp, TicketCallFacts, TicketDraft

__all__ = ["MAIN_LINE", "TicketBook", "draft_for", "ticket_origin"]

MAIN_LINE: Final = "12345"


def ticket_origin(line: Line | None, number: str) -> Origin:
    """How the call reached 12345 (a ticket field): the 110 line, the main number, a
    ministry special number (123xx), or an old department number folded in."""
    if line is not None and line.dispatch110:
        return "dispatch110"
    if line is None or number == MAIN_LINE:
        return "direct"
    if len(number) == 5 and number.startswith("123"):
        return "special_number"
    return "department_line"


def draft_for(
    plan: NumberPlan,
    *,
    call_id: str,
    node: str,
    number: str,
    caller: str,
    caller_name: str,
    at: float,
    transfer: Transfer110 | None = None,
    origin: Origin | None = None,
    **extra: Any,
) -> TicketDraft:
    """The draft of a ticket opened on `number` (a line of the plan, or not): line name,
    department and skill from the plan; 110's summary, address and incident number when
    the call or the data came from 110; `extra` (recording, content) as given."""
    line = plan.line(number)
    fields: dict[str, Any] = {**_from_110(transfer), **extra}
    return TicketDraft(
        call_id=call_id,
        node=node,
        caller=caller,
        caller_name=caller_name if caller_name not in ("<unknown>", "unknown") else "",
        line=number,
        line_name=line.name if line is not None else number,
        department=line.department if line is not None else "",
        origin=origin or ticket_origin(line, number),
        skill=(line.skill if line is not None else None) or plan.general_skill,
        created_at=at,
        **fields,
    )


def _from_110(t: Transfer110 | None) -> dict[str, Any]:
    """What a ticket takes from 110's push: the summary as content, the address, and
    110's incident number."""
    if t is None:
        return {}
    head = f"【110转办 {t.category}】" if t.category else "【110转办】"
    return {"content": head + t.summary, "address": t.address, "external_ref": t.transfer_id}


class TicketBook:
    """The calls whose ticket draft was written, and messages left while waiting."""

    def __init__(self) -> None:
        self._opened: set[str] = set()
        self._messages: dict[str, str] = {}  # call id -> a message left while waiting

    def opened(self, call_id: str) -> None:
        self._opened.add(call_id)

    def is_open(self, call_id: str) -> bool:
        return call_id in self._opened

    def message_left(self, call_id: str, recording: str) -> None:
        self._messages[call_id] = recording

    def closing_ops(
        self, s: CallSummary, *, recording: str | None, external_ref: str | None
    ) -> tuple[OutboxOp, ...]:
        """The call's facts for its ticket when it ends (none if it had no ticket); an
        overload message left while waiting is the ticket's recording."""
        if s.call_id not in self._opened:
            self._messages.pop(s.call_id, None)
            return ()
        self._opened.discard(s.call_id)
        rec = self._messages.pop(s.call_id, recording)
        facts = TicketCallFacts.from_summary(s, recording=rec, external_ref=external_ref)
        return (OutboxOp.update(facts),)
