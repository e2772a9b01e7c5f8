"""What 110 pushes, and what 12345 reports back."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Self

__all__ = [
    "FEEDBACK_EVENTS",
    "FEEDBACK_SCHEMA_VERSION",
    "Feedback110",
    "Transfer110",
    "TransferMode",
]

FEEDBACK_SCHEMA_VERSION: Final = 1

FEEDBACK_EVENTS: Final = (
    "accepted",
    "answered",
    "ticket",
    "transferred_back",
    "escalated",
    "ended",
)
"""In the order 110 receives them for one transfer (a `data` transfer: accepted, ticket)."""


class TransferMode(StrEnum):
    VOICE = "voice"  # the caller is coming over the 110 line
    DATA = "data"  # a ticket only (工单推送), no call


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer110:
    """One transfer from 110, validated at the edge (`cti.adapters.dispatch110`).

    Attributes:
        transfer_id: 110's incident number (接警单号): the transfer's identity, and the
            idempotency key of the push.
        called_at: when the citizen called 110 (epoch s).
        location: (latitude, longitude) when 110 has one.
    """

    transfer_id: str
    mode: TransferMode
    caller: str
    caller_name: str = ""
    category: str = ""
    summary: str = ""
    address: str = ""
    location: tuple[float, float] | None = None
    called_at: float
    operator_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "transfer_id": self.transfer_id,
            "mode": self.mode.value,
            "caller": self.caller,
            "caller_name": self.caller_name,
            "category": self.category,
            "summary": self.summary,
            "address": self.address,
            "location": (
                None
                if self.location is None
                else {"lat": self.location[0], "lon": self.location[1]}
            ),
            "called_at": self.called_at,
            "operator_id": self.operator_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        loc = data.get("location")
        return cls(
            transfer_id=str(data["transfer_id"]),
            mode=TransferMode(data["mode"]),
            caller=str(data["caller"]),
            caller_name=str(data.get("caller_name", "")),
            category=str(data.get("category", "")),
            summary=str(data.get("summary", "")),
            address=str(data.get("address", "")),
            location=None if not loc else (float(loc["lat"]), float(loc["lon"])),
            called_at=float(data["called_at"]),
            operator_id=str(data.get("operator_id", "")),
        )

    def pop_json(self) -> dict[str, Any]:
        """What the agent's screen shows of it (the pop's `call.dispatch110`)."""
        body = self.to_json()
        del body["mode"]
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class Feedback110:
    """One status event for 110 on `cti/110/feedback/{transfer_id}` (and the webhook).

    `seq` counts from 1 per transfer; `event_id` = `<transfer_id>:<seq>` is the same on a
    re-delivery (de-duplicate on it).
    """

    transfer_id: str
    seq: int
    event: str
    at: float
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        return f"{self.transfer_id}:{self.seq}"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": FEEDBACK_SCHEMA_VERSION,
            "event_id": self.event_id,
            "transfer_id": self.transfer_id,
            "seq": self.seq,
            "event": self.event,
            "at": self.at,
            **self.body,
        }
