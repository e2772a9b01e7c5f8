"""The calls Asterisk's fallback Queue() took while the daemon was down are counted (issue 17):
read back from the testbed's real queue_log, each once, after the daemon starts and after it
restarts; a call the daemon took back out of the fallback keeps its own entry only."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cti.events import AmiEvent
from tests.real.daemon_harness import Harness, poll, poll_async, write_config
from tests.real.test_adoption_real import (
    RESTART_SEATS,
    _fallback_queue_cannot_answer,
    _in_fallback,
)
from tests.real.test_kpis_real import SHANGHAI, cti_report
from tests.real.test_routing_real import QUEUE

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

QUEUE_LOG = Path("/var/tmp/hotline-cti-testbed/root/var/log/asterisk/queue_log")


def _config(tmp_path: Path) -> tuple[Path, str]:
    path, prefix = write_config(tmp_path, seats=RESTART_SEATS, queue=QUEUE)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["ami"]["nodes"][0]["queue_log"] = str(QUEUE_LOG)
    data["kpis"] = {
        "timezone": "Asia/Shanghai",
        "fallback_scan_s": 1,
        "fallback_settle_s": 3,
        "fallback_lookback_s": 900,
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


def _entries(db: Path, calls: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    marks = ",".join("?" * len(calls))
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT linkedid, outcome, line, wait_s, seat FROM queue_entries"
            f" WHERE linkedid IN ({marks}) ORDER BY entry_seq",
            calls,
        ).fetchall()
    got: dict[str, list[tuple[Any, ...]]] = {c: [] for c in calls}
    for linkedid, *rest in rows:
        got[linkedid].append(tuple(rest))
    return got


async def _connected(h: Harness, call: str, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            ev = await h.ami_events.get()
            if not isinstance(ev, AmiEvent) or ev.name != "AgentConnect":
                continue
            if ev.headers.get("Linkedid") == call:
                return


async def test_fallback_calls_are_counted_once_across_restarts(tmp_path: Path) -> None:
    config, prefix = _config(tmp_path)
    db = tmp_path / "cti.db"
    start = (datetime.now(SHANGHAI) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    async with Harness(config, prefix, start=False) as h:
        # --- no daemon. A: the fallback Queue() rings a static member who answers
        answered = await h.call("12315", "13800000031", taken=False)
        await _connected(h, answered, 25)
        await asyncio.sleep(1.0)
        await h.hang_up(answered)
        try:
            await _fallback_queue_cannot_answer(h, on=True)
            # B: nobody answers in the fallback, the citizen hangs up (app_queue: ABANDON)
            abandoned = await h.call("12345", "13800000032", taken=False)
            await poll_async(lambda: _all_in(h, [abandoned]), 20, "B in the fallback Queue()")
            await asyncio.sleep(1.0)
            await h.hang_up(abandoned)
            # C: in the fallback when the daemon starts: taken back and answered by a seat
            taken_back = await h.call("12345", "13800000033", taken=False)
            await poll_async(lambda: _all_in(h, [taken_back]), 20, "C in the fallback Queue()")
            await h.start_daemon()
            await h.seat("1001", {"cmd": "login", "ready": True})
            await h.wait(lambda: h.answered_by(taken_back), 15, "C answered by the daemon")
        finally:
            await _fallback_queue_cannot_answer(h, on=False)
        await asyncio.sleep(1.0)
        await h.hang_up(taken_back)
        fallback = [answered, abandoned]
        for call in fallback:
            await h.wait(
                lambda c=call: h.log("fallback_call_recorded", linkedid=c),  # type: ignore[misc]
                20,
                f"{call} recorded from queue_log",
            )
        fates = {
            r["linkedid"]: r["fate"]
            for r in h.logs_of("fallback_call_recorded")
            if r["linkedid"] in fallback
        }
        assert fates == {answered: "answered", abandoned: "abandoned"}
        # C: the daemon's own entry, and queue_log's end of its fallback stay (the Redirect
        # out of Queue() is an ABANDON there) never becomes a second one
        await h.wait(
            lambda: h.published("calls/events", call_id=taken_back, type="ended"),
            10,
            "C ended",
        )
        await asyncio.sleep(3 + 2 * 1 + 1.5)  # settle_s + two scans + the record writer
        got = await poll(
            lambda: (e := _entries(db, [*fallback, taken_back]))[taken_back] and e,
            10,
            "C's entry",
        )
        assert [r[:2] for r in got[answered]] == [("fallback", "12315")]
        assert [r[:2] for r in got[abandoned]] == [("fallback", "12345")]
        assert [r[0] for r in got[taken_back]] == ["answered"]
        assert got[taken_back][0][3] == "1001"
        # the wait counts from the line (the 8 s hold before the fallback included)
        hold_s = yaml.safe_load(config.read_text(encoding="utf-8"))["dialplan"]["hold_timeout_s"]
        # (queue_log stamps whole seconds: the wait's end is up to 1 s early)
        assert hold_s - 1 <= got[answered][0][2] < hold_s + 10, got[answered]
        assert got[answered][0][3] is None  # fallback is not "answered" in the figures
        assert h.log("fallback_call_recorded", linkedid=taken_back) is None

        end = (datetime.now(SHANGHAI) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
        before = await cti_report(config, start, end)
        c = before["centre"]
        assert (c["offered"], c["answered"], c["fallback"]) == (3, 1, 2), c
        # --- a restart reads queue_log again: nothing twice
        await h.stop_daemon()
        await h.start_daemon()
        await asyncio.sleep(3.0)  # > a scan
        assert _entries(db, [*fallback, taken_back]) == got
        after = await cti_report(config, start, end)
        assert after["centre"] == before["centre"]


async def _all_in(h: Harness, calls: list[str]) -> bool:
    return await _in_fallback(h, calls) == set(calls)
