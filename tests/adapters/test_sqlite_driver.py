"""The one-trip aiosqlite connection (cti/adapters/db/sqlite_driver.py): the same results and
errors as SQLAlchemy's stock aiosqlite path, in one trip to aiosqlite's thread per statement."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cti.adapters.db import sqlite_driver
from cti.adapters.db.store import Store

META = MetaData()
T = Table(
    "t",
    META,
    Column("id", Integer, primary_key=True),
    Column("name", String, unique=True),
    Column("n", Integer),
)


async def _insert_twice(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(T).values(name="李9", n=0))  # rolled back with the next
        await conn.execute(insert(T).values(name="张三", n=0))  # not unique


async def _exercise(engine: AsyncEngine) -> list[Any]:
    """Every kind of statement the daemon makes; what each returned."""
    out: list[Any] = []
    async with engine.begin() as conn:
        await conn.run_sync(META.create_all)
        r = await conn.execute(insert(T).values(name="张三", n=1))
        out.append(("insert", r.rowcount, r.inserted_primary_key))
        r = await conn.execute(insert(T), [{"name": f"李{i}", "n": i} for i in range(5)])
        out.append(("executemany", r.rowcount))
        r = await conn.execute(insert(T).values(name="王五", n=9).returning(T.c.id, T.c.name))
        out.append(("returning", r.all()))
        r = await conn.execute(update(T).where(T.c.n > 2).values(n=T.c.n + 100))
        out.append(("update", r.rowcount))
        r = await conn.execute(select(T).order_by(T.c.id))
        out.append(("select", [tuple(x) for x in r]))
        r = await conn.execute(select(T.c.name).where(T.c.n == -1))
        out.append(("empty", r.all()))
        r = await conn.execute(text("SELECT 1.5, NULL, 'é'"))
        out.append(("first", r.first()))
        r = await conn.execute(select(T.c.id).order_by(T.c.id))
        out.append(("one_then_rest", r.fetchone(), r.fetchmany(2), r.fetchall()))
    with pytest.raises(IntegrityError):
        await _insert_twice(engine)
    async with engine.connect() as conn:  # still usable, the failed transaction gone
        out.append(("after_error", (await conn.execute(select(T.c.name))).scalars().all()))
    return out


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    stock = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'stock.db'}")
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'fast.db'}")
    yield stock, store.engine
    await stock.dispose()
    await store.close()


async def test_same_results_and_errors_as_the_stock_driver(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    stock, fast = engines
    assert await _exercise(fast) == await _exercise(stock)


async def test_one_trip_per_statement(
    engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, fast = engines
    async with fast.begin() as conn:  # the pragmas on connect, the schema
        await conn.run_sync(META.create_all)
    trips: list[str] = []
    real = aiosqlite.Connection._execute  # what the driver relies on

    async def counted(self: aiosqlite.Connection, fn: Any, *a: Any, **kw: Any) -> Any:
        trips.append(getattr(fn, "__name__", "?"))
        return await real(self, fn, *a, **kw)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    async with fast.begin() as conn:
        await conn.execute(insert(T).values(name="a", n=1))
        await conn.execute(insert(T), [{"name": "b", "n": 2}, {"name": "c", "n": 3}])
        rows = (await conn.execute(select(T.c.name).order_by(T.c.id))).scalars().all()
    assert rows == ["a", "b", "c"]
    # three statements and the commit; the pool's rollback on return finds no transaction
    # open and makes no trip (stock: 3 + 3 + 4 + 1 + 1)
    assert trips == ["_run", "_run", "_run", "commit"]
    trips.clear()
    async with fast.connect() as conn:  # a read: sqlite3 opens no transaction for a SELECT
        assert (await conn.execute(select(T.c.name).where(T.c.n == 1))).scalar() == "a"
    assert trips == ["_run"]


async def _insert_then_fail(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(T).values(name="gone", n=9))
        raise RuntimeError


async def test_rollback_of_an_open_transaction_still_rolls_back(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    _, fast = engines
    async with fast.begin() as conn:
        await conn.run_sync(META.create_all)
    with pytest.raises(RuntimeError):
        await _insert_then_fail(fast)
    async with fast.connect() as conn:
        await conn.execute(insert(T).values(name="gone too", n=8))
        await conn.rollback()
    async with fast.connect() as conn:
        assert (await conn.execute(select(T.c.name))).scalars().all() == []


async def test_memory_database_keeps_its_one_connection() -> None:
    store = Store("sqlite+aiosqlite:///:memory:")
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(META.create_all)
            await conn.execute(insert(T).values(name="x", n=1))
        async with store.engine.connect() as conn:
            assert (await conn.execute(select(T.c.name))).scalars().all() == ["x"]
        raw = await store.engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert isinstance(driver, sqlite_driver.OneTripConnection)
            assert driver._thread.daemon  # never keeps the process alive
        finally:
            raw.close()
    finally:
        await store.close()
