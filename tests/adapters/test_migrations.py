"""Schema migrations (issue 14): from an empty database and from the previous version's
(made by create_all, no alembic_version: tests/fixtures/db/schema-0.1-*.sql), on SQLite and
PostgreSQL (`--db`), the data kept and the schema exactly the tables' (cti/adapters/db/)."""

from __future__ import annotations

import asyncio
import io
import textwrap
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, func, inspect, select, text

from cti import cli
from cti.adapters.db import migrate
from cti.adapters.db.db_command import db_command
from cti.adapters.db.rows import outbox_row
from cti.adapters.db.store import Store
from cti.adapters.db.tables import CALL_RECORDS, METADATA, OUTBOX
from cti.workorders import OutboxOp
from tests.conftest import PROJECT

FIXTURES = PROJECT / "tests" / "fixtures" / "db"
T0 = 1_772_000_000.0


def schema_diff(conn: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(conn), METADATA))


async def load_previous_schema(store: Store) -> None:
    """The database as hotline-cti 0.1 left it: its create_all DDL, a call, an outbox row."""
    dialect = store.engine.dialect.name
    ddl = (FIXTURES / f"schema-0.1-{dialect}.sql").read_text(encoding="utf-8")
    statements = [s.strip() for s in ddl.split(";\n") if s.strip().strip("-").strip()]
    async with store.engine.begin() as conn:
        for s in statements:
            body = "\n".join(line for line in s.splitlines() if not line.startswith("--"))
            await conn.exec_driver_sql(body)
        # that version's rows, written as it wrote them
        await conn.execute(CALL_RECORDS.insert(), [call_row("c1"), call_row("c2")])
        await conn.execute(
            OUTBOX.insert(),
            {
                "key": "main:c1:create",
                "call_id": "main:c1",
                "kind": "create",
                "payload": {"x": 1},
                "created_at": T0,
                "attempts": 1,
                "delivered_at": T0 + 1,  # delivered long ago: a running daemon leaves it
                "ticket_number": "12345-20260225-000001",
                "parked": False,
            },
        )
        # a database of before issue 12 had not this index yet: the upgrade adds it
        await conn.exec_driver_sql("DROP INDEX ix_call_records_caller_started")


def call_row(linkedid: str) -> dict[str, Any]:
    return {
        "call_id": f"main:{linkedid}",
        "node": "main",
        "linkedid": linkedid,
        "caller": "13900000001",
        "caller_name": "张三",
        "satisfaction": "satisfied",
        "dialed": "12345",
        "line": "12345",
        "started_at": T0,
        "answered_at": T0 + 3,
        "ended_at": T0 + 60,
        "answered_by": "5001",
        "rang": ["5001"],
        "outcome": "answered",
        "hangup_by": "caller",
        "cause": 16,
        "transfers": [],
        "wait_s": 3.0,
        "talk_s": 57.0,
        "history_complete": True,
        "stored_at": T0 + 61,
    }


async def test_an_empty_database_gets_the_whole_schema_at_head(db_url: str) -> None:
    store = Store(db_url)
    try:
        await store.open()
        await store.open()  # idempotent: a second start changes nothing
        async with store.engine.connect() as conn:
            assert await conn.run_sync(migrate.current) == migrate.head()
            assert await conn.run_sync(schema_diff) == []  # the baseline is the tables'
    finally:
        await store.close()


async def test_a_database_of_the_previous_version_is_adopted_with_its_data(db_url: str) -> None:
    store = Store(db_url)
    try:
        await load_previous_schema(store)
        async with store.engine.connect() as conn:
            assert await conn.run_sync(migrate.current) is None
        await store.open()
        async with store.engine.connect() as conn:
            assert await conn.run_sync(migrate.current) == migrate.head()
            assert await conn.run_sync(schema_diff) == []
            indexes = await conn.run_sync(
                lambda c: {i["name"] for i in inspect(c).get_indexes("call_records")}
            )
            assert "ix_call_records_caller_started" in indexes
            caller = await conn.run_sync(
                lambda c: next(
                    col["type"]
                    for col in inspect(c).get_columns("call_records")
                    if col["name"] == "caller"
                )
            )
            # 0002: PostgreSQL's VARCHAR(64) of 0.1 unbounded (SQLite ignores lengths)
            assert store.is_sqlite or getattr(caller, "length", None) is None
        calls = await store.calls()
        assert {c["call_id"] for c in calls} == {"main:c1", "main:c2"}
        c1 = next(c for c in calls if c["call_id"] == "main:c1")
        assert (c1["caller_name"], c1["rang"], c1["history_complete"]) == ("张三", ["5001"], True)
        # and it goes on working: the next outbox row comes after the kept one
        op = OutboxOp(call_id="main:c2", kind="create", payload={"y": 2})
        await store.queue_ops([outbox_row(op, T0 + 100)])
        async with store.engine.connect() as conn:
            keys = [r.key for r in await conn.execute(select(OUTBOX.c.key).order_by(OUTBOX.c.id))]
            assert keys == ["main:c1:create", op.key]
            n = (await conn.execute(select(func.count()).select_from(CALL_RECORDS))).scalar()
            assert n == 2
    finally:
        await store.close()


async def test_a_table_that_is_not_ours_is_refused_by_name(db_url: str) -> None:
    store = Store(db_url)
    try:
        async with store.engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE call_records (call_id VARCHAR(10))")
        with pytest.raises(RuntimeError, match=r"call_records exists but lacks the columns"):
            await store.open()
    finally:
        await store.close()


async def test_a_newer_schema_is_refused_and_left_alone(db_url: str) -> None:
    store = Store(db_url)
    try:
        await store.open()
        async with store.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        with pytest.raises(migrate.SchemaNotCurrentError, match="9999_future"):
            await store.open()
        async with store.engine.connect() as conn:
            assert await conn.run_sync(migrate.current) == "9999_future"
    finally:
        await store.close()


async def test_migrate_false_refuses_a_schema_behind_and_cti_db_upgrade_fixes_it(
    db_url: str,
) -> None:
    store = Store(db_url)
    try:
        with pytest.raises(migrate.SchemaNotCurrentError, match="cti db upgrade"):
            await store.open(migrate=False)
        out, err = io.StringIO(), io.StringIO()
        assert await db_command(db_url, "status", out, err) == 1
        assert await db_command(db_url, "upgrade", out, err) == 0
        assert await db_command(db_url, "status", out, err) == 0
        assert f"database at {migrate.head()}" in out.getvalue(), err.getvalue()
        await store.open(migrate=False)  # now current
    finally:
        await store.close()


async def test_two_daemons_starting_together_upgrade_once(db_url: str) -> None:
    stores = [Store(db_url) for _ in range(2)]
    try:
        if stores[0].is_sqlite:
            await stores[0].open()  # SQLite: one writer; the second waits on busy_timeout
            await stores[1].open()
        else:  # PostgreSQL: the advisory lock orders them
            await asyncio.gather(*(s.open() for s in stores))
        async with stores[0].engine.connect() as conn:
            assert await conn.run_sync(schema_diff) == []
    finally:
        for s in stores:
            await s.close()


def test_cti_db_command_line(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cti.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            ami:
              nodes: [{{name: main, username: cti, secret: s}}]
            database: {{url: "{db_url}"}}
            """
        ),
        encoding="utf-8",
    )
    assert cli.main(["db", "status", "-c", str(config)]) == 1
    assert cli.main(["db", "upgrade", "-c", str(config)]) == 0
    assert cli.main(["db", "status", "-c", str(config)]) == 0
    assert f"database at {migrate.head()}, this version needs {migrate.head()}" in (
        capsys.readouterr().out
    )
