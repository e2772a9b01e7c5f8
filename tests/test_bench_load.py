"""benchmarks/load.py's own arithmetic: the ticket count from the daemon's database, the
seat count, the argument bounds and the table (the run itself needs the real testbed)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from benchmarks.e2e import Call
from benchmarks.load import Row, count_tickets, parse_args, render, seats_for


def test_tickets_are_counted_by_their_creating_call_and_duplicates_found(tmp_path: Path) -> None:
    db = tmp_path / "cti.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE tickets (call_ids JSON)")
    for ids in (["main:a"], ["main:b", "main:x"], ["main:a"], ["main:z"], "not json"):
        con.execute(
            "INSERT INTO tickets VALUES (?)", (json.dumps(ids) if ids != "not json" else ids,)
        )
    con.commit()
    con.close()
    # x only joined b's ticket; z is another run's call; the bad row is skipped
    assert count_tickets(db, {"a", "b", "x"}) == (3, 1)
    assert count_tickets(tmp_path / "missing.db", {"a"}) == (0, 0)


def test_enough_seats_for_the_rate() -> None:
    assert seats_for(20, 1.0) == 55  # 20/s x (1 s talk + 0.5 s ringing + 1 s) + 5
    assert seats_for(5, 1.0) == 18


@pytest.mark.parametrize(
    "argv",
    [
        ["--rates", "0"],
        ["--rates", "61"],
        ["--seconds", "61"],
        ["--seconds", "3"],
        ["--seats", "201"],
    ],
)
def test_runs_are_bounded(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_one_row_per_rate_with_the_pop_latency_of_answered_calls() -> None:
    answered = Call(uid="a", originated=0, hold=1.0, ring=1.01, answered=1.5, popped=1.52)
    lost = Call(uid="b", originated=0, hold=1.0, lost=True)
    no_pop = Call(uid="c", originated=0, hold=1.0, ring=1.01, answered=1.5)
    row = Row(20, 55, [answered, lost, no_pop], 2, 0, 30.4, 61, 25, 93.0, "0 error logs")
    head, _, line = render([row])
    assert head.split()[:4] == ["rate/s", "seats", "offer", "answ"]
    assert line.split()[:8] == ["20", "55", "3", "2", "1", "2", "0", "30.4"]
    assert "20" in line.split()[11:13]  # pop p50 ms
    assert "1 answered without an answer pop" in line
