"""The supervision audit log (``supervision_audit``, docs/supervision.md): one row per
supervisor action, written as it happens, read back newest first by the HTTP API."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cti.adapters.db.tables import SUPERVISION_AUDIT

__all__ = ["add_audit", "audit_entries"]


async def add_audit(engine: AsyncEngine, row: dict[str, Any]) -> None:
    """Append one entry (the keys of :class:`~cti.core.supervision_types.AuditEntry`)."""
    async with engine.begin() as conn:
        await conn.execute(insert(SUPERVISION_AUDIT).values(**row))


async def audit_entries(
    engine: AsyncEngine,
    *,
    seat: str | None = None,
    supervisor: str | None = None,
    limit: int = 100,
    offset: int = 0,
    visible_to: tuple[str, Collection[str]] | None = None,
) -> list[dict[str, Any]]:
    """Entries newest first, optionally of one seat or one supervisor, one page;
    `visible_to` = (a supervisor, seats): the entries on those seats or by that supervisor
    (what a board user may read: the seats of their lines, and their own refusals)."""
    q = select(SUPERVISION_AUDIT).order_by(SUPERVISION_AUDIT.c.id.desc()).limit(limit)
    q = q.offset(offset)
    if seat is not None:
        q = q.where(SUPERVISION_AUDIT.c.seat == seat)
    if supervisor is not None:
        q = q.where(SUPERVISION_AUDIT.c.supervisor == supervisor)
    if visible_to is not None:
        who, seats = visible_to
        q = q.where(
            or_(SUPERVISION_AUDIT.c.supervisor == who, SUPERVISION_AUDIT.c.seat.in_(sorted(seats)))
        )
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(q)]  # noqa: SLF001 - SQLAlchemy's public row API
