"""What the seats and the integrations see: screen-pops (弹屏), seat and queue payloads and
call events. The one owner of what a pop shows of a call — its draft, where it stood in the
line, the seat it was popped to, the ticket number once the backend has answered.

A pop's ``kind``: ``offer`` (ringing), ``answer`` (connected; ``late`` when the daemon
found the call already talking after a restart), ``update`` (new facts: the ticket number,
110's data), ``end`` (hung up, or the offer withdrawn).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from cti.core.messages import Pop, Publish
from cti.dispatch110 import Transfer110
from cti.routing import commands as rc
from cti.workorders.model import TicketDraft

__all__ = ["SCHEMA_VERSION", "Screen", "call_event", "seat_payload", "snapshot_payload"]

SCHEMA_VERSION: Final = 1


class Screen:
    """Per call: its draft, its queue marks, the seat it is popped to, the seat talking
    with it and its ticket number. `transfer_of` gives a call's 110 transfer, if any."""

    def __init__(self, *, recording: str, transfer_of: Callable[[str], Transfer110 | None]) -> None:
        self._recording = recording  # where cti-record puts a call's recording
        self._transfer_of = transfer_of
        self._drafts: dict[str, TicketDraft] = {}  # call_id -> what a pop shows of it
        self._queue_marks: dict[str, list[dict[str, Any]]] = {}  # call_id -> its wait so far
        self._popped: dict[str, tuple[str, int]] = {}  # call_id -> (seat, attempt) popped
        self._talking: dict[str, str] = {}  # call_id -> the seat that answered it
        self._numbers: dict[str, str] = {}  # call_id -> its ticket number, once known

    # ---- what the screen knows

    def show(self, call_id: str, draft: TicketDraft) -> None:
        self._drafts[call_id] = draft

    def keep(self, call_id: str, draft: TicketDraft) -> None:
        """A draft for a call seen again (after a restart), unless one is shown already."""
        self._drafts.setdefault(call_id, draft)

    def draft(self, call_id: str) -> TicketDraft | None:
        return self._drafts.get(call_id)

    def popped_to(self, call_id: str) -> str | None:
        popped = self._popped.get(call_id)
        return popped[0] if popped is not None else None

    def talking(self, call_id: str) -> str | None:
        return self._talking.get(call_id)

    def ticket_number(self, call_id: str) -> str | None:
        return self._numbers.get(call_id)

    def recording(self, call_id: str) -> str:
        return self._recording.format(call_id=call_id)

    # ---- pops

    def offered(self, c: rc.ConnectCall, **extra: Any) -> Pop:
        """The seat's screen: the offer pop, with where the call stood while it waited."""
        self._popped[c.call_id] = (c.seat_id, c.attempt)
        if c.queue_positions:
            self._queue_marks[c.call_id] = [m.to_json() for m in c.queue_positions]
        return self._pop(c.seat_id, "offer", c.call_id, c.attempt, step=c.step, **extra)

    def answered(self, call_id: str, at: float, **extra: Any) -> Pop | None:
        """The popped seat answered: the answer pop (None when nothing was popped)."""
        popped = self._popped.get(call_id)
        if popped is None:
            return None
        self._talking[call_id] = popped[0]
        return self._pop(popped[0], "answer", call_id, popped[1], answered_at=at, **extra)

    def answered_late(
        self, call_id: str, seat: str, attempt: int, answered_at: float | None, **extra: Any
    ) -> Pop:
        """A call found talking with `seat` when the daemon came back (it answered while the
        daemon was down, or its answer pop may not have gone out): the answer pop, late,
        so the agent's card shows the caller. Same `pop_id` as the live one would have had
        (the console de-duplicates a repeat)."""
        self._popped[call_id] = (seat, attempt)
        self._talking[call_id] = seat
        return self._pop(
            seat, "answer", call_id, attempt, answered_at=answered_at, late=True, **extra
        )

    def ended_late(
        self, call_id: str, seat: str, attempt: int, draft: TicketDraft, **extra: Any
    ) -> Pop:
        """A call offered to `seat` that ended while the daemon was down (found gone when it
        came back): an `end` pop, late, with the caller, so the agent who may have talked
        to them sees who it was (the call record and ticket are reconstructed)."""
        self._drafts.setdefault(call_id, draft)
        pop = self._pop(seat, "end", call_id, attempt, late=True, **extra)
        self.ended(call_id, keep_draft=False)
        return pop

    def update(self, call_id: str) -> Pop | None:
        popped = self._popped.get(call_id)
        if popped is None:
            return None
        return self._pop(popped[0], "update", call_id, popped[1])

    def withdraw(self, call_id: str, **extra: Any) -> Pop | None:
        """The call has left the popped seat's screen: the end pop."""
        popped = self._popped.pop(call_id, None)
        if popped is None:
            return None
        return self._pop(popped[0], "end", call_id, popped[1], **extra)

    def number_known(self, call_id: str, number: str) -> Pop | None:
        """The backend created the call's ticket: an update pop for the seat, if popped."""
        if call_id not in self._drafts:
            return None
        self._numbers[call_id] = number
        return self.update(call_id)

    def ended(self, call_id: str, *, keep_draft: bool) -> None:
        """The call is over for the screen (a kept place keeps its draft and marks)."""
        if not keep_draft:
            self._drafts.pop(call_id, None)
            self._queue_marks.pop(call_id, None)
        self._talking.pop(call_id, None)
        self._numbers.pop(call_id, None)

    def _pop(self, seat: str, kind: str, call_id: str, attempt: int, **extra: Any) -> Pop:
        draft = self._drafts.get(call_id)
        call: dict[str, Any] = {"call_id": call_id}
        if draft is not None:
            call.update(
                node=draft.node,
                caller=draft.caller,
                caller_name=draft.caller_name,
                line=draft.line,
                line_name=draft.line_name,
                department=draft.department,
                skill=draft.skill,
                origin=draft.origin,
                arrived_at=draft.created_at,
            )
            if draft.via is not None:
                call["via"] = draft.via.to_json()
        call["queue_positions"] = self._queue_marks.get(call_id, [])
        transfer = self._transfer_of(call_id)
        if transfer is not None:
            call["dispatch110"] = transfer.pop_json()
        call.update(extra)
        return Pop(
            seat=seat,
            kind=kind,
            call_id=call_id,
            attempt=attempt,
            call=call,
            ticket=self._numbers.get(call_id),
        )


def call_event(kind: str, call_id: str, *, event: str | None = None, **body: Any) -> Publish:
    """A `cti/calls/events` message; `event_id` is `<call id>:<event or kind>`, the same on
    a re-delivery (docs/mqtt.md)."""
    return Publish(
        topic="calls/events",
        payload={
            "schema_version": SCHEMA_VERSION,
            "event_id": f"{call_id}:{event or kind}",
            "type": kind,
            "call_id": call_id,
            **body,
        },
    )


def seat_payload(c: rc.PublishSeatState) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        **c.state.to_json(),
        "previous": c.previous,
        "cause": c.cause,
    }


def snapshot_payload(s: rc.QueueSnapshot) -> dict[str, Any]:
    return {
        "at": s.at,
        "waiting": s.waiting,
        "offered": s.offered,
        "by_class": s.by_class,
        "by_skill": s.by_skill,
        "longest_wait_s": s.longest_wait_s,
        "ready_seats": s.ready_seats,
        "staffed_seats": s.staffed_seats,
        "aht_s": s.aht_s,
        "ewt_new_call_s": s.ewt_new_call_s,
    }
