"""The active/standby lease and the write fence on the database (`--db postgresql`:
CTI_TEST_DB=postgresql). On SQLite (one daemon, ha refused) the lease table is there and
nothing is fenced."""

from __future__ import annotations

import asyncio
import importlib
import time

import asyncpg
import pytest
import structlog
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError

from cti.adapters.db.leader import LeaseConnection, LeaseSessionLost, install_fence, is_fenced
from cti.adapters.db.records import RecordWriter
from cti.adapters.db.store import Store
from cti.adapters.db.tables import HEARTBEATS, METADATA, SEAT_EVENTS

LEASE_S = 1.0
m0005 = importlib.import_module("cti.adapters.db.migrations.versions.0005_ha_leader_lease")


def seat_row(seat: str) -> dict[str, object]:
    return {
        "seat": seat,
        "at": time.time(),
        "status": "ready",
        "reason": None,
        "previous": "logged_out",
        "cause": "agent",
        "call_id": None,
    }


async def test_the_lease_table_and_the_fence_triggers(store: Store) -> None:
    async with store.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert "cti_leader" in tables
        if store.is_sqlite:  # one daemon: no fence
            return
        fenced = {
            r.tbl
            for r in await conn.execute(
                text(
                    "SELECT tgrelid::regclass::text AS tbl FROM pg_trigger "
                    "WHERE tgname = 'cti_fence'"
                )
            )
        }
    # every table the daemon writes is fenced (a new table needs its trigger)
    assert fenced == set(METADATA.tables) - set(m0005.NOT_FENCED)
    assert fenced == set(m0005.FENCED)


async def test_acquire_renew_expire_take_over(store: Store) -> None:
    if store.is_sqlite:  # ha is refused there (tests/test_leadership.py)
        return
    a = LeaseConnection(store.url, "a", timeout_s=1.0)
    b = LeaseConnection(store.url, "b", timeout_s=1.0)
    await a.connect()
    await b.connect()
    try:
        ea = await a.acquire(LEASE_S)
        assert ea == 1
        assert await b.acquire(LEASE_S) is None  # held
        assert await a.renew(1, LEASE_S)
        row = await b.read()
        assert row is not None
        assert (row.holder, row.epoch) == ("a", 1)
        assert 0 < row.left_s <= LEASE_S
        await asyncio.sleep(LEASE_S + 0.2)  # a stops renewing (frozen, dead)
        eb = await b.acquire(LEASE_S)
        assert eb == 2  # the epoch only goes up
        assert not await a.renew(1, LEASE_S)  # a's renewal is refused: it steps down
        assert await b.renew(2, LEASE_S)
    finally:
        await a.close()
        await b.close()


async def test_a_stale_epoch_write_is_refused_by_the_database(store: Store) -> None:
    if store.is_sqlite:
        return
    lease = LeaseConnection(store.url, "a", timeout_s=1.0)
    await lease.connect()
    try:
        epoch = await lease.acquire(LEASE_S)
        assert epoch is not None
        current = {"epoch": epoch}
        install_fence(store.engine, lambda: current["epoch"])
        async with store.engine.begin() as conn:  # the leader's own epoch: written
            await conn.execute(SEAT_EVENTS.insert(), [seat_row("1001")])
        # the takeover by another daemon: the epoch moves on
        raw = await asyncpg.connect(
            host=store.url.host,
            port=store.url.port,
            user=store.url.username,
            password=store.url.password,
            database=store.url.database,
        )
        try:
            await raw.execute("UPDATE cti_leader SET epoch = epoch + 1, holder = 'b'")
        finally:
            await raw.close()
        for table, row in ((SEAT_EVENTS, seat_row("1002")), (HEARTBEATS, {"node": "m", "at": 1})):
            with pytest.raises(DBAPIError) as refused:
                async with store.engine.begin() as conn:
                    await conn.execute(table.insert(), [row])
            assert is_fenced(refused.value)
        current["epoch"] = -1  # a standby: refused too
        with pytest.raises(DBAPIError) as refused:
            async with store.engine.begin() as conn:
                await conn.execute(SEAT_EVENTS.insert(), [seat_row("1003")])
        assert is_fenced(refused.value)
        async with store.engine.connect() as conn:  # reads are never fenced
            seats = [r.seat for r in await conn.execute(select(SEAT_EVENTS.c.seat))]
        assert seats == ["1001"]
    finally:
        await lease.close()


async def test_the_record_writer_drops_a_fenced_batch_and_says_so(store: Store) -> None:
    if store.is_sqlite:
        return
    install_fence(store.engine, lambda: 99)  # no lease has epoch 99
    told: list[bool] = []
    writer = RecordWriter(
        store, log=structlog.get_logger(), on_fenced=lambda: told.append(True), linger_s=0
    )
    task = asyncio.create_task(writer.run())
    try:
        writer.add_seat_event(seat_row("1001"))
        async with asyncio.timeout(5):
            await writer.flushed()
    finally:
        task.cancel()
    assert (writer.fenced, writer.pending, told) == (1, 0, [True])
    async with store.engine.connect() as conn:
        assert list(await conn.execute(select(SEAT_EVENTS))) == []


async def test_a_terminated_lease_session_is_lost_not_renewed_elsewhere(store: Store) -> None:
    if store.is_sqlite:
        return
    lease = LeaseConnection(store.url, "a", timeout_s=1.0)
    await lease.connect()
    try:
        epoch = await lease.acquire(LEASE_S)
        assert epoch is not None
        pid = await lease.backend_pid()
        async with store.engine.begin() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        await asyncio.sleep(0.1)
        with pytest.raises(LeaseSessionLost):
            await lease.renew(epoch, LEASE_S)
        assert not lease.open
    finally:
        await lease.close()
