"""After hours against the real testbed: Asterisk runs the generated dialplan, whose line
12348 (`hours: office`) asks the daemon over FastAGI; the daemon's hours say closed, so the
citizen hears the greeting and the tone, speaks (a prompt played into the call by
asterisk-sample/extensions.conf [voicemail-caller]) and hangs up. The message is on the
Asterisk host and a ticket carries it; no seat is offered the call. The same line with
hours that are open now is queued and offered as usual."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.real.daemon_harness import Harness, write_config
from tests.real.daemon_harness import poll as until

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

CHROOT = Path("/var/tmp/hotline-cti-testbed/root")
SEATS = [
    {
        "id": "1001",
        "endpoint": "Local/1001@seats",
        "skills": {"general": 5, "market": 3, "hr": 1, "env": 1, "health": 1, "dialect": 1},
    }
]
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}
ZONE = "Asia/Shanghai"


def config(tmp_path: Path, *, open_now: bool) -> tuple[Path, str, dict[str, Any]]:
    """The sample config, whose line 12348 has `hours: office`, with office hours that are
    open all week (open_now) or closed today, yesterday and tomorrow (holidays) whatever
    the time of the run."""
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    today = datetime.now(ZoneInfo(ZONE)).date()
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    closed = [] if open_now else [str(today + timedelta(days=d)) for d in (-1, 0, 1)]
    data["numberplan"]["hours"] = [
        {
            "name": "office",
            "timezone": ZONE,
            "rules": [{"days": every_day, "start": "00:00", "end": "24:00"}],
            "closed_dates": closed,
        }
    ]
    assert any(
        line["number"] == "12348" and line.get("hours") == "office"
        for line in data["numberplan"]["lines"]
    ), "config/cti.yaml: line 12348 must have hours: office (the dialplan asks for it)"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix, data


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


async def test_an_after_hours_call_leaves_a_message_with_a_ticket(tmp_path: Path) -> None:
    path, prefix, data = config(tmp_path, open_now=False)
    recording_dir = data["dialplan"]["recording_dir"]
    db = tmp_path / "cti.db"
    async with Harness(path, prefix) as h:
        await h.wait(lambda: h.log("agi_listening"), 10, "the FastAGI server")
        await h.seat("1001", {"cmd": "login", "ready": True})
        started = time.time()
        # the caller waits 7 s (greeting vm-intro ≈5 s, then the tone), speaks ≈3.8 s, hangs up
        call = await h.call(
            "12348", "13800000951", "冯十二", context="voicemail-caller", exten="7", taken=False
        )
        await h.wait(lambda: h.log("ivr_after_hours", linkedid=call), 10, "the hours decision")
        kept = await h.wait(lambda: h.log("ivr_voicemail_kept", linkedid=call), 30, "a message")
        wav = f"{recording_dir}/{call}.wav"
        assert kept["recording"] == wav
        assert 2.5 <= kept["seconds"] <= 8, kept
        ticket = await until(
            lambda: rows(
                db,
                "select line, origin, recording, content, caller, status, department "
                "from tickets where create_key = ?",
                f"main:{call}:create",
            ),
            15,
            "the ticket in the embedded backend",
        )
        line, origin, recording, content, caller, status, department = ticket[0]
        assert (line, origin, recording, status, department) == (
            "12348",
            "special_number",
            wav,
            "受理",
            "司法局",
        )
        assert content.startswith("【留言】")
        assert caller == "13800000951"
        # the recording on the Asterisk host: a WAV with a few seconds of the caller
        on_host = CHROOT / wav.lstrip("/")
        assert on_host.is_file(), on_host
        assert on_host.stat().st_size > 44 + 2 * 16000  # header + > 2 s of 8 kHz 16-bit
        assert on_host.stat().st_mtime >= started - 1
        # nobody was offered the call: never taken, never popped, the seat stayed idle
        await asyncio.sleep(1.0)
        assert h.log("call_taken", linkedid=call) is None
        assert h.published("seats/1001/pop") == []
        assert h.answered_by(call) is None
        assert rows(db, "select count(*) from tickets where create_key like ?", f"%{call}%") == [
            (1,)
        ]
        # the call record: a message taken, not an abandoned call (answer-rate KPIs)
        record = await until(
            lambda: rows(
                db, "select outcome, answered_by from call_records where linkedid = ?", call
            ),
            10,
            "the call record",
        )
        assert record == [("voicemail", None)]


async def test_the_same_line_in_its_hours_is_queued_and_offered(tmp_path: Path) -> None:
    path, prefix, _ = config(tmp_path, open_now=True)
    async with Harness(path, prefix) as h:
        await h.wait(lambda: h.log("agi_listening"), 10, "the FastAGI server")
        await h.seat("1001", {"cmd": "login", "ready": True})
        call = await h.call("12348", "13800000952")
        await h.wait(lambda: h.published("seats/1001/pop", type="offer"), 10, "the offer")
        assert h.log("ivr_after_hours", linkedid=call) is None
        assert h.log("ivr_voicemail_kept", linkedid=call) is None


async def test_with_the_daemon_down_an_after_hours_line_is_queued(tmp_path: Path) -> None:
    """No FastAGI server: AGI() fails, the call is held and queued (never lost)."""
    path, prefix, data = config(tmp_path, open_now=False)
    async with Harness(path, prefix, start=False) as h:
        call = await h.call("12348", "13800000953", taken=False)

        async def held() -> dict[str, str] | None:
            chans = await h.channels()
            return next(
                (
                    c
                    for c in chans.values()
                    if c.get("Linkedid") == call
                    and c.get("Context") in ("cti-hold", "cti-fallback")
                ),
                None,
            )

        found = None
        for _ in range(50):
            if (found := await held()) is not None:
                break
            await asyncio.sleep(0.2)
        assert found is not None, await h.channels()
        wav = CHROOT / data["dialplan"]["recording_dir"].lstrip("/") / f"{call}.wav"
        assert not wav.exists()  # no message was taken
