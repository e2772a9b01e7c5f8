"""Real SIP (issue 18 items 6 and 7): sipp phones registered as PJSIP endpoints are the
seats, a sipp citizen with a Chinese display name calls in over the carrier trunk
(asterisk-sample/pjsip.conf, tests/sip/*.xml, README.md "The testbed").

* The seat is recorded as the seat (1001), not as its phone (6001): the call record, the
  `cti/calls/events` messages and the ticket.
* A phone that dies is found by qualify within seconds; the daemon then offers its seat
  no call.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from cti.events import AmiEvent
from tests.real.daemon_harness import Harness, settle, write_config
from tests.real.sip import SipBed

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

# every skill of the plan's lines needs a seat
ALL_SKILLS = {"general": 5, "market": 1, "env": 1, "health": 1, "hr": 1, "dialect": 1}
SEATS = [
    {"id": "1001", "endpoint": "PJSIP/6001", "skills": ALL_SKILLS},
    {"id": "1002", "endpoint": "PJSIP/6002", "skills": {"general": 5}},
]
QUEUE = {"ring_timeout_s": 10, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}
# qualify_frequency 3 s + qualify_timeout 1 s (pjsip.conf [seat-aor]): at most ~4 s
DEAD_PHONE_DETECTED_S = 5.5


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, str]:
    return write_config(tmp_path, seats=SEATS, queue=QUEUE)


async def test_a_sip_citizen_reaches_a_sip_phone_seat_and_is_recorded_under_the_seat(
    config: tuple[Path, str], tmp_path: Path
) -> None:
    async with SipBed(tmp_path) as sip:
        await sip.phone("6001")
        async with Harness(*config) as h:
            assert (await h.seat("1001", {"cmd": "login", "ready": True}))["ok"] is True
            caller = await sip.call("12345", "13800138000", talk_s=6)
            offers = await h.wait(
                lambda: h.published("seats/1001/pop", type="offer"), 20, "offer pop"
            )
            call = offers[0]["call"]
            call_id = call["call_id"]
            # the display name crossed SIP -> PJSIP -> AMI -> MQTT intact
            assert (call["caller"], call["caller_name"]) == ("13800138000", "张三")
            assert (call["line"], call["department"]) == ("12345", "市政府热线办")
            await h.wait(lambda: h.answered_by(call_id), 15, "the SIP phone answered")
            assert h.answered_by(call_id) == "1001"
            # the phone's channel is PJSIP/6001-..., the caller's the trunk's
            channels = {c["Channel"].rsplit("-", 1)[0] for c in (await h.channels()).values()}
            assert {"PJSIP/6001", "PJSIP/sipp-carrier"} <= channels, channels
            async with asyncio.timeout(30):
                assert await caller.wait() == 0, "sipp caller: see sipp-caller12345-*.log"
            ended = await h.wait(
                lambda: h.published("calls/events", call_id=call_id, type="ended"), 10, "record"
            )
            await h.wait(
                lambda: h.published("calls/events", call_id=call_id, type="ticket", op="update"),
                10,
                "the ticket's update delivered",
            )
            pops = h.published("seats/1001/pop")
            assert not [r for r in h.logs if r.get("level") in {"error", "critical"}]
    summary = ended[0]
    assert summary["outcome"] == "answered"
    assert (summary["answered_by"], summary["rang"]) == ("1001", ["1001"])
    assert summary["caller_name"] == "张三"
    assert summary["hangup_by"] == "caller"
    assert [p["type"] for p in pops if p["type"] != "update"] == ["offer", "answer", "end"]
    assert {p["seat"] for p in pops} == {"1001"}
    with sqlite3.connect(tmp_path / "cti.db") as db:
        record = db.execute(
            "select answered_by, rang, caller_name from call_records where linkedid = ?", (call_id,)
        ).fetchone()
        ticket = db.execute(
            "select seat, caller_name, call_facts from tickets where create_key = ?",
            (f"main:{call_id}:create",),
        ).fetchone()
    assert record is not None
    assert (record[0], json.loads(record[1]), record[2]) == ("1001", ["1001"], "张三")
    assert ticket is not None
    assert ticket[:2] == ("1001", "张三")
    assert json.loads(ticket[2])[f"main:{call_id}"]["outcome"] == "answered"


async def test_a_dead_phone_is_noticed_within_seconds_and_its_seat_gets_no_call(
    config: tuple[Path, str], tmp_path: Path
) -> None:
    async with SipBed(tmp_path) as sip:
        await sip.phone("6001")
        await sip.phone("6002")
        async with Harness(*config) as h:
            assert (await h.seat("1002", {"cmd": "login", "ready": True}))["ok"] is True
            await h.wait(lambda: ("ready", None) in h.seat_states("1002"), 10, "1002 ready")
            await settle(1)  # a qualify round on the live phone
            assert h.seat_states("1002")[-1] == ("ready", None)
            killed_at = time.time()
            sip.kill_phone("6002")
            # Asterisk's view: the contact's qualify fails (ContactStatus Unreachable)
            unreachable = await _ami_event(
                h,
                lambda e: (
                    e.name == "ContactStatus"
                    and e.headers.get("AOR") == "6002"
                    and e.headers.get("ContactStatus") == "Unreachable"
                ),
                10,
            )
            # the daemon's: the seat is not ready (device_unavailable) from the device state
            states = await h.wait(
                lambda: [
                    s
                    for s in h.published("seats/1002/state")
                    if s["reason"] == "device_unavailable"
                ],
                10,
                "seat 1002 not ready: its phone is gone",
            )
            published_s = time.time() - killed_at  # the seat's state received (upper bound)
            asterisk_s = unreachable.time - killed_at
            daemon_s = states[0]["since"] - killed_at
            print(
                f"dead phone: Unreachable after {asterisk_s:.2f} s, seat not ready after "
                f"{daemon_s:.2f} s, its state published within {published_s:.2f} s"
            )
            assert asterisk_s < DEAD_PHONE_DETECTED_S
            assert daemon_s < DEAD_PHONE_DETECTED_S
            assert published_s < DEAD_PHONE_DETECTED_S + 1
            assert states[0]["device"] == "UNAVAILABLE"
            # a call now is not offered to the dead phone's seat: it waits for a live one
            caller = await sip.call("12345", "13800138001", talk_s=8)
            await h.wait(
                lambda: [s for s in h.published("queue/snapshot") if s["waiting"] == 1],
                15,
                "the call waiting",
            )
            await settle(2)
            assert h.published("seats/1002/pop") == []
            assert (await h.seat("1001", {"cmd": "login", "ready": True}))["ok"] is True
            offers = await h.wait(
                lambda: h.published("seats/1001/pop", type="offer"), 10, "offer to 1001"
            )
            call_id = offers[0]["call"]["call_id"]
            await h.wait(lambda: h.answered_by(call_id), 15, "answered by 1001")
            assert h.answered_by(call_id) == "1001"
            async with asyncio.timeout(30):
                assert await caller.wait() == 0
            ended = await h.wait(
                lambda: h.published("calls/events", call_id=call_id, type="ended"), 10, "record"
            )
            assert ended[0]["rang"] == ["1001"]  # PJSIP/6002 never rang
            assert h.published("seats/1002/pop") == []


async def _ami_event(h: Harness, match: object, timeout: float) -> AmiEvent:
    """The first event of the test driver's AMI connection that `match`es."""
    assert callable(match)
    async with asyncio.timeout(timeout):
        while True:
            ev = await h.ami_events.get()
            if isinstance(ev, AmiEvent) and match(ev):
                return ev
