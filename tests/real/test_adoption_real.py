"""The daemon down, then up: citizens are answered by the fallback Queue() meanwhile, and
the daemon adopts the calls in progress without disturbing them (issue 4)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from cti.events import AmiEvent
from tests.real.daemon_harness import Harness, poll, poll_async, write_config
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


# ---------------------------------------------------------------- issue 18, items 1 and 4

# the daemon's seats; the fallback queues' static members (config/cti.yaml's seats) are
# paused for the test, and a member that rings and never answers is added: the fallback
# Queue() keeps ringing it while callers wait, as a busy hotline's would
RESTART_SEATS = [
    {
        "id": "1001",
        "endpoint": "Local/1001@seats",
        # every skill of the plan needs a seat
        "skills": {"general": 5, "market": 5, "env": 1, "health": 1, "hr": 1, "dialect": 1},
    }
]
STATIC_MEMBERS = [f"Local/{s}@seats" for s in ("1001", "1002", "1003", "1004", "2001")]
RINGING_MEMBER = "Local/9901@seats-noanswer"


async def _fallback_queue_cannot_answer(h: Harness, *, on: bool) -> None:
    for member in STATIC_MEMBERS:
        await h.driver_action(
            {"Action": "QueuePause", "Interface": member, "Paused": "true" if on else "false"}
        )
    if on:
        await h.driver_action(
            {
                "Action": "QueueAdd",
                "Queue": "cti-general",
                "Interface": RINGING_MEMBER,
                "MemberName": "9901",
            }
        )
    else:
        await h.driver_action(
            {"Action": "QueueRemove", "Queue": "cti-general", "Interface": RINGING_MEMBER}
        )


async def _in_fallback(h: Harness, calls: list[str]) -> set[str]:
    """The calls whose held channel is in a fallback Queue() now."""
    return {
        c["Linkedid"]
        for c in (await h.channels()).values()
        if c.get("Context") == "cti-fallback" and c.get("Linkedid") in calls
    }


def _rows(db: Path, sql: str, *args: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


async def test_fallback_callers_are_served_first_and_keep_their_line_after_sigkill(
    tmp_path: Path,
) -> None:
    """SIGKILL with calls waiting; more calls arrive while the daemon is down; all of them
    end up in the fallback Queue(), which rings a seat that never answers. The restarted
    daemon adopts every one with its line (read back from the channel), takes them out of
    Queue(), and a ready seat answers them before the calls that came after the restart,
    oldest first; their records and tickets carry the line and the daemon's answer."""
    config, prefix = write_config(
        tmp_path, seats=RESTART_SEATS, queue={**QUEUE, "ring_timeout_s": 5}
    )
    db = tmp_path / "cti.db"
    async with Harness(config, prefix) as h:
        try:
            await _fallback_queue_cannot_answer(h, on=True)
            # --- taken by the daemon, waiting (nobody ready), then the daemon dies
            held = [await h.call("12345", f"1380000180{i}") for i in range(2)]
            await h.kill_daemon()
            # --- arriving while it is down: nobody takes them
            down = []
            for i in range(2):
                down.append(await h.call("12315", f"1380000181{i}", taken=False))
                await asyncio.sleep(0.3)
            waiting = held + down
            # the taken ones fall back when the lease runs out (15 s), the others after
            # hold_timeout_s (8 s)
            await poll_async(
                lambda: _all_in(h, waiting),
                30,
                "every waiting call in a fallback Queue()",
            )
            await h.start_daemon()
            for call in waiting:
                taken = await h.wait(
                    lambda c=call: h.log("call_taken", linkedid=c),  # type: ignore[misc]
                    10,
                    f"{call} adopted",
                )
                assert taken["adopted"] is True
            # Figure 4: no adopted call with an empty line
            lines = {r["linkedid"]: r["line"] for r in h.logs_of("call_taken")}
            assert [lines[c] for c in waiting] == ["12345", "12345", "12315", "12315"]
            assert h.log("call_unknown_line") is None
            # Figure 1: nobody is left in a fallback Queue() (app_queue no longer rings)
            await poll_async(
                lambda: _none_in(h, waiting), 10, "the adopted calls out of the fallback queue"
            )
            # --- newer calls, after the restart; then one seat serves everybody in turn
            newer = [await h.call("12345", f"1380000182{i}") for i in range(2)]
            await h.seat("1001", {"cmd": "login", "ready": True})
            order = []
            for _ in range(len(waiting) + len(newer)):
                answered = await h.wait(
                    lambda: [c for c in waiting + newer if h.answered_by(c) and c not in order],
                    15,
                    "the next call answered",
                )
                [call] = answered
                assert h.answered_by(call) == "1001"
                order.append(call)
                await asyncio.sleep(0.5)
                await h.hang_up(call)
                await h.wait(
                    lambda c=call: h.published("calls/events", call_id=c, type="ended"),  # type: ignore[misc]
                    10,
                    f"{call} ended",
                )
            assert order == waiting + newer  # oldest first, the adopted before the newer
            # --- the records and tickets of the adopted calls: line and the daemon's answer
            for call in waiting:
                [(line, dialed, answered_at, wait_s, talk_s, seat)] = await poll(
                    lambda c=call: _rows(  # type: ignore[misc]
                        db,
                        "SELECT line, dialed, answered_at, wait_s, talk_s, answered_by"
                        " FROM call_records WHERE call_id = ?",
                        f"main:{c}",
                    ),
                    10,
                    f"{call}'s record",
                )
                assert line == dialed
                assert line in {"12345", "12315"}
                assert answered_at is not None
                assert wait_s is not None
                assert wait_s > 8  # its wait counts from its arrival, before the restart
                assert talk_s is not None
                assert seat == "1001"
                [(t_line, t_department)] = await poll(
                    lambda c=call: _rows(  # type: ignore[misc]
                        db,
                        "SELECT line, department FROM tickets WHERE create_key = ?",
                        f"main:{c}:create",
                    ),
                    10,
                    f"{call}'s ticket",
                )
                assert t_line == line
                assert t_department != ""
        finally:
            await _fallback_queue_cannot_answer(h, on=False)


async def _all_in(h: Harness, calls: list[str]) -> bool:
    return await _in_fallback(h, calls) == set(calls)


async def _none_in(h: Harness, calls: list[str]) -> bool:
    return not await _in_fallback(h, calls)


ASTERISK_PIDFILE = Path("/var/tmp/hotline-cti-testbed/root/run/asterisk/asterisk.pid")


def _fast_failover(config: Path) -> None:
    """The test's daemon notices a frozen Asterisk within ~3 s and reconnects within 2 s."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["ami"]["nodes"][0].update(ping_interval=2.0, ping_timeout=1.0, reconnect_max=2.0)
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


async def test_calls_that_fell_back_during_a_freeze_are_taken_back_in_order(
    tmp_path: Path,
) -> None:
    """Asterisk freezes for longer than the lease with calls waiting: when it thaws, the
    holding loops give the calls to Queue() before the daemon's AMI link is back. On the
    reconnect the daemon takes every one back to the holding loop, each keeps its place in
    the line, and a ready seat answers them in the order they came, each with its line."""
    config, prefix = write_config(tmp_path, seats=RESTART_SEATS, queue=QUEUE)
    _fast_failover(config)
    db = tmp_path / "cti.db"
    async with Harness(config, prefix) as h:
        pid = int(ASTERISK_PIDFILE.read_text().strip())
        try:
            await _fallback_queue_cannot_answer(h, on=True)
            waiting = [await h.call(n, f"1380000183{i}") for i, n in enumerate(["12345", "12315"])]
            os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(20)  # > the lease (15 s): the calls are no longer covered
            os.kill(pid, signal.SIGCONT)
            for call in waiting:
                await h.wait(
                    lambda c=call: h.log("call_back_from_fallback", linkedid=c),  # type: ignore[misc]
                    20,
                    f"{call} taken back from the fallback queue",
                )
            assert h.log("ami_node_up", reconnect=True) is not None
            await h.driver.wait_connected(15)  # the test's own AMI link may have dropped too
            await poll_async(lambda: _none_in(h, waiting), 10, "nobody in a fallback queue")
            newer = await h.call("12345", "13800001839")
            await h.seat("1001", {"cmd": "login", "ready": True})
            order = []
            for _ in range(len(waiting) + 1):
                answered = await h.wait(
                    lambda: [c for c in [*waiting, newer] if h.answered_by(c) and c not in order],
                    15,
                    "the next call answered",
                )
                [call] = answered
                order.append(call)
                await asyncio.sleep(0.5)
                await h.hang_up(call)
                await h.wait(
                    lambda c=call: h.published("calls/events", call_id=c, type="ended"),  # type: ignore[misc]
                    10,
                    f"{call} ended",
                )
            assert order == [*waiting, newer]
            for call, number in zip(waiting, ["12345", "12315"], strict=True):
                [(line, answered_at)] = await poll(
                    lambda c=call: _rows(  # type: ignore[misc]
                        db,
                        "SELECT line, answered_at FROM call_records WHERE call_id = ?",
                        f"main:{c}",
                    ),
                    10,
                    f"{call}'s record",
                )
                assert (line, answered_at is not None) == (number, True)
        finally:
            os.kill(pid, signal.SIGCONT)  # never leave the shared Asterisk frozen
            await h.driver.wait_connected(15)
            await _fallback_queue_cannot_answer(h, on=False)
