"""Alarms: one per line and kind, strictly past the limit, with a stable id."""

from __future__ import annotations

from cti.kpis import (
    Alarm,
    AlarmKind,
    LineFigures,
    Outcome,
    QueueEntry,
    Thresholds,
    alarms,
    compute,
)
from tests.kpis.facts import T0, entry

TH = Thresholds()
A = Outcome.ANSWERED


def _line(
    today: list[QueueEntry], rolling: list[QueueEntry], now: float | None = None
) -> LineFigures:
    return LineFigures(
        today=compute(today, thresholds=TH, now=now),
        rolling_24h=compute(rolling, thresholds=TH, now=now),
    )


def test_every_kind() -> None:
    # 19 of 20 answered = 95 % exactly over 24 h: not below; today 3 of 4 within 15 s
    good_day = [entry(f"g{i}", A, 3.0) for i in range(19)] + [entry("x", Outcome.ABANDONED, 9)]
    today = [entry(f"t{i}", A, 3.0) for i in range(3)] + [entry("slow", A, 16.0)]
    waiting = entry("w", None, 0.0, at=100)
    lost = entry("a", Outcome.ABANDONED, 30.0)
    lines = {
        "12345": _line([*today, waiting], [*good_day, waiting], now=T0 + 116),
        "12315": _line([lost], [lost]),
        "110": _line([], []),
    }
    got = alarms(lines, TH, ready_seats_by_line={"12345": 2, "110": 0})
    assert [(a.alarm_id, a.value) for a in got] == [
        ("110/no_seat_ready", 0.0),
        ("12315/answer_rate_24h", 0.0),
        ("12315/n_s_answer_rate_today", 0.0),
        ("12345/longest_wait", 16.0),
        ("12345/n_s_answer_rate_today", 0.75),
    ]
    assert got[3] == Alarm(line="12345", kind=AlarmKind.LONGEST_WAIT, value=16.0, threshold=15.0)


def test_at_the_limit_nothing_fires() -> None:
    today = [entry(f"t{i}", A, 15.0) for i in range(4)] + [entry("ab", Outcome.ABANDONED, 1)]
    day = [entry(f"g{i}", A, 3.0) for i in range(19)] + [entry("x", Outcome.ABANDONED, 9)]
    lines = {"12345": _line([*today, entry("w", None, 0.0)], day, now=T0 + 15.0)}
    assert lines["12345"].today.n_s_answer_rate == 0.8
    assert lines["12345"].rolling_24h.answer_rate == 0.95
    assert lines["12345"].today.longest_waiting_s == 15.0
    assert alarms(lines, TH, ready_seats_by_line={"12345": 1}) == []


def test_ids_are_stable_and_the_line_without_figures_is_not_judged() -> None:
    lines = {"12345": _line([entry("a", Outcome.ABANDONED, 3.0)], [])}
    first = alarms(lines, TH, ready_seats_by_line={})
    again = alarms(lines, TH, ready_seats_by_line={})
    assert (
        [a.alarm_id for a in first]
        == [a.alarm_id for a in again]
        == ["12345/n_s_answer_rate_today"]
    )
    strict = Thresholds(n_s_rate_min=0.0, answer_rate_min=0.0)
    assert alarms(lines, strict, ready_seats_by_line={}) == []
