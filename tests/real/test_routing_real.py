"""The one queue on the real testbed: the daemon (a `cti run` process) takes held calls,
routes them by priority and skill to Local auto-answer seats, handles ring-no-answer and
records abandoned calls (issue 4's acceptance scenarios)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path

import aiomqtt
import pytest
import yaml

from cti.adapters.pops import PopMessage
from tests.conftest import MQTT_HOST, MQTT_PORT, SEAT_PASSWORD, unique
from tests.real.daemon_harness import Harness, settle, write_config

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

SEATS = [
    {"id": "1001", "endpoint": "Local/1001@seats", "skills": {"general": 5, "market": 3}},
    # the plan's other skills (every skill needs a seat), but not market
    {
        "id": "1002",
        "endpoint": "Local/1002@seats",
        "skills": {"general": 5, "env": 1, "health": 1, "hr": 1, "dialect": 1},
    },
    # never answers: the RONA seat
    {"id": "9901", "endpoint": "Local/9901@seats-noanswer", "skills": {"general": 9}},
]
QUEUE = {"ring_timeout_s": 3, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, str]:
    return write_config(tmp_path, seats=SEATS, queue=QUEUE)


async def test_110_first_skills_rona_and_abandon(config: tuple[Path, str], tmp_path: Path) -> None:
    async with Harness(*config) as h:
        # --- one line for every number; the 110 transfer goes first though it came last
        a = await h.call("12345", "13800000001", "张三")
        b = await h.call("12345", "13800000002")
        c = await h.call("12345110", "13800000003")
        snap = await h.wait(
            lambda: [s for s in h.published("queue/snapshot") if s["waiting"] == 3],
            5,
            "three calls in one line",
        )
        assert snap[-1]["by_class"] == {"emergency-transfer": 1, "normal": 2}
        reply = await h.seat("1002", {"cmd": "login", "ready": True})
        assert reply["ok"] is True
        await h.wait(lambda: h.answered_by(c), 10, "the 110 call answered")
        assert h.answered_by(c) == "1002"
        assert h.answered_by(a) is None
        assert h.answered_by(b) is None
        # the seat is talking; its state went ready -> reserved -> ringing -> talking
        await h.wait(lambda: ("talking", None) in h.seat_states("1002"), 5, "1002 talking")

        # --- a 12315 call waits for the market skill; 1002 (general only) never gets it
        await h.hang_up(c)
        await h.wait(lambda: h.answered_by(a), 10, "next call to 1002 after wrap-up 0")
        assert h.answered_by(a) == "1002"  # FIFO inside the normal class
        await h.hang_up(a)
        await h.wait(lambda: h.answered_by(b), 10, "third call to 1002")
        await h.hang_up(b)
        d = await h.call("12315", "13800000004")
        await settle(1.5)
        assert h.answered_by(d) is None  # 1002 is ready but lacks the skill
        await h.seat("1001", {"cmd": "login", "ready": True})
        await h.wait(lambda: h.answered_by(d), 10, "12315 to the market seat")
        assert h.answered_by(d) == "1001"
        await h.hang_up(d)

        # --- ring no answer: 9901 is longest idle, does not answer, goes RONA; 1001 answers
        await h.seat("1001", {"cmd": "not_ready", "reason": "meal"})
        await h.seat("1002", {"cmd": "not_ready", "reason": "meeting"})
        await h.seat("9901", {"cmd": "login", "ready": True})
        e = await h.call("12345", "13800000005")
        await h.wait(lambda: h.log("call_offered", linkedid=e, seat="9901"), 5, "offer to 9901")
        await h.seat("1001", {"cmd": "ready"})
        await h.wait(lambda: ("not_ready", "rona") in h.seat_states("9901"), 10, "9901 RONA")
        await h.wait(lambda: h.answered_by(e), 10, "the RONA call answered by the next seat")
        assert h.answered_by(e) == "1001"
        await h.hang_up(e)

        # --- abandoned while waiting, with its wait time
        await h.seat("1001", {"cmd": "not_ready", "reason": "rest"})
        f = await h.call("12345", "13800000006")
        await settle(2.0)
        await h.hang_up(f)
        ended = await h.wait(
            lambda: h.published("calls/events", call_id=f, type="ended"), 10, "abandoned call ended"
        )
        assert ended[0]["outcome"] == "abandoned"
        assert 1.5 < ended[0]["wait_s"] < 4.0
        abandoned = await h.wait(lambda: h.log("call_abandoned", linkedid=f), 5, "abandon log")
        assert 1.5 < abandoned["waited_s"] < 4.0

        # --- bad agent commands: a clear error, nothing changes
        bad = await h.seat("1001", {"cmd": "not_ready", "reason": "nap"})
        assert bad["ok"] is False
        assert bad["error"]["code"] == "invalid_command"
        unknown = await h.seat("7777", {"cmd": "ready"})
        assert unknown["error"]["code"] == "unknown_seat"
        assert not [r for r in h.logs if r.get("level") in {"error", "critical"}], [
            r for r in h.logs if r.get("level") in {"error", "critical"}
        ]
    # seat state changes are in the database for the KPIs
    with sqlite3.connect(tmp_path / "cti.db") as db:
        rows = db.execute("select status, reason from seat_events where seat = '9901'").fetchall()
    assert ("not_ready", "rona") in rows


async def test_agent_transfers_a_call_to_another_department(
    config: tuple[Path, str], tmp_path: Path
) -> None:
    async with Harness(*config) as h:
        await h.seat("1002", {"cmd": "login", "ready": True})
        call = await h.call("12345", "13800000031", "李四")
        await h.wait(lambda: h.answered_by(call), 10, "answered by 1002")
        # 1002 (general only) sends the caller to 12315 (market supervision)
        reply = await h.seat("1002", {"cmd": "transfer", "target": "12315"})
        assert reply["ok"] is True, reply
        await h.seat("1001", {"cmd": "login", "ready": True})
        await h.wait(lambda: ("talking", None) in h.seat_states("1001"), 15, "1001 talking")
        await h.wait(lambda: h.seat_states("1002")[-1] == ("ready", None), 5, "1002 free")
        await h.hang_up(call)
        ended = await h.wait(
            lambda: h.published("calls/events", call_id=call, type="ended"), 10, "the call's record"
        )
        # the ticket (工单) was opened when the call was taken and updated when it ended
        tickets = await h.wait(
            lambda: h.published("calls/events", call_id=call, type="ticket", op="update"),
            10,
            "the ticket's update delivered",
        )
        created = h.published("calls/events", call_id=call, type="ticket", op="create")
        assert created[0]["ticket"] == tickets[0]["ticket"]
    summary = ended[0]
    assert summary["outcome"] == "answered"
    assert summary["answered_by"] == "1002"
    assert summary["caller_name"] == "李四"
    assert [(t["type"], t["by"], t["to"]) for t in summary["transfers"]] == [
        ("redirect", "1002", "12315")
    ]
    assert "1001" in summary["rang"]
    with sqlite3.connect(tmp_path / "cti.db") as db:
        rows = db.execute(
            "select number, caller, caller_name, line, origin, seat, call_facts from tickets "
            "where create_key = ?",
            (f"main:{call}:create",),
        ).fetchall()
    assert len(rows) == 1, rows
    number, caller, name, line, origin, seat, facts = rows[0]
    assert number == tickets[0]["ticket"]
    assert (caller, name, line, origin, seat) == ("13800000031", "李四", "12345", "direct", "1002")
    assert json.loads(facts)[f"main:{call}"]["transfers"][0]["to"] == "12315"


async def seat_client(
    seat: str, subscribe: list[str], inbox: list[aiomqtt.Message]
) -> tuple[aiomqtt.Client, asyncio.Task[None]]:
    """An agent's desktop logged in to the broker as its seat, as docs/mqtt.md says."""
    client = aiomqtt.Client(
        MQTT_HOST,
        MQTT_PORT,
        identifier=unique(f"seat{seat}"),
        username=seat,
        password=SEAT_PASSWORD,
    )
    await client.__aenter__()
    for topic in subscribe:
        await client.subscribe(topic, qos=1)

    async def read() -> None:
        async for m in client.messages:
            inbox.append(m)  # noqa: PERF401 -- as they arrive, not at the end

    return client, asyncio.create_task(read())


async def test_screen_pops_reach_the_ringing_seat_only(
    config: tuple[Path, str], tmp_path: Path
) -> None:
    prefix = config[1]
    own: list[aiomqtt.Message] = []
    snooped: list[aiomqtt.Message] = []
    # seat 1001's desktop, and seat 1002 trying to read 1001's pops: the broker's ACL
    # (mosquitto-sample/acl) must deliver 1001's pops to the first only
    desk, desk_reader = await seat_client("1001", [f"{prefix}/seats/1001/pop"], own)
    snoop, snoop_reader = await seat_client(
        "1002", [f"{prefix}/seats/1001/#", f"{prefix}/seats/+/pop", f"{prefix}/#"], snooped
    )
    async with Harness(*config) as h:
        await h.seat("1002", {"cmd": "login", "ready": True})
        await h.seat("1001", {"cmd": "login", "ready": True})
        # seat 1002 cannot command seat 1001 either: the broker drops the publish
        await snoop.publish(f"{prefix}/seats/1001/cmd", b'{"cmd":"logout"}', qos=1)
        first = await h.call("12315", "13800000041", "王五")
        await h.wait(lambda: h.answered_by(first), 10, "the 12315 call answered")
        assert h.answered_by(first) == "1001"
        offered = await h.wait(
            lambda: [p for p in h.published("seats/1001/pop") if p["type"] == "offer"],
            5,
            "offer pop",
        )
        draft = offered[0]["ticket"]
        await h.hang_up(first)
        await h.wait(lambda: h.published("seats/1001/pop", type="end"), 10, "end pop")
        pops = h.published("seats/1001/pop")
        await h.wait(lambda: len(own) >= len(pops), 5, "the seat's own desktop got every pop")
        assert [json.loads(bytes(m.payload)) for m in own][: len(pops)] == pops
        # 1002 saw the shared topics, never one of 1001's
        assert snooped, "the snooping seat should at least see the queue snapshot"
        assert [m.topic.value for m in snooped if "/seats/1001/" in m.topic.value] == []
        # ... and its `logout` for 1001 never reached the daemon
        assert [st for st, _ in h.seat_states("1001") if st == "logged_out"] == []
        for p in pops:  # every pop matches the published schema (docs/schemas/pop.schema.json)
            PopMessage.model_validate(p)
        # an `update` (the ticket number) may come in between
        assert [p["type"] for p in pops if p["type"] != "update"] == ["offer", "answer", "end"]
        offer = pops[0]
        assert offer["call"]["caller_name"] == "王五"
        assert (offer["call"]["line"], offer["call"]["department"]) == ("12315", "市场监管局")
        assert offer["history"] == {
            "calls": [],
            "tickets": [],
            "repeat_caller": False,
            "complete": True,
        }
        assert pops[-1]["call"]["outcome"] == "answered"
        assert len({p["pop_id"] for p in pops}) == len(pops)
        # the ticket number reaches the screen (in a pop, or an update pop when it came later)
        await h.wait(
            lambda: [p for p in h.published("seats/1001/pop") if p["ticket"] != "pending"],
            10,
            "ticket number on a pop",
        )
        assert h.published("seats/1002/pop") == []  # another seat sees nothing of it
        # the ticket the pops named exists in the backend, with the call's facts on it
        await h.wait(
            lambda: h.published("calls/events", call_id=first, type="ticket", op="update"),
            10,
            "the ticket's update delivered",
        )
        number = next(
            p["ticket"] for p in h.published("seats/1001/pop") if p["ticket"] != "pending"
        )
        assert draft in ("pending", number)
        with sqlite3.connect(tmp_path / "cti.db") as db:
            row = db.execute(
                "select line, department, origin, seat, call_facts from tickets where number = ?",
                (number,),
            ).fetchone()
        assert row is not None
        assert row[:4] == ("12315", "市场监管局", "special_number", "1001")
        assert json.loads(row[4])[f"main:{first}"]["outcome"] == "answered"
        # the same citizen calls again: the pop shows the earlier call and ticket
        again = await h.call("12315", "13800000041", "王五")
        offers = await h.wait(
            lambda: h.published("seats/1001/pop", type="offer")[1:], 10, "second offer"
        )
        history = offers[0]["history"]
        assert [c["call_id"] for c in history["calls"]] == [first]
        assert history["repeat_caller"] is True
        assert len(history["tickets"]) == 1
        await h.hang_up(again)
    for client, reader in ((desk, desk_reader), (snoop, snoop_reader)):
        reader.cancel()
        await client.__aexit__(None, None, None)


async def test_the_seat_console_drives_a_seat(config: tuple[Path, str]) -> None:
    """`cti seat-console` — a client that knows only docs/mqtt.md — logs a seat in, sees
    the pop and the state of a call, and a refused command's reason."""
    async with Harness(*config) as h:
        console = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cti",
            "seat-console",
            "1002",
            "-c",
            str(config[0]),
            # the console logs in as seat 1002: the broker's ACL lets it see its own topics
            env={**os.environ, "CTI_SEAT_PASSWORD": SEAT_PASSWORD},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert console.stdin is not None
        assert console.stdout is not None
        lines: list[str] = []

        async def read_until(fragment: str) -> None:
            assert console.stdout is not None
            try:
                async with asyncio.timeout(15):
                    while not any(fragment in x for x in lines):
                        line = await console.stdout.readline()
                        assert line, f"the console exited before {fragment!r}: {lines}"
                        lines.append(line.decode())
            except TimeoutError:
                msg = f"no {fragment!r} from the console within 15 s: {lines}"
                raise AssertionError(msg) from None

        await read_until("commands:")
        console.stdin.write(b"notready nap\nlogin ready\n")
        await read_until("[reply] REFUSED invalid_command")
        await read_until("[state] ready")
        call = await h.call("12345", "13800000051", "赵六")
        await read_until("[pop offer] 赵六 13800000051")
        await read_until("[state] talking")
        await h.hang_up(call)
        await read_until("[pop end]")
        console.stdin.write(b"quit\n")
        async with asyncio.timeout(10):
            assert await console.wait() == 0


async def test_a_blacklisted_caller_hears_the_prompt_and_is_never_offered(
    tmp_path: Path,
) -> None:
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["numberplan"]["blacklist"] = [
        {"number": "13800000666", "treatment": "reject", "reason": "骚扰"}
    ]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    async with Harness(path, prefix) as h:
        await h.seat("1001", {"cmd": "login", "ready": True})
        call = await h.call("12345", "13800000666", "骚扰者", taken=False)
        logged = await h.wait(lambda: h.log("call_blacklisted", linkedid=call), 10, "the log")
        assert (logged["treatment"], logged["reason"]) == ("reject", "骚扰")
        ended = await h.wait(
            lambda: h.published("calls/events", call_id=call, type="ended"), 15, "line cleared"
        )
        assert ended[0]["answered_by"] is None
        assert h.published("seats/1001/pop") == []  # never offered to a seat
        # the next caller is served as usual
        other = await h.call("12345", "13800000667", "市民")
        await h.wait(lambda: h.answered_by(other), 10, "the next call answered")
        await h.hang_up(other)
