"""Hostile JSON against the real daemon (issue 16 items 1, 5, 6, 7): over the real broker
and real HTTP, the inputs that ended the daemon (or gave 500/400) are refused cleanly with
`bad_json`, the process lives on, and a normal call is routed, popped and ticketed right
after. Caller numbers written with spaces or dashes never reach the log unmasked."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from cti.adapters.pops import PopMessage
from tests.real.daemon_harness import Harness, poll
from tests.real.test_dispatch110_real import TOKEN_SEATS, api, configure, transfer

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

DEEP = b"[" * 5000 + b"]" * 5000
HUGE_LAT = b'{"transfer_id":"a","location":{"lat":' + b"9" * 5000 + b',"lon":1}}'
# what only a catch-all would have caught: the refusals must be clean, not survived
CAUGHT_BY_A_FENCE = ("mqtt_message_failed", "push110_message_failed", "http_internal_error")


def alive(h: Harness) -> None:
    assert h.proc is not None
    assert h.proc.returncode is None, f"the daemon exited with {h.proc.returncode}"


async def serves_a_call(h: Harness, caller: str) -> None:
    """A normal call after the hostile input: answered by 1001, popped, ticketed."""
    alive(h)
    call = await h.call("12345", caller, "市民")
    await h.wait(lambda: h.answered_by(call) == "1001", 15, "the call answered by 1001")
    offers = await h.wait(
        lambda: [
            p for p in h.published("seats/1001/pop", type="offer") if p["call"]["call_id"] == call
        ],
        10,
        "the offer pop",
    )
    PopMessage.model_validate(offers[0])
    created = await h.wait(
        lambda: h.published("calls/events", call_id=call, type="ticket", op="create"),
        10,
        "the call's ticket",
    )
    assert created[0]["ticket"]
    await h.hang_up(call)
    await h.wait(
        lambda: h.published("calls/events", call_id=call, type="ended"), 10, "the call's end"
    )
    alive(h)
    fenced = [r for r in h.logs if r.get("event") in CAUGHT_BY_A_FENCE]
    assert not fenced, fenced


async def test_hostile_110_pushes_over_mqtt_get_bad_json_and_the_daemon_serves_on(
    tmp_path: Path,
) -> None:
    """Item 1: these two payloads on cti/110/transfers ended the daemon (exit 1)."""
    async with Harness(*configure(tmp_path)) as h:
        assert h._mqtt is not None
        await h.seat("1001", {"cmd": "login", "ready": True})
        topic = f"{h.prefix}/110/transfers"
        hostile = [HUGE_LAT, DEEP, b"[" * 5000, b"\xff{", b'{"transfer_id": "\\ud800"}']
        for payload in hostile:
            await h._mqtt.publish(topic, payload, qos=1)
        replies = await h.wait(
            lambda: (
                (got := h.published("110/transfers/reply")) and len(got) >= len(hostile) and got
            ),
            15,
            "one reply per hostile push",
        )
        assert [r["error"]["code"] for r in replies] == ["bad_json"] * len(hostile)
        messages = [r["error"]["message"] for r in replies]
        assert "more than 40 digits" in messages[0]
        assert "nested deeper than 32 levels" in messages[1]
        assert "nested deeper than 32 levels" in messages[2]
        assert "not UTF-8" in messages[3]
        assert "surrogate" in messages[4]
        alive(h)
        # the push loop still works: a good push right after is accepted
        tid = "J" + secrets.token_hex(5)
        good = transfer(tid, "13800000861", mode="data", request_id="after")
        await h._mqtt.publish(topic, json.dumps(good), qos=1)
        ok = await h.wait(
            lambda: h.published("110/transfers/reply", request_id="after"), 10, "the good reply"
        )
        assert ok[0]["ok"] is True, ok
        await serves_a_call(h, "13800000862")


async def test_deeply_nested_seat_commands_get_an_error_reply_over_mqtt_and_http(
    tmp_path: Path,
) -> None:
    """Item 6: under the 4 KiB limit; MQTT gave no reply, HTTP a 500 with a traceback."""
    async with Harness(*configure(tmp_path)) as h, await api(h) as c:
        assert h._mqtt is not None
        await h.seat("1001", {"cmd": "login", "ready": True})
        nested = b"[" * 2000 + b"]" * 2000
        await h._mqtt.publish(f"{h.prefix}/seats/1001/cmd", nested, qos=1)
        huge = b'{"cmd": "wrapup_extend", "seconds": ' + b"9" * 4000 + b"}"
        await h._mqtt.publish(f"{h.prefix}/seats/1001/cmd", huge, qos=1)
        replies = await h.wait(
            lambda: (
                (got := [r for r in h.published("seats/1001/reply") if not r["ok"]])
                and len(got) >= 2
                and got
            ),
            10,
            "two error replies on seats/1001/reply",
        )
        assert [r["error"]["code"] for r in replies] == ["bad_json", "bad_json"]
        assert "nested deeper than 32 levels" in replies[0]["error"]["message"]
        assert "more than 40 digits" in replies[1]["error"]["message"]
        url = "/api/v1/seats/1001/commands"
        seats = {"Authorization": f"Bearer {TOKEN_SEATS}"}
        for body in (nested, huge):
            resp = await c.post(url, content=body, headers=seats)
            assert (resp.status_code, resp.json()["error"]["code"]) == (422, "bad_json"), resp.text
        alive(h)
        await serves_a_call(h, "13800000863")


async def test_hostile_110_pushes_over_http_are_422_bad_json_as_documented(
    tmp_path: Path,
) -> None:
    """Item 7: invalid UTF-8, nesting and huge integers were 400 http_error."""
    async with Harness(*configure(tmp_path)) as h, await api(h) as c:
        await h.seat("1001", {"cmd": "login", "ready": True})
        url = "/api/v1/transfers/110"
        json_type = {"Content-Type": "application/json"}
        cases = [
            (b"\xff{", "not UTF-8"),
            (DEEP, "nested deeper than 32 levels"),
            (HUGE_LAT, "more than 40 digits"),
            (b'{"lat": 1e999}', "out of range"),
        ]
        for body, fragment in cases:
            resp = await c.post(url, content=body, headers=json_type)
            assert resp.status_code == 422, (fragment, resp.status_code, resp.text)
            err = resp.json()["error"]
            assert err["code"] == "bad_json", err
            assert fragment in err["message"], err
        too_big = await c.post(url, content=b" " * 20_000 + b"{}", headers=json_type)
        assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "too_large")
        # the OpenAPI document names the error answers, so a generated client knows them
        spec = (await c.get("/openapi.json")).json()
        push = spec["paths"][url]["post"]["responses"]
        assert {"401", "403", "409", "413", "422"} <= set(push), sorted(push)
        alive(h)
        tid = "J" + secrets.token_hex(5)
        accepted = await c.post(url, json=transfer(tid, "13800000864", mode="data"))
        assert accepted.status_code == 202, accepted.text
        await serves_a_call(h, "13800000865")


async def test_grouped_caller_numbers_are_masked_in_the_log(tmp_path: Path) -> None:
    """Item 5: `138 0013 8000` / `138-0013-8000` were logged as pushed (transfer110_pushed)."""
    async with Harness(*configure(tmp_path)) as h, await api(h) as c:
        await h.seat("1001", {"cmd": "login", "ready": True})
        tids = []
        for caller in ("138 0013 8866", "138-0013-8867", "+86 138 0013 8868"):
            tid = "J" + secrets.token_hex(5)
            tids.append(tid)
            resp = await c.post("/api/v1/transfers/110", json=transfer(tid, caller, mode="data"))
            assert resp.status_code == 202, resp.text
        bad = transfer("J" + secrets.token_hex(5), "138 0013 8869", mode="data", summary="")
        assert (await c.post("/api/v1/transfers/110", json=bad)).status_code == 422
        pushed: list[dict[str, Any]] = await poll(
            lambda: len(h.logs_of("transfer110_pushed")) >= 3 and h.logs_of("transfer110_pushed"),
            10,
            "three transfer110_pushed lines",
        )
        assert [r["caller"] for r in pushed] == ["138****8866", "138****8867", "138****8868"]
        await serves_a_call(h, "13800138870")
        text = "\n".join(json.dumps(r, ensure_ascii=False) for r in h.logs)
        assert "138****8870" in text  # the call's caller, masked in the call's log lines
        for digits in ("0013 88", "0013-88", "001388"):
            assert digits not in text, [ln for ln in text.splitlines() if digits in ln][:3]
        # the data keeps what 110 sent: only the log is masked
        for tid, caller in zip(tids, ("138 0013 8866", "138-0013-8867"), strict=False):
            status = await c.get(f"/api/v1/transfers/110/{tid}")
            assert status.status_code == 200, status.text
            assert caller in json.dumps(status.json(), ensure_ascii=False)
