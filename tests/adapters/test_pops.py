"""PopPublisher: what a pop carries, built from fakes of the store, backend and broker
(the real path is tests/real/test_routing_real.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from cti.adapters.pops import PopMessage, PopPublisher
from cti.core import Pop
from cti.workorders.model import Ticket

NOW = 1_800_000_000.0


class FakeStore:
    def __init__(self, calls: list[dict[str, Any]]) -> None:
        self._calls = calls

    async def calls(self, *, caller: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [c for c in self._calls if c["caller"] == caller][:limit]


class FakeBackend:
    def __init__(self, tickets: list[Ticket], *, delay_s: float = 0.0) -> None:
        self._tickets = tickets
        self.delay_s = delay_s

    async def find_recent_by_caller(
        self, caller: str, *, since: float, limit: int = 20
    ) -> list[Ticket]:
        await asyncio.sleep(self.delay_s)
        return [t for t in self._tickets if t.caller == caller and t.created_at >= since][:limit]


class FakeMqtt:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def publish(self, topic: str, payload: dict[str, Any], **_: Any) -> None:
        self.sent.append((topic, payload))


def ticket(number: str, call_ids: tuple[str, ...], created_at: float) -> Ticket:
    return Ticket(
        number=number,
        status="受理",
        caller="13800138000",
        caller_name="张三",
        created_at=created_at,
        line="12345",
        line_name="12345",
        department="市政府热线办",
        origin="direct",
        skill="general",
        call_ids=call_ids,
        content="路灯不亮" * 100,
    )


async def run_pops(
    pops: list[Pop], backend: FakeBackend, calls: list[dict[str, Any]], *, n: int
) -> list[dict[str, Any]]:
    mqtt = FakeMqtt()
    publisher = PopPublisher(
        FakeStore(calls),  # type: ignore[arg-type]
        backend,  # type: ignore[arg-type]
        mqtt,  # type: ignore[arg-type]
        log=structlog.get_logger("test"),
        clock=lambda: NOW,
    )
    task = asyncio.create_task(publisher.run())
    for p in pops:
        publisher.submit(p)
    async with asyncio.timeout(5):
        while len(mqtt.sent) < n:
            await asyncio.sleep(0.01)
    task.cancel()
    for topic, payload in mqtt.sent:
        assert topic == "seats/1001/pop"
        PopMessage.model_validate(payload)
    return [payload for _, payload in mqtt.sent]


CALL = {"call_id": "c9", "caller": "13800138000", "arrived_at": NOW - 12.5}


async def test_offer_carries_history_wait_and_a_ticket_opened_elsewhere() -> None:
    earlier = [
        {"linkedid": "c1", "caller": "13800138000", "started_at": NOW - 3600, "line": "12345",
         "outcome": "answered", "answered_by": "1002"},
        {"linkedid": "c9", "caller": "13800138000", "started_at": NOW - 12, "line": "12345",
         "outcome": "answered", "answered_by": None},
    ]  # fmt: skip
    tickets = [
        ticket("12345-20261126-000001", ("main:c1",), NOW - 3600),
        ticket("WEB-77", (), NOW - 7200),  # opened on the web: no call (was an IndexError)
        ticket("12345-20261127-000009", ("main:c9",), NOW - 12),  # this call's own
    ]
    pop = Pop(seat="1001", kind="offer", call_id="c9", attempt=1, call=CALL)
    [offer] = await run_pops([pop], FakeBackend(tickets), earlier, n=1)
    assert offer["waited_s"] == 12.5
    assert offer["ticket"] == "pending"
    history = offer["history"]
    assert [c["call_id"] for c in history["calls"]] == ["c1"]
    assert [t["number"] for t in history["tickets"]] == ["12345-20261126-000001", "WEB-77"]
    assert len(history["tickets"][0]["content"]) == 200
    assert (history["repeat_caller"], history["complete"]) == (True, True)


async def test_a_slow_history_lookup_does_not_hold_the_offer_back() -> None:
    pop = Pop(seat="1001", kind="offer", call_id="c9", attempt=1, call=CALL)
    [offer] = await run_pops([pop], FakeBackend([], delay_s=2.0), [], n=1)
    assert offer["history"] == {
        "calls": [],
        "tickets": [],
        "repeat_caller": False,
        "complete": False,
    }


async def test_the_ticket_number_follows_in_an_update_pop() -> None:
    offer = Pop(seat="1001", kind="offer", call_id="c9", attempt=1, call=CALL)
    mqtt = FakeMqtt()
    publisher = PopPublisher(
        FakeStore([]),  # type: ignore[arg-type]
        FakeBackend([]),  # type: ignore[arg-type]
        mqtt,  # type: ignore[arg-type]
        clock=lambda: NOW,
    )
    task = asyncio.create_task(publisher.run())
    publisher.submit(offer)
    async with asyncio.timeout(5):
        while not mqtt.sent:
            await asyncio.sleep(0.01)
    # the backend answered after the offer: the core's update pop carries the number
    publisher.submit(
        Pop(
            seat="1001",
            kind="update",
            call_id="c9",
            attempt=1,
            call=CALL,
            ticket="12345-20261127-000009",
        )
    )
    async with asyncio.timeout(5):
        while len(mqtt.sent) < 2:
            await asyncio.sleep(0.01)
    task.cancel()
    kinds = [(p["type"], p["ticket"]) for _, p in mqtt.sent]
    assert kinds == [("offer", "pending"), ("update", "12345-20261127-000009")]
    assert mqtt.sent[1][1]["pop_id"] == "c9:1001:1:update"


async def test_pop_latency_runs_from_the_pop_to_the_publish_acknowledged() -> None:
    """The histogram observes when the broker took the message (on_sent), not before:
    0.5 s between the pop and the acknowledgement is 0.5 s, wherever it went."""
    ticks = iter([10.0, 10.5])  # submit, then on_sent
    sent: list[Any] = []

    class AckingMqtt(FakeMqtt):
        def publish(self, topic: str, payload: dict[str, Any], **kw: Any) -> None:
            super().publish(topic, payload)
            sent.append(kw["on_sent"])

    mqtt = AckingMqtt()
    publisher = PopPublisher(
        FakeStore([]),  # type: ignore[arg-type]
        FakeBackend([], delay_s=0.01),  # type: ignore[arg-type]
        mqtt,  # type: ignore[arg-type]
        log=structlog.get_logger("test"),
        clock=lambda: NOW,
        monotonic=lambda: next(ticks),
    )
    task = asyncio.create_task(publisher.run())
    publisher.submit(Pop(seat="1001", kind="offer", call_id="c9", attempt=1, call=CALL))
    async with asyncio.timeout(5):
        while not sent:
            await asyncio.sleep(0.01)
    task.cancel()
    assert publisher.latency.count == 0  # published, not acknowledged yet
    sent[0]()
    lat = publisher.latency
    assert (lat.count, lat.sum) == (1, 0.5)
    assert dict(lat.cumulative())[0.25] == 0
    assert dict(lat.cumulative())[0.5] == 1  # inclusive upper bounds


async def test_a_re_offer_reuses_the_calls_history_an_incomplete_one_is_retried() -> None:
    earlier = [
        {"linkedid": "c1", "caller": "13800138000", "started_at": NOW - 60, "line": "12345",
         "outcome": "answered", "answered_by": "1002"},
    ]  # fmt: skip
    backend = FakeBackend([], delay_s=2.0)  # the first lookup misses its deadline
    mqtt = FakeMqtt()
    publisher = PopPublisher(
        FakeStore(earlier),  # type: ignore[arg-type]
        backend,  # type: ignore[arg-type]
        mqtt,  # type: ignore[arg-type]
        log=structlog.get_logger("test"),
        clock=lambda: NOW,
    )
    task = asyncio.create_task(publisher.run())
    try:
        for attempt in (1, 2, 3):  # ring no answer twice: offered three times
            if attempt == 2:  # the backend is quick again from here
                backend.delay_s = 0.0
            publisher.submit(
                Pop(seat="1001", kind="offer", call_id="c9", attempt=attempt, call=CALL)
            )
            async with asyncio.timeout(5):
                while len(mqtt.sent) < attempt:
                    await asyncio.sleep(0.01)
    finally:
        task.cancel()
    complete = [p["history"]["complete"] for _, p in mqtt.sent]
    assert complete == [False, True, True]
    assert publisher.history_lookups == 2  # the third offer took the second's history
    assert mqtt.sent[1][1]["history"] == mqtt.sent[2][1]["history"]
    assert [c["call_id"] for c in mqtt.sent[2][1]["history"]["calls"]] == ["c1"]
