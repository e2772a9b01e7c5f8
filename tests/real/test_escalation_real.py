"""Escalation to an emergency service (12345 -> 110, issue 6 item 4) on the real testbed: a
`cti run` daemon, a citizen's call answered by a Local auto-answer seat, the agent's
`escalate` command; Asterisk's own view (CoreShowChannels) says who is bridged with whom.
`Local/110@emergency-test` (asterisk-sample/extensions.conf) plays the 110 operator."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.http_sink import HttpSink
from tests.real.daemon_harness import Harness, settle, write_config
from tests.real.daemon_harness import poll_async as until

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

SEATS = [
    {"id": "1001", "endpoint": "Local/1001@seats", "skills": {"general": 5, "market": 3}},
    {
        "id": "1002",
        "endpoint": "Local/1002@seats",
        "skills": {"general": 5, "env": 1, "health": 1, "hr": 1, "dialect": 1},
    },
]
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 30, "overflow": [], "sticky_window_s": 0}
OPERATOR = "Local/110@emergency-test"
SEAT = "Local/1002@seats"


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, str]:
    return write_config(tmp_path, seats=SEATS, queue=QUEUE)


async def callers_bridge(h: Harness, call: str) -> list[str]:
    """The channels sharing a bridge with the caller's channel (the `;2` half of the
    originated Local/12345@cti-inbound pair, the one the daemon moves), itself included."""
    chans = await h.channels()
    mine = [
        c
        for c in chans.values()
        if c.get("Linkedid") == call
        and c["Channel"].startswith("Local/12345@cti-inbound-")
        and c["Channel"].endswith(";2")
    ]
    if len(mine) != 1 or not mine[0].get("BridgeId"):
        return []
    bridge = mine[0]["BridgeId"]
    return sorted(c["Channel"] for c in chans.values() if c.get("BridgeId") == bridge)


def named(channels: list[str], prefix: str) -> list[str]:
    return [c for c in channels if c.startswith(prefix)]


def ticket_facts(db: Path, call: str) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "select call_facts from tickets where create_key = ?", (f"main:{call}:create",)
        ).fetchone()
    assert row is not None, "no ticket for the call"
    facts: dict[str, Any] = json.loads(row[0])[f"main:{call}"]
    return facts


async def answered_call(h: Harness, caller: str, name: str) -> str:
    await h.seat("1002", {"cmd": "login", "ready": True})
    call = await h.call("12345", caller, name)
    await h.wait(lambda: h.answered_by(call), 10, "answered by 1002")
    assert h.answered_by(call) == "1002"
    both = await until(lambda: callers_bridge(h, call), 5, "the caller bridged with the seat")
    assert named(both, SEAT), both
    return call


async def test_blind_escalation_sends_the_caller_to_110_and_frees_the_seat(
    config: tuple[Path, str], tmp_path: Path
) -> None:
    async with Harness(*config) as h:
        # refusals first: a clear code, nothing changes
        idle = await h.seat("1002", {"cmd": "escalate", "target": "110", "mode": "blind"})
        assert idle["error"]["code"] == "no_call", idle
        call = await answered_call(h, "13800000061", "周七")
        unknown = await h.seat("1002", {"cmd": "escalate", "target": "999", "mode": "blind"})
        assert unknown["error"]["code"] == "unknown_target", unknown
        # 122 is configured threeway only (config/cti.yaml)
        mode = await h.seat("1002", {"cmd": "escalate", "target": "122", "mode": "blind"})
        assert mode["error"]["code"] == "mode_not_allowed", mode

        reply = await h.seat("1002", {"cmd": "escalate", "target": "110", "mode": "blind"})
        assert reply["ok"] is True, reply
        # Asterisk: the caller is in a bridge with the 110 operator, and the seat is not
        bridged = await until(
            lambda: _with_operator_only(h, call), 10, "caller bridged with 110 without the seat"
        )
        assert len(named(bridged, OPERATOR)) == 1, bridged
        chans = await h.channels()
        assert not [c for c in chans.values() if c["Channel"].startswith(SEAT)], "seat leg left"
        # the seat is in wrap-up (话后处理), not on the call any more
        await h.wait(lambda: ("wrap_up", None) in h.seat_states("1002"), 5, "1002 in wrap-up")
        [event] = await h.wait(
            lambda: h.published("calls/events", call_id=call, type="escalated"), 5, "escalated"
        )
        assert (event["seat"], event["target"], event["target_name"], event["mode"]) == (
            "1002",
            "110",
            "公安110",
            "blind",
        )
        assert (event["caller"], event["caller_name"], event["line"]) == (
            "13800000061",
            "周七",
            "12345",
        )
        assert event["ticket_draft"] == f"main:{call}"
        # the call goes on between the citizen and 110: not ended
        await settle(1.0)
        assert not h.published("calls/events", call_id=call, type="ended")
        end_pops = [p for p in h.published("seats/1002/pop") if p["type"] == "end"]
        assert [(p["call"]["reason"], p["call"]["to"]) for p in end_pops] == [("escalated", "110")]

        await h.hang_up(call)
        [ended] = await h.wait(
            lambda: h.published("calls/events", call_id=call, type="ended"), 10, "the record"
        )
        await until(lambda: _no_channels(h), 5, "every channel gone after the caller hung up")
        await h.wait(
            lambda: h.published("calls/events", call_id=call, type="ticket", op="update"),
            10,
            "the ticket's update delivered",
        )
        errors = [r for r in h.logs if r.get("level") in {"error", "critical"}]
        assert not errors, errors
    assert ended["outcome"] == "answered"
    assert ended["answered_by"] == "1002"
    assert ended["rang"] == ["1002", "110"]
    assert ended["hangup_by"] == "caller"
    assert [(t["type"], t["by"], t["to"]) for t in ended["transfers"]] == [
        ("escalation_blind", "1002", "110")
    ]
    facts = ticket_facts(tmp_path / "cti.db", call)
    assert facts["seat"] == "1002"
    assert [(t["type"], t["by"], t["to"]) for t in facts["transfers"]] == [
        ("escalation_blind", "1002", "110")
    ]


async def test_threeway_escalation_joins_110_then_the_agent_leaves(
    config: tuple[Path, str], tmp_path: Path
) -> None:
    async with Harness(*config) as h:
        call = await answered_call(h, "13800000062", "吴八")
        early = await h.seat("1002", {"cmd": "leave"})
        assert early["error"]["code"] == "no_call", early
        reply = await h.seat("1002", {"cmd": "escalate", "target": "110", "mode": "threeway"})
        assert reply["ok"] is True, reply
        # Asterisk: caller, seat and the 110 operator in one bridge
        three = await until(lambda: _three(h, call), 10, "caller, seat and 110 in one bridge")
        assert len(three) == 3, three
        await h.wait(
            lambda: h.published("calls/events", call_id=call, type="escalation_joined"),
            5,
            "escalation_joined",
        )
        [event] = h.published("calls/events", call_id=call, type="escalated")
        assert (event["seat"], event["target"], event["mode"]) == ("1002", "110", "threeway")
        assert h.seat_states("1002")[-1] == ("talking", None)  # the agent stays by default

        # the agent drops out: caller and 110 stay connected
        left = await h.seat("1002", {"cmd": "leave"})
        assert left["ok"] is True, left
        two = await until(
            lambda: _with_operator_only(h, call), 10, "caller and 110 without the seat"
        )
        assert len(two) == 2, two
        await h.wait(lambda: ("wrap_up", None) in h.seat_states("1002"), 5, "1002 in wrap-up")
        await settle(1.0)
        assert await _with_operator_only(h, call), "caller and 110 still connected after 1 s"
        assert not h.published("calls/events", call_id=call, type="ended")
        assert h.published("calls/events", call_id=call, type="escalation_left")

        await h.hang_up(call)
        [ended] = await h.wait(
            lambda: h.published("calls/events", call_id=call, type="ended"), 10, "the record"
        )
        # the operator's leg must not stay on a dead line
        await until(lambda: _no_channels(h), 5, "every channel gone after the caller hung up")
        await h.wait(
            lambda: h.published("calls/events", call_id=call, type="ticket", op="update"),
            10,
            "the ticket's update delivered",
        )
        errors = [r for r in h.logs if r.get("level") in {"error", "critical"}]
        assert not errors, errors
    assert ended["outcome"] == "answered"
    assert ended["answered_by"] == "1002"
    assert ended["rang"] == ["1002", "110"]
    assert ended["hangup_by"] == "caller"
    assert [(t["type"], t["by"], t["to"]) for t in ended["transfers"]] == [
        ("escalation_threeway", "1002", "110")
    ]
    facts = ticket_facts(tmp_path / "cti.db", call)
    assert [(t["type"], t["by"], t["to"]) for t in facts["transfers"]] == [
        ("escalation_threeway", "1002", "110")
    ]


async def _with_operator_only(h: Harness, call: str) -> list[str]:
    chans = await callers_bridge(h, call)
    return chans if named(chans, OPERATOR) and not named(chans, SEAT) else []


async def _three(h: Harness, call: str, operator: str = OPERATOR) -> list[str]:
    chans = await callers_bridge(h, call)
    return chans if named(chans, operator) and named(chans, SEAT) else []


async def _no_channels(h: Harness) -> bool:
    return not await h.channels()


async def test_threeway_ends_whole_when_the_caller_hangs_up_first(
    config: tuple[Path, str],
) -> None:
    async with Harness(*config) as h:
        call = await answered_call(h, "13800000063", "郑九")
        reply = await h.seat("1002", {"cmd": "escalate", "target": "120", "mode": "threeway"})
        assert reply["ok"] is True, reply
        await until(lambda: _three(h, call, "Local/120@emergency-test"), 10, "three in a bridge")
        await h.hang_up(call)
        await h.wait(
            lambda: h.published("calls/events", call_id=call, type="ended"), 10, "the record"
        )
        # neither the agent nor the operator is left on the line
        await until(lambda: _no_channels(h), 5, "every channel gone after the caller hung up")
        await h.wait(lambda: ("wrap_up", None) in h.seat_states("1002"), 5, "1002 in wrap-up")


async def test_threeway_operator_hangs_up_after_the_agent_left(
    config: tuple[Path, str],
) -> None:
    async with Harness(*config) as h:
        call = await answered_call(h, "13800000064", "王十")
        await h.seat("1002", {"cmd": "escalate", "target": "110", "mode": "threeway"})
        await until(lambda: _three(h, call), 10, "three in a bridge")
        await h.wait(
            lambda: h.published("calls/events", call_id=call, type="escalation_joined"), 5, "join"
        )
        assert (await h.seat("1002", {"cmd": "leave"}))["ok"] is True
        await until(lambda: _with_operator_only(h, call), 10, "caller and 110 only")
        chans = await h.channels()
        [operator] = [
            c["Channel"]
            for c in chans.values()
            if c["Channel"].startswith(OPERATOR) and c["Channel"].endswith(";1")
        ]
        await h.driver_action({"Action": "Hangup", "Channel": operator})
        # the caller is not left alone on a dead line: the call ends
        await h.wait(
            lambda: h.published("calls/events", call_id=call, type="ended"), 10, "the record"
        )
        await until(lambda: _no_channels(h), 5, "every channel gone")


async def test_blind_escalation_to_a_busy_110_brings_the_caller_back_first_in_line(
    config: tuple[Path, str],
) -> None:
    async with Harness(*config) as h:
        call = await answered_call(h, "13800000065", "钱十一")
        chans = await h.channels()
        [caller] = [
            c["Channel"]
            for c in chans.values()
            if c.get("Linkedid") == call
            and c["Channel"].startswith("Local/12345@cti-inbound-")
            and c["Channel"].endswith(";2")
        ]
        # TEST-ONLY knob of [emergency-test]: the operator's line is busy for this caller
        await h.driver_action(
            {
                "Action": "Setvar",
                "Channel": caller,
                "Variable": "__EMERGENCY_TEST_BUSY",
                "Value": "1",
            }
        )
        await h.seat("1001", {"cmd": "login", "ready": True})
        reply = await h.seat("1002", {"cmd": "escalate", "target": "110", "mode": "blind"})
        assert reply["ok"] is True, reply
        [failed] = await h.wait(
            lambda: h.published("calls/events", call_id=call, type="escalation_failed"),
            10,
            "escalation_failed",
        )
        assert failed["reason"] == "not answered"
        # 12345 keeps the citizen: answered again, by the seat that is ready (1002 wraps up)
        await h.wait(lambda: ("talking", None) in h.seat_states("1001"), 10, "1001 answers")
        both = await until(lambda: callers_bridge(h, call), 5, "the caller with seat 1001")
        assert named(both, "Local/1001@seats"), both
        await h.hang_up(call)
        [ended] = await h.wait(
            lambda: h.published("calls/events", call_id=call, type="ended"), 10, "the record"
        )
    assert ended["answered_by"] == "1002"
    assert ended["rang"] == ["1002", "110", "1001"]
    assert [(t["type"], t["to"]) for t in ended["transfers"]] == [("escalation_blind", "110")]


async def test_the_receiving_side_gets_the_call_and_ticket_data(tmp_path: Path) -> None:
    """numberplan.emergency[].notify_url: the escalation's data is POSTed there (stored
    first; the receiver was down at first and gets it once it is up)."""
    sink = HttpSink()
    await sink.start()
    await sink.stop()  # 110's endpoint is down when the agent escalates
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for target in data["numberplan"]["emergency"]:
        if target["number"] == "110":
            target["notify_url"] = f"{sink.url}/12345/escalations"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    try:
        async with Harness(path, prefix) as h:
            call = await answered_call(h, "13800000068", "韩十六")
            reply = await h.seat("1002", {"cmd": "escalate", "target": "110", "mode": "blind"})
            assert reply["ok"] is True, reply
            await asyncio.sleep(1.5)
            await sink.start()
            async with asyncio.timeout(15):
                while not sink.received:
                    await asyncio.sleep(0.1)
        [got] = sink.received
        assert got.path == "/12345/escalations"
        body = got.body
        assert (body["call_id"], body["target"], body["mode"], body["seat"]) == (
            call,
            "110",
            "blind",
            "1002",
        )
        assert (body["caller"], body["caller_name"], body["line"]) == (
            "13800000068",
            "韩十六",
            "12345",
        )
        assert got.headers["idempotency-key"] == body["event_id"]
        assert "authorization" not in got.headers  # 110's feedback token is not sent here
    finally:
        await sink.stop()
