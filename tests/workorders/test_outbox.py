"""The ticket outbox on a real SQLite file: same-transaction writes, ordered delivery,
backend outages, rejections and restarts — exactly one ticket per call."""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from cti.adapters.db.records import summary_row
from cti.adapters.db.rows import outbox_rows, write_ops
from cti.adapters.db.store import Store
from cti.adapters.db.tables import CALL_RECORDS, OUTBOX, TICKETS
from cti.adapters.restart import load_restart
from cti.adapters.workorders.embedded import EmbeddedWorkOrders
from cti.adapters.workorders.operator import outbox_list
from cti.adapters.workorders.outbox import (
    InvalidPayloadError,
    OutboxDeliverer,
    decode_payload,
    parked_count,
    parked_rows,
    pending_count,
    requeue_parked,
)
from cti.calls.model import CallSummary
from cti.workorders import (
    OutboxOp,
    Ticket,
    TicketCallFacts,
    TicketDraft,
    TicketRating,
    TicketRef,
    WorkOrderBackend,
    WorkOrderRejected,
    WorkOrderUnavailable,
)

T0 = 1795744800.0


def call_id(n: int) -> str:
    return f"main:{T0}.{n}"


def draft(n: int) -> TicketDraft:
    return TicketDraft(
        call_id=call_id(n),
        node="main",
        caller=f"1380013{n:04d}",
        caller_name="张三",
        line="12345",
        line_name="12345",
        department="",
        origin="direct",
        skill="general",
        created_at=T0 + n,
    )


def facts(n: int) -> TicketCallFacts:
    return TicketCallFacts(
        call_id=call_id(n),
        seat="1001",
        wait_s=3.0,
        talk_s=60.0 + n,
        outcome="answered",
        ended_at=T0 + n + 63,
    )


def summary(n: int) -> CallSummary:
    return CallSummary(
        call_id=f"{T0}.{n}",
        node="main",
        caller=f"1380013{n:04d}",
        caller_name="张三",
        dialed="12345",
        line="12345",
        started_at=T0 + n,
        answered_at=T0 + n + 3,
        ended_at=T0 + n + 63,
        answered_by="1001",
        rang=("1001",),
        outcome="answered",
        hangup_by="caller",
        cause=16,
        transfers=(),
        wait_s=3.0,
        talk_s=60.0 + n,
        history_complete=True,
    )


def ops(*calls: int) -> list[OutboxOp]:
    """create then update for each call, in that order."""
    return [op for n in calls for op in (OutboxOp.create(draft(n)), OutboxOp.update(facts(n)))]


class FakeBackend:
    """An in-memory ticket system, idempotent by key, that can be down or refuse."""

    def __init__(
        self,
        *,
        down_for: int = 0,
        reject: frozenset[str] = frozenset(),
        hang_after: int | None = None,
    ) -> None:
        self.down_for = down_for  # the first N operations fail with WorkOrderUnavailable
        self.hang_after = hang_after  # operation N+1 never answers (the daemon gets killed)
        self.hanging = asyncio.Event()
        self.reject = reject  # idempotency keys it refuses
        self.tickets: dict[str, dict[str, Any]] = {}  # number -> ticket
        self.by_key: dict[str, str] = {}
        self.log: list[str] = []  # keys, in the order they took effect
        self.attempts = 0

    async def _gate(self, key: str) -> None:
        self.attempts += 1
        if self.hang_after is not None and self.attempts > self.hang_after:
            self.hanging.set()
            await asyncio.Event().wait()
        if self.attempts <= self.down_for:
            raise WorkOrderUnavailable("connection refused")
        if key in self.reject:
            raise WorkOrderRejected(422, '{"error": "caller missing"}')

    async def create(self, draft: TicketDraft, *, key: str) -> TicketRef:
        await self._gate(key)
        if key not in self.by_key:
            number = f"T{len(self.tickets) + 1}"
            self.by_key[key] = number
            self.tickets[number] = {"call_id": draft.call_id, "facts": None}
            self.log.append(key)
        return TicketRef(number=self.by_key[key])

    async def update(self, number: str, facts: TicketCallFacts, *, key: str) -> None:
        await self._gate(key)
        if number not in self.tickets:
            raise WorkOrderRejected(404, number)
        self.tickets[number]["facts"] = facts
        self.log.append(key)

    async def rate(self, number: str, rating: TicketRating, *, key: str) -> None:
        await self._gate(key)
        if number not in self.tickets:
            raise WorkOrderRejected(404, number)
        self.tickets[number]["rating"] = rating
        self.log.append(key)

    async def find_recent_by_caller(
        self, caller: str, *, since: float, limit: int = 20
    ) -> list[Ticket]:
        return []

    async def status(self, number: str) -> Ticket | None:
        return None


@pytest.fixture
def db(db_url: str) -> str:
    return db_url


@pytest.fixture
async def store(db: str) -> AsyncIterator[Store]:
    s = Store(db)
    await s.open()
    yield s
    await s.close()


def deliverer(store: Store, backend: WorkOrderBackend, **kw: Any) -> OutboxDeliverer:
    kw.setdefault("backoff_low", 0.001)
    kw.setdefault("backoff_high", 0.01)
    kw.setdefault("poll_s", 0.05)
    return OutboxDeliverer(store, backend, rng=random.Random(1), **kw)


async def drain(d: OutboxDeliverer) -> None:
    task = asyncio.create_task(d.run())
    try:
        d.notify()
        async with asyncio.timeout(10):
            await d.drained()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def queue(store: Store, *calls: int) -> None:
    await store.upsert_calls([], [], outbox_rows(ops(*calls), T0))


async def outbox(store: Store) -> list[dict[str, Any]]:
    async with store.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(OUTBOX).order_by(OUTBOX.c.id))]


async def test_the_outbox_commits_with_the_call_record(store: Store) -> None:
    await store.upsert_calls([summary_row(summary(1), T0)], [], outbox_rows(ops(1), T0))
    assert len(await store.calls()) == 1
    assert [r["key"] for r in await outbox(store)] == [
        f"{call_id(1)}:create",
        f"{call_id(1)}:update",
    ]
    # the same batch again (a retried write): still one row per key
    await store.upsert_calls([summary_row(summary(1), T0)], [], outbox_rows(ops(1), T0))
    assert len(await outbox(store)) == 2


async def test_a_failed_call_record_writes_no_outbox_row(store: Store) -> None:
    bad = summary_row(summary(2), T0) | {"caller": None}  # NOT NULL violated
    with pytest.raises(IntegrityError):
        await store.upsert_calls([bad], [], outbox_rows(ops(2), T0))
    assert await store.calls() == []
    assert await outbox(store) == []


async def test_write_ops_joins_the_callers_transaction(store: Store) -> None:
    class BoomError(Exception):
        pass

    async def fail_after_writing() -> None:
        async with store.engine.begin() as conn:
            await conn.execute(CALL_RECORDS.insert(), [summary_row(summary(3), T0)])
            await write_ops(conn, ops(3))
            raise BoomError  # rolled back: neither the record nor the ops

    with pytest.raises(BoomError):
        await fail_after_writing()
    assert await store.calls() == []
    assert await outbox(store) == []
    async with store.engine.begin() as conn:
        await conn.execute(CALL_RECORDS.insert(), [summary_row(summary(3), T0)])
        await write_ops(conn, ops(3))
    assert len(await store.calls()) == 1
    assert len(await outbox(store)) == 2


async def test_delivery_in_order_with_the_ticket_number(store: Store) -> None:
    await queue(store, 1, 2, 3)
    backend = FakeBackend()
    seen: list[tuple[str, str, str]] = []
    await drain(deliverer(store, backend, on_delivered=lambda *a: seen.append(a)))
    assert backend.log == [op.key for op in ops(1, 2, 3)]
    assert [t["facts"] for t in backend.tickets.values()] == [facts(1), facts(2), facts(3)]
    assert seen == [
        (call_id(1), "create", "T1"),
        (call_id(1), "update", "T1"),
        (call_id(2), "create", "T2"),
        (call_id(2), "update", "T2"),
        (call_id(3), "create", "T3"),
        (call_id(3), "update", "T3"),
    ]
    rows = await outbox(store)
    assert all(r["delivered_at"] is not None for r in rows)
    assert [r["ticket_number"] for r in rows] == ["T1", "T1", "T2", "T2", "T3", "T3"]
    assert await pending_count(store) == 0


async def test_a_backend_down_for_a_while_gets_every_ticket_once(store: Store) -> None:
    await queue(store, *range(1, 6))
    backend = FakeBackend(down_for=7)
    d = deliverer(store, backend)
    await drain(d)
    assert backend.attempts == 7 + 10
    assert backend.log == [op.key for op in ops(*range(1, 6))]  # order kept through retries
    assert sorted(t["call_id"] for t in backend.tickets.values()) == [
        call_id(n) for n in range(1, 6)
    ]
    head = (await outbox(store))[0]
    assert head["attempts"] == 8  # the head row took every failure
    assert head["last_error"] is None
    assert d.delivered == 10


async def test_a_rejected_op_is_parked_and_the_rest_flows(store: Store) -> None:
    await queue(store, 1, 2, 3)
    backend = FakeBackend(reject=frozenset({f"{call_id(2)}:create"}))
    d = deliverer(store, backend)
    await drain(d)
    assert backend.log == [op.key for op in ops(1, 3)]
    parked = await parked_rows(store)
    assert [(r["kind"], r["call_id"]) for r in parked] == [
        ("create", call_id(2)),
        ("update", call_id(2)),  # nothing to update without its ticket
    ]
    assert "422" in parked[0]["last_error"]
    assert "parked" in parked[1]["last_error"]
    assert d.parked == 2
    # the operator fixes it and requeues: the create, then its update, go through
    backend.reject = frozenset()
    assert await requeue_parked(store, f"{call_id(2)}:create")
    assert await requeue_parked(store, f"{call_id(2)}:update")
    await drain(deliverer(store, backend))
    assert len(backend.tickets) == 3
    assert backend.log[-2:] == [f"{call_id(2)}:create", f"{call_id(2)}:update"]
    assert await parked_rows(store) == []


async def test_a_restart_mid_way_makes_exactly_one_ticket_per_call(db: str) -> None:
    store = Store(db)
    await store.open()
    await queue(store, *range(1, 6))
    backend = FakeBackend(hang_after=5)
    first = deliverer(store, backend)
    task = asyncio.create_task(first.run())
    first.notify()
    async with asyncio.timeout(5):
        await backend.hanging.wait()
    task.cancel()  # the daemon dies mid-way, the 6th operation in flight
    with pytest.raises(asyncio.CancelledError):
        await task
    assert first.delivered == 5
    await store.close()

    store = Store(db)  # restart: everything it knows is in the table
    await store.open()
    try:
        await queue(store, 1, 2)  # a call re-written after the restart stays queued once
        backend.hang_after = None
        await drain(deliverer(store, backend))
        assert sorted(backend.log) == sorted(op.key for op in ops(*range(1, 6)))
        assert len(backend.tickets) == 5
        assert await pending_count(store) == 0
    finally:
        await store.close()


class CrashAfterCreate:
    """The embedded backend, but the daemon "dies" right after the first create took
    effect, before the outbox marked it delivered."""

    def __init__(self, inner: EmbeddedWorkOrders) -> None:
        self.inner = inner
        self.created = asyncio.Event()

    async def create(self, draft: TicketDraft, *, key: str) -> TicketRef:
        await self.inner.create(draft, key=key)
        self.created.set()
        await asyncio.Event().wait()  # never answers: the task is killed here
        raise AssertionError

    async def update(self, number: str, facts: TicketCallFacts, *, key: str) -> None:
        await self.inner.update(number, facts, key=key)

    async def rate(self, number: str, rating: TicketRating, *, key: str) -> None:
        await self.inner.rate(number, rating, key=key)

    async def find_recent_by_caller(
        self, caller: str, *, since: float, limit: int = 20
    ) -> list[Ticket]:
        return await self.inner.find_recent_by_caller(caller, since=since, limit=limit)

    async def status(self, number: str) -> Ticket | None:
        return await self.inner.status(number)


async def test_a_create_that_took_effect_but_was_not_marked_is_not_repeated(db: str) -> None:
    store = Store(db)
    await store.open()
    await queue(store, 1, 2, 3)
    crashing = CrashAfterCreate(EmbeddedWorkOrders(store))
    task = asyncio.create_task(deliverer(store, crashing).run())
    async with asyncio.timeout(5):
        await crashing.created.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.close()

    store = Store(db)
    await store.open()
    try:
        rows = await outbox(store)
        assert rows[0]["delivered_at"] is None  # the backend has it, the outbox doesn't know
        embedded = EmbeddedWorkOrders(store)
        await drain(deliverer(store, embedded))
        async with store.engine.connect() as conn:
            tickets = list(await conn.execute(select(TICKETS).order_by(TICKETS.c.id)))
            n = await conn.scalar(select(func.count()).select_from(TICKETS))
        assert n == 3
        assert [t.call_ids for t in tickets] == [[call_id(1)], [call_id(2)], [call_id(3)]]
        rows = await outbox(store)
        assert [r["ticket_number"] for r in rows] == [
            "12345-20261127-000001",
            "12345-20261127-000001",
            "12345-20261127-000002",
            "12345-20261127-000002",
            "12345-20261127-000003",
            "12345-20261127-000003",
        ]
        ticket = await embedded.status("12345-20261127-000001")
        assert ticket is not None
        assert ticket.talk_s == facts(1).talk_s
    finally:
        await store.close()


async def test_rows_written_while_no_deliverer_runs_are_found_by_the_poll(store: Store) -> None:
    backend = FakeBackend()
    d = deliverer(store, backend, poll_s=0.02)
    task = asyncio.create_task(d.run())
    try:
        async with asyncio.timeout(5):
            await d.drained()  # empty table
            await queue(store, 1)  # another process wrote it: no notify()
            while len(backend.log) < 2:
                await asyncio.sleep(0.005)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert backend.log == [op.key for op in ops(1)]


class RetryAfterBackend(FakeBackend):
    """Down, and says when to come back (HTTP Retry-After)."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__()
        self.retry_after = retry_after
        self.failed = asyncio.Event()

    async def create(self, draft: TicketDraft, *, key: str) -> TicketRef:
        self.attempts += 1
        self.failed.set()
        raise WorkOrderUnavailable("HTTP 429", retry_after=self.retry_after)


@pytest.mark.parametrize(
    ("retry_after", "expected_wait"),
    [
        (7.0, 7.0),  # longer than the backoff: honoured
        (3600.0, 30.0),  # beyond the backoff cap: capped
        (0.0, 0.5),  # shorter than the backoff: the backoff wins
        (None, 0.5),
    ],
)
async def test_the_outbox_waits_as_long_as_the_backend_asks(
    store: Store, retry_after: float | None, expected_wait: float
) -> None:
    await queue(store, 1)
    backend = RetryAfterBackend(retry_after)
    # backoff_low == the first delay, whatever the jitter: uniform(0.5, min(30, 0.5 * 2**0))
    d = deliverer(store, backend, backoff_low=0.5, backoff_high=30.0, clock=lambda: T0)
    task = asyncio.create_task(d.run())
    try:
        async with asyncio.timeout(5):
            await backend.failed.wait()
            while (await outbox(store))[0]["attempts"] == 0:
                await asyncio.sleep(0.005)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    head = (await outbox(store))[0]
    assert backend.attempts == 1
    assert head["next_attempt_at"] - T0 == pytest.approx(expected_wait)
    assert head["last_error"] == "HTTP 429"


async def test_a_rating_follows_its_create_and_reaches_the_ticket(store: Store) -> None:
    backend = FakeBackend()
    rating = TicketRating(call_id=call_id(1), key=4, label="不满意", unsatisfied=True, at=T0 + 99)
    ops = [OutboxOp.create(draft(1)), OutboxOp.update(facts(1)), OutboxOp.rate(rating)]
    await store.upsert_calls([], [], outbox_rows(ops, T0))
    d = OutboxDeliverer(store, backend)
    task = asyncio.create_task(d.run())
    async with asyncio.timeout(5):
        await d.drained()
    task.cancel()
    assert backend.log == [f"{call_id(1)}:create", f"{call_id(1)}:update", f"{call_id(1)}:rate"]
    assert backend.tickets["T1"]["rating"] == rating


# ---- poison rows: a payload that is not the operation it says it is (issue 15)


async def insert_raw(store: Store, key: str, kind: str, payload_text: str) -> None:
    """A row as a hand edit, a restored dump or another version's bug leaves it: the
    payload's text exactly as given (SQLite stores any text; PostgreSQL's JSON column only
    JSON)."""
    cast = "CAST(:p AS JSON)" if store.engine.dialect.name == "postgresql" else ":p"
    stmt = text(
        "INSERT INTO outbox (key, call_id, kind, payload, created_at, attempts, parked) "
        f"VALUES (:k, :c, :kind, {cast}, :t, 0, false)"  # two fixed forms
    )
    async with store.engine.begin() as conn:
        await conn.execute(
            stmt, {"k": key, "c": key.rpartition(":")[0], "kind": kind, "p": payload_text, "t": T0}
        )


def bad_draft_payloads(dialect: str) -> dict[str, str]:
    good = draft(9).to_json()
    wrong_type = {**good, "created_at": "13800138000x"}  # a caller's number in a float field
    missing = {k: v for k, v in good.items() if k != "caller"}
    out = {
        "json_list": "[1, 2, 3]",
        "json_string": '"garbage"',
        "missing_field": json.dumps(missing),
        "wrong_type": json.dumps(wrong_type),
    }
    if dialect == "sqlite":  # PostgreSQL refuses text that is not JSON at the INSERT
        out["not_json"] = '{"call_id": "main:1.9", "caller": "13800138000'
    return out


async def test_a_poison_row_is_parked_and_every_ticket_behind_it_is_made(store: Store) -> None:
    """Before: `TicketDraft.from_json` raised KeyError/TypeError, taken for a backend
    error, and the row was retried forever at the head; text that was not JSON raised out
    of the fetch. Now each is parked at once, named, masked, and the rest flows."""
    await queue(store, 1)
    bad = bad_draft_payloads(store.engine.dialect.name)
    for i, (case, payload) in enumerate(sorted(bad.items())):
        await insert_raw(store, f"main:{T0}.bad{i}:create", "create", payload)
        assert case
    await insert_raw(store, f"main:{T0}.badkind:create", "delete", "{}")
    await queue(store, 2, 3)
    backend = FakeBackend()
    d = deliverer(store, backend)
    with structlog.testing.capture_logs() as logs:
        await drain(d)
    # every good call got its ticket and its update, in order, once
    assert backend.log == [op.key for op in ops(1, 2, 3)]
    assert len(backend.tickets) == 3
    parked = await parked_rows(store)
    assert len(parked) == len(bad) + 1
    assert all(r["last_error"].startswith("invalid payload: ") for r in parked)
    assert all(r["attempts"] == 1 for r in parked)  # tried once, not retried
    errors = " ".join(r["last_error"] for r in parked)
    assert "field 'caller' missing" in errors
    assert "unknown operation kind 'delete'" in errors
    assert "a JSON list, not an object" in errors
    assert "13800138000" not in errors  # the reason never quotes a value
    assert d.parked == d.parked_invalid == len(bad) + 1
    assert d.parked_now == len(bad) + 1
    assert await parked_count(store.engine) == len(bad) + 1
    assert await pending_count(store) == 0
    logged = [e for e in logs if e["event"] == "ticket_op_parked"]
    assert len(logged) == len(bad) + 1
    assert "13800138000" not in repr(logged)
    assert not [e for e in logs if e["event"] == "ticket_backend_error"]  # no retry loop


async def test_a_poison_row_is_listed_for_the_operator_and_the_restart_reads_past_it(
    store: Store,
) -> None:
    payload = '"garbage"' if store.engine.dialect.name == "postgresql" else "{not json"
    await insert_raw(store, f"main:{T0}.bad:create", "create", payload)
    await queue(store, 1)
    # the restart reader (the daemon's start) reads the recent creates: it skips this one
    state = await load_restart(store, ["main"], T0 + 10)
    assert state is not None
    await drain(deliverer(store, FakeBackend()))
    out = io.StringIO()
    await outbox_list(store, out)
    listing = out.getvalue()
    assert "parked: 1" in listing
    assert f"main:{T0}.bad:create" in listing
    assert "invalid payload" in listing


async def test_a_poison_update_is_parked_and_its_call_keeps_its_ticket(store: Store) -> None:
    await store.upsert_calls([], [], outbox_rows([OutboxOp.create(draft(1))], T0))
    await insert_raw(store, f"{call_id(1)}:update", "update", json.dumps({"call_id": "x"}))
    await queue(store, 2)
    backend = FakeBackend()
    await drain(deliverer(store, backend))
    assert backend.log == [f"{call_id(1)}:create", *(op.key for op in ops(2))]
    (row,) = await parked_rows(store)
    assert row["key"] == f"{call_id(1)}:update"
    assert "field 'outcome' missing for a update" in row["last_error"]


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        ("create", "", "not JSON (at character 0)"),
        ("create", b"\xff\xfe", "not JSON"),
        ("create", None, "a JSON NoneType, not an object"),
        ("create", "{}", "field 'call_id' missing for a create"),
        ("update", '{"call_id": "a", "outcome": "answered", "ended_at": "x"}', "wrong type"),
        (
            "update",
            '{"call_id": "a", "outcome": "answered", "ended_at": 1, "transfers": [1]}',
            "wrong type",
        ),
        ("rate", '{"call_id": "a", "satisfaction_key": "1e999999"}', "wrong type"),
        (
            "rate",
            (
                '{"call_id": "a", "satisfaction_key": "nine", "satisfaction": "", '
                '"flagged": false, "at": 1}'
            ),
            "wrong type",
        ),
        ("x" * 100, "{}", "unknown operation kind"),
    ],
)
def test_decode_payload_names_what_is_wrong_never_a_value(
    kind: str, payload: Any, reason: str
) -> None:
    with pytest.raises(InvalidPayloadError) as info:
        decode_payload(kind, payload)
    assert reason in str(info.value)
    assert len(str(info.value)) < 120


def test_decode_payload_reads_what_the_outbox_writes() -> None:
    assert decode_payload("create", json.dumps(draft(1).to_json())) == draft(1)
    assert decode_payload("update", facts(1).to_json()) == facts(1)
