"""Active/standby against the real testbed (issue 14 item 2, docs/high-availability.md): two
`cti run` processes on one configuration and one PostgreSQL database of the testbed.

* The leader answers a call; it is SIGKILLed while the call talks; the standby takes over
  within 5 s, adopts the talking call (its record and ticket facts come when it ends), and
  routes, pops and tickets the next call, each ticket once.
* A stale leader: SIGSTOP the leader, the standby takes over and serves a call; SIGCONT: the
  old leader steps down on its own clock and exits (code 5) without acting; the database
  refuses a write carrying its epoch; no ticket is doubled.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from cti.adapters.db.leader import install_fence, is_fenced
from cti.adapters.db.store import Store
from cti.adapters.db.tables import CALL_RECORDS, OUTBOX, SEAT_EVENTS, TICKETS
from tests.dbs import create_pg_database, drop_pg_database
from tests.real.daemon_harness import Harness, write_config
from tests.real.daemon_harness import poll_async as until

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

GENERAL = {"general": 5, "market": 3, "env": 1, "health": 1, "hr": 1, "dialect": 1}
SEATS: list[dict[str, Any]] = [
    {"id": s, "endpoint": f"Local/{s}@seats", "skills": GENERAL} for s in ("1001", "1002")
]
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}
TAKEOVER_S = 5.0  # the target


@pytest.fixture
def pg_url() -> Any:
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def ha_config(tmp: Path, url: str) -> tuple[Path, str]:
    path, prefix = write_config(tmp, seats=SEATS, queue=QUEUE)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["database"]["url"] = url
    data["ha"] = {"enabled": True}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


async def readyz(h: Harness) -> dict[str, Any]:
    port = h.log("http_listening")
    assert port is not None
    async with httpx.AsyncClient() as c:
        r = await c.get(f"http://127.0.0.1:{port['port']}/readyz")
    body: dict[str, Any] = r.json()
    body["status"] = r.status_code
    return body


async def count(store: Store, q: Any) -> int:
    async with store.engine.connect() as conn:
        return int(await conn.scalar(q) or 0)


def tickets_of(call_id: str) -> Any:
    return (
        select(func.count()).select_from(TICKETS).where(TICKETS.c.create_key.like(f"%{call_id}%"))
    )


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[Store]:
    s = Store(pg_url)
    yield s
    await s.close()


async def pair(tmp: Path, url: str) -> tuple[Harness, Harness]:
    config, prefix = ha_config(tmp, url)
    a = Harness(config, prefix, env={"CTI_HA_NODE_ID": "cti-a"})
    b = Harness(config, prefix, env={"CTI_HA_NODE_ID": "cti-b"}, start=False)
    return a, b


async def test_leader_killed_the_standby_takes_over_and_serves(
    tmp_path: Path, pg_url: str, store: Store
) -> None:
    a, b = await pair(tmp_path, pg_url)
    async with a, b:
        await a.wait(lambda: a.log("ha_took_over"), 15, "a leads")
        await b.start_daemon()
        await b.wait(lambda: b.log("ha_standby", leader="cti-a"), 10, "b is the standby")
        # both say who they are: /readyz (200 on the leader only), /metrics, cti/status
        ra, rb = await readyz(a), await readyz(b)
        assert (ra["status"], rb["status"]) == (200, 503)
        assert rb["not_ready"] == ["ha"]
        assert "leader cti-a, epoch 1" in ra["parts"]["ha"]["detail"]
        assert "standby cti-b; leader cti-a, epoch 1" in rb["parts"]["ha"]["detail"]
        await a.wait(
            lambda: a.published("status/cti-b", role="standby", leader="cti-a"), 10, "b status"
        )
        assert a.published("status", role="leader", node="cti-a", epoch=1)
        for seat in SEATS:
            await a.seat(seat["id"], {"cmd": "login", "ready": True})
        first = await a.call("12345", "13800000091", "张三")
        await a.wait(lambda: a.answered_by(first), 15, "the first call answered")
        assert b.log("call_taken") is None  # the standby routed nothing
        await asyncio.sleep(2.5)  # the talking state stored (as the restart tests do)
        await a.kill_daemon()
        killed = time.monotonic()
        took = await b.wait(lambda: b.log("ha_took_over"), 10, "b takes over")
        takeover_s = time.monotonic() - killed
        assert takeover_s <= TAKEOVER_S, takeover_s
        assert took["epoch"] == 2
        await b.wait(lambda: b.published("status", role="leader", node="cti-b", epoch=2), 5, "st")
        assert (await readyz(b))["status"] == 200
        # the call that talked through the takeover gets its record and facts from b
        await b.hang_up(first)
        await until(
            lambda: count(store, select(func.count()).where(CALL_RECORDS.c.linkedid == first)),
            20,
            "the first call's record",
        )
        second = await b.call("12345", "13800000092", "李四")
        seat = await b.wait(lambda: b.answered_by(second), 15, "the next call answered")
        offers = b.published(f"seats/{seat}/pop", type="offer")
        assert [p["call"]["call_id"] for p in offers] == [second]  # popped, once
        await until(lambda: count(store, tickets_of(second)), 15, "the next call's ticket")
        await b.hang_up(second)
        await until(
            lambda: count(store, select(func.count()).where(CALL_RECORDS.c.linkedid == second)),
            15,
            "the next call's record",
        )
        await asyncio.sleep(1.0)
        assert await count(store, tickets_of(first)) == 1
        assert await count(store, tickets_of(second)) == 1
        creates = select(func.count()).where(OUTBOX.c.kind == "create")
        assert await count(store, creates) == 2


async def test_a_stale_leader_steps_down_and_its_writes_are_refused(
    tmp_path: Path, pg_url: str, store: Store
) -> None:
    a, b = await pair(tmp_path, pg_url)
    async with a, b:
        await a.wait(lambda: a.log("ha_took_over"), 15, "a leads")
        await b.start_daemon()
        await b.wait(lambda: b.log("ha_standby", leader="cti-a"), 10, "b is the standby")
        for seat in SEATS:
            await a.seat(seat["id"], {"cmd": "login", "ready": True})
        first = await a.call("12345", "13800000093", "王五")
        await a.wait(lambda: a.answered_by(first), 15, "the first call answered")
        await asyncio.sleep(2.5)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            took = await b.wait(lambda: b.log("ha_took_over"), 10, "b takes over")
            assert time.monotonic() - stopped <= TAKEOVER_S
            assert took["epoch"] == 2
            second = await b.call("12345", "13800000094", "赵六")
            await b.wait(lambda: b.answered_by(second), 15, "b answers the next call")
            n_actions = len(a.logs)
        finally:
            a.proc.send_signal(signal.SIGCONT)
        # the old leader: its lease is over by its own clock; it steps down and exits
        async with asyncio.timeout(15):
            code = await a.proc.wait()
        assert code == 5
        step = a.log("ha_stepped_down")
        assert step is not None
        assert step["epoch"] == 1
        after = a.logs[n_actions:]
        acted = {"call_taken", "call_offered", "call_answered", "ticket_created", "pop_sent"}
        assert not [r for r in after if r.get("event") in acted]
        # whatever it still had to write carried epoch 1: refused, never stored
        assert not [r for r in after if r.get("event") == "call_records_write_recovered"]
        # the database itself refuses a write of epoch 1 (what the old leader's would be)
        stale = Store(pg_url)
        install_fence(stale.engine, lambda: 1)
        try:
            with pytest.raises(DBAPIError) as refused:
                async with stale.engine.begin() as conn:
                    await conn.execute(
                        SEAT_EVENTS.insert(),
                        [{"seat": "1001", "at": time.time(), "status": "ready", "reason": None,
                          "previous": "talking", "cause": "stale", "call_id": None}],
                    )  # fmt: skip
            assert is_fenced(refused.value)
        finally:
            await stale.close()
        async with store.engine.connect() as conn:
            assert (await conn.scalar(text("SELECT epoch FROM cti_leader"))) == 2
        await b.hang_up(first)
        await b.hang_up(second)
        for call in (first, second):
            await until(
                lambda c=call: count(  # type: ignore[misc]
                    store, select(func.count()).where(CALL_RECORDS.c.linkedid == c)
                ),
                20,
                f"the record of {call}",
            )
        await asyncio.sleep(1.0)
        assert await count(store, tickets_of(first)) == 1
        assert await count(store, tickets_of(second)) == 1
        stale_rows = select(func.count()).where(SEAT_EVENTS.c.cause == "stale")
        assert await count(store, stale_rows) == 0
