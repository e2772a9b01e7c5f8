"""110 ⇄ 12345 against the real testbed: a real daemon, real calls on the 110 line, pushes
over HTTP and MQTT, feedback over MQTT and to a real webhook on loopback."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cti.adapters.pops import PopMessage
from tests.http_sink import HttpSink
from tests.real.daemon_harness import Harness, write_config

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

SEATS = [
    {
        "id": "1001",
        "endpoint": "Local/1001@seats",
        "skills": {"general": 5, "market": 3, "hr": 1, "env": 1, "health": 1, "dialect": 1},
    }
]
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}
TOKEN_110 = "p-" + secrets.token_hex(16)
TOKEN_SEATS = "s-" + secrets.token_hex(16)
LINE110 = "12345110"


def configure(tmp_path: Path, *, webhook: str | None = None) -> tuple[Path, str]:
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["http"] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 0,
        "tokens": [
            {"name": "dispatch-110", "token": TOKEN_110, "scopes": ["transfers110"]},
            {"name": "supervisor", "token": TOKEN_SEATS, "scopes": ["seats", "queue"]},
        ],
    }
    if webhook is not None:
        data["dispatch110"] = {"feedback": {"url": webhook, "timeout_s": 2, "retry_max_s": 1}}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


def transfer(tid: str, caller: str, mode: str = "voice", **kw: Any) -> dict[str, Any]:
    return {
        "transfer_id": tid,
        "mode": mode,
        "caller": caller,
        "caller_name": "周九",
        "category": "噪音扰民",
        "summary": "楼下装修噪音 夜间施工",
        "address": "幸福路1号",
        "location": {"lat": 34.26, "lon": 108.94},
        "called_at": datetime.now(UTC).isoformat(),
        "operator_id": "110-0815",
        **kw,
    }


async def api(h: Harness) -> httpx.AsyncClient:
    up = await h.wait(lambda: h.log("http_listening"), 10, "the HTTP API listening")
    return httpx.AsyncClient(
        base_url=f"http://{up['host']}:{up['port']}",
        headers={"Authorization": f"Bearer {TOKEN_110}"},
        timeout=10,
    )


def feedback(h: Harness, tid: str) -> list[dict[str, Any]]:
    return list(h.published(f"110/feedback/{tid}"))


def tickets(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


async def test_push_then_call_is_answered_first_pops_110_data_one_ticket_feedback_in_order(
    tmp_path: Path,
) -> None:
    tid = "J" + secrets.token_hex(5)
    sink = HttpSink()
    await sink.start()
    await sink.stop()  # the 110 side's webhook is unreachable while all this happens
    config = configure(tmp_path, webhook=f"{sink.url}/feedback")
    try:
        async with Harness(*config) as h, await api(h) as c:
            # two ordinary calls wait first (nobody is ready) ...
            early = [await h.call("12345", f"1380000080{i}", f"市民{i}") for i in range(2)]
            resp = await c.post("/api/v1/transfers/110", json=transfer(tid, "13800000809"))
            assert resp.status_code == 202, resp.text
            assert resp.json()["transfer"]["status"] == "accepted"
            # ... then 110's caller arrives on the 110 line, carrying the transfer id
            call = await h.call(LINE110, "13800000809", "周九", variables={"CTI_TRANSFER_ID": tid})
            await h.seat("1001", {"cmd": "login", "ready": True})
            await h.wait(lambda: h.answered_by(call), 10, "the 110 call answered")
            offers = h.published("seats/1001/pop", type="offer")
            # answered before the earlier ordinary calls: it was offered first
            assert offers[0]["call"]["call_id"] == call
            PopMessage.model_validate(offers[0])
            pushed = offers[0]["call"]["dispatch110"]
            assert (pushed["transfer_id"], pushed["category"], pushed["address"]) == (
                tid,
                "噪音扰民",
                "幸福路1号",
            )
            assert offers[0]["call"]["origin"] == "dispatch110"
            await h.hang_up(call)
            for other in early:
                await h.hang_up(other)
            await h.wait(
                lambda: [e["event"] for e in feedback(h, tid)][-1:] == ["ended"],
                10,
                "the ended feedback",
            )
            status = (await c.get(f"/api/v1/transfers/110/{tid}")).json()
            assert (status["status"], status["call_id"], status["seat"]) == (
                "ended",
                call,
                "1001",
            )
            assert h.log("feedback110_retry") is not None  # it tried, and keeps the events
            await sink.start()  # 110 is reachable again: nothing was lost, order kept
            # (polled: the harness's wait re-checks on daemon output, and this is not)
            async with asyncio.timeout(15):
                while len(sink.received) < 4:
                    await asyncio.sleep(0.05)
        events = feedback(h, tid)
        assert [e["event"] for e in events] == ["accepted", "answered", "ticket", "ended"]
        assert [e["seq"] for e in events] == [1, 2, 3, 4]
        assert events[2]["ticket"] == status["ticket"]
        assert [r.body["event"] for r in sink.received] == [e["event"] for e in events]
        assert [r.headers["idempotency-key"] for r in sink.received] == [
            f"{tid}:{n}" for n in (1, 2, 3, 4)
        ]
        rows = tickets(
            tmp_path / "cti.db",
            "select number, origin, external_ref, content, address from tickets "
            "where origin = 'dispatch110'",
        )
        assert len(rows) == 1, rows
        number, _origin, ref, content, address = rows[0]
        assert (number, ref, address) == (status["ticket"], tid, "幸福路1号")
        assert content == "【110转办 噪音扰民】楼下装修噪音 夜间施工"
    finally:
        await sink.stop()


async def test_call_before_push_gets_an_update_pop_and_mqtt_push_works(tmp_path: Path) -> None:
    tid = "J" + secrets.token_hex(5)
    async with Harness(*configure(tmp_path)) as h:
        await h.seat("1001", {"cmd": "login", "ready": True})
        call = await h.call(LINE110, "13800000819", "吴十")  # the trunk carried no id
        await h.wait(lambda: h.answered_by(call), 10, "answered")
        assert "dispatch110" not in h.published("seats/1001/pop", type="offer")[0]["call"]
        assert h._mqtt is not None
        await h._mqtt.publish(
            f"{h.prefix}/110/transfers",
            json.dumps(transfer(tid, "+86 138 0000 0819", request_id="m1")),
            qos=1,
        )
        reply = await h.wait(
            lambda: h.published("110/transfers/reply", request_id="m1"), 10, "the MQTT reply"
        )
        assert reply[0]["ok"] is True
        assert reply[0]["transfer"]["call_id"] == call  # matched by the caller's number
        update = await h.wait(
            lambda: [
                p
                for p in h.published("seats/1001/pop", type="update")
                if p["call"].get("dispatch110")
            ],
            10,
            "an update pop with 110's data",
        )
        assert update[0]["call"]["dispatch110"]["transfer_id"] == tid
        # already answered: 110 hears accepted and answered at once
        await h.wait(lambda: len(feedback(h, tid)) >= 2, 10, "feedback")
        assert [e["event"] for e in feedback(h, tid)][:2] == ["accepted", "answered"]
        await h.hang_up(call)


async def test_bad_pushes_are_refused_and_open_no_ticket(tmp_path: Path) -> None:
    tid = "J" + secrets.token_hex(5)
    config = configure(tmp_path)
    async with Harness(*config) as h, await api(h) as c:
        url = "/api/v1/transfers/110"
        good = transfer(tid, "13800000829", mode="data")
        cases: list[tuple[str, dict[str, Any], int, str]] = [
            ("missing", {k: v for k, v in good.items() if k != "summary"}, 422, "body.summary"),
            ("wrong type", {**good, "location": {"lat": "north", "lon": 1}}, 422, "body.location"),
            ("too long", {**good, "summary": "噪" * 2001}, 422, "body.summary"),
            ("bad id", {**good, "transfer_id": "a b"}, 422, "body.transfer_id"),
            ("naive time", {**good, "called_at": "2026-11-27T10:00:00"}, 422, "body.called_at"),
            ("unknown field", {**good, "priority": 1}, 422, "body.priority"),
        ]
        for what, body, status, field in cases:
            resp = await c.post(url, json=body)
            assert resp.status_code == status, (what, resp.text)
            err = resp.json()["error"]
            assert err["code"] == "invalid_request", what
            assert any(f.startswith(field) for f in err["fields"]), (what, err)
        assert (await c.post(url, json=good, headers={"Authorization": ""})).status_code == 401
        wrong = {"Authorization": f"Bearer {TOKEN_SEATS}"}  # a real token, not for this
        assert (await c.post(url, json=good, headers=wrong)).status_code == 403
        seats = await c.get("/api/v1/seats")  # and the 110 token may do nothing else
        assert seats.status_code == 403
        assert (await c.post(url, content=b'{"transfer_id": ')).status_code == 422
        # the good one, twice: one transfer, one ticket; then a conflicting reuse of the id
        first = await c.post(url, json=good)
        assert first.status_code == 202, first.text
        again = await c.post(url, json=good)
        assert (again.status_code, again.json()["duplicate"]) == (200, True)
        clash = await c.post(url, json={**good, "summary": "另一件事"})
        assert (clash.status_code, clash.json()["error"]["code"]) == (409, "conflict")
        # MQTT: not JSON, and invalid — each answered on the reply topic
        assert h._mqtt is not None
        await h._mqtt.publish(f"{h.prefix}/110/transfers", b"\xff{", qos=1)
        await h._mqtt.publish(
            f"{h.prefix}/110/transfers",
            json.dumps({**good, "caller": "", "request_id": "m2"}),
            qos=1,
        )
        replies = await h.wait(
            lambda: h.published("110/transfers/reply")[1:], 10, "two MQTT error replies"
        )
        got = h.published("110/transfers/reply")
        assert got[0]["error"]["code"] == "bad_json"
        assert (replies[0]["request_id"], replies[0]["error"]["code"]) == ("m2", "invalid_request")
        assert replies[0]["error"]["fields"][0].startswith("caller")
        await h.wait(
            lambda: h.published("calls/events", type="ticket", op="create"), 10, "the ticket"
        )
        await asyncio.sleep(0.5)
    rows = tickets(tmp_path / "cti.db", "select external_ref, origin from tickets")
    assert rows == [(tid, "dispatch110")]
