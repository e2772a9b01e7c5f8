"""The embedded work-order backend on a real SQLite file."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from cti.adapters.db.store import Store
from cti.adapters.db.tables import TICKETS
from cti.adapters.workorders.embedded import CHINA, EmbeddedWorkOrders
from cti.workorders import (
    RequestType,
    TicketCallFacts,
    TicketDraft,
    TicketStatus,
    TicketTransfer,
    WorkOrderBackend,
    WorkOrderRejected,
)

# 2026-11-27 10:00 in the hotline's time zone
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=CHINA).timestamp()


def draft(n: int, **kw: Any) -> TicketDraft:
    base: dict[str, Any] = {
        "call_id": f"main:1795744800.{n}",
        "node": "main",
        "caller": "13800138000",
        "caller_name": "张三",
        "line": "12315",
        "line_name": "市场监管",
        "department": "市场监管局",
        "origin": "special_number",
        "skill": "market",
        "created_at": T0 + n,
    }
    base.update(kw)
    return TicketDraft(**base)


@pytest.fixture
def backend(store: Store) -> EmbeddedWorkOrders:
    return EmbeddedWorkOrders(store, clock=lambda: T0 + 1000)


async def count_tickets(store: Store) -> int:
    async with store.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(TICKETS)) or 0)


async def test_it_implements_the_port(backend: EmbeddedWorkOrders) -> None:
    port: WorkOrderBackend = backend  # checked by mypy
    ref = await port.create(draft(1), key="main:1795744800.1:create")
    ticket = await port.status(ref.number)
    assert ticket is not None
    assert ticket.status == TicketStatus.INTAKE
    assert ticket.to_json()["status"] == "受理"
    assert ticket.caller_name == "张三"
    assert ticket.line_name == "市场监管"
    assert ticket.origin == "special_number"
    assert ticket.call_ids == ("main:1795744800.1",)
    assert ticket.request_type is None
    assert ticket.content == ""
    assert await port.status("12345-20990101-000001") is None


async def test_create_is_idempotent_by_key(store: Store, backend: EmbeddedWorkOrders) -> None:
    first = await backend.create(draft(1), key="k1")
    again = await backend.create(draft(1), key="k1")
    assert first == again
    assert await count_tickets(store) == 1
    other = await backend.create(draft(1), key="k2")  # another key is another ticket
    assert other != first
    assert await count_tickets(store) == 2


async def test_numbers_count_per_day_in_the_hotline_time_zone(backend: EmbeddedWorkOrders) -> None:
    a = await backend.create(draft(1), key="a")
    b = await backend.create(draft(2), key="b")
    # 2026-11-27 23:30 UTC is already the 28th in China
    late = datetime(2026, 11, 27, 23, 30, tzinfo=CHINA).timestamp() + 8 * 3600
    c = await backend.create(draft(3, created_at=late), key="c")
    d = await backend.create(draft(4), key="d")
    assert a.number == "12345-20261127-000001"
    assert b.number == "12345-20261127-000002"
    assert c.number == "12345-20261128-000001"
    assert d.number == "12345-20261127-000003"


async def test_prefix_is_configurable(store: Store) -> None:
    ref = await EmbeddedWorkOrders(store, prefix="0746").create(draft(1), key="x")
    assert ref.number == "0746-20261127-000001"


async def test_find_recent_by_caller(backend: EmbeddedWorkOrders) -> None:
    for n in range(5):
        await backend.create(draft(n), key=f"k{n}")
    await backend.create(draft(9, caller="13900000000"), key="other")
    found = await backend.find_recent_by_caller("13800138000", since=T0 + 2, limit=10)
    assert [t.created_at for t in found] == [T0 + 4, T0 + 3, T0 + 2]  # newest first
    assert len(await backend.find_recent_by_caller("13800138000", since=0, limit=2)) == 2
    assert await backend.find_recent_by_caller("13700000000", since=0) == []


async def test_update_records_the_call_facts_idempotently(backend: EmbeddedWorkOrders) -> None:
    ref = await backend.create(draft(1), key="c1")
    facts = TicketCallFacts(
        call_id="main:1795744800.1",
        seat="1001",
        wait_s=4.5,
        talk_s=120.0,
        outcome="answered",
        ended_at=T0 + 130,
        recording="/var/spool/asterisk/monitor/1795744800.1.wav",
        transfers=(TicketTransfer(type="blind", by="1001", to="12366", at=T0 + 100),),
    )
    await backend.update(ref.number, facts, key="main:1795744800.1:update")
    once = await backend.status(ref.number)
    await backend.update(ref.number, facts, key="main:1795744800.1:update")
    twice = await backend.status(ref.number)
    assert once == twice
    assert once is not None
    assert once.seat == "1001"
    assert once.recording == facts.recording
    assert (once.wait_s, once.talk_s, once.outcome) == (4.5, 120.0, "answered")
    assert once.transfers == facts.transfers
    assert once.call_ids == ("main:1795744800.1",)


async def test_update_of_an_unknown_ticket_is_rejected(backend: EmbeddedWorkOrders) -> None:
    facts = TicketCallFacts(
        call_id="x", seat=None, wait_s=1.0, talk_s=None, outcome="abandoned", ended_at=T0
    )
    with pytest.raises(WorkOrderRejected) as err:
        await backend.update("12345-20261127-000404", facts, key="x:update")
    assert err.value.status == 404


async def test_the_agent_fills_the_ticket(backend: EmbeddedWorkOrders) -> None:
    ref = await backend.create(draft(1), key="c1")
    await backend.amend(
        ref.number, request_type="投诉", content="噪音扰民", address="零陵区南津路1号"
    )
    ticket = await backend.status(ref.number)
    assert ticket is not None
    assert ticket.request_type is RequestType.COMPLAINT
    assert ticket.to_json()["request_type"] == "投诉"
    assert (ticket.content, ticket.address) == ("噪音扰民", "零陵区南津路1号")
    with pytest.raises(ValueError, match="amendable"):
        await backend.amend(ref.number, caller="forged")
    with pytest.raises(ValueError, match="RequestType"):
        await backend.amend(ref.number, request_type="抱怨")
