"""Tickets (工单): the model, the backend port and the outbox.

Only the pure parts are re-exported here, so the core can import `cti.workorders`
without pulling in SQLAlchemy; the I/O parts are `cti.adapters.workorders.outbox` (durable
delivery) and the backends in `cti.adapters.workorders` (`embedded`, the default, on the
Store's database). Import the outbox and the embedded backend before `Store.open()` so
their tables are created (they live on the Store's METADATA).
"""

from cti.workorders.backend import (
    WorkOrderBackend,
    WorkOrderError,
    WorkOrderRejected,
    WorkOrderUnavailable,
)
from cti.workorders.model import (
    OpKind,
    Origin,
    OutboxOp,
    RequestType,
    Ticket,
    TicketCallFacts,
    TicketDraft,
    TicketRating,
    TicketRef,
    TicketStatus,
    TicketTransfer,
    op_key,
)

__all__ = [
    "OpKind",
    "Origin",
    "OutboxOp",
    "RequestType",
    "Ticket",
    "TicketCallFacts",
    "TicketDraft",
    "TicketRating",
    "TicketRef",
    "TicketStatus",
    "TicketTransfer",
    "WorkOrderBackend",
    "WorkOrderError",
    "WorkOrderRejected",
    "WorkOrderUnavailable",
    "op_key",
]
