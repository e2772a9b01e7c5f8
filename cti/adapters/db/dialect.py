"""The dialect switches: an ``INSERT`` that knows ``ON CONFLICT`` on SQLite and PostgreSQL,
and the integer floor of a time bucket (:func:`floor_int`).

SQLAlchemy's generic ``insert`` has no upsert; each dialect has its own ``insert`` with
``on_conflict_do_nothing`` / ``on_conflict_do_update`` (the same API on both). Every
idempotent write of the daemon (a retried batch, a repeated push) goes through
:func:`insert`, so a third database would be one more line here.
"""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["Insert", "floor_int", "insert"]

Insert = sqlite.Insert | postgresql.Insert


def insert(on: AsyncConnection | str, table: Table) -> Insert:
    """``INSERT INTO table`` for the dialect of *on* (a connection, or a dialect name such
    as ``conn.dialect.name``): SQLite's, else PostgreSQL's."""
    name = on if isinstance(on, str) else on.dialect.name
    return sqlite.insert(table) if name == "sqlite" else postgresql.insert(table)


def floor_int(on: AsyncConnection | str, expr: str) -> str:
    """SQL for ``floor(expr)`` as an integer, for an ``expr`` that is never negative (a
    time bucket). SQLite's ``CAST(x AS INTEGER)`` truncates (= floor for x >= 0) and its
    ``floor()`` exists only in builds with the math functions; PostgreSQL's cast rounds to
    nearest, so it takes ``FLOOR`` first."""
    name = on if isinstance(on, str) else on.dialect.name
    if name == "sqlite":
        return f"CAST({expr} AS INTEGER)"
    return f"CAST(FLOOR({expr}) AS BIGINT)"
