"""The HTTP work-order backend against a real loopback server (tests/workorder_server.py):
the contract, the field map, every error class, and the outbox delivering through it."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cti import __version__
from cti.adapters.db.rows import outbox_rows
from cti.adapters.db.store import Store
from cti.adapters.db.tables import OUTBOX
from cti.adapters.workorders import EmbeddedWorkOrders, HttpWorkOrders, build_workorders
from cti.adapters.workorders.embedded import CHINA
from cti.adapters.workorders.http import BODY_EXCERPT, retry_after_s
from cti.adapters.workorders.outbox import OutboxDeliverer, parked_rows
from cti.settings import WorkOrdersSettings
from cti.workorders import (
    OutboxOp,
    RequestType,
    Ticket,
    TicketCallFacts,
    TicketDraft,
    TicketRef,
    TicketTransfer,
    WorkOrderBackend,
    WorkOrderRejected,
    WorkOrderUnavailable,
)
from tests.workorder_server import WorkOrderServer

# 2026-11-27 10:00 in the hotline's time zone = 02:00 UTC
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=CHINA).timestamp()
TOKEN = "test-token-0123456789abcdef"
CALLER = "13800138000"


def call_id(n: int) -> str:
    return f"main:1795744800.{n}"


def draft(n: int, **kw: Any) -> TicketDraft:
    base: dict[str, Any] = {
        "call_id": call_id(n),
        "node": "main",
        "caller": CALLER,
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


def facts(n: int) -> TicketCallFacts:
    return TicketCallFacts(
        call_id=call_id(n),
        seat="1001",
        wait_s=3.0,
        talk_s=60.0 + n,
        outcome="answered",
        ended_at=T0 + n + 63,
        recording=f"/rec/{n}.wav",
        transfers=(TicketTransfer(type="blind", by="1001", to="12315", at=T0 + n + 30),),
    )


@pytest.fixture
async def server() -> AsyncIterator[WorkOrderServer]:
    async with WorkOrderServer(token=TOKEN) as srv:
        yield srv


@pytest.fixture
async def backend(server: WorkOrderServer) -> AsyncIterator[HttpWorkOrders]:
    b = HttpWorkOrders(server.settings())
    yield b
    await b.aclose()


# --------------------------------------------------------------------------- the contract


async def test_create_update_status(server: WorkOrderServer, backend: HttpWorkOrders) -> None:
    port: WorkOrderBackend = backend  # checked by mypy
    assert await port.create(draft(1), key=f"{call_id(1)}:create") == TicketRef(number="WO-000001")
    await port.update("WO-000001", facts(1), key=f"{call_id(1)}:update")
    assert await port.status("WO-000001") == Ticket(
        number="WO-000001",
        status="受理",
        caller=CALLER,
        caller_name="张三",
        created_at=T0 + 1,
        line="12315",
        line_name="市场监管",
        department="市场监管局",
        origin="special_number",
        skill="market",
        call_ids=(call_id(1),),
        seat="1001",
        recording="/rec/1.wav",
        wait_s=3.0,
        talk_s=61.0,
        outcome="answered",
        transfers=(TicketTransfer(type="blind", by="1001", to="12315", at=T0 + 31),),
    )
    create, update, status = server.requests
    assert (create.method, create.path, create.body) == ("POST", "/tickets", draft(1).to_json())
    assert create.headers["idempotency-key"] == f"{call_id(1)}:create"
    assert create.headers["content-type"] == "application/json"
    assert create.headers["authorization"] == f"Bearer {TOKEN}"
    assert create.headers["user-agent"] == f"hotline-cti/{__version__}"
    assert (update.method, update.path, update.body) == (
        "PATCH",
        "/tickets/WO-000001",
        facts(1).to_json(),
    )
    assert update.headers["idempotency-key"] == f"{call_id(1)}:update"
    assert (status.method, status.path, status.body) == ("GET", "/tickets/WO-000001", None)
    assert "idempotency-key" not in status.headers


async def test_status_of_an_unknown_ticket_is_none(backend: HttpWorkOrders) -> None:
    assert await backend.status("WO-999999") is None


async def test_update_of_an_unknown_ticket_is_rejected(backend: HttpWorkOrders) -> None:
    with pytest.raises(WorkOrderRejected) as info:
        await backend.update("WO-999999", facts(1), key="k")
    assert info.value.status == 404
    assert info.value.body == '{"error":"no ticket WO-999999"}'


async def test_find_recent_by_caller(server: WorkOrderServer, backend: HttpWorkOrders) -> None:
    for n, caller in ((1, CALLER), (2, CALLER), (3, "13900139000"), (4, CALLER)):
        await backend.create(draft(n, caller=caller), key=f"k{n}")
    found = await backend.find_recent_by_caller(CALLER, since=T0 + 2, limit=20)
    assert [t.number for t in found] == ["WO-000004", "WO-000002"]  # newest first
    assert [t.call_ids for t in found] == [(call_id(4),), (call_id(2),)]
    assert server.requests[-1].query == {
        "caller": CALLER,
        "since": "2026-11-27T02:00:02Z",
        "limit": "20",
    }
    found = await backend.find_recent_by_caller(CALLER, since=T0, limit=1)
    assert [t.number for t in found] == ["WO-000004"]
    assert await backend.find_recent_by_caller("10000", since=T0) == []


async def test_create_is_idempotent_by_key(
    server: WorkOrderServer, backend: HttpWorkOrders
) -> None:
    first = await backend.create(draft(1), key="k1")
    again = await backend.create(draft(1), key="k1")
    other = await backend.create(draft(2), key="k2")
    assert (first.number, again.number, other.number) == ("WO-000001", "WO-000001", "WO-000002")
    assert len(server.tickets) == 2
    assert server.counts == Counter({"create": 3})


async def test_409_with_the_number_is_success() -> None:
    async with WorkOrderServer(conflict_on_repeat=True) as srv:
        b = HttpWorkOrders(srv.settings())
        try:
            assert await b.create(draft(1), key="k1") == TicketRef(number="WO-000001")
            assert await b.create(draft(1), key="k1") == TicketRef(number="WO-000001")
            srv.fail_next(1, 409, body='{"error": "duplicate"}')  # no number: refused
            with pytest.raises(WorkOrderRejected) as info:
                await b.create(draft(1), key="k1")
        finally:
            await b.aclose()
    assert (info.value.status, info.value.body) == (409, '{"error": "duplicate"}')
    assert len(srv.tickets) == 1


# --------------------------------------------------------------------------- field map

THEIR_NAMES = {
    "number": "ticket_no",
    "caller": "phone",
    "line_name": "hotline_name",
    "created_at": "ctime",
}


async def test_field_map_both_ways() -> None:
    async with WorkOrderServer(field_names=THEIR_NAMES) as srv:
        srv.extra = {"handler_unit": "区市场监管局", "caller": "not-the-caller"}
        b = HttpWorkOrders(srv.settings())  # field_map=THEIR_NAMES
        try:
            assert await b.create(draft(1), key="k1") == TicketRef(number="WO-000001")
            await b.update("WO-000001", facts(1), key="u1")
            ticket = await b.status("WO-000001")
            found = await b.find_recent_by_caller(CALLER, since=T0)
        finally:
            await b.aclose()
    create, update, _, find = srv.requests
    assert create.body == {
        "call_id": call_id(1),
        "node": "main",
        "phone": CALLER,
        "caller_name": "张三",
        "line": "12315",
        "hotline_name": "市场监管",
        "department": "市场监管局",
        "origin": "special_number",
        "skill": "market",
        "ctime": T0 + 1,
        "seat": None,
        "recording": None,
        "content": "",
        "address": "",
        "external_ref": None,
    }
    assert update.body == facts(1).to_json()  # none of the facts' fields is renamed
    assert find.query == {"phone": CALLER, "since": "2026-11-27T02:00:00Z", "limit": "20"}
    assert ticket is not None
    # back in our names; their extra fields ignored, and their "caller" (which is not the
    # caller: ours is their "phone") does not overwrite ours
    assert (ticket.number, ticket.caller, ticket.line_name, ticket.created_at) == (
        "WO-000001",
        CALLER,
        "市场监管",
        T0 + 1,
    )
    assert found == [ticket]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_unavailable(
    server: WorkOrderServer, backend: HttpWorkOrders, status: int
) -> None:
    server.fail_next(1, status, body="maintenance")
    with pytest.raises(WorkOrderUnavailable) as info:
        await backend.create(draft(1), key="k1")
    assert str(info.value) == f"create: HTTP {status} maintenance"
    assert info.value.retry_after is None
    assert server.tickets == {}
    # the same key again, once the backend is back: one ticket
    assert await backend.create(draft(1), key="k1") == TicketRef(number="WO-000001")


async def test_429_carries_retry_after(server: WorkOrderServer, backend: HttpWorkOrders) -> None:
    server.fail_next(1, 429, body="slow down", headers={"Retry-After": "7"})
    with pytest.raises(WorkOrderUnavailable) as info:
        await backend.update("WO-000001", facts(1), key="u1")
    assert info.value.retry_after == 7.0
    server.fail_next(1, 503, headers={"Retry-After": "Fri, 27 Nov 2026 02:00:10 GMT"})
    b = HttpWorkOrders(server.settings(), clock=lambda: T0)
    try:
        with pytest.raises(WorkOrderUnavailable) as info:
            await b.status("WO-000001")
    finally:
        await b.aclose()
    assert info.value.retry_after == 10.0


def test_retry_after_values() -> None:
    assert retry_after_s("120", T0) == 120.0
    assert retry_after_s(" 1.5 ", T0) == 1.5
    assert retry_after_s("Fri, 27 Nov 2026 02:01:00 GMT", T0) == 60.0
    assert retry_after_s("Fri, 27 Nov 2026 01:00:00 GMT", T0) == 0.0  # in the past
    assert retry_after_s(None, T0) is None
    assert retry_after_s("", T0) is None
    assert retry_after_s("-1", T0) is None
    assert retry_after_s("nan", T0) is None
    assert retry_after_s("soon", T0) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
async def test_other_4xx_are_rejected(
    server: WorkOrderServer, backend: HttpWorkOrders, status: int
) -> None:
    server.fail_next(1, status, body='{"error": "caller missing"}')
    with pytest.raises(WorkOrderRejected) as info:
        await backend.create(draft(1), key="k1")
    assert (info.value.status, info.value.body) == (status, '{"error": "caller missing"}')


async def test_a_wrong_token_is_rejected_401(server: WorkOrderServer) -> None:
    b = HttpWorkOrders(server.settings(token="wrong-token"))
    try:
        with pytest.raises(WorkOrderRejected) as info:
            await b.create(draft(1), key="k1")
    finally:
        await b.aclose()
    assert (info.value.status, info.value.body) == (401, '{"error":"unauthorized"}')
    assert server.requests[0].headers["authorization"] == "Bearer wrong-token"
    assert server.tickets == {}


async def test_long_bodies_are_cut_to_500_characters(
    server: WorkOrderServer, backend: HttpWorkOrders
) -> None:
    server.fail_next(1, 400, body="x" * 5000)
    with pytest.raises(WorkOrderRejected) as info:
        await backend.create(draft(1), key="k1")
    assert info.value.body == "x" * 500
    server.fail_next(1, 500, body="y" * 5000)
    with pytest.raises(WorkOrderUnavailable) as unavailable:
        await backend.create(draft(1), key="k1")
    assert str(unavailable.value) == "create: HTTP 500 " + "y" * 500


async def test_a_redirect_is_unavailable_not_followed(
    server: WorkOrderServer, backend: HttpWorkOrders
) -> None:
    server.fail_next(1, 308, body="", headers={"Location": "https://elsewhere/tickets"})
    with pytest.raises(WorkOrderUnavailable) as info:
        await backend.create(draft(1), key="k1")
    assert str(info.value) == (
        "create: HTTP 308 redirect to 'https://elsewhere/tickets': check workorders.http.base_url"
    )
    assert server.counts == Counter({"create": 1})


async def test_a_stopped_server_is_unavailable_at_once(
    server: WorkOrderServer, backend: HttpWorkOrders
) -> None:
    assert await backend.status("WO-000001") is None  # a pooled connection now exists
    await server.stop()
    for op in (
        backend.create(draft(1), key="k1"),
        backend.update("WO-000001", facts(1), key="u1"),
        backend.status("WO-000001"),
        backend.find_recent_by_caller(CALLER, since=T0),
    ):
        started = time.monotonic()
        with pytest.raises(WorkOrderUnavailable) as info:
            await op
        assert time.monotonic() - started < 0.5
        assert "ConnectError" in str(info.value), str(info.value)
        assert f"http://127.0.0.1:{server.port}/tickets" in str(info.value)
    await server.start()  # back on the same port: the same backend carries on
    assert await backend.create(draft(1), key="k1") == TicketRef(number="WO-000001")


async def test_a_slow_answer_is_a_read_timeout(server: WorkOrderServer) -> None:
    server.delay_s = 3.0
    b = HttpWorkOrders(server.settings(read_timeout_s=0.2, timeout_s=1.0))
    started = time.monotonic()
    try:
        with pytest.raises(WorkOrderUnavailable) as info:
            await b.create(draft(1), key="k1")
    finally:
        await b.aclose()
    assert 0.2 <= time.monotonic() - started < 0.8
    assert str(info.value).startswith(
        f"create: POST http://127.0.0.1:{server.port}/tickets: ReadTimeout"
    )


class Silent(httpx.AsyncBaseTransport):
    """Accepts the request and never answers, without any per-phase timeout firing."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError


async def test_the_whole_exchange_has_a_deadline(server: WorkOrderServer) -> None:
    settings = server.settings(timeout_s=0.3, read_timeout_s=0.3, connect_timeout_s=0.3)
    b = HttpWorkOrders(settings, transport=Silent())
    started = time.monotonic()
    try:
        with pytest.raises(WorkOrderUnavailable) as info:
            await b.status("WO-000001")
    finally:
        await b.aclose()
    assert 0.3 <= time.monotonic() - started < 0.8
    assert str(info.value) == (
        f"status: GET http://127.0.0.1:{server.port}/tickets/WO-000001: no answer within 0.3 s"
    )


async def test_malformed_answers(server: WorkOrderServer, backend: HttpWorkOrders) -> None:
    # a write the backend took without saying which ticket: parked (Rejected)
    server.fail_next(1, 201, body='{"id": 5}')
    with pytest.raises(WorkOrderRejected) as rejected:
        await backend.create(draft(1), key="k1")
    assert (rejected.value.status, rejected.value.body) == (
        201,
        "malformed answer, no ticket number 'number': {\"id\": 5}",
    )
    server.fail_next(1, 201, body='{"number": "' + "9" * 65 + '"}')  # too long to store
    with pytest.raises(WorkOrderRejected):
        await backend.create(draft(1), key="k1")
    # reads: Unavailable (the pop goes out without history)
    cases = [
        (
            "<html>oops</html>",
            "find: malformed answer (not JSON: Expecting value: line 1 column 1 (char 0))",
        ),
        # a bare json.loads raises RecursionError / ValueError for these (cti.jsonin)
        ("[" * 5000 + "]" * 5000, "find: malformed answer (nested deeper than 32 levels): [[["),
        (
            '[{"number": ' + "9" * 5000 + "}]",
            'find: malformed answer (a number with more than 40 digits): [{"number": 999',
        ),
        ('{"items": []}', 'find: malformed answer, not a JSON array: {"items": []}'),
        ("[1]", "find: malformed answer, a ticket is not a JSON object: 1"),
    ]
    for body, message in cases:
        server.fail_next(1, 200, body=body)
        with pytest.raises(WorkOrderUnavailable) as info:
            await backend.find_recent_by_caller(CALLER, since=T0)
        assert str(info.value).startswith(message)
        assert len(str(info.value)) <= BODY_EXCERPT
    server.fail_next(1, 200, body='{"number": "WO-1"}')
    with pytest.raises(WorkOrderUnavailable) as info:
        await backend.status("WO-1")
    assert str(info.value).startswith(
        "status: malformed ticket (status: Field required; created_at: Field required)"
    )
    # a time without a UTC offset would put the ticket hours off: refused
    naive = {"number": "WO-1", "status": "受理", "created_at": "2026-11-27T10:00:00"}
    server.fail_next(1, 200, body=json.dumps(naive))
    with pytest.raises(WorkOrderUnavailable) as info:
        await backend.status("WO-1")
    assert "created_at" in str(info.value)
    assert "timezone" in str(info.value)


async def test_lenient_ticket_parsing(server: WorkOrderServer, backend: HttpWorkOrders) -> None:
    body = {
        "number": 42,  # a number as a JSON number
        "status": "已派发",  # the backend's own word
        "created_at": "2026-11-27T10:00:01+08:00",  # ISO 8601 with an offset
        "caller": CALLER,
        "caller_name": None,
        "call_ids": None,
        "request_type": "投诉",
        "content": None,
        "deadline": "2026-11-30T02:00:00Z",
        "transfers": [{"type": "blind", "by": 1001, "to": "12315", "at": T0 + 5}],
        "unknown_field": {"nested": True},
    }
    server.fail_next(1, 200, body=json.dumps([body, body | {"request_type": "其他"}]))
    first, second = await backend.find_recent_by_caller(CALLER, since=T0)
    assert first == Ticket(
        number="42",
        status="已派发",
        caller=CALLER,
        caller_name="",
        created_at=T0 + 1,
        line="",
        line_name="",
        department="",
        origin="",
        skill="",
        call_ids=(),
        request_type=RequestType.COMPLAINT,
        content="",
        deadline=datetime(2026, 11, 30, 10, 0, tzinfo=CHINA).timestamp(),
        transfers=(TicketTransfer(type="blind", by="1001", to="12315", at=T0 + 5),),
    )
    assert second.request_type is None  # not one of ours: no type rather than a wrong one


async def test_find_drops_tickets_that_are_not_the_callers(
    server: WorkOrderServer, backend: HttpWorkOrders
) -> None:
    """A backend that ignores the filter must not show an agent other citizens' tickets."""

    def ticket(number: str, caller: str, created_at: float) -> dict[str, Any]:
        return {"number": number, "status": "受理", "caller": caller, "created_at": created_at}

    server.fail_next(
        1,
        200,
        body=json.dumps(
            [
                ticket("A", "13900139000", T0 + 9),
                ticket("B", CALLER, T0 + 1),
                ticket("C", CALLER, T0 - 100),  # older than since
                ticket("D", CALLER, T0 + 5),
            ]
        ),
    )
    found = await backend.find_recent_by_caller(CALLER, since=T0, limit=5)
    assert [t.number for t in found] == ["D", "B"]


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A test CA and a server certificate for 127.0.0.1 it signed (openssl CLI)."""
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    ca = ("-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=hotline-cti test CA")
    openssl("req", "-x509", *ec, *ca)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    sign = ("-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-extfile", "ext.cnf")
    openssl("x509", "-req", "-in", "server.csr", *sign, "-out", "server.pem", "-days", "2")
    return {name: str(d / name) for name in ("ca.pem", "server.pem", "server.key")}


async def test_tls_is_verified(certs: dict[str, str]) -> None:
    async with WorkOrderServer(ssl_files=(certs["server.pem"], certs["server.key"])) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        unknown_ca = HttpWorkOrders(srv.settings())
        trusted = HttpWorkOrders(srv.settings(ca_file=certs["ca.pem"]))
        unverified = HttpWorkOrders(srv.settings(verify_tls=False))
        try:
            with pytest.raises(WorkOrderUnavailable) as info:
                await unknown_ca.create(draft(1), key="k1")
            assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
            assert await trusted.create(draft(1), key="k1") == TicketRef(number="WO-000001")
            assert await unverified.create(draft(2), key="k2") == TicketRef(number="WO-000002")
        finally:
            for b in (unknown_ca, trusted, unverified):
                await b.aclose()
    assert len(srv.tickets) == 2


def test_an_unreadable_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    settings = WorkOrderServer().settings(base_url="https://wo.example", ca_file=str(bad))
    with pytest.raises(ValueError, match=r"workorders.http.ca_file .*ca.pem: cannot load it"):
        HttpWorkOrders(settings)


# --------------------------------------------------------------------------- choosing


async def test_build_workorders(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path}/cti.db")
    await store.open()
    try:
        embedded = build_workorders(
            WorkOrdersSettings.model_validate({"embedded": {"prefix": "0746"}}), store
        )
        assert isinstance(embedded, EmbeddedWorkOrders)
        assert (await embedded.create(draft(1), key="k")).number == "0746-20261127-000001"
        await embedded.aclose()
        http = build_workorders(
            WorkOrdersSettings.model_validate(
                {"backend": "http", "http": {"base_url": "http://127.0.0.1:9"}}
            ),
            store,
        )
        assert isinstance(http, HttpWorkOrders)
        await http.aclose()
    finally:
        await store.close()


# --------------------------------------------------------------------------- the outbox


def ops(*calls: int) -> list[OutboxOp]:
    return [op for n in calls for op in (OutboxOp.create(draft(n)), OutboxOp.update(facts(n)))]


def deliverer(store: Store, backend: WorkOrderBackend) -> OutboxDeliverer:
    return OutboxDeliverer(
        store, backend, poll_s=0.05, backoff_low=0.01, backoff_high=0.05, rng=random.Random(1)
    )


async def outbox(store: Store) -> list[dict[str, Any]]:
    async with store.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(OUTBOX).order_by(OUTBOX.c.id))]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(f"sqlite+aiosqlite:///{tmp_path}/cti.db")
    await s.open()
    yield s
    await s.close()


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_outbox_over_http_through_an_outage(store: Store) -> None:
    srv = WorkOrderServer()
    await srv.start()
    await srv.stop()  # a port of its own, and nothing listening there yet
    backend = HttpWorkOrders(srv.settings())
    d = deliverer(store, backend)
    task = asyncio.create_task(d.run())
    try:
        await store.upsert_calls([], [], outbox_rows(ops(1, 2, 3), T0))
        d.notify()
        async with asyncio.timeout(10):
            while (await outbox(store))[0]["attempts"] < 3:
                await asyncio.sleep(0.01)
        head = (await outbox(store))[0]
        assert head["delivered_at"] is None
        assert "ConnectError" in head["last_error"]
        await store.upsert_calls([], [], outbox_rows(ops(4, 5), T0))  # more calls meanwhile
        d.notify()
        await srv.start()
        async with asyncio.timeout(10):
            await d.drained()
    finally:
        await stop(task)
        await backend.aclose()
        await srv.stop()
    assert srv.numbers_by_call() == {call_id(n): [f"WO-{n:06d}"] for n in range(1, 6)}
    assert srv.counts == Counter({"create": 5, "update": 5})
    assert [srv.ticket(f"WO-{n:06d}").talk_s for n in range(1, 6)] == [61.0, 62.0, 63.0, 64.0, 65.0]
    rows = await outbox(store)
    assert [r["ticket_number"] for r in rows] == [
        f"WO-{n:06d}" for n in range(1, 6) for _ in ("create", "update")
    ]
    assert all(r["delivered_at"] is not None and not r["parked"] for r in rows)


async def test_outbox_over_http_killed_between_stored_and_answered(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path}/cti.db"
    srv = WorkOrderServer()
    await srv.start()
    try:
        store = Store(db)
        await store.open()
        await store.upsert_calls([], [], outbox_rows(ops(1, 2, 3), T0))
        held = srv.hold_create = asyncio.Event()
        backend = HttpWorkOrders(srv.settings())
        task = asyncio.create_task(deliverer(store, backend).run())
        async with asyncio.timeout(5):
            await srv.create_stored.wait()  # the backend has ticket 1; the client waits
        await stop(task)  # the daemon dies
        await backend.aclose()
        await store.close()
        srv.hold_create = None
        held.set()

        store = Store(db)  # the restart
        await store.open()
        try:
            assert (await outbox(store))[0]["delivered_at"] is None
            backend = HttpWorkOrders(srv.settings())
            d = deliverer(store, backend)
            task = asyncio.create_task(d.run())
            d.notify()
            try:
                async with asyncio.timeout(10):
                    await d.drained()
            finally:
                await stop(task)
                await backend.aclose()
            rows = await outbox(store)
        finally:
            await store.close()
    finally:
        await srv.stop()
    # the create of call 1 went twice, with the same key: still one ticket per call
    assert [r.headers["idempotency-key"] for r in srv.requests if r.op == "create"] == [
        f"{call_id(1)}:create",
        f"{call_id(1)}:create",
        f"{call_id(2)}:create",
        f"{call_id(3)}:create",
    ]
    assert srv.numbers_by_call() == {call_id(n): [f"WO-{n:06d}"] for n in (1, 2, 3)}
    assert [r["ticket_number"] for r in rows] == [
        f"WO-{n:06d}" for n in (1, 2, 3) for _ in ("create", "update")
    ]


async def test_outbox_over_http_parks_a_rejected_create(store: Store) -> None:
    async with WorkOrderServer() as srv:
        srv.fail_next(1, 422, body='{"error": "caller missing"}')
        backend = HttpWorkOrders(srv.settings())
        d = deliverer(store, backend)
        task = asyncio.create_task(d.run())
        try:
            await store.upsert_calls([], [], outbox_rows(ops(1, 2, 3), T0))
            d.notify()
            async with asyncio.timeout(10):
                await d.drained()
        finally:
            await stop(task)
            await backend.aclose()
    assert srv.numbers_by_call() == {call_id(2): ["WO-000001"], call_id(3): ["WO-000002"]}
    parked = await parked_rows(store)
    assert [(r["call_id"], r["kind"]) for r in parked] == [
        (call_id(1), "create"),
        (call_id(1), "update"),
    ]
    assert parked[0]["last_error"] == 'rejected: 422 {"error": "caller missing"}'


async def test_the_daemon_exits_2_on_a_ca_file_that_is_no_ca(tmp_path: Path) -> None:
    """A CA bundle that exists but is not PEM shows only when the client is built: the
    daemon says so and exits with the configuration error status, before any call."""
    from cti.app import EXIT_CONFIG, run  # noqa: PLC0415 -- the daemon, only here
    from cti.settings import load_settings  # noqa: PLC0415

    bogus = tmp_path / "city-ca.pem"
    bogus.write_text("not a certificate\n", encoding="utf-8")
    config = tmp_path / "cti.yaml"
    config.write_text(
        "ami: {nodes: [{name: main, username: cti, secret: s}]}\n"
        f'database: {{url: "sqlite+aiosqlite:///{tmp_path}/cti.db"}}\n'
        "workorders:\n"
        "  backend: http\n"
        f"  http: {{base_url: 'https://127.0.0.1:9', ca_file: '{bogus}'}}\n",
        encoding="utf-8",
    )
    settings = load_settings(config, env={})

    async def never() -> None:
        await asyncio.Event().wait()

    async with asyncio.timeout(10):
        assert await run(settings, shutdown_trigger=never) == EXIT_CONFIG
