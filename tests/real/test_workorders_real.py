"""Tickets through the HTTP work-order backend, against the real testbed: a real daemon,
real calls, and a real HTTP server on loopback (tests/workorder_server.py) that implements
the contract of docs/workorders.md — stopped, started, and held mid-request."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.real.daemon_harness import Harness, write_config
from tests.real.daemon_harness import poll as until
from tests.workorder_server import WorkOrderServer

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

SEATS = [
    {
        "id": "1001",
        "endpoint": "Local/1001@seats",
        "skills": {"general": 5, "market": 3, "env": 1, "health": 1, "hr": 1, "dialect": 1},
    },
]
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}


def http_backend(srv: WorkOrderServer) -> dict[str, Any]:
    return {
        "backend": "http",
        # retries at most 1 s apart, so a test does not wait out a production backoff
        "retry_min_s": 0.2,
        "retry_max_s": 1.0,
        "http": {
            "base_url": srv.url,
            "timeout_s": 5,
            "connect_timeout_s": 1,
            "read_timeout_s": 3,
        },
    }


async def cti_outbox(config: Path, *args: str) -> bytes:
    """``cti outbox -c CONFIG ARGS...`` as the operator runs it: its output; it must succeed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cti", "outbox", "-c", str(config), *args,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out


def outbox(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


async def test_backend_down_while_calls_arrive_then_back(tmp_path: Path) -> None:
    """Calls go on while the city's system is down; when it is back, every call has exactly
    one ticket with its facts, and the seat still talking gets the number in an update pop."""
    srv = WorkOrderServer()
    await srv.start()
    await srv.stop()  # a port nobody listens on: connection refused, like a backend down
    config, _ = write_config(tmp_path, seats=SEATS, queue=QUEUE, workorders=http_backend(srv))
    async with Harness(config, _) as h:
        await h.seat("1001", {"cmd": "login", "ready": True})
        done = []
        for i in range(2):
            call = await h.call("12345", f"1380000070{i}", f"市民{i}")
            await h.wait(lambda c=call: h.answered_by(c), 10, "answered")  # type: ignore[misc]
            await h.hang_up(call)
            await h.wait(
                lambda c=call: h.published("calls/events", call_id=c, type="ended"),  # type: ignore[misc]
                10,
                "ended",
            )
            done.append(call)
        talking = await h.call("12315", "13800000709", "王五")
        await h.wait(lambda: h.answered_by(talking), 10, "third call answered")
        pops = h.published("seats/1001/pop")
        assert {p["ticket"] for p in pops} == {"pending"}  # the backend is down: "pending"
        waiting = outbox(
            tmp_path / "cti.db", "select count(*) from outbox where delivered_at is null"
        )[0][0]
        assert waiting == 5  # 3 creates + 2 updates, kept while the backend is down
        await srv.start()  # the city's system is back
        update = await h.wait(
            lambda: [
                p
                for p in h.published("seats/1001/pop", type="update")
                if p["call"]["call_id"] == talking
            ],
            15,
            "an update pop with the real ticket number",
        )
        await h.hang_up(talking)
        await h.wait(
            lambda: len(h.published("calls/events", type="ticket", op="update")) == 3,
            15,
            "three tickets updated",
        )
    by_call = srv.numbers_by_call()
    assert sorted(by_call) == sorted(f"main:{c}" for c in [*done, talking])
    assert all(len(numbers) == 1 for numbers in by_call.values()), by_call
    assert update[0]["ticket"] == by_call[f"main:{talking}"][0]
    for call in [*done, talking]:
        [number] = by_call[f"main:{call}"]
        facts = srv.tickets[number].facts[f"main:{call}"]
        assert (facts.outcome, facts.seat) == ("answered", "1001")
    assert outbox(
        tmp_path / "cti.db", "select count(*) from outbox where delivered_at is null"
    ) == [(0,)]


async def test_sigkill_between_record_and_delivery_makes_one_ticket(tmp_path: Path) -> None:
    """The daemon is killed (SIGKILL) twice: once after the backend stored a ticket but
    before the daemon heard back, once after the call record was committed but before its
    ticket update was delivered. After each restart the outbox resends with the same
    idempotency key: one ticket, with the call's facts."""
    srv = WorkOrderServer()
    srv.hold_create = asyncio.Event()  # the create is stored, its answer held back
    await srv.start()
    db = tmp_path / "cti.db"
    config, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE, workorders=http_backend(srv))
    try:
        async with Harness(config, prefix) as h:
            call = await h.call("12345", "13800000719", "赵六")  # no seat yet: it holds
            key = f"main:{call}:create"
            async with asyncio.timeout(10):
                await srv.create_stored.wait()
            # the backend has the ticket; the daemon has not heard: its row is undelivered
            assert outbox(db, "select delivered_at from outbox where key = ?", key) == [(None,)]
            await h.kill_daemon()
            held, srv.hold_create = srv.hold_create, None
            held.set()  # the old request's answer goes nowhere: its client is dead
            await h.start_daemon()  # adopts the held call, resends the create
            await until(
                lambda: outbox(db, "select ticket_number from outbox where key = ?", key)[0][0],
                15,
                "the create delivered after the restart",
            )
            creates = [r for r in srv.requests if r.op == "create"]
            assert len(creates) >= 2  # it was sent again ...
            assert len(srv.tickets) == 1  # ... and is still one ticket
            await h.seat("1001", {"cmd": "login", "ready": True})
            await h.wait(lambda: h.answered_by(call), 15, "answered after the restart")
            await srv.stop()  # the update cannot be delivered now
            await h.hang_up(call)
            ukey = f"main:{call}:update"
            await until(
                lambda: outbox(db, "select count(*) from outbox where key = ?", ukey) == [(1,)],
                10,
                "the call record and its ticket update committed",
            )
            assert outbox(db, "select count(*) from call_records where linkedid = ?", call) == [
                (1,)
            ]
            await h.kill_daemon()  # between the call record and the ticket delivery
            await srv.start()
            await h.start_daemon()
            await until(
                lambda: outbox(db, "select delivered_at from outbox where key = ?", ukey)[0][0],
                15,
                "the update delivered after the second restart",
            )
    finally:
        await srv.stop()
    [(number, stored)] = srv.tickets.items()
    assert stored.draft.call_id == f"main:{call}"
    assert srv.numbers_by_call() == {f"main:{call}": [number]}
    facts = stored.facts[f"main:{call}"]
    assert (facts.outcome, facts.seat) == ("answered", "1001")


async def test_a_refused_ticket_is_parked_until_the_operator_requeues_it(tmp_path: Path) -> None:
    """The backend refuses a create (422: it did not accept a field). The row is parked, the
    call's update waits behind it, other calls' tickets flow. Once the city fixed its side,
    `cti outbox requeue --all` (beside the running daemon) gets both delivered, in order."""
    srv = WorkOrderServer()
    await srv.start()
    db = tmp_path / "cti.db"
    config, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE, workorders=http_backend(srv))
    try:
        async with Harness(config, prefix) as h:
            # no seat yet, so no pop asks the backend for history: the create is the next
            # request, and the one the backend refuses
            srv.fail_next(1, 422, body='{"error": "unknown field line_name"}')
            refused = await h.call("12345", "13800000729", "钱七")
            await h.wait(lambda: h.log("ticket_op_parked"), 10, "the refused create parked")
            await h.seat("1001", {"cmd": "login", "ready": True})
            await h.wait(lambda: h.answered_by(refused), 10, "answered all the same")
            await h.hang_up(refused)
            fine = await h.call("12345", "13800000730", "孙八")
            await h.wait(lambda: h.answered_by(fine), 10, "the next call answered")
            await h.hang_up(fine)
            await h.wait(
                lambda: h.published("calls/events", call_id=fine, type="ticket", op="update"),
                10,
                "the next call's ticket, past the parked one",
            )
            parked = outbox(db, "select key from outbox where parked order by id")
            assert parked == [(f"main:{refused}:create",), (f"main:{refused}:update",)]
            listing = await cti_outbox(config, "list")
            assert b"parked: 2" in listing
            assert b"unknown field line_name" in listing
            await cti_outbox(config, "requeue", "--all")
            await h.wait(
                lambda: h.published("calls/events", call_id=refused, type="ticket", op="update"),
                15,
                "the requeued ticket delivered by the running daemon",
            )
    finally:
        await srv.stop()
    by_call = srv.numbers_by_call()
    assert sorted(by_call) == sorted([f"main:{refused}", f"main:{fine}"])
    [number] = by_call[f"main:{refused}"]
    assert srv.tickets[number].facts[f"main:{refused}"].outcome == "answered"


async def test_a_poison_row_is_parked_and_the_tickets_behind_it_are_made(tmp_path: Path) -> None:
    """A row whose payload is not a valid draft (here: text cut in the middle of the
    caller's number, as a torn restore or a hand edit leaves it) sits at the head of the
    outbox. Before issue 15's fix it was retried forever and no ticket behind it was made.
    Now it is parked at its first attempt, never sent to the backend, logged without the
    number, shown degraded in /readyz, counted in /metrics and listed by `cti outbox
    list`; the calls after it get their tickets."""
    srv = WorkOrderServer()
    await srv.start()
    db = tmp_path / "cti.db"
    config, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE, workorders=http_backend(srv))
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["http"] = {"enabled": True, "host": "127.0.0.1", "port": 0, "tokens": []}
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    poison = "main:poison.1:create"
    try:
        async with Harness(config, prefix) as h:
            up = await h.wait(lambda: h.log("http_listening"), 10, "the HTTP API listening")
            with sqlite3.connect(db) as conn:  # beside the running daemon, like an operator
                conn.execute(
                    "insert into outbox (key, call_id, kind, payload, created_at, attempts, "
                    "parked) values (?, ?, 'create', ?, ?, 0, 0)",
                    (poison, "main:poison.1", '{"call_id": "main:poison.1", "caller": "1380000',
                     time.time()),
                )  # fmt: skip
            await h.seat("1001", {"cmd": "login", "ready": True})
            calls = []
            for i in range(2):
                call = await h.call("12345", f"1380000074{i}", f"市民{i}")
                await h.wait(lambda c=call: h.answered_by(c), 10, "answered")  # type: ignore[misc]
                await h.hang_up(call)
                calls.append(call)
            for call in calls:
                await h.wait(
                    lambda c=call: h.published(  # type: ignore[misc]
                        "calls/events", call_id=c, type="ticket", op="update"
                    ),
                    15,
                    "the ticket (create and update) of a call behind the poison row",
                )
            parked = h.log("ticket_op_parked", key=poison)
            assert parked is not None
            assert parked["error"].startswith("invalid payload: not JSON"), parked
            assert "1380000" not in str(parked)
            assert outbox(db, "select parked, attempts from outbox where key = ?", poison) == [
                (1, 1)
            ]
            async with httpx.AsyncClient(
                base_url=f"http://{up['host']}:{up['port']}", timeout=10
            ) as c:
                r = await c.get("/readyz")
                assert r.status_code == 200, r.text  # degraded, not out of service
                part = r.json()["parts"]["outbox"]
                assert part["detail"].startswith("degraded: 1 ticket operation(s) parked"), part
                metrics = (await c.get("/metrics")).text
                assert "cti_outbox_parked 1" in metrics
                assert 'cti_outbox_parked_total{reason="invalid_payload"} 1' in metrics
            listing = await cti_outbox(config, "list")
            assert b"parked: 1" in listing
            assert poison.encode() in listing
            assert b"invalid payload: not JSON" in listing
            assert h.proc is not None
            assert h.proc.returncode is None  # the daemon kept serving
    finally:
        await srv.stop()
    by_call = srv.numbers_by_call()
    assert sorted(by_call) == sorted(f"main:{c}" for c in calls)
    assert all(len(n) == 1 for n in by_call.values()), by_call
    assert not [r for r in srv.requests if "poison" in str(r.body)]  # never sent
