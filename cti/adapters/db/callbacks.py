"""The callback list's queries: list the entries, read one, change one's status.

The entries are written with the abandoned call's record (:mod:`cti.adapters.db.rows`);
the HTTP face is :mod:`cti.adapters.http.callbacks`, the flow docs/callbacks.md.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import select, update

from cti.adapters.db.store import Store
from cti.adapters.db.tables import CALLBACKS

__all__ = ["CallbackStatus", "get_callback", "list_callbacks", "mark_callback"]

CallbackStatus = Literal["open", "calling", "done"]


async def list_callbacks(store: Store, *, status: str | None, limit: int) -> list[dict[str, Any]]:
    q = select(CALLBACKS).order_by(CALLBACKS.c.abandoned_at).limit(limit)
    if status is not None:
        q = q.where(CALLBACKS.c.status == status)
    async with store.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(q)]  # noqa: SLF001 - SQLAlchemy's public row API


async def get_callback(store: Store, call_id: str) -> dict[str, Any] | None:
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(CALLBACKS).where(CALLBACKS.c.call_id == call_id))).first()
    return None if row is None else dict(row._mapping)  # noqa: SLF001


async def mark_callback(
    store: Store, call_id: str, *, expect: str | None = None, **values: Any
) -> bool:
    """Update an entry (only if its status is `expect`, when given): False if it was not."""
    stmt = update(CALLBACKS).where(CALLBACKS.c.call_id == call_id)
    if expect is not None:
        stmt = stmt.where(CALLBACKS.c.status == expect)
    async with store.engine.begin() as conn:
        res = await conn.execute(stmt.values(**values))
    return bool(res.rowcount)
