"""The missed-call callback list (漏接电话回拨) against the real testbed: a call abandoned in
the queue lands on the list; one click calls the citizen back from a seat — the seat's
phone first, then the citizen — and the entry is closed."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.real.daemon_harness import Harness, write_config
from tests.real.daemon_harness import poll_async as until

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

SEATS = [
    {
        "id": "1001",
        "endpoint": "Local/1001@seats",
        "skills": {"general": 5, "market": 3, "hr": 1, "env": 1, "health": 1, "dialect": 1},
    }
]
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}
TOKEN = "s-" + secrets.token_hex(16)


# the seat's endpoint dials its phone onwards (asterisk-sample [seats-phone]): the first leg
# of a callback is then two channels, both answered before the citizen is dialled
PHONE_SEATS = [{**SEATS[0], "endpoint": "Local/1001@seats-phone"}]


def configure(tmp_path: Path, seats: list[dict[str, Any]] = SEATS) -> tuple[Path, str]:
    path, prefix = write_config(tmp_path, seats=seats, queue=QUEUE)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["http"]["tokens"] = [{"name": "supervisor", "token": TOKEN, "scopes": ["seats", "calls"]}]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


async def test_an_abandoned_call_is_called_back_from_a_seat(tmp_path: Path) -> None:
    caller = "1380000" + str(secrets.randbelow(10**4)).zfill(4)
    async with Harness(*configure(tmp_path)) as h:
        up = await h.wait(lambda: h.log("http_listening"), 10, "the HTTP API")
        base = f"http://{up['host']}:{up['port']}"
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        ) as c:
            # nobody is logged in: the citizen waits, then gives up
            call = await h.call("12345", caller, "冯十二")
            await asyncio.sleep(1.0)
            await h.hang_up(call)
            await h.wait(
                lambda: h.published("calls/events", call_id=call, type="ended"), 10, "the end"
            )

            async def listed() -> Any:
                got = (await c.get("/api/v1/callbacks")).json()["callbacks"]
                return [e for e in got if e["call_id"] == f"main:{call}"]

            [entry] = await until(listed, 10, "the missed call on the list")
            assert (entry["caller"], entry["caller_name"], entry["status"]) == (
                caller,
                "冯十二",
                "open",
            )
            assert entry["waited_s"] >= 1.0
            # a seat that is not logged in cannot call back; then 1001 logs in, ready
            refused = await c.post(f"/api/v1/callbacks/main:{call}/call", json={"seat": "1001"})
            assert refused.status_code == 409, refused.text
            await h.seat("1001", {"cmd": "login", "ready": True})
            resp = await c.post(f"/api/v1/callbacks/main:{call}/call", json={"seat": "1001"})
            assert resp.status_code == 202, resp.text
            again = await c.post(f"/api/v1/callbacks/main:{call}/call", json={"seat": "1001"})
            assert again.status_code == 409  # being called: one callback at a time
            assert h.seat_states("1001")[-1] == ("not_ready", "callback")

            # the seat's phone answers, then the citizen's: both are up and bridged
            async def citizen() -> Any:
                chans = await h.channels()
                return [
                    ch
                    for ch in chans.values()
                    if ch["Channel"].startswith(f"Local/{caller}@citizen") and ch.get("BridgeId")
                ]

            [leg, *_] = await until(citizen, 15, "the citizen on the line")
            await h.driver_action({"Action": "Hangup", "Channel": leg["Channel"]})
            await h.wait(lambda: h.log("callback_ended"), 15, "the callback's end")

            async def closed() -> Any:
                got = (await c.get("/api/v1/callbacks", params={"status": "done"})).json()
                return [e for e in got["callbacks"] if e["call_id"] == f"main:{call}"]

            [done] = await until(closed, 10, "the entry closed")
            assert (done["last_seat"], done["last_outcome"], done["attempts"]) == (
                "1001",
                "answered",
                1,
            )
            # the seat was ready before the callback: ready again after it
            await h.wait(lambda: h.seat_states("1001")[-1][0] == "ready", 10, "1001 ready")
            assert await listed() == []  # no longer open


@pytest.mark.parametrize(
    ("prefix", "fate"),
    [("1390000", "does not pick up"), ("1391111", "is busy")],
)
async def test_a_callback_the_citizen_does_not_take_is_not_answered(
    tmp_path: Path, prefix: str, fate: str
) -> None:
    """Only the seat's leg of the callback answers (asterisk-sample/extensions.conf
    [citizen]: 1390000xxxx rings and gives up, 1391111xxxx is busy): the call is not
    answered, the entry stays open for another try, and the record says so."""
    caller = prefix + str(secrets.randbelow(10**4)).zfill(4)
    async with Harness(*configure(tmp_path, PHONE_SEATS)) as h:
        up = await h.wait(lambda: h.log("http_listening"), 10, "the HTTP API")
        async with httpx.AsyncClient(
            base_url=f"http://{up['host']}:{up['port']}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        ) as c:
            call = await h.call("12345", caller)
            await asyncio.sleep(0.5)
            await h.hang_up(call)
            await h.wait(
                lambda: h.published("calls/events", call_id=call, type="ended"), 10, "the end"
            )
            await h.seat("1001", {"cmd": "login", "ready": True})

            async def call_back() -> Any:
                r = await c.post(f"/api/v1/callbacks/main:{call}/call", json={"seat": "1001"})
                return r.status_code == 202

            await until(call_back, 10, "the callback placed")
            done = await h.wait(lambda: h.log("callback_ended"), 20, f"a citizen who {fate}")
            assert done["outcome"] != "answered", done
            # the call event comes over MQTT, maybe after the daemon's log line
            [ended] = await h.wait(
                lambda: h.published("calls/events", type="ended", call_id=done["linkedid"]),
                10,
                "the callback call's end",
            )
            assert ended["answered_at"] is None, ended
            assert ended["talk_s"] is None
            assert h.answered_by(done["linkedid"]) is None  # no `answered` event either
            got = (await c.get("/api/v1/callbacks", params={"status": "open"})).json()
            [entry] = [e for e in got["callbacks"] if e["call_id"] == f"main:{call}"]
            assert (entry["attempts"], entry["last_outcome"]) == (1, done["outcome"])
