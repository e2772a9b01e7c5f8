"""The work-order backend port: what the CTI needs from any ticket system."""

from __future__ import annotations

from typing import Protocol

from cti.workorders.model import Ticket, TicketCallFacts, TicketDraft, TicketRating, TicketRef

__all__ = ["WorkOrderBackend", "WorkOrderError", "WorkOrderRejected", "WorkOrderUnavailable"]


class WorkOrderError(Exception):
    """Base of the backend errors."""


class WorkOrderUnavailable(WorkOrderError):  # noqa: N818 - the contract's name (STYLE.md)
    """The backend cannot answer now (down, timeout, 5xx, database locked): retry later,
    with the same idempotency key.

    Attributes:
        retry_after: seconds the backend asked us to wait (HTTP ``Retry-After``), or None.
            The outbox waits at least this long (up to its backoff cap) before the retry.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WorkOrderRejected(WorkOrderError):  # noqa: N818 - the contract's name (STYLE.md)
    """The backend refused the operation (4xx other than 409): retrying will not help.
    The outbox parks it and logs it at error level."""

    def __init__(self, status: int, body: str) -> None:
        msg = f"work-order backend rejected the operation: {status} {body[:300]}"
        super().__init__(msg)
        self.status = status
        self.body = body


class WorkOrderBackend(Protocol):
    """A ticket system. Every implementation must be idempotent by `key`: the outbox
    delivers at least once, so the same operation may arrive twice (after a timeout, or
    a restart between the backend's answer and the outbox marking it delivered)."""

    async def create(self, draft: TicketDraft, *, key: str) -> TicketRef:
        """Open a ticket for a call. The same `key` again returns the same ticket."""
        ...

    async def update(self, number: str, facts: TicketCallFacts, *, key: str) -> None:
        """Record a call's facts on a ticket (durations, outcome, seat, recording,
        transfers). Idempotent: the same facts twice leave the ticket as after once."""
        ...

    async def rate(self, number: str, rating: TicketRating, *, key: str) -> None:
        """Record the caller's satisfaction rating; an unsatisfied one flags the ticket.
        Idempotent (an overwrite)."""
        ...

    async def find_recent_by_caller(
        self, caller: str, *, since: float, limit: int = 20
    ) -> list[Ticket]:
        """The caller's tickets created at or after `since` (epoch s), newest first."""
        ...

    async def status(self, number: str) -> Ticket | None:
        """One ticket by number, or None if the backend does not know it."""
        ...
