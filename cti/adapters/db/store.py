"""Persistence: call records (the raw material of every KPI), on SQLAlchemy 2 async.

SQLite (aiosqlite) is the embedded default; PostgreSQL (asyncpg) goes through the same
code. The core never awaits the database: :meth:`RecordWriter.add` is synchronous and a
writer task stores records in batches, one transaction per batch, so a slow disk or a
locked database never stalls call handling. A batch that fails is retried with backoff;
records are kept in memory meanwhile (bounded, overflow logged at error level) and writes
are idempotent (upsert on ``call_id``), so a retry never doubles a record.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import structlog
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cti.adapters.backoff import backoff_delay
from cti.calls.model import CallSummary

__all__ = ["CALL_RECORDS", "METADATA", "SEAT_EVENTS", "RecordWriter", "Store", "summary_row"]

METADATA: Final = MetaData()

CALL_RECORDS: Final = Table(
    "call_records",
    METADATA,
    # "<node>:<linkedid>": a Linkedid is only unique per Asterisk node
    Column("call_id", String(128), primary_key=True),
    Column("node", String(32), nullable=False),
    Column("linkedid", String(64), nullable=False),
    Column("caller", String(64), nullable=False, index=True),
    Column("caller_name", String(128), nullable=False),
    # the caller's rating from the survey after the call (满意度评价), when given
    Column("satisfaction", String(16)),
    Column("dialed", String(64), nullable=False),
    Column("line", String(64), nullable=False, index=True),
    Column("started_at", Float, nullable=False, index=True),
    Column("answered_at", Float),
    Column("ended_at", Float, nullable=False),
    Column("answered_by", String(128), index=True),
    Column("rang", JSON, nullable=False),
    Column("outcome", String(16), nullable=False, index=True),
    Column("hangup_by", String(16), nullable=False),
    Column("cause", Integer),
    Column("transfers", JSON, nullable=False),
    Column("wait_s", Float),
    Column("talk_s", Float),
    Column("history_complete", Boolean, nullable=False),
    Column("stored_at", Float, nullable=False),
)


SEAT_EVENTS: Final = Table(
    "seat_events",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seat", String(32), nullable=False, index=True),
    Column("at", Float, nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("reason", String(32)),
    Column("previous", String(16), nullable=False),
    Column("cause", String(64), nullable=False),
    Column("call_id", String(128)),
)


def summary_row(summary: CallSummary, stored_at: float) -> dict[str, Any]:
    data = summary.to_json()
    return {
        "satisfaction": None,  # set by the survey (RecordWriter.add, Store.rate_call)
        "call_id": f"{summary.node}:{summary.call_id}",
        "node": summary.node,
        "linkedid": summary.call_id,
        "caller": data["caller"],
        "caller_name": data["caller_name"],
        "dialed": data["dialed"],
        "line": data["line"],
        "started_at": data["started_at"],
        "answered_at": data["answered_at"],
        "ended_at": data["ended_at"],
        "answered_by": data["answered_by"],
        "rang": data["rang"],
        "outcome": data["outcome"],
        "hangup_by": data["hangup_by"],
        "cause": data["cause"],
        "transfers": data["transfers"],
        "wait_s": data["wait_s"],
        "talk_s": data["talk_s"],
        "history_complete": data["history_complete"],
        "stored_at": stored_at,
    }


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


class Store:
    """The database: engine, schema, and the few queries the daemon needs."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database not in {None, "", ":memory:"}:
            Path(self.url.database or "").parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(self.url)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def open(self) -> None:
        """Create missing tables (idempotent)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(METADATA.create_all)

    async def close(self) -> None:
        await self.engine.dispose()

    async def upsert_calls(
        self,
        rows: Sequence[dict[str, Any]],
        seat_rows: Sequence[dict[str, Any]] = (),
        outbox_rows: Sequence[dict[str, Any]] = (),
        callback_rows: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Insert or replace call records by `call_id`, append seat events and queue
        ticket operations (`cti.adapters.workorders.outbox.outbox_row`, kept once per key), in one
        transaction: a call record is never stored without its ticket operations."""
        async with self.engine.begin() as conn:
            if rows:
                dialect = sqlite if self.is_sqlite else postgresql
                stmt = dialect.insert(CALL_RECORDS)
                # the survey's rating comes after the record: a rewrite must not erase it
                update = {
                    c.name: stmt.excluded[c.name]
                    for c in CALL_RECORDS.c
                    if c.name not in ("call_id", "satisfaction")
                }
                stmt = stmt.on_conflict_do_update(index_elements=["call_id"], set_=update)
                await conn.execute(stmt, list(rows))
            if seat_rows:
                await conn.execute(SEAT_EVENTS.insert(), list(seat_rows))
            if outbox_rows:
                # the outbox table is defined with its deliverer, on this module's METADATA
                from cti.adapters.workorders.outbox import write_rows  # noqa: PLC0415 - import cycle

                await write_rows(conn, outbox_rows)
            if callback_rows:
                from cti.adapters.callbacks import write_callback_rows  # noqa: PLC0415

                await write_callback_rows(conn, list(callback_rows))

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
            from cti.adapters.workorders.outbox import write_rows  # noqa: PLC0415 - import cycle

            await write_rows(conn, outbox_rows)
        return bool(res.rowcount)

    async def queue_ops(self, outbox_rows: Sequence[dict[str, Any]]) -> None:
        """Ticket operations queued on their own, e.g. an after-hours message's create (a
        key already queued is left alone: a retried AGI makes no second ticket)."""
        async with self.engine.begin() as conn:
            from cti.adapters.workorders.outbox import write_rows  # noqa: PLC0415 - import cycle

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


class RecordWriter:
    """Write-behind for call records: `add` never blocks, a task stores batches."""

    def __init__(
        self,
        store: Store,
        *,
        log: Any = None,
        batch: int = 500,
        max_pending: int = 200_000,
        clock: Any = time.time,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._on_commit = on_commit
        self._log = log or structlog.get_logger("cti.store")
        self._batch = batch
        self._max = max_pending
        self._clock = clock
        # ("call", row) / ("seat", row) / ("outbox", row), in the order they happened; a
        # call's ticket operations follow its record and are never split from it
        self._pending: deque[tuple[str, dict[str, Any]]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.failing = 0  # failed batches in a row (0 after a success): /readyz

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(
        self,
        summary: CallSummary,
        outbox_rows: Sequence[dict[str, Any]] = (),
        *,
        satisfaction: str | None = None,
        callback: dict[str, Any] | None = None,
    ) -> None:
        """A finished call (stored by upsert on its call_id), with its ticket operations
        (outbox rows), which are stored in the same transaction; `satisfaction`: the
        caller's survey rating, when it came before the call ended; `callback`: its entry
        on the missed-call list (cti/adapters/callbacks.py), same transaction."""
        if len(self._pending) >= self._max:
            self._pending.popleft()
            self.dropped += 1
            self._log.error(
                "call_record_dropped",
                dropped=self.dropped,
                max_pending=self._max,
                hint="the database has been failing for a long time",
            )
        row = summary_row(summary, self._clock())
        row["satisfaction"] = satisfaction
        self._pending.append(("call", row))
        if callback is not None:
            self._pending.append(("callback", callback))
        self._pending.extend(("outbox", r) for r in outbox_rows)
        self._idle.clear()
        self._wake.set()

    def add_outbox(self, rows: Sequence[dict[str, Any]]) -> None:
        """Ticket operations on their own (the draft when a call is taken)."""
        self._pending.extend(("outbox", r) for r in rows)
        self._idle.clear()
        self._wake.set()

    def add_seat_event(self, row: dict[str, Any]) -> None:
        """A seat state change: seat, at, status, reason, previous, cause, call_id."""
        self._pending.append(("seat", row))
        self._idle.clear()
        self._wake.set()

    async def flushed(self) -> None:
        """Wait until everything added so far is stored (tests, shutdown)."""
        await self._idle.wait()

    async def run(self) -> None:
        attempt = 0
        rng = random.Random()  # noqa: S311 - jitter, not crypto
        while True:
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            n = min(self._batch, len(self._pending))
            while n < len(self._pending) and self._pending[n][0] == "outbox":
                n += 1  # a call's ticket operations go in its record's transaction
            rows = [self._pending.popleft() for _ in range(n)]
            try:
                await self._store.upsert_calls(
                    [r for kind, r in rows if kind == "call"],
                    [r for kind, r in rows if kind == "seat"],
                    [r for kind, r in rows if kind == "outbox"],
                    [r for kind, r in rows if kind == "callback"],
                )
            except asyncio.CancelledError:
                # shutdown mid-batch: keep the rows for the final flush (the upsert is
                # idempotent if the transaction did commit)
                self._give_back(rows)
                raise
            except (SQLAlchemyError, OSError) as exc:
                self._give_back(rows)
                self.failures += 1
                self.failing += 1
                delay = backoff_delay(attempt, 0.2, 10.0, rng)
                attempt += 1
                self._log.error(
                    "call_records_write_failed",
                    error=str(exc)[:300],
                    pending=len(self._pending),
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.failing = 0
            self.written += len(rows)
            if self._on_commit is not None:
                self._on_commit()

    def _give_back(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        """Put a failed batch back in front, oldest first; trim the oldest past the bound."""
        self._pending.extendleft(reversed(rows))
        while len(self._pending) > self._max:
            self._pending.popleft()
            self.dropped += 1
