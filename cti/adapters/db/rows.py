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

import functools
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cti.adapters.db.dialect import insert
from cti.adapters.db.tables import CALLBACKS, OUTBOX, QUEUE_ENTRIES
from cti.calls.model import CallSummary
from cti.kpis.facts import QueueEntry
from cti.workorders.model import OutboxOp

__all__ = [
    "callback_row",
    "outbox_row",
    "outbox_rows",
    "queue_entry_row",
    "write_callback_rows",
    "write_ops",
    "write_queue_entry_rows",
    "write_rows",
]

# ------------------------------------------------------------------ ticket operations


@functools.cache
def _insert_once(dialect: str, table: str) -> Any:
    """``INSERT .. ON CONFLICT(key) DO NOTHING`` into `table`, built once per dialect: a
    statement reused keeps its memoized cache key, so SQLAlchemy does not build it and
    generate its key again for every batch (issue 12)."""
    target, key = {
        "outbox": (OUTBOX, ["key"]),
        "callbacks": (CALLBACKS, ["call_id"]),
        "queue_entries": (QUEUE_ENTRIES, ["call_id", "entry_seq"]),
    }[table]
    return insert(dialect, target).on_conflict_do_nothing(index_elements=key)


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
    await conn.execute(_insert_once(conn.dialect.name, "outbox"), list(rows))


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
    await conn.execute(_insert_once(conn.dialect.name, "callbacks"), rows)


# ------------------------------------------------------------------ queue entries (KPIs)


def queue_entry_row(e: QueueEntry) -> dict[str, Any]:
    """The `queue_entries` row of a finished entry (cti/kpis/facts.py)."""
    return {
        "call_id": f"{e.node}:{e.call_id}",
        "entry_seq": e.entry_seq,
        "node": e.node,
        "linkedid": e.call_id,
        "line": e.line,
        "department": e.department,
        "origin": str(e.origin),
        "priority": e.priority,
        "entered_at": e.entered_at,
        "first_offered_at": e.first_offered_at,
        "connected_at": e.connected_at,
        "left_at": e.left_at if e.left_at is not None else e.entered_at,
        "outcome": str(e.outcome) if e.outcome is not None else "",
        "seat": e.seat,
        "wait_s": e.wait_s,
        "ring_s": e.ring_s,
        "talk_s": e.talk_s,
        "wrapup_s": e.wrapup_s,
        "offers": e.offers,
        "transferred_to": e.transferred_to,
    }


async def write_queue_entry_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Inside the call records' transaction; an entry written twice (a retried batch, a
    restart) is kept once (key: call_id + entry_seq)."""
    if not rows:
        return
    await conn.execute(_insert_once(conn.dialect.name, "queue_entries"), rows)
