"""The rows written inside another write's transaction: ticket operations and callback entries.

A call record is never stored without its ticket operations (the outbox) nor, for a call
abandoned in the queue, without its entry on the callback list: the
:class:`~cti.adapters.db.store.Store` writes them in the records' transaction, and the 110
store writes a data transfer's ticket operation with the transfer. Both writers live here,
below the store and the outbox, so neither has to import the other. Each write is
idempotent (``ON CONFLICT DO NOTHING`` on the row's key): a retried batch or a restart
queues a row once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cti.adapters.db.dialect import insert
from cti.adapters.db.tables import CALLBACKS, OUTBOX
from cti.calls.model import CallSummary
from cti.workorders.model import OutboxOp

__all__ = [
    "callback_row",
    "outbox_row",
    "outbox_rows",
    "write_callback_rows",
    "write_ops",
    "write_rows",
]

# ------------------------------------------------------------------ ticket operations


def outbox_row(op: OutboxOp, now: float) -> dict[str, Any]:
    """The `outbox` row of an operation (for `Store.upsert_calls(outbox_rows=...)`)."""
    return {
        "key": op.key,
        "call_id": op.call_id,
        "kind": op.kind,
        "payload": op.payload,
        "created_at": now,
        "attempts": 0,
        "next_attempt_at": None,
        "delivered_at": None,
        "ticket_number": None,
        "last_error": None,
        "parked": False,
    }


def outbox_rows(ops: Sequence[OutboxOp], now: float) -> list[dict[str, Any]]:
    return [outbox_row(op, now) for op in ops]


async def write_rows(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert outbox rows inside the caller's transaction. A key already there is left
    alone (INSERT .. ON CONFLICT(key) DO NOTHING): writing a call's operations twice, e.g.
    when a batch is retried, queues them once."""
    if not rows:
        return
    stmt = insert(conn, OUTBOX).on_conflict_do_nothing(index_elements=["key"])
    await conn.execute(stmt, list(rows))


async def write_ops(
    conn: AsyncConnection, ops: Sequence[OutboxOp], *, now: float | None = None
) -> None:
    """Queue ticket operations inside the caller's transaction (see `write_rows`)."""
    await write_rows(conn, outbox_rows(ops, time.time() if now is None else now))


# ------------------------------------------------------------------ the callback list


def callback_row(summary: CallSummary) -> dict[str, Any]:
    """The list entry of a call abandoned in the queue."""
    return {
        "call_id": f"{summary.node}:{summary.call_id}",
        "node": summary.node,
        "caller": summary.caller,
        "caller_name": summary.caller_name,
        "line": summary.line or summary.dialed,
        "abandoned_at": summary.ended_at,
        "waited_s": summary.wait_s,
        "status": "open",
        "attempts": 0,
        "last_seat": None,
        "last_at": None,
        "last_outcome": None,
        "callback_call_id": None,
    }


async def write_callback_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Inside the call records' transaction; an entry written twice (a retried batch, a
    restart) is kept once."""
    if not rows:
        return
    stmt = insert(conn, CALLBACKS).on_conflict_do_nothing(index_elements=["call_id"])
    await conn.execute(stmt, rows)
