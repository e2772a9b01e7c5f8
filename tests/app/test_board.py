"""The board's snapshot (cti/app/board.py): a supervisor's lines and their seats only, the
alarm classes from the kpis thresholds, the audit and missed calls of those lines, and the
push of a changed snapshot to that user's stream alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog
import yaml

from cti.adapters.http.live import LiveHub
from cti.app.board import Board, _rate_class
from cti.queue.model import WaitingCall
from cti.settings import Settings, WebUser, load_settings
from tests.adapters.test_web import HASH

LINES = [
    {"number": "12345", "name": "12345"},
    {"number": "12315", "name": "12315", "department": "市场监管局", "skill": "market"},
]
SEATS = [
    {"id": "1001", "endpoint": "PJSIP/1001", "skills": {"general": 5}},
    {"id": "1002", "endpoint": "PJSIP/1002", "skills": {"market": 1}},
]


def settings(tmp_path: Path) -> Settings:
    data = {
        "ami": {"nodes": [{"name": "main", "username": "cti", "secret": "s"}]},
        "database": {"url": "sqlite+aiosqlite:////tmp/x.db"},
        "numberplan": {
            "skills": [{"name": "general"}, {"name": "market"}],
            "lines": LINES,
            "seats": SEATS,
        },
    }
    path = tmp_path / "cti.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_settings(path, env={})


class _Desk:
    def spies(self) -> list[dict[str, Any]]:
        return [
            {"supervisor": "boss", "seat": "1001", "call_id": "c", "mode": "listen", "up": True}
        ]


def board(tmp_path: Path, hub: LiveHub) -> Board:
    states = [
        {"seat": "1001", "status": "talking", "reason": None, "since": 100.0, "call_id": "c"},
        {"seat": "1002", "status": "ready", "reason": None, "since": 90.0, "call_id": None},
    ]
    waiting = [
        WaitingCall(call_id="w1", line="12345", priority_class="normal", priority=0,
                    enqueued_at=80.0, skills=frozenset()),
        WaitingCall(call_id="w2", line="12315", priority_class="normal", priority=0,
                    enqueued_at=95.0, skills=frozenset()),
    ]  # fmt: skip
    return Board(
        settings(tmp_path),
        hub=hub,
        desk=_Desk(),  # type: ignore[arg-type]
        store=None,  # type: ignore[arg-type]
        seat_states=lambda: states,
        waiting=lambda: waiting,
        log=structlog.get_logger("test"),
    )


BOSS = WebUser(name="boss", role="supervisor", lines=("12345",), password_hash=HASH)
OTHER = WebUser(name="market", role="supervisor", lines=("12315",), password_hash=HASH)


def test_a_supervisor_sees_its_lines_and_their_seats_only(tmp_path: Path) -> None:
    b = board(tmp_path, LiveHub())
    b.tap("stats/live", {"lines": {"12345": {"today": {"offered": 10, "answered": 9,
          "answer_rate": 0.9, "n_s_answer_rate": 0.81}}}})  # fmt: skip
    b.tap("supervision/audit", {"seat": "1002", "supervisor": "market", "action": "ready"})
    b.tap("supervision/audit", {"seat": "1001", "supervisor": "boss", "action": "listen"})
    b.tap("supervision/audit", {"seat": "1002", "supervisor": "boss", "action": "ready"})
    snap = b.snapshot(BOSS, 120.0)
    assert [ln["number"] for ln in snap["lines"]] == ["12345"]
    line = snap["lines"][0]
    assert (line["waiting"], line["longest_wait_s"], line["longest_wait_cls"]) == (1, 40, "bad")
    assert line["today"]["answer_rate_cls"] == "bad"  # 0.90 < 0.95
    assert line["today"]["n_s_answer_rate_cls"] == "warn"  # 0.81: within 2 points of 0.80
    assert [s["seat"] for s in snap["seats"]] == ["1001"]
    assert snap["seats"][0]["spy"] == {"supervisor": "boss", "mode": "listen", "up": True}
    # its seats' entries and its own (a refusal on another's seat), not another's elsewhere
    assert [(a["seat"], a["supervisor"]) for a in snap["audit"]] == [
        ("1002", "boss"),
        ("1001", "boss"),
    ]
    other = b.snapshot(OTHER, 120.0)
    assert [s["seat"] for s in other["seats"]] == ["1002"]
    assert other["my_spy"] is None
    assert b.seats_of(OTHER) == frozenset({"1002"})
    admin = WebUser(name="root", role="admin", password_hash=HASH)
    assert b.lines_of(admin) == ["12345", "12315"]


def test_rate_classes() -> None:
    assert _rate_class(None, 0.95) == "none"
    assert _rate_class(0.949, 0.95) == "bad"
    assert _rate_class(0.95, 0.95) == "warn"  # the alarm fires strictly below
    assert _rate_class(0.98, 0.95) == "ok"


async def test_a_changed_board_is_pushed_to_its_user_only(tmp_path: Path) -> None:
    hub = LiveHub()
    b = board(tmp_path, hub)
    mine, theirs = hub.open(BOSS), hub.open(OTHER)
    with b.watching(BOSS):
        b.push(120.0)
        b.push(120.2)  # nothing changed: not pushed again
        assert b.snapshots == 1
        hub.flush()  # the fan-out (the hub's task in the daemon)
        (frame,) = mine.take()
        assert frame.startswith(b"event: board\n")
        assert '"user":"boss"' in frame.decode()
        assert theirs.take() == []
    b.push(121.0)  # nobody watching
    assert b.snapshots == 1
    await asyncio.sleep(0)
