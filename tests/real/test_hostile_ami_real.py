"""A hostile or buggy AMI peer against the real daemon (issue 16, item 2): a `cti run`
process whose only Asterisk node is a scripted fake manager (tests/fakeami.py, in this
test's event loop), with the real Mosquitto for seats and pops.

A call whose channel name has a bare CR (``PJSIP/carrier-0000\\rx``) reaches the holding
loop. Before the fix the daemon's MarkTaken Setvar could not be encoded, the ValueError
ended the node's action queue and the daemon exited 1. Now the call is refused (not
taken: the holding loop gives it to the plain Queue() at its deadline), nothing with that
name is sent to Asterisk, and the next, normal call on the same peer is taken, offered to
the ready seat (Setvar + Redirect), popped and ticketed; the daemon is still serving."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import AMI_SECRET
from tests.fakeami import FakeAmi
from tests.real.daemon_harness import Harness, poll, write_config

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

SEATS = [
    {
        "id": "1001",
        "endpoint": "PJSIP/1001",  # the fake's DeviceStateList says NOT_INUSE
        "skills": {"general": 5, "market": 3, "hr": 1, "env": 1, "health": 1, "dialect": 1},
    }
]
QUEUE = {"ring_timeout_s": 20, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}
BAD = "PJSIP/carrier-0000\rx"
GOOD = "PJSIP/carrier-00000002"
_seq = itertools.count(1)


def ok(_msg: dict[str, str]) -> list[dict[str, str]]:
    return [{"Response": "Success", "Message": "OK"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    srv = await FakeAmi(secret=AMI_SECRET, banner=b"Asterisk Call Manager/11.0.0\r\n").start()
    for action in ("Setvar", "Redirect", "Originate", "UserEvent"):
        srv.on_action(action, ok)
    yield srv
    await srv.stop()


def config(tmp_path: Path, port: int) -> tuple[Path, str]:
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["ami"]["nodes"][0].update(port=port, host="127.0.0.1")
    data["ivr"]["enabled"] = False  # not needed here; the AGI port stays free
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


def deliver(fake: FakeAmi, channel: str, call: str) -> None:
    """What Asterisk sends for a trunk call entering the holding loop (cti-hold, 1)."""
    base = {
        "Channel": channel,
        "Uniqueid": call,
        "Linkedid": call,
        "CallerIDNum": "13800138000",
        "CallerIDName": "张三",
        "Exten": "12345",
        "ChannelState": "6",
    }
    fake.push({"Event": "Newchannel", **base, "Context": "cti-inbound", "Priority": "1"})
    fake.push({"Event": "VarSet", **base, "Variable": "__CTI_LINE", "Value": "12345"})
    fake.push(
        {
            "Event": "Newexten",
            **base,
            "Context": "cti-hold",
            "Priority": "1",
            "Application": "StartMusicOnHold",
            "AppData": "",
        }
    )


async def test_a_cr_in_a_channel_name_costs_that_call_not_the_daemon(
    tmp_path: Path, fake: FakeAmi
) -> None:
    async with Harness(*config(tmp_path, fake.port)) as h:
        assert (await h.seat("1001", {"cmd": "login", "ready": True}))["ok"]
        bad = f"bad-{next(_seq)}"
        deliver(fake, BAD, bad)
        refused = await h.wait(lambda: h.log("call_refused", linkedid=bad), 10, "refused")
        assert refused["channel"] == BAD
        # the holding loop comes round again: still refused, still serving
        deliver(fake, BAD, bad)

        good = f"good-{next(_seq)}"
        deliver(fake, GOOD, good)
        await h.wait(lambda: h.log("call_taken", linkedid=good), 10, "normal call taken")
        offer = await h.wait(
            lambda: [p for p in h.published("seats/1001/pop") if p["type"] == "offer"],
            10,
            "offer pop",
        )
        assert offer[0]["call"]["call_id"] == good
        await poll(lambda: fake.actions("Redirect"), 10, "the Redirect to the seat")
        sent = [a for a in fake.received if "Channel" in a]
        assert not [a for a in sent if "carrier-0000\r" in a["Channel"]]  # nothing of BAD
        assert {(a["Action"], a["Channel"]) for a in sent} >= {
            ("Setvar", GOOD),
            ("Redirect", GOOD),
        }
        [redirect] = fake.actions("Redirect")
        assert (redirect["Context"], redirect["Exten"]) == ("cti-connect", "1001")
        await h.wait(lambda: h.log("ticket_created", linkedid=good), 10, "ticket for it")
        assert not h.log("ami_effect_failed")  # refused at the door: nothing to fail
        assert h.proc is not None
        assert h.proc.returncode is None  # still serving
        # both calls end: the refused one is recorded too (it went to the plain Queue())
        for channel, call in ((BAD, bad), (GOOD, good)):
            fake.push(
                {
                    "Event": "Hangup",
                    "Channel": channel,
                    "Uniqueid": call,
                    "Linkedid": call,
                    "Cause": "16",
                    "CallerIDNum": "13800138000",
                }
            )
        await h.wait(lambda: h.log("call_ended", linkedid=bad), 10, "refused call recorded")
        await h.wait(lambda: h.log("call_ended", linkedid=good), 10, "normal call recorded")
        # and still serving: the HTTP API says every required part is ready
        up = h.log("http_listening")
        assert up is not None
        async with httpx.AsyncClient(timeout=5) as client:
            ready = await client.get(f"http://{up['host']}:{up['port']}/readyz")
        assert ready.status_code == 200, ready.text
        assert h.proc.returncode is None
