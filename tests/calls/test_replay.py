"""Replay every recorded fixture and compare the complete call summaries."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog

from cti.calls import VARIABLES_READ, CallTracker
from cti.dialplan.contract import VIA_CALL_ID_VARIABLE, VIA_DIALED_VARIABLE, VIA_NODE_VARIABLE
from cti.events import EVENT_TYPES, AmiEvent
from cti.replay import iter_events, main_replay, replay_file
from tests.calls.expected import EXPECTED

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"
ALL = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*") if p.is_file())


def test_every_fixture_has_expectations() -> None:
    assert sorted(EXPECTED) == ALL
    # the scenarios the issue asks for
    for name in (
        "basic/answered_caller_hangup.jsonl",
        "basic/abandoned_in_hold.jsonl",
        "basic/agent_no_answer.jsonl",
        "basic/chinese_caller_line.jsonl",
        "transfer/blind.jsonl",
        "transfer/attended.jsonl",
        "transfer/external.jsonl",
        "multi/two_calls.jsonl",
        "restart/asterisk_restart.jsonl",
        "restart/reconnect_missed_events.jsonl",
        "legacy/asterisk13_sip.txt",
    ):
        assert name in EXPECTED


@pytest.mark.parametrize("name", ALL)
def test_replay_exact_summaries(name: str) -> None:
    assert list(replay_file(FIXTURES / name)) == EXPECTED[name]


def test_main_replay_prints_json_lines() -> None:
    out = io.StringIO()
    rc = main_replay(FIXTURES / "basic" / "chinese_caller_line.jsonl", out)
    assert rc == 0
    lines = out.getvalue().splitlines()
    assert [json.loads(x) for x in lines] == EXPECTED["basic/chinese_caller_line.jsonl"]
    assert "张三" in lines[0]  # ensure_ascii=False


def test_bad_lines_are_reported_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = (FIXTURES / "basic" / "abandoned_in_hold.jsonl").read_text(encoding="utf-8").splitlines()
    src.insert(3, "{not json")
    src.insert(5, '{"Event": "Newstate", "ChannelState": 6}')
    src.insert(7, "[1, 2]")
    trace = tmp_path / "t.jsonl"
    trace.write_text("\n".join(src) + "\n", encoding="utf-8")
    out = io.StringIO()
    assert main_replay(trace, out) == 1
    err = capsys.readouterr().err
    assert f"{trace}:4:" in err
    assert f"{trace}:6:" in err
    assert f"{trace}:8:" in err
    assert [json.loads(x) for x in out.getvalue().splitlines()] == EXPECTED[
        "basic/abandoned_in_hold.jsonl"
    ]


def test_open_calls_are_listed_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = (FIXTURES / "basic" / "answered_caller_hangup.jsonl").read_text().splitlines()
    trace = tmp_path / "cut.jsonl"
    trace.write_text("\n".join(lines[:40]) + "\n", encoding="utf-8")
    out = io.StringIO()
    assert main_replay(trace, out) == 0
    assert out.getvalue() == ""
    assert "1 call(s) still open" in capsys.readouterr().err


def test_missing_file(tmp_path: Path) -> None:
    assert main_replay(tmp_path / "nope.jsonl", io.StringIO()) == 2


def test_wire_format_with_bare_newlines(tmp_path: Path) -> None:
    """A JSONL fixture written out as an admin's capture replays the same."""
    name = "transfer/blind.jsonl"
    blocks = []
    for ev in iter_events(FIXTURES / name):
        headers = getattr(ev, "headers", None)
        if headers is not None:
            blocks.append("".join(f"{k}: {v}\n" for k, v in headers.items()))
    trace = tmp_path / "capture.txt"
    trace.write_text("Asterisk Call Manager/11.0.0\n" + "\n".join(blocks) + "\n", encoding="utf-8")
    # no connection markers in a capture, otherwise identical
    assert list(replay_file(trace)) == EXPECTED[name]


@pytest.mark.parametrize("name", ALL)
def test_unread_events_dropped_change_nothing(name: str) -> None:
    """What `ami.drop_unread_events` drops (events with no typed event, VarSets of other
    variables than VARIABLES_READ) never changes what the tracker says about a call."""

    def read(ev: object) -> bool:
        if not isinstance(ev, AmiEvent) or ev.name == "" or "Event" not in ev.headers:
            return True  # connection events, responses
        if ev.headers.get("ActionID") is not None:
            return True
        if ev.name not in EVENT_TYPES:
            return False
        return ev.name != "VarSet" or ev.headers.get("Variable", "").lstrip("_") in VARIABLES_READ

    def notes(events: Sequence[object]) -> list[object]:
        tracker = CallTracker(logger=structlog.get_logger("test"))
        return [n for ev in events for n in tracker.handle(ev)]

    events = list(iter_events(FIXTURES / name))
    kept = [ev for ev in events if read(ev)]
    assert len(kept) < len(events) or "legacy" in name  # the fixtures have some to drop
    assert notes(kept) == notes(events)


def test_the_county_via_variables_are_read() -> None:
    """A county call's origin arrives as VarSets (cti-from-trunk sets them from the trunk's
    X-CTI-* headers): dropping them as unread would lose `via` on every county pop."""
    assert {VIA_NODE_VARIABLE, VIA_DIALED_VARIABLE, VIA_CALL_ID_VARIABLE} <= VARIABLES_READ
