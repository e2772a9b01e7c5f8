"""The record writer's two failure classes (issue 15: disk full; issue 12: poison rows).

The database unavailable (disk full, I/O error, locked) keeps every row and retries the
batch; a row the database refuses on its own is isolated by a row-by-row retry, logged with
its numbers masked, counted and left out, so the rows after it land. Real SQLite file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import select
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    OperationalError,
    StatementError,
)

from cti.adapters.db.records import RecordWriter, write_unavailable
from cti.adapters.db.store import Store
from cti.adapters.db.tables import OUTBOX, SEAT_EVENTS
from tests.adapters.test_store import summary


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(f"sqlite+aiosqlite:///{tmp_path}/cti.db")
    await s.open()
    yield s
    await s.close()


def seat(n: int, status: str | None = "ready") -> dict[str, Any]:
    return {
        "seat": "1001",
        "at": float(n),
        "status": status,
        "reason": None,
        "previous": "paused",
        "cause": "login",
        "call_id": None,
    }


def ticket(n: int, payload: Any = None) -> dict[str, Any]:
    return {
        "key": f"create:main:{n}",
        "call_id": f"main:{n}",
        "kind": "create",
        "payload": {"caller": "13800138000"} if payload is None else payload,
        "created_at": float(n),
        "attempts": 0,
        "next_attempt_at": None,
        "delivered_at": None,
        "ticket_number": None,
        "last_error": None,
        "parked": False,
    }


async def drain(writer: RecordWriter, timeout: float = 10) -> None:
    task = asyncio.create_task(writer.run())
    try:
        async with asyncio.timeout(timeout):
            await writer.flushed()
    finally:
        task.cancel()


async def stored(store: Store, table: Any, column: Any) -> list[Any]:
    async with store.engine.connect() as conn:
        return [r[0] for r in await conn.execute(select(column).order_by(table.c.id))]


def db_error(cls: type[DBAPIError], message: str) -> DBAPIError:
    return cls("INSERT INTO call_records ...", {}, Exception(message))


@pytest.mark.parametrize(
    ("exc", "unavailable"),
    [
        (db_error(OperationalError, "database or disk is full"), True),
        (db_error(OperationalError, "disk I/O error"), True),
        (db_error(OperationalError, "database is locked"), True),
        (OSError(28, "No space left on device"), True),
        (DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True), True),
        (db_error(IntegrityError, "NOT NULL constraint failed: seat_events.status"), False),
        (StatementError("not JSON serializable", "INSERT", {}, TypeError("object")), False),
    ],
)
def test_the_two_failure_classes(exc: BaseException, unavailable: bool) -> None:
    assert write_unavailable(exc) is unavailable


async def test_a_poison_row_is_left_out_and_the_rest_land(store: Store) -> None:
    writer = RecordWriter(store, batch=3, linger_s=0)
    writer.add(summary(1), [ticket(1)])
    writer.add_seat_event(seat(1, status=None))  # NOT NULL: an IntegrityError
    writer.add(summary(2))
    # a payload json cannot encode: refused before the driver (StatementError)
    writer.add_outbox([ticket(2, payload={"caller": "13800138000", "bad": object()})])
    writer.add_seat_event(seat(2))
    writer.add(summary(3), [ticket(3)])
    with structlog.testing.capture_logs() as logs:
        await drain(writer)
    assert sorted(r["linkedid"] for r in await store.calls()) == [
        "1732665600.1",
        "1732665600.2",
        "1732665600.3",
    ]
    assert await stored(store, OUTBOX, OUTBOX.c.key) == ["create:main:1", "create:main:3"]
    assert await stored(store, SEAT_EVENTS, SEAT_EVENTS.c.at) == [2.0]
    assert writer.poisoned == {"seat": 1, "outbox": 1}
    assert (writer.pending, writer.failing, writer.dropped) == (0, 0, 0)
    poisoned = [e for e in logs if e["event"] == "call_record_poisoned"]
    assert [e["kind"] for e in poisoned] == ["seat", "outbox"]
    assert all(e["log_level"] == "error" for e in poisoned)
    assert "NOT NULL constraint failed" in poisoned[0]["error"]
    assert "13800138000" not in repr(poisoned)  # masked
    assert "138****8000" in poisoned[1]["row"]["payload"]
    assert writer.written == 3 + 2 + 1  # records, tickets, seat events: each once
    assert not [e for e in logs if e["event"] == "call_records_write_failed"]


async def test_disk_full_keeps_every_row_and_writes_it_once(store: Store) -> None:
    real = store.upsert_calls
    calls: list[int] = []
    full = 3

    async def disk_full(*args: Any) -> None:
        nonlocal full
        calls.append(sum(len(a) for a in args))
        if full:
            full -= 1
            raise OperationalError("INSERT", {}, Exception("database or disk is full"))
        await real(*args)

    store.upsert_calls = disk_full  # type: ignore[method-assign,assignment]
    writer = RecordWriter(store, linger_s=0)
    task = asyncio.create_task(writer.run())
    for i in range(5):
        writer.add(summary(i), [ticket(i)])
        writer.add_seat_event(seat(i))
    async with asyncio.timeout(5):
        while writer.failing < 2:
            await asyncio.sleep(0.01)
    assert writer.last_error == "database or disk is full"
    assert writer.pending == 15  # kept, in memory
    async with asyncio.timeout(10):
        await writer.flushed()
    task.cancel()
    assert calls[:4] == [15, 15, 15, 15]  # the whole batch retried, never row by row
    assert (writer.failing, writer.last_error, writer.failures) == (0, "", 3)
    assert writer.poisoned == {}
    assert len(await store.calls()) == 5
    assert await stored(store, OUTBOX, OUTBOX.c.key) == [f"create:main:{i}" for i in range(5)]
    assert await stored(store, SEAT_EVENTS, SEAT_EVENTS.c.at) == [float(i) for i in range(5)]


async def test_the_cap_drops_the_oldest_ticket_operations_last(store: Store) -> None:
    writer = RecordWriter(store, max_pending=4)
    writer.add_outbox([ticket(1)])
    writer.add_seat_event(seat(1))
    writer.add_outbox([ticket(2)])
    writer.add_seat_event(seat(2))
    with structlog.testing.capture_logs() as logs:
        writer.add_seat_event(seat(3))  # over the cap: the oldest seat event goes
        assert writer.dropped_by_kind == {"seat": 1}
        writer.add_outbox([ticket(3), ticket(4)])  # seat events go before tickets
        assert writer.dropped_by_kind == {"seat": 3}
        assert writer.pending == 4
        writer.add_outbox([ticket(5)])  # nothing but tickets: the oldest goes, logged
    assert writer.dropped_by_kind == {"seat": 3, "outbox": 1}
    assert (writer.dropped, writer.tickets_dropped, writer.pending) == (4, 1, 4)
    dropped = [e for e in logs if e["event"] == "ticket_op_dropped"]
    assert [(e["key"], e["log_level"]) for e in dropped] == [("create:main:1", "error")]
    await drain(writer)
    # the tickets kept, in their order
    assert await stored(store, OUTBOX, OUTBOX.c.key) == [f"create:main:{i}" for i in (2, 3, 4, 5)]
    assert await stored(store, SEAT_EVENTS, SEAT_EVENTS.c.at) == []
