"""The daemon on PostgreSQL (issue 14): a real call answered by a seat, its record, queue
entry, seat changes and ticket landing in a PostgreSQL database of the testbed's cluster,
which the daemon upgraded at start from the previous version's schema, keeping its rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from cti.adapters.db import migrate
from cti.adapters.db.store import Store
from cti.adapters.db.tables import CALL_RECORDS, OUTBOX, QUEUE_ENTRIES, SEAT_EVENTS, TICKETS
from tests.adapters.test_migrations import load_previous_schema
from tests.dbs import create_pg_database, drop_pg_database
from tests.real.daemon_harness import Harness, write_config
from tests.real.daemon_harness import poll_async as until

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

SEATS = [
    {
        "id": "1001",
        "endpoint": "Local/1001@seats",
        "skills": {"general": 5, "market": 3, "hr": 1, "env": 1, "health": 1, "dialect": 1},
    }
]
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}


async def test_the_daemon_on_postgresql_answers_a_call_and_stores_it(tmp_path: Path) -> None:
    url = create_pg_database()
    store = Store(url)
    try:
        await load_previous_schema(store)  # two calls of hotline-cti 0.1, no alembic_version
        path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
        data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["database"]["url"] = url
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        async with Harness(path, prefix) as h:
            assert h.log("database_adopted") is not None
            await h.seat("1001", {"cmd": "login", "ready": True})
            call = await h.call("12345", "13800000071", "王五")
            await h.wait(lambda: h.answered_by(call), 10, "answered by 1001")
            await h.hang_up(call)
            await h.wait(
                lambda: h.published("calls/events", call_id=call, type="ticket", op="update"),
                15,
                "the ticket updated with the call's facts",
            )

            async def stored() -> Any:
                async with store.engine.connect() as conn:
                    return (
                        await conn.execute(
                            select(CALL_RECORDS).where(CALL_RECORDS.c.linkedid == call)
                        )
                    ).first()

            record = await until(stored, 10, "the call record in PostgreSQL")
        assert (record.caller, record.caller_name, record.answered_by) == (
            "13800000071",
            "王五",
            "1001",
        )
        assert record.outcome == "answered"
        assert record.history_complete is True  # a real boolean on PostgreSQL
        call_id = record.call_id
        async with store.engine.connect() as conn:
            assert await conn.run_sync(migrate.current) == migrate.head()
            entries = (
                await conn.execute(select(QUEUE_ENTRIES).where(QUEUE_ENTRIES.c.call_id == call_id))
            ).all()
            assert [(e.outcome, e.seat) for e in entries] == [("answered", "1001")]
            seat = [
                r.status
                for r in await conn.execute(
                    select(SEAT_EVENTS.c.status)
                    .where(SEAT_EVENTS.c.seat == "1001")
                    .order_by(SEAT_EVENTS.c.id)
                )
            ]
            assert "talking" in seat
            ops = (await conn.execute(select(OUTBOX).where(OUTBOX.c.call_id == call_id))).all()
            assert sorted(o.kind for o in ops) == ["create", "update"]
            assert all(o.delivered_at is not None for o in ops)
            tickets = (
                await conn.execute(
                    select(TICKETS).where(TICKETS.c.create_key == f"{call_id}:create")
                )
            ).all()
            assert len(tickets) == 1
            assert tickets[0].call_ids[0] == call_id
            assert tickets[0].number == ops[0].ticket_number
            # the previous version's rows are still there
            kept = (
                await conn.execute(
                    select(func.count())
                    .select_from(CALL_RECORDS)
                    .where(CALL_RECORDS.c.call_id.in_(["main:c1", "main:c2"]))
                )
            ).scalar()
            assert kept == 2
    finally:
        await store.close()
        drop_pg_database(url)
