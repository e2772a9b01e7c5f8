"""The transfers from 110: matching them to calls, and the feedback each one owes.

A `voice` transfer is pushed by 110 and its caller arrives on a 110 line, in either order.
They are matched by the transfer id the 110 trunk carries (SIP header `X-Transfer-Id`,
channel variable `CTI_TRANSFER_ID`), else by the caller's number within
`match_window_s`. A `data` transfer is a ticket only.

Feedback to 110, per transfer, in this order: `accepted` (the push was taken), `answered`
(a seat has the caller), `ticket` (the ticket number — reported once the call is answered
and the number known, so 110 hears "agent X took it, ticket N"), `ended` (outcome and
durations). Before `ended`, when the agent sends the call on: `transferred_back` (to 110)
or `escalated` (to 119/120/122). A `data` transfer reports `accepted` then `ticket`. The
only exception to the
order: when the work-order backend was down until after the call ended, `ticket` comes
after `ended` — it is never skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from cti.dispatch110.model import Feedback110, Transfer110, TransferMode
from cti.numberplan import number_key

__all__ = ["PushOutcome", "TransferBook", "data_call_id"]


def data_call_id(transfer_id: str) -> str:
    """The call id a `data` transfer's ticket is opened under (there is no call)."""
    return f"110:{transfer_id}"


@dataclass(slots=True)
class _Entry:
    transfer: Transfer110
    received_at: float
    status: str = "accepted"  # accepted | answered | ended  (data: accepted | ticket)
    call_id: str | None = None
    seat: str | None = None
    ticket: str | None = None
    outcome: str | None = None
    answered: bool = False
    ended: bool = False
    ticket_reported: bool = False
    seq: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "transfer_id": self.transfer.transfer_id,
            "mode": self.transfer.mode.value,
            "status": self.status,
            "received_at": self.received_at,
            "call_id": self.call_id,
            "seat": self.seat,
            "ticket": self.ticket,
            "outcome": self.outcome,
            "events": self.seq,
            "transfer": self.transfer.to_json(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PushOutcome:
    """What a push did: `new` (accepted), `duplicate` (the same push again: nothing
    changes), `conflict` (the same transfer id with other content: refused)."""

    result: Literal["new", "duplicate", "conflict"]
    status: dict[str, Any]
    feedback: tuple[Feedback110, ...] = ()
    matched_call: str | None = None


@dataclass(slots=True)
class _Call:
    caller: str
    transfer_id: str | None
    at: float


class TransferBook:
    def __init__(self, *, match_window_s: float = 300.0) -> None:
        self.match_window_s = match_window_s
        self._by_id: dict[str, _Entry] = {}
        self._by_call: dict[str, str] = {}  # call id -> transfer id
        self._unmatched: dict[str, _Call] = {}  # live calls on a 110 line, no transfer yet

    # ------------------------------------------------------------------ reading

    def status(self, transfer_id: str) -> dict[str, Any] | None:
        entry = self._by_id.get(transfer_id)
        return None if entry is None else entry.to_json()

    def transfer_of(self, call_id: str) -> Transfer110 | None:
        tid = self._by_call.get(call_id)
        return None if tid is None else self._by_id[tid].transfer

    def __len__(self) -> int:
        return len(self._by_id)

    # ------------------------------------------------------------------ inputs

    def push(self, transfer: Transfer110, at: float) -> PushOutcome:
        tid = transfer.transfer_id
        known = self._by_id.get(tid)
        if known is not None:
            result: Literal["duplicate", "conflict"] = (
                "duplicate" if known.transfer == transfer else "conflict"
            )
            return PushOutcome(result=result, status=known.to_json())
        entry = self._by_id[tid] = _Entry(transfer=transfer, received_at=at)
        feedback = [self._event(entry, "accepted", at)]
        matched = None
        if transfer.mode is TransferMode.DATA:
            self._by_call[data_call_id(tid)] = tid
        else:
            matched = self._match_call(transfer, at)
            if matched is not None:
                self._bind(entry, matched)
        return PushOutcome(
            result="new", status=entry.to_json(), feedback=tuple(feedback), matched_call=matched
        )

    def call_arrived(
        self, call_id: str, caller: str, transfer_id: str | None, at: float
    ) -> Transfer110 | None:
        """A call came in on a 110 line: its transfer, if 110 already pushed it."""
        entry = None
        if transfer_id:
            entry = self._by_id.get(transfer_id)
            if entry is not None and (
                entry.call_id is not None or entry.transfer.mode is not TransferMode.VOICE
            ):
                entry = None  # already has its call, or is a data transfer: not this one
        if entry is None and not transfer_id:
            entry = self._pending_for_caller(caller, at)
        if entry is None:
            self._unmatched[call_id] = _Call(
                caller=number_key(caller), transfer_id=transfer_id, at=at
            )
            return None
        self._bind(entry, call_id)
        return entry.transfer

    def call_answered(self, call_id: str, seat: str, at: float) -> list[Feedback110]:
        entry = self._entry_of(call_id)
        if entry is None or entry.answered:
            return []
        entry.answered, entry.seat, entry.status = True, seat, "answered"
        out = [self._event(entry, "answered", at, seat=seat)]
        out += self._ticket_if_due(entry, at)
        return out

    def ticket_known(self, call_id: str, number: str, at: float) -> list[Feedback110]:
        entry = self._entry_of(call_id)
        if entry is None or entry.ticket is not None:
            return []
        entry.ticket = number
        if entry.transfer.mode is TransferMode.DATA:
            entry.status = "ticket"
        return self._ticket_if_due(entry, at)

    def call_escalated(self, call_id: str, to: str, mode: str, at: float) -> list[Feedback110]:
        """The agent sent the call on (docs/escalation.md): back to 110 is
        `transferred_back`; to 119/120/122 `escalated`."""
        entry = self._entry_of(call_id)
        if entry is None or entry.ended:
            return []
        event = "transferred_back" if to == "110" else "escalated"
        return [self._event(entry, event, at, to=to, mode=mode, seat=entry.seat)]

    def call_ended(
        self,
        call_id: str,
        at: float,
        *,
        outcome: str,
        wait_s: float | None,
        talk_s: float | None,
    ) -> list[Feedback110]:
        self._unmatched.pop(call_id, None)
        entry = self._entry_of(call_id)
        if entry is None or entry.ended:
            return []
        entry.ended, entry.outcome, entry.status = True, outcome, "ended"
        out = self._ticket_if_due(entry, at)
        out.append(
            self._event(
                entry,
                "ended",
                at,
                outcome=outcome,
                wait_s=wait_s,
                talk_s=talk_s,
                seat=entry.seat,
                ticket=entry.ticket,
            )
        )
        return out

    def restore(self, rows: Iterable[dict[str, Any]]) -> None:
        """Transfers stored before a restart (`to_json()` rows), so a push repeated after
        it is still a duplicate and the feedback goes on from where it stopped."""
        for row in rows:
            transfer = Transfer110.from_json(row["transfer"])
            entry = _Entry(
                transfer=transfer,
                received_at=float(row["received_at"]),
                status=str(row["status"]),
                call_id=row.get("call_id"),
                seat=row.get("seat"),
                ticket=row.get("ticket"),
                outcome=row.get("outcome"),
                seq=int(row.get("events", 0)),
            )
            entry.answered = entry.status in ("answered", "ended") and entry.seat is not None
            entry.ended = entry.status == "ended"
            entry.ticket_reported = entry.ticket is not None and (
                entry.answered or entry.ended or transfer.mode is TransferMode.DATA
            )
            self._by_id[transfer.transfer_id] = entry
            if transfer.mode is TransferMode.DATA:
                self._by_call[data_call_id(transfer.transfer_id)] = transfer.transfer_id
            elif entry.call_id is not None and not entry.ended:
                self._by_call[entry.call_id] = transfer.transfer_id

    def forget(self, transfer_id: str) -> None:
        """Undo a push that could not be stored (the push API answers an error, and 110
        pushes it again — which must then be new, not a duplicate)."""
        entry = self._by_id.pop(transfer_id, None)
        if entry is None:
            return
        for call_id in [c for c, t in self._by_call.items() if t == transfer_id]:
            del self._by_call[call_id]
            if entry.call_id == call_id and not call_id.startswith("110:"):
                self._unmatched[call_id] = _Call(
                    caller=number_key(entry.transfer.caller), transfer_id=None, at=entry.received_at
                )

    # ------------------------------------------------------------------ internals

    def _entry_of(self, call_id: str) -> _Entry | None:
        tid = self._by_call.get(call_id)
        return None if tid is None else self._by_id.get(tid)

    def _bind(self, entry: _Entry, call_id: str) -> None:
        entry.call_id = call_id
        self._by_call[call_id] = entry.transfer.transfer_id
        self._unmatched.pop(call_id, None)

    def _match_call(self, transfer: Transfer110, at: float) -> str | None:
        """A live 110-line call for a push that just arrived: by the transfer id the
        trunk carried, else by caller within the window (the latest such call)."""
        for call_id, call in self._unmatched.items():
            if call.transfer_id == transfer.transfer_id:
                return call_id
        key = number_key(transfer.caller)
        best: tuple[float, str] | None = None
        for call_id, call in self._unmatched.items():
            if call.transfer_id or call.caller != key or at - call.at > self.match_window_s:
                continue
            if best is None or call.at > best[0]:
                best = (call.at, call_id)
        return None if best is None else best[1]

    def _pending_for_caller(self, caller: str, at: float) -> _Entry | None:
        key = number_key(caller)
        best: _Entry | None = None
        for entry in self._by_id.values():
            t = entry.transfer
            if (
                entry.call_id is not None
                or t.mode is not TransferMode.VOICE
                or at - entry.received_at > self.match_window_s
                or number_key(t.caller) != key
            ):
                continue
            if best is None or entry.received_at > best.received_at:
                best = entry
        return best

    def _ticket_if_due(self, entry: _Entry, at: float) -> list[Feedback110]:
        due = entry.transfer.mode is TransferMode.DATA or entry.answered or entry.ended
        if entry.ticket is None or entry.ticket_reported or not due:
            return []
        entry.ticket_reported = True
        return [self._event(entry, "ticket", at, ticket=entry.ticket, seat=entry.seat)]

    def _event(self, entry: _Entry, event: str, at: float, **body: Any) -> Feedback110:
        entry.seq += 1
        return Feedback110(
            transfer_id=entry.transfer.transfer_id,
            seq=entry.seq,
            event=event,
            at=at,
            body={"call_id": entry.call_id, "status": entry.status, **body},
        )
