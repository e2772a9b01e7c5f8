"""After hours (留言): the hours decision, the voicemail flow's decisions (a fake channel),
the dialplan that asks the daemon, and RECORD FILE's answers on a scripted socket."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from cti.adapters.fastagi import AgiError, AgiHangup, AgiSession, Recorded
from cti.dialplan.contract import VOICEMAIL_VARIABLE
from cti.dialplan.generate import generate_dialplan
from cti.ivr.flows import Message, after_hours, message_content, voicemail, worth_a_ticket
from cti.numberplan import NumberPlan
from cti.settings import DialplanSettings, VoicemailSettings

CFG = VoicemailSettings(greeting="vm-intro", goodbye="vm-goodbye", max_s=60, silence_s=4)


def plan(closed_dates: tuple[str, ...] = ()) -> NumberPlan:
    return NumberPlan.model_validate(
        {
            "skills": [{"name": "general"}],
            "lines": [
                {"number": "12345", "name": "12345"},
                {"number": "12348", "name": "12348", "department": "司法局", "hours": "office"},
            ],
            "hours": [
                {
                    "name": "office",
                    "timezone": "Asia/Shanghai",
                    "rules": [
                        {
                            "days": ["mon", "tue", "wed", "thu", "fri"],
                            "start": "08:30",
                            "end": "17:30",
                        }
                    ],
                    "closed_dates": list(closed_dates),
                }
            ],
            "seats": [{"id": "1001", "endpoint": "PJSIP/1001", "skills": {"general": 1}}],
        }
    )


def at(local: str) -> float:
    """Epoch seconds of a Shanghai wall-clock time."""
    return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


def test_after_hours_follows_the_line_hours_in_their_time_zone() -> None:
    p = plan()
    assert not after_hours(p, "12348", at("2026-11-27T10:00"))  # a Friday morning
    assert after_hours(p, "12348", at("2026-11-27T18:00"))  # Friday evening
    assert after_hours(p, "12348", at("2026-11-28T10:00"))  # Saturday
    assert after_hours(p, "12348", at("2026-11-27T08:29"))
    assert not after_hours(p, "12348", at("2026-11-27T08:30"))
    # 02:00 UTC is 10:00 in Shanghai: the host's or the daemon's zone does not matter
    assert not after_hours(
        p, "12348", datetime(2026, 11, 27, 2, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    )


def test_a_holiday_is_closed_and_lines_without_hours_are_always_open() -> None:
    p = plan(closed_dates=("2026-11-27",))
    assert after_hours(p, "12348", at("2026-11-27T10:00"))
    assert not after_hours(p, "12345", at("2026-11-28T03:00"))
    assert not after_hours(p, "99999", at("2026-11-28T03:00"))  # not in the plan


class ScriptedAgi:
    """A caller's channel: what was played, what RECORD FILE answers, where it hangs up."""

    def __init__(self, recorded: Recorded | None, *, hangup_on: str | None = None) -> None:
        self.recorded = recorded
        self.hangup_on = hangup_on
        self.played: list[str] = []
        self.headers: Mapping[str, str] = {}
        self.peer = "127.0.0.1"

    def _maybe_hangup(self, what: str) -> None:
        if what == self.hangup_on:
            raise AgiHangup(what)

    async def answer(self) -> None:
        self.played.append("<answer>")

    async def stream(self, prompt: str, escape: str = "") -> str | None:
        self._maybe_hangup(prompt)
        self.played.append(prompt)
        return None

    async def get_digits(self, prompt: str, *, timeout_s: float, max_digits: int) -> str | None:
        return None

    async def say_digits(self, digits: str) -> None:
        pass

    async def say_number(self, number: int) -> None:
        pass

    async def get_variable(self, name: str) -> str | None:
        return None

    async def set_variable(self, name: str, value: str) -> None:
        self._maybe_hangup("<set>")
        self.played.append(f"<set {name}={value}>")

    async def record_file(
        self,
        path: str,
        fmt: str,
        *,
        escape_digits: str,
        timeout_ms: int,
        silence_s: int = 0,
        beep: bool = True,
    ) -> Recorded:
        self.played.append(f"<record {path}.{fmt} {escape_digits} {timeout_ms} {silence_s}>")
        assert self.recorded is not None
        return self.recorded


async def run(agi: ScriptedAgi) -> tuple[Message | None, list[Message]]:
    kept: list[Message] = []

    async def keep(message: Message) -> None:
        kept.append(message)
        agi.played.append("<ticket>")

    got = await voicemail(agi, CFG, path="/rec/1700000000.1", fmt="wav", keep=keep)
    return got, kept


async def test_a_message_then_hang_up_is_kept_before_anything_else() -> None:
    agi = ScriptedAgi(Recorded(ended="hangup", digit=None, samples=3 * 8000))
    got, kept = await run(agi)
    assert kept == [Message(recording="/rec/1700000000.1.wav", seconds=3.0, ended="hangup")]
    assert got == kept[0]
    assert agi.played == [
        "<answer>",
        "<set CTI_AFTER_HOURS=1>",
        "vm-intro",
        "<record /rec/1700000000.1.wav # 60000 4>",
        "<ticket>",
    ]


async def test_a_message_ended_by_hash_is_kept_then_the_caller_hears_goodbye() -> None:
    agi = ScriptedAgi(Recorded(ended="dtmf", digit="#", samples=80_000))
    _, kept = await run(agi)
    assert [m.seconds for m in kept] == [10.0]
    assert agi.played[-3:] == ["<ticket>", f"<set {VOICEMAIL_VARIABLE}=1>", "vm-goodbye"]


async def test_an_empty_message_makes_no_ticket_but_the_call_is_dealt_with() -> None:
    agi = ScriptedAgi(Recorded(ended="dtmf", digit="#", samples=800))  # 0.1 s
    got, kept = await run(agi)
    assert kept == []
    assert got is not None
    assert not worth_a_ticket(got, CFG)
    assert agi.played[-2:] == [f"<set {VOICEMAIL_VARIABLE}=1>", "vm-goodbye"]


async def test_hanging_up_during_the_greeting_records_nothing() -> None:
    agi = ScriptedAgi(None, hangup_on="vm-intro")
    got, kept = await run(agi)
    assert (got, kept) == (None, [])


async def test_a_message_of_unknown_length_is_kept() -> None:
    agi = ScriptedAgi(Recorded(ended="hangup", digit=None, samples=None))
    _, kept = await run(agi)
    assert [m.seconds for m in kept] == [None]
    assert "【留言】" in message_content(kept[0])


async def test_when_keeping_fails_the_call_is_not_marked_dealt_with() -> None:
    agi = ScriptedAgi(Recorded(ended="timeout", digit=None, samples=40_000))

    async def keep(message: Message) -> None:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await voicemail(agi, CFG, path="/rec/x", fmt="wav", keep=keep)
    assert not any(p.startswith(f"<set {VOICEMAIL_VARIABLE}") for p in agi.played)  # queued


def test_message_content_is_marked() -> None:
    m = Message(recording="/r/1.wav", seconds=12.4, ended="hangup")
    assert message_content(m).startswith("【留言】")
    assert "12 秒" in message_content(m)


def test_the_dialplan_asks_the_daemon_for_lines_with_hours_only() -> None:
    text = generate_dialplan(plan(), DialplanSettings(), source="test")
    block = text.split("exten => 12348,1,")[1].split("\n\n")[0]
    assert "Set(__CTI_HOURS=office)" in block
    assert "AGI(agi://127.0.0.1:4573/hours,${CTI_LINE},${CHANNEL(linkedid)})" in block
    assert f'GotoIf($["${{{VOICEMAIL_VARIABLE}}}" = "1"]?closed)' in block
    lines = block.splitlines()
    # the AGI comes before cti-line (holding): a closed line never reaches a seat
    agi = next(i for i, s in enumerate(lines) if "/hours," in s)
    goto = next(i for i, s in enumerate(lines) if "Goto(cti-line,s,1)" in s)
    assert agi < goto
    assert lines[-1] == " same => n(closed),Hangup()"
    main = text.split("exten => 12345,1,")[1].split("\n\n")[0]
    assert "/hours" not in main
    assert "closed" not in main


# ------------------------------------------------------- RECORD FILE over a scripted socket


class Script:
    """A FastAGI peer that answers each command line with the next scripted lines."""

    def __init__(self, answers: list[bytes]) -> None:
        self.reader = asyncio.StreamReader()
        self.sent: list[str] = []
        self.answers = list(answers)
        self.writer = self

    # StreamWriter's part
    def write(self, data: bytes) -> None:
        self.sent.append(data.decode().rstrip("\n"))
        if self.answers:
            self.reader.feed_data(self.answers.pop(0))
        else:
            self.reader.feed_eof()

    async def drain(self) -> None:
        pass

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 4573)


def session(answers: list[bytes]) -> tuple[AgiSession, Script]:
    script = Script(answers)

    class Request:
        headers: Mapping[str, str] = {}
        reader = script.reader
        writer = script

    return AgiSession(Request(), command_timeout_s=2), script


async def record(answers: list[bytes], **kw: object) -> tuple[Recorded, list[str]]:
    agi, script = session(answers)
    args = {"escape_digits": "#", "timeout_ms": 60000, "silence_s": 5} | kw
    got = await agi.record_file("/rec/1700000000.1", "wav", **args)  # type: ignore[arg-type]
    return got, script.sent


async def test_record_file_command_and_answers() -> None:
    got, sent = await record([b"200 result=-1 (hangup) endpos=24000\n"])
    assert sent == ['RECORD FILE /rec/1700000000.1 wav "#" 60000 0 BEEP s=5']
    assert got == Recorded(ended="hangup", digit=None, samples=24000)
    got, _ = await record([b"200 result=35 (dtmf) endpos=1600\n"])
    assert got == Recorded(ended="dtmf", digit="#", samples=1600)
    got, _ = await record([b"100 result=0 Trying...\n200 result=0 (timeout) endpos=480000\n"])
    assert got == Recorded(ended="timeout", digit=None, samples=480000)
    # the hang-up notice first, then the answer
    got, _ = await record([b"HANGUP\n200 result=-1 (hangup) endpos=8000\n"])
    assert got == Recorded(ended="hangup", digit=None, samples=8000)
    got, sent = await record([b"200 result=0 (timeout) endpos=0\n"], silence_s=0, beep=False)
    assert sent == ['RECORD FILE /rec/1700000000.1 wav "#" 60000 0']


async def test_record_file_failures() -> None:
    with pytest.raises(AgiError, match="writefile"):
        await record([b"200 result=-1 (writefile)\n"])
    with pytest.raises(AgiError):
        await record([b"510 Invalid or unknown command\n"])
    got, _ = await record([])  # the session ended without an answer
    assert got == Recorded(ended="hangup", digit=None, samples=None)
    agi, _ = session([])
    with pytest.raises(AgiError, match="safe"):
        await agi.record_file(
            '/rec/x" BEEP', "wav", escape_digits="#", timeout_ms=1000, silence_s=0
        )
