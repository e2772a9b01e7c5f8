"""Tickets (工单) as the CTI sees them: frozen records, no I/O.

The CTI opens a ticket draft when a call arrives and reports the call's facts when it
ends; everything else on a ticket (request type, content, address, the 受理→…→归档 states)
belongs to the agent and the work-order backend (DOMAIN.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from cti.calls.model import CallSummary, Via

__all__ = [
    "OpKind",
    "Origin",
    "OutboxOp",
    "RequestType",
    "Ticket",
    "TicketCallFacts",
    "TicketDraft",
    "TicketRef",
    "TicketStatus",
    "TicketTransfer",
    "op_key",
]

Origin = Literal["direct", "special_number", "department_line", "dispatch110", "callback"]
OpKind = Literal["create", "update", "rate"]


class RequestType(enum.StrEnum):
    """诉求类型, set by the agent. The value is the Chinese word the backend stores."""

    CONSULTATION = "咨询"
    HELP = "求助"
    COMPLAINT = "投诉"
    REPORT = "举报"
    SUGGESTION = "建议"
    PRAISE = "表扬"


class TicketStatus(enum.StrEnum):
    """The ticket states of DOMAIN.md. The backend owns them; the CTI only creates
    tickets in `INTAKE`. A backend may report a state not listed here (`Ticket.status`
    is a plain string)."""

    INTAKE = "受理"
    DISPATCHED = "派单"
    SIGNED = "签收"
    HANDLING = "办理"
    CLOSED = "办结"
    CALLBACK = "回访"
    ARCHIVED = "归档"
    RETURNED = "退单"


def op_key(call_id: str, kind: OpKind) -> str:
    """The idempotency key of a ticket operation: one create and one update per call."""
    return f"{call_id}:{kind}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TicketDraft:
    """What the CTI knows when a call arrives: enough to open the ticket before the agent
    says a word. `call_id` is the global call id, ``"<node>:<linkedid>"`` (as in
    `call_records.call_id`)."""

    call_id: str
    node: str
    caller: str
    caller_name: str
    line: str  # the number dialled (CTI_LINE): 12345, 12315, an old department number
    line_name: str  # e.g. 市场监管
    department: str
    origin: Origin
    skill: str
    created_at: float  # epoch seconds (the call's arrival)
    seat: str | None = None
    recording: str | None = None
    # known before the agent speaks only for a transfer from 110 (its summary and address)
    content: str = ""
    address: str = ""
    external_ref: str | None = None  # 110's incident number (接警单号) for a 110 transfer
    # a county node's call (docs/county-nodes.md): the county, what the citizen dialled
    # there (the line is the county line), the call's id in the county's CDRs
    via: Via | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "call_id": self.call_id,
            "node": self.node,
            "caller": self.caller,
            "caller_name": self.caller_name,
            "line": self.line,
            "line_name": self.line_name,
            "department": self.department,
            "origin": self.origin,
            "skill": self.skill,
            "created_at": self.created_at,
            "seat": self.seat,
            "recording": self.recording,
            "content": self.content,
            "address": self.address,
            "external_ref": self.external_ref,
        }
        if self.via is not None:  # only then: every other draft keeps its shape
            out["via"] = self.via.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            call_id=str(data["call_id"]),
            node=str(data["node"]),
            caller=str(data["caller"]),
            caller_name=str(data["caller_name"]),
            line=str(data["line"]),
            line_name=str(data["line_name"]),
            department=str(data["department"]),
            origin=data["origin"],
            skill=str(data["skill"]),
            created_at=float(data["created_at"]),
            seat=data.get("seat"),
            recording=data.get("recording"),
            content=str(data.get("content") or ""),
            address=str(data.get("address") or ""),
            external_ref=data.get("external_ref"),
            via=Via.from_json(data.get("via")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TicketTransfer:
    """Where the call went: a seat, a department's number, 110."""

    type: str  # blind | attended | redirect
    by: str
    to: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "by": self.by, "to": self.to, "at": self.at}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            type=str(data["type"]), by=str(data["by"]), to=str(data["to"]), at=float(data["at"])
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TicketCallFacts:
    """The end-of-call update: who answered, how long, how it ended, the recording and the
    transfers. Applying the same facts twice changes nothing (they overwrite)."""

    call_id: str
    seat: str | None  # the seat that answered (answered_by)
    wait_s: float | None
    talk_s: float | None
    outcome: str
    ended_at: float
    recording: str | None = None
    transfers: tuple[TicketTransfer, ...] = ()
    external_ref: str | None = None  # the 110 transfer this call turned out to be
    # the call ended while the daemon was down: rebuilt at the restart from what was stored;
    # it ended between ended_at and ended_before (docs/workorders.md, "After a restart")
    reconstructed: bool = False
    ended_before: float | None = None
    via: Via | None = None  # a county node's call (as on its draft)

    @classmethod
    def from_summary(
        cls,
        summary: CallSummary,
        *,
        recording: str | None = None,
        external_ref: str | None = None,
    ) -> Self:
        """The facts of a finished call (its call id in the global ``node:linkedid`` form)."""
        return cls(
            call_id=f"{summary.node}:{summary.call_id}",
            seat=summary.answered_by,
            wait_s=summary.wait_s,
            talk_s=summary.talk_s,
            outcome=summary.outcome,
            ended_at=summary.ended_at,
            recording=recording,
            transfers=tuple(
                TicketTransfer(type=t.type, by=t.by, to=t.to, at=t.at) for t in summary.transfers
            ),
            external_ref=external_ref,
            via=summary.via,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "call_id": self.call_id,
            "seat": self.seat,
            "wait_s": self.wait_s,
            "talk_s": self.talk_s,
            "outcome": self.outcome,
            "ended_at": self.ended_at,
            "recording": self.recording,
            "transfers": [t.to_json() for t in self.transfers],
            "external_ref": self.external_ref,
        }
        if self.reconstructed:  # only then: the facts of every other call keep their shape
            out["reconstructed"] = True
            out["ended_before"] = self.ended_before
        if self.via is not None:
            out["via"] = self.via.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            call_id=str(data["call_id"]),
            seat=data.get("seat"),
            wait_s=data.get("wait_s"),
            talk_s=data.get("talk_s"),
            outcome=str(data["outcome"]),
            ended_at=float(data["ended_at"]),
            recording=data.get("recording"),
            transfers=tuple(TicketTransfer.from_json(t) for t in data.get("transfers", ())),
            external_ref=data.get("external_ref"),
            reconstructed=data.get("reconstructed") is True,
            ended_before=_float_or_none(data.get("ended_before")),
            via=Via.from_json(data.get("via")),
        )


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class TicketRating:
    """The caller's satisfaction rating (满意度评价) after a call, from the IVR survey."""

    call_id: str
    key: int
    label: str  # e.g. 满意, as configured (ivr.survey.scale)
    unsatisfied: bool  # flags the ticket: a return visit is owed
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "satisfaction": self.label,
            "satisfaction_key": self.key,
            "flagged": self.unsatisfied,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            call_id=str(data["call_id"]),
            key=int(data["satisfaction_key"]),
            label=str(data["satisfaction"]),
            unsatisfied=bool(data["flagged"]),
            at=float(data["at"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TicketRef:
    """A ticket as created: its number, e.g. ``12345-20261127-000042``."""

    number: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticket:
    """A ticket as the backend reports it (a snapshot)."""

    number: str
    status: str  # a TicketStatus value, or the backend's own word
    caller: str
    caller_name: str
    created_at: float
    line: str
    line_name: str
    department: str
    origin: str
    skill: str
    call_ids: tuple[str, ...]
    request_type: RequestType | None = None
    content: str = ""
    address: str = ""
    urgency: str | None = None
    deadline: float | None = None
    satisfaction: str | None = None
    seat: str | None = None
    recording: str | None = None
    wait_s: float | None = None
    talk_s: float | None = None
    outcome: str | None = None
    transfers: tuple[TicketTransfer, ...] = field(default=())
    external_ref: str | None = None  # e.g. 110's incident number for a transfer from 110
    flagged: bool = False  # an unsatisfied rating: a return visit (回访) is owed

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "status": self.status,
            "caller": self.caller,
            "caller_name": self.caller_name,
            "created_at": self.created_at,
            "line": self.line,
            "line_name": self.line_name,
            "department": self.department,
            "origin": self.origin,
            "skill": self.skill,
            "call_ids": list(self.call_ids),
            "request_type": None if self.request_type is None else self.request_type.value,
            "content": self.content,
            "address": self.address,
            "urgency": self.urgency,
            "deadline": self.deadline,
            "satisfaction": self.satisfaction,
            "seat": self.seat,
            "recording": self.recording,
            "wait_s": self.wait_s,
            "talk_s": self.talk_s,
            "outcome": self.outcome,
            "transfers": [t.to_json() for t in self.transfers],
            "external_ref": self.external_ref,
            "flagged": self.flagged,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxOp:
    """One ticket operation waiting for delivery. The payload is the draft (create) or the
    call facts (update) as JSON; `key` is the idempotency key sent to the backend."""

    call_id: str
    kind: OpKind
    payload: dict[str, Any]

    @property
    def key(self) -> str:
        return op_key(self.call_id, self.kind)

    @classmethod
    def create(cls, draft: TicketDraft) -> Self:
        return cls(call_id=draft.call_id, kind="create", payload=draft.to_json())

    @classmethod
    def update(cls, facts: TicketCallFacts) -> Self:
        return cls(call_id=facts.call_id, kind="update", payload=facts.to_json())

    @classmethod
    def rate(cls, rating: TicketRating) -> Self:
        return cls(call_id=rating.call_id, kind="rate", payload=rating.to_json())
