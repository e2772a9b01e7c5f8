"""benchmarks/faults.py's own parts: the argument bounds and the table (the run itself needs
the real testbed: `flock -o /tmp/hotline-cti-realtests.lock .venv/bin/python
benchmarks/faults.py`)."""

from __future__ import annotations

import pytest

from benchmarks.e2e import Call
from benchmarks.faults import FAULTS, Row, parse_args, render


def test_every_fault_by_default_three_runs() -> None:
    args = parse_args([])
    assert args.faults == list(FAULTS)
    assert args.runs == 3
    assert args.duration == args.runs * args.period
    assert parse_args(["--faults", "db-lock,daemon-kill", "--runs", "5"]).faults == [
        "db-lock",
        "daemon-kill",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--faults", "meteor"],
        ["--faults", ""],
        ["--runs", "0"],
        ["--runs", "21"],
        ["--rate", "0"],
        ["--period", "4"],
        ["--at", "15"],
        ["--freeze-s", "61"],
    ],
)
def test_runs_are_bounded(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_one_row_per_fault() -> None:
    answered = Call(uid="a", originated=0, hold=1.0, ring=1.01, answered=1.5, popped=1.52)
    by_fallback = Call(uid="b", originated=0, hold=1.0, answered=9.5, fallback=True)
    lost = Call(uid="c", originated=0, hold=1.0, lost=True)
    row = Row("daemon-kill", 3, [answered, by_fallback, lost], 1, 0, 0, 0, [0.9, 1.2, 4.0])
    head, line = render([row])
    assert head.split()[:6] == ["fault", "runs", "offered", "unansw", "fallback", "ghosts"]
    # offered 3, unanswered 1, fallback 1, ghosts 1, pops 0, tickets 0/0, p50 1.2, max 4.0
    assert line.split()[:11] == [
        "daemon-kill",
        "3",
        "3",
        "1",
        "1",
        "1",
        "0",
        "0",
        "0",
        "1.2",
        "4.0",
    ]
    never = Row("db-lock", 1, [], 0, 0, 0, 0, [float("inf")])
    assert render([never])[1].split()[-2:] == ["inf", "inf"]
