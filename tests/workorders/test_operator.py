"""`cti outbox list | requeue`: the operator's view of tickets that did not get through."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import update

from cti.adapters.db.rows import outbox_rows
from cti.adapters.db.store import Store
from cti.adapters.db.tables import OUTBOX
from cti.adapters.workorders.outbox import parked_rows, pending_count
from cti.cli import main
from cti.workorders import OutboxOp
from tests.workorders.test_outbox import draft, facts


async def seed(db: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{db}")
    await store.open()
    ops = [OutboxOp.create(draft(1)), OutboxOp.update(facts(1)), OutboxOp.create(draft(2))]
    await store.upsert_calls([], [], outbox_rows(ops, 1_800_000_000.0))
    async with store.engine.begin() as conn:  # the backend refused call 1 (a wrong token)
        await conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.call_id == draft(1).call_id)
            .values(parked=True, attempts=1, last_error="401 unauthorized: bad token\n")
        )
    await store.close()


async def state(db: Path) -> tuple[int, list[str]]:
    store = Store(f"sqlite+aiosqlite:///{db}")
    await store.open()
    try:
        return await pending_count(store), [r["key"] for r in await parked_rows(store)]
    finally:
        await store.close()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cti.yaml"
    path.write_text(
        "ami: {nodes: [{name: main, username: cti}]}\n"
        f'database: {{url: "sqlite+aiosqlite:///{tmp_path}/cti.db"}}\n',
        encoding="utf-8",
    )
    asyncio.run(seed(tmp_path / "cti.db"))
    return path


def test_list_shows_the_backlog_and_the_parked_rows(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["outbox", "list", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "pending (being delivered or retried): 1\nparked: 2\n" in out
    assert f"  {draft(1).call_id}:create  written 2027-01-15 08:00:00Z  attempts 1\n" in out
    assert "    401 unauthorized: bad token\n" in out


def test_requeue_puts_parked_rows_back_in_order(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = config.parent / "cti.db"
    assert main(["outbox", "-c", str(config), "requeue", "no-such-key"]) == 1
    assert "not a parked row: no-such-key" in capsys.readouterr().out
    assert main(["outbox", "-c", str(config), "requeue"]) == 2  # neither keys nor --all
    assert main(["outbox", "-c", str(config), "requeue", "--all"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"requeued {draft(1).call_id}:create",
        f"requeued {draft(1).call_id}:update",
    ]
    assert asyncio.run(state(db)) == (3, [])
