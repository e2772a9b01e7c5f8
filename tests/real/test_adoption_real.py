"""The daemon down, then up: citizens are answered by the fallback Queue() meanwhile, and
the daemon adopts the calls in progress without disturbing them (issue 4)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cti.events import AmiEvent
from tests.real.daemon_harness import Harness, write_config
from tests.real.test_routing_real import QUEUE, SEATS

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]


async def test_fallback_while_down_then_adoption(tmp_path: Path) -> None:
    config, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    async with Harness(config, prefix, start=False) as h:
        # --- no daemon: the holding loop gives the call to Queue() after hold_timeout_s (8)
        a = await h.call("12345", "13800000011", taken=False)
        async with asyncio.timeout(20):
            while True:
                ev = await h.ami_events.get()
                if (
                    isinstance(ev, AmiEvent)
                    and ev.name == "AgentConnect"
                    and ev.headers.get("Linkedid") == a
                ):
                    break
        # --- a second call waits in the holding loop when the daemon starts
        b = await h.call("12345", "13800000012", taken=False)
        await h.start_daemon()
        taken = await h.wait(lambda: h.log("call_taken", linkedid=b), 10, "b adopted")
        assert taken["adopted"] is True
        assert h.log("call_taken", linkedid=a) is None  # in app_queue's hands: left alone
        await h.seat("1002", {"cmd": "login", "ready": True})
        await h.wait(lambda: h.answered_by(b), 10, "adopted call answered")
        assert h.answered_by(b) == "1002"
        # the call the fallback queue connected is still up, undisturbed
        await asyncio.sleep(1.0)
        assert a in await h.channels()
        await h.hang_up(a)
        await h.hang_up(b)
        ended = await h.wait(
            lambda: h.published("calls/events", call_id=a, type="ended"),
            10,
            "the fallback call's record",
        )
        assert ended[0]["outcome"] == "answered"
        assert ended[0]["history_complete"] is False  # its start was before the daemon


async def test_seat_states_survive_a_daemon_restart(tmp_path: Path) -> None:
    config, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    async with Harness(config, prefix) as h:
        await h.seat("1002", {"cmd": "login", "ready": True})
        await h.seat("1001", {"cmd": "login"})
        await h.seat("1001", {"cmd": "not_ready", "reason": "training"})
        await h.stop_daemon()
        await h.start_daemon()
        await h.wait(lambda: h.log("seats_restored"), 10, "seats restored")
        restored = await h.wait(
            lambda: [s for s in h.published("seats/1001/state") if s["cause"] == "restart"],
            10,
            "1001 restored",
        )
        assert (restored[-1]["status"], restored[-1]["reason"]) == ("not_ready", "training")
        # 1002 is still ready: a call goes to it with no new login
        call = await h.call("12345", "13800000021")
        await h.wait(lambda: h.answered_by(call), 10, "answered by the restored seat")
        assert h.answered_by(call) == "1002"
        await h.hang_up(call)
