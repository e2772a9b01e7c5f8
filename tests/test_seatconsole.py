"""The reference agent console: its command parsing and rendering (no broker needed)."""

from __future__ import annotations

import pytest

from cti.seatconsole import parse_line, render


@pytest.mark.parametrize(
    ("line", "cmd"),
    [
        ("login", {"cmd": "login", "ready": False}),
        ("login ready", {"cmd": "login", "ready": True}),
        ("ready", {"cmd": "ready"}),
        ("notready meal", {"cmd": "not_ready", "reason": "meal"}),
        ("done", {"cmd": "wrapup_done"}),
        ("extend 30", {"cmd": "wrapup_extend", "seconds": 30.0}),
        ("transfer 12315", {"cmd": "transfer", "target": "12315"}),
        ("LOGOUT", {"cmd": "logout"}),
        ("escalate 110", {"cmd": "escalate", "target": "110", "mode": "blind"}),
        ("escalate 120 threeway", {"cmd": "escalate", "target": "120", "mode": "threeway"}),
        ("leave", {"cmd": "leave"}),
    ],
)
def test_commands(line: str, cmd: dict[str, object]) -> None:
    assert parse_line(line) == cmd


@pytest.mark.parametrize(
    "line", ["", "dance", "ready now", "extend soon", "notready", "escalate", "leave now"]
)
def test_bad_lines_are_texts_not_commands(line: str) -> None:
    assert isinstance(parse_line(line), str)


def test_render() -> None:
    assert render("state", {"status": "not_ready", "reason": "rona"}) == "[state] not_ready (rona)"
    assert render("reply", {"ok": False, "error": {"code": "rejected", "message": "x"}}) == (
        "[reply] REFUSED rejected: x"
    )
    pop = {
        "type": "offer",
        "ticket": "pending",
        "call": {
            "caller_name": "王五",
            "caller": "13800000041",
            "line": "12315",
            "department": "市场监管局",
        },
        "history": {"calls": [{}], "tickets": [], "repeat_caller": True},
    }
    assert render("pop", pop) == (
        "[pop offer] 王五 13800000041 -> 12315 市场监管局 ticket pending | earlier calls 1, "
        "tickets 0 | REPEAT CALLER"
    )
    assert render("pop", b"junk") == "[pop] b'junk'"
