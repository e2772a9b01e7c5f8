"""aiosqlite with one trip to its thread per statement, for SQLAlchemy's aiosqlite dialect.

aiosqlite runs each sqlite3 call on its own thread and hands the result back to the event
loop (``call_soon_threadsafe``: a wake-up of the loop through its self-pipe). SQLAlchemy's
aiosqlite dialect makes four such calls per ``SELECT`` (create the cursor, execute, fetch
all, close) and three per ``INSERT``/``UPDATE``; under load (issue 12) the hand-overs, and the
GIL passed to and fro with each, were a large part of the daemon's CPU per call. Here the
cursor SQLAlchemy asks for is a plain object: its ``execute`` makes the sqlite3 cursor, runs
the statement, fetches every row and closes it in **one** call on aiosqlite's thread, and
keeps ``description``, ``rowcount``, ``lastrowid`` and the rows. That is what SQLAlchemy's
adapter reads anyway (it fetches all rows right after ``execute`` for every non-streaming
cursor), in the same order, so results and errors are the same; only the number of trips
changes. Statements still run one at a time, in order, on aiosqlite's one thread, and
``commit``/``rollback`` are aiosqlite's own, except that they make no trip when sqlite3 has no
transaction open: sqlite3's own ``commit``/``rollback`` do nothing then either (they test
``sqlite3_get_autocommit`` first), and SQLAlchemy ends every read-only ``engine.connect()``
with a rollback (the outbox's head query, the history lookups: one trip each, for nothing).

A server-side (streaming) cursor is fetched whole as well: the daemon never streams, and a
report that did would only use more memory, not get other rows.

It uses ``aiosqlite.Connection._execute`` (queue a function for its thread), which aiosqlite
has had since its first releases; ``tests/adapters/test_sqlite_driver.py`` pins it against
the installed version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Self, cast

import aiosqlite

__all__ = ["OneTripConnection", "OneTripCursor", "connect"]

_Description = tuple[tuple[Any, ...], ...] | None
_Outcome = tuple[_Description, int, int | None, list[Any]]


def _run(conn: sqlite3.Connection, sql: str, parameters: Any, *, many: bool) -> _Outcome:
    # on aiosqlite's thread: the whole statement, so the loop is woken once
    cur = conn.cursor()
    try:
        if many:
            cur.executemany(sql, parameters)
        else:
            cur.execute(sql, parameters)
        rows = cur.fetchall() if cur.description else []
        # rowcount after the fetch: for INSERT ... RETURNING it counts the rows stepped
        return cur.description, cur.rowcount, cur.lastrowid, rows
    finally:
        cur.close()


class OneTripCursor:
    """The cursor SQLAlchemy's adapter drives (``__aenter__``, ``execute``, ``fetchall``,
    ``close`` and the DB-API attributes), each statement one trip to aiosqlite's thread."""

    __slots__ = ("_conn", "_rows", "arraysize", "description", "lastrowid", "rowcount")

    def __init__(self, conn: OneTripConnection) -> None:
        self._conn = conn
        self._rows: list[Any] = []
        self.arraysize = 1
        self.description: _Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _go(self, sql: str, parameters: Any, *, many: bool) -> Self:
        outcome = await self._conn.run_on_thread(_run, sql, parameters, many=many)
        self.description, self.rowcount, self.lastrowid, self._rows = outcome
        return self

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> Self:
        return await self._go(sql, () if parameters is None else parameters, many=False)

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> Self:
        return await self._go(sql, parameters, many=True)

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        n = self.arraysize if size is None else size
        rows, self._rows = self._rows[:n], self._rows[n:]
        return rows

    async def close(self) -> None:
        # the sqlite3 cursor was closed on the thread, right after its statement
        self._rows = []


class OneTripConnection(aiosqlite.Connection):
    """An aiosqlite connection whose ``cursor()`` is a :class:`OneTripCursor`."""

    def cursor(self) -> OneTripCursor:  # type: ignore[override]  # no trip to make one
        return OneTripCursor(self)

    async def commit(self) -> None:
        # `in_transaction` only reads sqlite3_get_autocommit (no thread check); no statement
        # runs meanwhile: SQLAlchemy awaits each call on a connection before the next
        if self._conn.in_transaction:
            await super().commit()

    async def rollback(self) -> None:
        if self._conn.in_transaction:
            await super().rollback()

    async def run_on_thread(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(sqlite3_connection, *args, **kwargs)`` on the connection's thread."""
        queue = cast("Callable[..., Awaitable[Any]]", self._execute)  # untyped in aiosqlite
        return await queue(fn, self._conn, *args, **kwargs)


async def connect(database: str, **kwargs: Any) -> OneTripConnection:
    """An open connection, like :func:`aiosqlite.connect`, with its worker thread a daemon
    thread, as SQLAlchemy's dialect makes it, so a connection left open never keeps the
    process alive."""

    def connector() -> sqlite3.Connection:
        raw: sqlite3.Connection = sqlite3.connect(database, **kwargs)
        return raw

    conn = OneTripConnection(connector, iter_chunk_size=64)
    conn._thread.daemon = True  # noqa: SLF001 - what SQLAlchemy's dialect does too
    await conn
    return conn
