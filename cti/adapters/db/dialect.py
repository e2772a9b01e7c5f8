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

__all__ = ["Insert", "floor_int", "floor_sql", "insert", "temp_index", "temp_schema"]

Insert = sqlite.Insert | postgresql.Insert


def insert(on: AsyncConnection | str, table: Table) -> Insert:
    """``INSERT INTO table`` for the dialect of *on* (a connection, or a dialect name such
    as ``conn.dialect.name``): SQLite's, else PostgreSQL's."""
    name = on if isinstance(on, str) else on.dialect.name
    return sqlite.insert(table) if name == "sqlite" else postgresql.insert(table)


# the raw SQL of the reports (kpi_sql.py) differs in three words


def temp_schema(dialect: str) -> str:
    """The schema of a connection's temporary tables: ``temp`` / ``pg_temp``."""
    return "temp" if dialect == "sqlite" else "pg_temp"


def temp_index(name: str, dialect: str) -> str:
    """An index name for a temporary table: SQLite wants its schema named, PostgreSQL
    refuses it (the index goes with its table)."""
    return f"temp.{name}" if dialect == "sqlite" else name


def floor_sql(dialect: str) -> str:
    """The function that rounds a time bucket down before ``CAST(... AS INTEGER)``: SQLite's
    CAST truncates (times are >= 0, so that is the floor) and its FLOOR() exists only when
    compiled with the math functions; PostgreSQL's CAST rounds to nearest, so FLOOR it."""
    return "" if dialect == "sqlite" else "FLOOR"


def floor_int(on: AsyncConnection | str, expr: str) -> str:
    """SQL for ``floor(expr)`` as an integer, for an ``expr`` that is never negative (a
    time bucket). SQLite's ``CAST(x AS INTEGER)`` truncates (= floor for x >= 0) and its
    ``floor()`` exists only in builds with the math functions; PostgreSQL's cast rounds to
    nearest, so it takes ``FLOOR`` first."""
    name = on if isinstance(on, str) else on.dialect.name
    if name == "sqlite":
        return f"CAST({expr} AS INTEGER)"
    return f"CAST(FLOOR({expr}) AS BIGINT)"
