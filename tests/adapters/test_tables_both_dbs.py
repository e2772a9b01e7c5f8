"""The tables not covered by the store / outbox / KPI tests, on SQLite and PostgreSQL
(`--db`): the heartbeats' upsert, the 110 feedback's insert-once, the callback list's
insert-once and conditional update, and values longer than a column's declared length
(SQLite ignores VARCHAR(n); PostgreSQL would refuse the whole batch)."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import func, inspect, select

from cti.adapters.db.callbacks import get_callback, mark_callback
from cti.adapters.db.rows import write_callback_rows
from cti.adapters.db.store import Store
from cti.adapters.db.tables import FEEDBACK110, HEARTBEATS
from cti.adapters.dispatch110 import Dispatch110Store
from cti.adapters.restart import Heartbeat
from tests.adapters.test_migrations import call_row


async def test_heartbeats_are_one_row_per_node(store: Store) -> None:
    beat = Heartbeat(
        store, ["main", "county"], interval_s=1, degraded_after=2, log=structlog.get_logger()
    )
    await beat.beat()
    await beat.beat()
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(HEARTBEATS))).all()
    assert sorted(r.node for r in rows) == ["county", "main"]
    assert all(r.at == beat.last_ok for r in rows)


async def test_a_110_notification_is_queued_once(store: Store) -> None:
    d = Dispatch110Store(store, webhook=True, clock=lambda: 1.0)
    for _ in range(2):
        await d.save_notification("ev-1", "https://110.example/hook", {"transfer110": "T1"})
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(FEEDBACK110))).all()
    assert [(r.event_id, r.transfer_id, r.parked) for r in rows] == [("ev-1", "T1", False)]


def callback(call_id: str) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "node": "main",
        "caller": "13900000001",
        "caller_name": "",
        "line": "12345",
        "abandoned_at": 1.0,
        "waited_s": 20.0,
        "status": "open",
        "attempts": 0,
        "last_seat": None,
        "last_at": None,
        "last_outcome": None,
        "callback_call_id": None,
    }


async def test_the_callback_list_keeps_an_entry_once_and_moves_it_on_condition(
    store: Store,
) -> None:
    for _ in range(2):
        async with store.engine.begin() as conn:
            await write_callback_rows(conn, [callback("main:c1")])
    assert await mark_callback(store, "main:c1", expect="open", status="calling", attempts=1)
    assert not await mark_callback(store, "main:c1", expect="open", status="calling")
    got = await get_callback(store, "main:c1")
    assert got is not None
    assert (got["status"], got["attempts"]) == ("calling", 1)
    async with store.engine.connect() as conn:
        n = (await conn.execute(select(func.count()).select_from(FEEDBACK110))).scalar()
    assert n == 0


async def test_a_value_longer_than_its_column_is_stored_on_both(store: Store) -> None:
    # a hostile trunk's caller id: on PostgreSQL a VARCHAR(64) refused it and failed the
    # whole batch of call records (retried for ever); migration 0002 unbounds the columns
    row = call_row("long")
    row.update(caller="1" * 100, caller_name="名" * 200)
    await store.upsert_calls([row])
    [got] = await store.calls(caller="1" * 100)
    assert (got["caller"], got["caller_name"]) == ("1" * 100, "名" * 200)
    async with store.engine.connect() as conn:
        types = await conn.run_sync(
            lambda c: {col["name"]: col["type"] for col in inspect(c).get_columns("call_records")}
        )
    if not store.is_sqlite:  # the schema says so, not only this row
        assert getattr(types["caller"], "length", None) is None
