"""The database: the engine (SQLite or PostgreSQL), the schema, and the daemon's queries on
call records and seat events.

SQLite (aiosqlite) is the embedded default; PostgreSQL (asyncpg) goes through the same
code. :meth:`Store.open` brings the schema (every table of :mod:`cti.adapters.db.tables`)
to this version's revision with the Alembic migrations (:mod:`cti.adapters.db.migrate`). Writes come
in batches from the write-behind :class:`~cti.adapters.db.records.RecordWriter`; the rows
that go in a record's transaction are written by :mod:`cti.adapters.db.rows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from cti.adapters.db import migrate as migrations
from cti.adapters.db import sqlite_driver
from cti.adapters.db.dialect import insert
from cti.adapters.db.rows import write_callback_rows, write_queue_entry_rows, write_rows
from cti.adapters.db.tables import CALL_RECORDS, KPI_ROLLUP, QUEUE_ENTRIES, SEAT_EVENTS

__all__ = ["Store"]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL: readers (reports, the API) never block the writer; NORMAL is durable in WAL
    # mode except for the last transactions on power loss; busy_timeout rides out a
    # report holding a lock instead of failing the batch at once.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


# a wrap-up belongs to its call's day for up to the report's slack after the day's end
_ROLLUP_SLACK_S = 3600.0


# The hot statements are built once, their values bound at execute time: SQLAlchemy then
# finds a statement's compiled form by the cache key memoized on the object, instead of
# building the statement and generating its key again for every batch (issue 12: statement
# building and cache keys were ~10 % of the daemon's CPU under load).
_MARK_DIRTY = (
    KPI_ROLLUP.update()
    .where(
        KPI_ROLLUP.c.day_end + _ROLLUP_SLACK_S > bindparam("since"),
        KPI_ROLLUP.c.dirty.is_(False),
    )
    .values(dirty=True)
)
_INSERT_SEAT_EVENTS = SEAT_EVENTS.insert()


async def _mark_dirty(conn: AsyncConnection, since: float) -> None:
    """Every rolled-up day a fact at or after ``since`` may change (docs/kpis.md, "The
    roll-up"): rolled again by the next report. Facts of today touch no closed day, so
    this matches no row in the usual case (one indexed UPDATE per transaction)."""
    await conn.execute(_MARK_DIRTY, {"since": since})


def _upsert_call_records(dialect: str) -> Any:
    """INSERT .. ON CONFLICT(call_id) DO UPDATE of every column but the rating (the
    survey's rating comes after the record: a rewrite must not erase it)."""
    stmt = insert(dialect, CALL_RECORDS)
    update = {
        c.name: stmt.excluded[c.name]
        for c in CALL_RECORDS.c
        if c.name not in ("call_id", "satisfaction")
    }
    return stmt.on_conflict_do_update(index_elements=["call_id"], set_=update)


async def _roll_up_dirty(
    conn: AsyncConnection,
    rows: Sequence[dict[str, Any]],
    seat_rows: Sequence[dict[str, Any]],
    entry_rows: Sequence[dict[str, Any]],
) -> None:
    times = [
        *(r["started_at"] for r in rows if r.get("started_at") is not None),
        *(r["at"] for r in seat_rows if r.get("at") is not None),
        *(r["entered_at"] for r in entry_rows if r.get("entered_at") is not None),
    ]
    if times:
        await _mark_dirty(conn, float(min(times)))


class Store:
    """The database: engine, schema, and the few queries the daemon needs."""

    def __init__(self, url: str, *, connect_args: dict[str, Any] | None = None) -> None:
        """`connect_args`: PostgreSQL's driver's (an active/standby daemon names its
        sessions and bounds an idle transaction, cti/adapters/db/leader.py); SQLite (never
        active/standby) takes none."""
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database not in {None, "", ":memory:"}:
            Path(self.url.database or "").parent.mkdir(parents=True, exist_ok=True)
        if self.is_sqlite:
            # one trip to aiosqlite's thread per statement, not three or four (issue 12)
            self.engine: AsyncEngine = create_async_engine(
                self.url, async_creator=self._connect_sqlite
            )
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(self.url, connect_args=connect_args or {})
        self._upsert_calls = _upsert_call_records(self.engine.dialect.name)

    async def _connect_sqlite(self) -> sqlite_driver.OneTripConnection:
        # the arguments SQLAlchemy's dialect would pass aiosqlite for this URL
        args, kwargs = self.engine.sync_engine.dialect.create_connect_args(self.url)
        return await sqlite_driver.connect(*args, **kwargs)

    async def open(self, *, migrate: bool = True) -> None:
        """Upgrade the schema to this version's (idempotent; a database of the version
        before migrations is adopted with its rows); with ``migrate=False`` only check it
        and raise :class:`~cti.adapters.db.migrate.SchemaNotCurrentError` if it is behind."""
        async with self.engine.begin() as conn:
            await conn.run_sync(migrations.upgrade if migrate else migrations.check)

    async def close(self) -> None:
        await self.engine.dispose()

    async def upsert_calls(
        self,
        rows: Sequence[dict[str, Any]],
        seat_rows: Sequence[dict[str, Any]] = (),
        outbox_rows: Sequence[dict[str, Any]] = (),
        callback_rows: Sequence[dict[str, Any]] = (),
        entry_rows: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Insert or replace call records by `call_id`, append seat events and queue
        ticket operations (`cti.adapters.db.rows.outbox_row`, kept once per key), in one
        transaction: a call record is never stored without its ticket operations nor its
        queue entries (`cti.adapters.db.rows.queue_entry_row`, kept once per key)."""
        async with self.engine.begin() as conn:
            if rows:
                await conn.execute(self._upsert_calls, list(rows))
            if seat_rows:
                await conn.execute(_INSERT_SEAT_EVENTS, list(seat_rows))
            if outbox_rows:
                await write_rows(conn, outbox_rows)
            if callback_rows:
                await write_callback_rows(conn, list(callback_rows))
            if entry_rows:
                await write_queue_entry_rows(conn, list(entry_rows))
            await _roll_up_dirty(conn, rows, seat_rows, entry_rows)

    async def add_fallback_entries(self, entry_rows: Sequence[dict[str, Any]]) -> list[str]:
        """Queue entries of calls Asterisk's fallback took (cti/kpis/fallback_log.py), each
        only if the call has no call record and no queue entry yet: a call the daemon saw
        keeps its own facts, and a file read again (a restart) adds nothing twice. One
        transaction; returns the call ids written."""
        ids = sorted({r["call_id"] for r in entry_rows})
        if not ids:
            return []
        async with self.engine.begin() as conn:
            known: set[str] = set()
            for table in (CALL_RECORDS, QUEUE_ENTRIES):
                res = await conn.execute(select(table.c.call_id).where(table.c.call_id.in_(ids)))
                known.update(res.scalars())
            new = [r for r in entry_rows if r["call_id"] not in known]
            if new:
                await write_queue_entry_rows(conn, new)
                await _roll_up_dirty(conn, (), (), new)
        return [r["call_id"] for r in new]

    async def rate_call(
        self, call_id: str, satisfaction: str, outbox_rows: Sequence[dict[str, Any]]
    ) -> bool:
        """The caller's rating on the call record, and its ticket operation queued, in one
        transaction. False when there is no such call record (its row is queued anyway:
        the ticket is what counts)."""
        async with self.engine.begin() as conn:
            res = await conn.execute(
                CALL_RECORDS.update()
                .where(CALL_RECORDS.c.call_id == call_id)
                .values(satisfaction=satisfaction)
            )
            # a rating arriving after its day was rolled up: that day again
            started = (
                await conn.execute(
                    select(CALL_RECORDS.c.started_at).where(CALL_RECORDS.c.call_id == call_id)
                )
            ).scalar()
            if started is not None:
                await _mark_dirty(conn, float(started))
            await write_rows(conn, outbox_rows)
        return bool(res.rowcount)

    async def queue_ops(self, outbox_rows: Sequence[dict[str, Any]]) -> None:
        """Ticket operations queued on their own, e.g. an after-hours message's create (a
        key already queued is left alone: a retried AGI makes no second ticket)."""
        async with self.engine.begin() as conn:
            await write_rows(conn, outbox_rows)

    async def latest_seat_states(self) -> dict[str, tuple[str, str | None, float]]:
        """Each seat's last stored state: `seat -> (status, reason, at)` (restart)."""
        last = (
            select(SEAT_EVENTS.c.seat, func.max(SEAT_EVENTS.c.id).label("id"))
            .group_by(SEAT_EVENTS.c.seat)
            .subquery()
        )
        q = select(
            SEAT_EVENTS.c.seat, SEAT_EVENTS.c.status, SEAT_EVENTS.c.reason, SEAT_EVENTS.c.at
        ).join(last, SEAT_EVENTS.c.id == last.c.id)
        async with self.engine.connect() as conn:
            return {r.seat: (r.status, r.reason, r.at) for r in await conn.execute(q)}

    async def seat_events(self, seat: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Seat state changes, oldest first (optionally of one seat)."""
        q = select(SEAT_EVENTS).order_by(SEAT_EVENTS.c.id).limit(limit)
        if seat is not None:
            q = q.where(SEAT_EVENTS.c.seat == seat)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]  # noqa: SLF001 - SQLAlchemy's public row API

    async def calls(
        self, *, caller: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Recent call records, newest first (optionally of one caller), one page."""
        q = (
            select(CALL_RECORDS)
            .order_by(CALL_RECORDS.c.started_at.desc())
            .limit(limit)
            .offset(offset)
        )
        if caller is not None:
            q = q.where(CALL_RECORDS.c.caller == caller)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]  # noqa: SLF001 - SQLAlchemy's public row API
