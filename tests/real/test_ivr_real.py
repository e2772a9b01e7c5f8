"""The IVR over FastAGI against the real testbed: Asterisk runs the generated dialplan's
AGI() against the daemon, the caller's side presses keys (SendDTMF from the calling Local
channel, as in the testbed recipe)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import AMI_SECRET
from tests.real.daemon_harness import Harness, write_config
from tests.real.daemon_harness import poll as until
from tests.real.daemon_harness import poll_async as until_async

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

# a seat that talks 3 s and hangs up first (asterisk-sample/extensions.conf [seats-brief])
SEATS = [
    {
        "id": "1001",
        "endpoint": "Local/1001@seats-brief",
        "skills": {"general": 5, "market": 3, "hr": 1, "env": 1, "health": 1, "dialect": 1},
    }
]
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}


def config(tmp_path: Path) -> tuple[Path, str]:
    """config/cti.yaml with a progress query that gives up quickly (tests wait less)."""
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["ivr"]["progress_query"].update(timeout_s=5, attempts=2)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


async def test_survey_rating_reaches_the_ticket_and_the_status_is_read_back(
    tmp_path: Path,
) -> None:
    db = tmp_path / "cti.db"
    async with Harness(*config(tmp_path)) as h:
        await h.wait(lambda: h.log("agi_listening"), 10, "the FastAGI server")
        await h.seat("1001", {"cmd": "login", "ready": True})
        # the citizen presses 4 (不满意) once the seat has hung up and the survey asks
        call = await h.call("12345", "13800000901", "郑十一", context="survey-caller", exten="4")
        rated = await h.wait(lambda: h.log("ivr_survey_rated", linkedid=call), 25, "a rating")
        assert (rated["rating"], rated["key"], rated["flagged"]) == ("不满意", 4, True)
        event = await h.wait(
            lambda: h.published("calls/events", call_id=call, type="rated"), 5, "rated event"
        )
        assert event[0]["satisfaction"] == "不满意"
        ticket = await until(
            lambda: rows(
                db,
                "select number, satisfaction, flagged, status from tickets "
                "where create_key = ? and satisfaction is not null",
                f"main:{call}:create",
            ),
            15,
            "the rating on the ticket",
        )
        number, satisfaction, flagged, status = ticket[0]
        assert (satisfaction, flagged, status) == ("不满意", 1, "受理")
        # the survey over, the dialplan hangs up: the call record carries the rating too
        await h.wait(
            lambda: h.published("calls/events", call_id=call, type="ended"), 10, "call ended"
        )
        record = await until(
            lambda: rows(
                db,
                "select satisfaction from call_records where linkedid = ? "
                "and satisfaction is not null",
                call,
            ),
            10,
            "the rating on the call record",
        )
        assert record == [("不满意",)]
        # 自助查询进度: the same citizen dials the progress number and types the ticket
        digits = number.replace("-", "")
        await h.call("1234500", "13800000901", context="dtmf-caller", exten=digits, taken=False)
        query = await h.wait(lambda: h.log("ivr_progress_query"), 30, "the progress query")
        assert (query["ticket"], query["status"]) == (number, "受理")


async def test_a_port_probe_and_a_half_sent_header_do_not_hold_up_a_caller(
    tmp_path: Path,
) -> None:
    async with Harness(*config(tmp_path)) as h:
        up = await h.wait(lambda: h.log("agi_listening"), 10, "the FastAGI server")
        port = up["port"]
        # a port probe, a header cut short and left open, a client that says nothing
        _, probe = await asyncio.open_connection("127.0.0.1", port)
        probe.close()
        _, half = await asyncio.open_connection("127.0.0.1", port)
        half.write(b"agi_network: yes\nagi_network_script: prog")
        await half.drain()
        _, silent = await asyncio.open_connection("127.0.0.1", port)
        try:
            # meanwhile a citizen's progress query runs through Asterisk as usual
            await h.call("1234500", "13800000911", context="dtmf-caller", exten="999", taken=False)
            query = await h.wait(lambda: h.log("ivr_progress_query"), 40, "the progress query")
            assert query["status"] is None  # no such ticket: told so, then goodbye
            assert h.log("agi_flow_crashed") is None
        finally:
            half.close()
            silent.close()


async def test_a_waiting_caller_hears_its_place_in_the_line(tmp_path: Path) -> None:
    """The sample dialplan announces after 15 s, then every 30 s (dialplan.announce_*)."""
    async with Harness(*config(tmp_path)) as h:
        await h.wait(lambda: h.log("agi_listening"), 10, "the FastAGI server")
        first = await h.call("12345", "13800000921", "褚十三")  # nobody is logged in
        second = await h.call("12345", "13800000922", "卫十四")
        heard = await h.wait(
            lambda: len(h.logs_of("ivr_announced")) >= 2 and h.logs_of("ivr_announced"),
            25,
            "both callers' announcements",
        )
        by_call = {e["linkedid"]: e for e in heard}
        assert by_call[first]["position"] == 1
        assert by_call[second]["position"] == 2
        assert h.log("agi_flow_crashed") is None
        assert h.log("agi_failed") is None  # every prompt played, every answer checked
        # still held by the daemon, not fallen back to the plain queue
        chans = await h.channels()
        held = [c for c in chans.values() if c.get("Linkedid") in (first, second)
                and c.get("Context") == "cti-hold"]  # fmt: skip
        assert len(held) == 2


async def test_a_callback_request_keeps_the_place_and_connects_caller_and_seat(
    tmp_path: Path,
) -> None:
    """Nobody can take the call (no seat logged in: the wait is unknown), so after the
    first announcement the caller is offered a callback and presses 1; the line is cleared
    but the call keeps its place. When 1001 logs in, its phone rings first, then the
    citizen is dialled: caller and seat talk."""
    seats = [{**SEATS[0], "endpoint": "Local/1001@seats"}]
    path, prefix = write_config(tmp_path, seats=seats, queue=QUEUE)
    async with Harness(path, prefix) as h:
        await h.wait(lambda: h.log("agi_listening"), 10, "the FastAGI server")
        number = "13800000931"
        call = await h.call("12345", number, "蒋十五", context="callback-caller", exten="1")
        await h.wait(lambda: h.log("ivr_callback_requested", linkedid=call), 35, "the request")
        # the caller's line is cleared; the call keeps its place in the line
        await h.wait(
            lambda: h.published("calls/events", call_id=call, type="ended"), 10, "line cleared"
        )
        assert h.log("call_abandoned", linkedid=call) is None
        await h.seat("1001", {"cmd": "login", "ready": True})
        offers = await h.wait(
            lambda: [
                p
                for p in h.published("seats/1001/pop", type="offer")
                if p["call"]["call_id"] == call
            ],
            10,
            "the kept call offered to 1001",
        )
        assert offers[0]["call"]["callback"] is True
        await h.wait(lambda: ("talking", None) in h.seat_states("1001"), 20, "1001 talking")

        async def citizen() -> Any:
            chans = await h.channels()
            return [
                c
                for c in chans.values()
                if c["Channel"].startswith(f"Local/{number}@citizen") and c.get("BridgeId")
            ]

        [leg, *_] = await until_async(citizen, 10, "the citizen on the line with 1001")
        await h.driver_action({"Action": "Hangup", "Channel": leg["Channel"]})
        await h.wait(lambda: h.seat_states("1001")[-1] == ("ready", None), 15, "1001 free")
        ends = await h.wait(
            lambda: [
                p for p in h.published("seats/1001/pop", type="end") if p["call"]["call_id"] == call
            ],
            10,
            "the end pop",
        )
        assert ends[0]["call"]["outcome"] == "answered"


async def test_missing_prompts_are_reported_at_start_and_by_check_config(
    tmp_path: Path,
) -> None:
    path, prefix = config(tmp_path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["ivr"]["survey"]["prompt"] = "hotline/no-such-survey-prompt"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    async with Harness(path, prefix) as h:
        missing = await h.wait(lambda: h.log("prompts_missing"), 20, "the start-up check")
        assert missing["missing"] == {"ivr.survey.prompt": "hotline/no-such-survey-prompt"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cti", "check-config", "--live", "-c", str(path),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "CTI_AMI_SECRET": AMI_SECRET},
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 1
    assert b"missing on node main: ivr.survey.prompt: hotline/no-such-survey-prompt" in out


async def test_the_sample_prompts_all_exist(tmp_path: Path) -> None:
    async with Harness(*config(tmp_path)) as h:
        checked = await h.wait(lambda: h.log("prompts_checked"), 20, "the start-up check")
        assert checked["prompts"] >= 20
        assert h.log("prompts_missing") is None


async def test_a_waiting_caller_leaves_a_message_on_its_ticket(tmp_path: Path) -> None:
    """Overload voicemail: after the first announcement the caller presses 2, speaks and
    hangs up; the message is the recording of the call's own ticket, and the call is a
    voicemail, not a missed call."""
    db = tmp_path / "cti.db"
    async with Harness(*config(tmp_path)) as h:
        await h.wait(lambda: h.log("agi_listening"), 10, "the FastAGI server")
        call = await h.call("12345", "13800000941", "沈十七", context="message-caller", exten="2")
        left = await h.wait(lambda: h.log("call_message_left", linkedid=call), 40, "a message")
        assert left["recording"].endswith(f"/{call}-message.wav")
        ended = await h.wait(
            lambda: h.published("calls/events", call_id=call, type="ended"), 15, "the end"
        )
        assert ended[0]["outcome"] == "voicemail"
        ticket = await until(
            lambda: rows(
                db,
                "select recording from tickets where create_key = ? and recording is not null",
                f"main:{call}:create",
            ),
            15,
            "the message on the ticket",
        )
        assert ticket == [(left["recording"],)]
        assert rows(db, "select count(*) from callbacks") == [(0,)]  # not a missed call
        on_host = Path("/var/tmp/hotline-cti-testbed/root" + left["recording"])
        assert on_host.stat().st_size > 1000


async def forge_survey(port: int, linkedid: str, channel: str) -> list[bytes]:
    """Whoever reaches the FastAGI port, posing as Asterisk: the survey script's headers
    for `linkedid`, then key 4 (不满意) to every command. Returns the commands it got."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"agi_network: yes\nagi_network_script: survey\n"
        b"agi_request: agi://127.0.0.1:4573/survey\n"
        + f"agi_channel: {channel}\nagi_uniqueid: {linkedid}\nagi_arg_1: {linkedid}\n\n".encode()
    )
    await writer.drain()
    commands = []
    try:
        async with asyncio.timeout(10):
            while line := await reader.readline():
                commands.append(line)
                writer.write(b"200 result=52\n")  # "4"
                await writer.drain()
    finally:
        writer.close()
    return commands


async def test_a_forged_survey_rating_is_refused_and_the_real_one_still_lands(
    tmp_path: Path,
) -> None:
    """FastAGI has no authentication (issue 16, item 10): a rating is taken only for a
    call the daemon itself saw answered by a seat, on that call's own channel."""
    db = tmp_path / "cti.db"
    async with Harness(*config(tmp_path)) as h:
        up = await h.wait(lambda: h.log("agi_listening"), 10, "the FastAGI server")
        # a real call, waiting: nobody is logged in yet; its caller will press 4
        call = await h.call("12345", "13800000931", "冯十五", context="survey-caller", exten="4")
        chans = await h.channels()
        held = next(c["Channel"] for c in chans.values() if c.get("Linkedid") == call)
        made_up = "1795000000.4242"
        for linkedid, channel, reason in (
            (made_up, "PJSIP/attacker-00000001", "no such call in progress"),
            (call, held, "the call was not answered by a seat"),  # the right ids, too early
        ):
            asked = await forge_survey(up["port"], linkedid, channel)
            assert asked == []  # not even the prompt: refused before the first command
            refused = await h.wait(partial(h.log, "ivr_survey_refused", linkedid=linkedid), 5, "no")
            assert refused["reason"] == reason
        assert h.log("ivr_survey_rated") is None
        assert not h.published("calls/events", type="rated")
        # the real survey, right after: the seat answers, hangs up, the caller presses 4
        await h.seat("1001", {"cmd": "login", "ready": True})
        rated = await h.wait(lambda: h.log("ivr_survey_rated", linkedid=call), 30, "a rating")
        assert rated["rating"] == "不满意"
        await h.wait(lambda: h.published("calls/events", call_id=call, type="ended"), 15, "end")
        record = await until(
            lambda: rows(
                db,
                "select satisfaction from call_records where linkedid = ? "
                "and satisfaction is not null",
                call,
            ),
            10,
            "the rating on the call record",
        )
        assert record == [("不满意",)]
        # nothing at all for the made-up call: no record, no ticket operation
        assert rows(db, "select 1 from call_records where linkedid = ?", made_up) == []
        assert rows(db, "select key from outbox where call_id like ?", f"%{made_up}%") == []
        assert rows(
            db, "select kind from outbox where call_id = ? and kind = 'rate'", f"main:{call}"
        )
