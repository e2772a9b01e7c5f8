"""Call records on a real SQLite file (the embedded default), through the writer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from cti.adapters.db.records import RecordWriter
from cti.adapters.db.store import Store
from cti.calls.model import CallSummary, Transfer


def summary(n: int, **kw: Any) -> CallSummary:
    base: dict[str, Any] = {
        "call_id": f"1732665600.{n}",
        "node": "main",
        "caller": "13800138000",
        "caller_name": "张三",
        "dialed": "12315",
        "line": "12315",
        "started_at": 100.0 + n,
        "answered_at": 105.0 + n,
        "ended_at": 160.0 + n,
        "answered_by": "1001",
        "rang": ("1001",),
        "outcome": "answered",
        "hangup_by": "caller",
        "cause": 16,
        "transfers": (Transfer(type="blind", by="1001", to="1002", at=150.0 + n),),
        "wait_s": 5.0,
        "talk_s": 55.0,
        "history_complete": True,
    }
    base.update(kw)
    return CallSummary(**base)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = Store(db_url.replace("/cti.db", "/sub/dir/cti.db"))  # SQLite: missing dirs are made
    await s.open()
    yield s
    await s.close()


async def test_upsert_is_idempotent(store: Store) -> None:
    writer = RecordWriter(store)
    task = asyncio.create_task(writer.run())
    writer.add(summary(1))
    writer.add(summary(1, outcome="abandoned", answered_by=None))  # same call again
    writer.add(summary(2))
    async with asyncio.timeout(5):
        await writer.flushed()
    task.cancel()
    rows = await store.calls()
    assert [r["call_id"] for r in rows] == ["main:1732665600.2", "main:1732665600.1"]
    first = rows[1]
    assert first["outcome"] == "abandoned"
    assert first["caller_name"] == "张三"
    assert first["transfers"] == [{"type": "blind", "by": "1001", "to": "1002", "at": 151.0}]
    assert first["linkedid"] == "1732665600.1"


async def test_add_never_blocks_and_batches(store: Store) -> None:
    writer = RecordWriter(store, batch=500)
    t0 = time.perf_counter()
    for i in range(5000):
        writer.add(summary(i))
    assert time.perf_counter() - t0 < 1.0  # no I/O in add(): just a deque append
    task = asyncio.create_task(writer.run())
    async with asyncio.timeout(30):
        await writer.flushed()
    task.cancel()
    assert writer.written == 5000
    assert len(await store.calls(limit=10_000)) == 5000
    assert len(await store.calls(caller="13800138000", limit=3)) == 3


async def test_failed_batches_are_retried_not_lost(store: Store) -> None:
    real = store.upsert_calls
    failures = 2

    async def flaky(
        rows: Any,
        seat_rows: Any = (),
        outbox_rows: Any = (),
        callback_rows: Any = (),
        entry_rows: Any = (),
    ) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        await real(rows, seat_rows, outbox_rows, callback_rows, entry_rows)

    store.upsert_calls = flaky  # type: ignore[method-assign]
    writer = RecordWriter(store)
    task = asyncio.create_task(writer.run())
    for i in range(10):
        writer.add(summary(i))
    async with asyncio.timeout(10):
        await writer.flushed()
    task.cancel()
    assert writer.failures == 2
    assert writer.written == 10
    assert len(await store.calls()) == 10


async def test_a_batch_cut_by_shutdown_is_kept_for_the_final_flush(store: Store) -> None:
    entered = asyncio.Event()
    real = store.upsert_calls

    async def slow(
        rows: Any,
        seat_rows: Any = (),
        outbox_rows: Any = (),
        callback_rows: Any = (),
        entry_rows: Any = (),
    ) -> None:
        entered.set()
        await asyncio.sleep(10)
        await real(rows, seat_rows, outbox_rows, callback_rows, entry_rows)

    store.upsert_calls = slow  # type: ignore[method-assign]
    writer = RecordWriter(store)
    task = asyncio.create_task(writer.run())
    writer.add(summary(1))
    await entered.wait()
    task.cancel()  # the daemon stops while the batch is being written
    with pytest.raises(asyncio.CancelledError):
        await task
    assert writer.pending == 1
    store.upsert_calls = real  # type: ignore[method-assign]
    flush = asyncio.create_task(writer.run())
    async with asyncio.timeout(5):
        await writer.flushed()
    flush.cancel()
    assert [r["linkedid"] for r in await store.calls()] == ["1732665600.1"]


async def test_seat_events_are_stored_in_order_with_the_calls(store: Store) -> None:
    writer = RecordWriter(store)
    task = asyncio.create_task(writer.run())
    for i, status in enumerate(["not_ready", "ready", "reserved"]):
        writer.add_seat_event(
            {
                "seat": "1001",
                "at": 10.0 + i,
                "status": status,
                "reason": "login" if i == 0 else None,
                "previous": "logged_out",
                "cause": "login",
                "call_id": None,
            }
        )
    writer.add(summary(1))
    async with asyncio.timeout(5):
        await writer.flushed()
    task.cancel()
    events = await store.seat_events("1001")
    assert [e["status"] for e in events] == ["not_ready", "ready", "reserved"]
    assert events[0]["reason"] == "login"
    assert len(await store.calls()) == 1


async def test_latest_seat_states(store: Store) -> None:
    writer = RecordWriter(store)
    task = asyncio.create_task(writer.run())
    rows = [("1001", "ready", None), ("1002", "not_ready", "meal"), ("1001", "talking", None)]
    for i, (seat, status, reason) in enumerate(rows):
        writer.add_seat_event(
            {
                "seat": seat,
                "at": 10.0 + i,
                "status": status,
                "reason": reason,
                "previous": "x",
                "cause": "y",
                "call_id": None,
            }
        )
    async with asyncio.timeout(5):
        await writer.flushed()
    task.cancel()
    assert await store.latest_seat_states() == {
        "1001": ("talking", None, 12.0),
        "1002": ("not_ready", "meal", 11.0),
    }
