"""The calculator on hand-computed examples: one of each fate the issue names."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, timedelta, timezone

import pytest

from cti.kpis import (
    Origin,
    Outcome,
    QueueEntry,
    Rating,
    SeatInterval,
    Thresholds,
    centre,
    collapse_call,
    compute,
    group,
    window,
)
from cti.seats.model import Reason, SeatStatus
from tests.kpis.facts import T0, entry

A = Outcome.ANSWERED
CST = timezone(timedelta(hours=8))
TH = Thresholds()

# One of each fate (wait, talk, wrap-up in seconds):
DAY = [
    entry("c1", A, 3.0, at=0, talk_s=60, wrapup_s=10, seat="s1"),  # answered fast
    entry("c2", A, 25.0, at=100, talk_s=100, wrapup_s=20, seat="s2", offers=1, ring_s=20),
    entry("c3", A, 15.0, at=200, talk_s=40, seat="s1"),  # exactly 15.0 s: within
    entry("c4", Outcome.ABANDONED, 2.0, at=300),  # short abandon
    entry("c5", Outcome.ABANDONED, 20.0, at=400),
    entry("c6", Outcome.CALLBACK_REQUESTED, 30.0, at=500),
    # passed on by 110 on its own line
    entry(
        "c7", A, 5.0, at=600, talk_s=50, wrapup_s=5, seat="s2", line="110", origin=Origin.POLICE_110
    ),
    # answered on 12345, the seat transferred it to the water department's line
    entry("c8", A, 8.0, at=700, talk_s=45, seat="s1", transferred_to="dept-water"),
    entry(
        "c8",
        A,
        12.0,
        at=753,
        talk_s=30,
        seat="s3",
        line="dept-water",
        entry_seq=2,
        department="water",
        origin=Origin.TRANSFER,
    ),
    entry("c9", Outcome.AFTER_HOURS, 0.0, at=800),  # after-hours message: IVR only
]
RATINGS = [
    Rating(call_id="c1", node="n1", label="非常满意", at=T0 + 80),
    Rating(call_id="c3", node="n1", label="不满意", at=T0 + 260),
    Rating(call_id="c8", node="n1", label="满意", at=T0 + 800),  # for c8's last answer
    Rating(call_id="c2", node="n1", label="9", at=T0 + 250),  # not on the scale
    Rating(call_id="c4", node="n1", label="满意", at=T0 + 310),  # never answered: ignored
]


def test_per_entry_figures_computed_by_hand() -> None:
    f = compute(DAY, thresholds=TH, ratings=RATINGS)
    assert (f.units, f.offered, f.answered) == (10, 9, 6)
    assert (f.abandoned, f.short_abandoned, f.callback_requested) == (2, 1, 1)
    assert (f.after_hours, f.ivr_counted_apart, f.in_progress) == (1, 1, 0)
    assert f.answer_rate == 6 / 9
    # waits of the answered: 3, 25, 15, 5, 8, 12 -> five within 15 s (15.0 included)
    assert f.within_n(15.0).answered == 5
    assert f.n_s_answer_rate == 5 / 9  # 15秒接通率: ÷ offered
    assert f.service_level == 5 / 6  # 应答及时率 / SL: ÷ answered
    assert f.within_n(20.0).answered == 5  # 25 s is past 20 s too
    assert f.abandon_rate == 2 / 9
    assert f.abandon_rate_excluding_short == 1 / 8
    assert f.asa_s == 68 / 6
    assert f.longest_wait_s == 30.0  # the callback request waited longest
    assert f.talk_s == 325.0
    assert f.wrapup_s == 35.0
    assert f.aht_s == 60.0
    assert (f.transfers_out, f.rona) == (1, 1)
    assert (f.ratings, f.ratings_satisfied, f.ratings_invalid) == (3, 2, 1)
    assert f.satisfaction_rate == 2 / 3
    assert f.rating_coverage == 3 / 6


def test_centre_counts_the_transferred_call_once() -> None:
    f = centre(DAY, thresholds=TH, ratings=RATINGS)
    assert (f.units, f.offered, f.answered) == (9, 8, 5)
    assert f.answer_rate == 5 / 8
    assert f.within_n(15.0).answered == 4  # c8 waited 8 s for its first answer
    assert f.n_s_answer_rate == 4 / 8
    assert f.service_level == 4 / 5
    assert f.abandon_rate_excluding_short == 1 / 7
    assert f.asa_s == 56 / 5
    assert f.aht_s == 360 / 5  # both seats' handling of c8 counts for the one call
    assert f.transfers_out == 1
    assert (f.ratings, f.rating_coverage) == (3, 3 / 5)


def test_by_line() -> None:
    by = group(DAY, by="line", thresholds=TH, ratings=RATINGS)
    assert set(by) == {"12345", "110", "dept-water"}
    main = by["12345"]
    assert (main.offered, main.answered, main.after_hours) == (7, 4, 1)
    assert main.answer_rate == 4 / 7
    assert (main.ratings, main.ratings_invalid) == (2, 1)  # c8's rating went to dept-water
    assert by["dept-water"].ratings_satisfied == 1
    assert by["110"].answer_rate == 1.0
    assert sum(f.offered for f in by.values()) == centre(DAY, thresholds=TH).offered + 1


def test_by_department_seat_hour_day() -> None:
    dept = group(DAY, by="department", thresholds=TH)
    assert dept["water"].answered == 1
    assert dept[None].units == 9
    seats = group(DAY, by="seat", thresholds=TH)
    assert {k: f.answered for k, f in seats.items()} == {"s1": 3, "s2": 2, "s3": 1, None: 0}
    hours = group(DAY, by="hour", thresholds=TH, tz=CST)
    assert set(hours) == {"2023-11-15 06:00"}  # T0 + 800 s is still 06:26
    days = group(DAY, by="day", thresholds=TH, tz=UTC)
    assert set(days) == {"2023-11-14"}
    with pytest.raises(ValueError, match="time zone"):
        group(DAY, by="day", thresholds=TH)


def test_ivr_only_is_neither_offered_nor_abandoned() -> None:
    # a progress query on its own number: today's call records say "abandoned"
    f = compute(
        [entry("q", Outcome.IVR_ONLY, 0.0), entry("b", Outcome.BLACKLISTED, 0.0)],
        thresholds=TH,
    )
    assert (f.offered, f.abandoned, f.ivr_counted_apart) == (0, 0, 2)
    assert f.answer_rate is None
    assert f.abandon_rate is None
    assert f.asa_s is None
    assert f.aht_s is None
    assert f.satisfaction_rate is None


def test_nothing_at_all() -> None:
    f = compute([], thresholds=TH)
    assert f.units == 0
    assert f.longest_wait_s is None
    assert f.n_s_answer_rate is None
    assert f.service_level is None
    assert f.seats == ()


def test_overflow_chain_adds_waits_and_takes_the_last_offered_fate() -> None:
    first = entry("o", Outcome.TRANSFERRED_OUT, 10.0, transferred_to="12315")
    second = entry("o", Outcome.ABANDONED, 7.0, at=10, line="12315", entry_seq=2)
    c = collapse_call([second, first])
    assert c.outcome is Outcome.ABANDONED
    assert c.wait_s == 17.0
    assert c.line == "12345"
    f = centre([first, second], thresholds=TH)
    assert (f.offered, f.abandoned, f.transferred_out, f.transfers_out) == (1, 1, 0, 1)
    per_entry = compute([first, second], thresholds=TH)
    assert (per_entry.offered, per_entry.transferred_out) == (1, 1)


def test_answer_after_overflow_waits_from_the_first_entry() -> None:
    first = entry("o", Outcome.TRANSFERRED_OUT, 10.0)
    second = entry("o", A, 6.0, at=10, line="12315", entry_seq=2, seat="s9")
    f = centre([first, second], thresholds=TH)
    assert f.asa_s == 16.0
    assert f.service_level == 0.0  # 16 s > 15 s for the citizen, though each line was fast


def test_a_call_still_waiting_counts_only_in_the_live_longest_wait() -> None:
    waiting = entry("w", None, 4.0, at=0)
    talking = entry("t", None, 3.0, at=0, connected_at=T0 + 3.0, seat="s1")
    f = compute([waiting, talking], thresholds=TH, now=T0 + 40)
    assert (f.units, f.in_progress, f.offered) == (2, 2, 0)
    assert f.longest_waiting_s == 40.0
    assert f.longest_wait_s is None
    assert compute([waiting], thresholds=TH).longest_waiting_s is None  # no now: unknown


def test_seat_time_from_intervals() -> None:
    spans = [
        SeatInterval(
            seat="s1",
            status=SeatStatus.NOT_READY,
            reason=Reason.LOGIN,
            start=T0 - 200,
            end=T0 - 100,
        ),
        SeatInterval(seat="s1", status=SeatStatus.READY, start=T0 - 100, end=T0 - 3),
        SeatInterval(seat="s1", status=SeatStatus.RINGING, start=T0 - 3, end=T0),
        SeatInterval(seat="s1", status=SeatStatus.TALKING, start=T0, end=T0 + 60),
        SeatInterval(seat="s1", status=SeatStatus.WRAP_UP, start=T0 + 60, end=T0 + 70),
        SeatInterval(
            seat="s1", status=SeatStatus.NOT_READY, reason=Reason.MEAL, start=T0 + 70, end=T0 + 370
        ),
        SeatInterval(
            seat="s1", status=SeatStatus.NOT_READY, reason=Reason.RONA, start=T0 + 370, end=T0 + 377
        ),
        SeatInterval(seat="s1", status=SeatStatus.LOGGED_OUT, start=T0 + 377, end=T0 + 9000),
        SeatInterval(seat="s4", status=SeatStatus.READY, start=T0, end=None),  # still open
    ]
    f = compute(DAY, thresholds=TH, seat_intervals=spans, now=T0 + 100)
    s1 = next(s for s in f.seats if s.seat == "s1")
    assert (s1.answered, s1.talk_s, s1.wrapup_s) == (3, 145.0, 10.0)
    assert s1.aht_s == 155 / 3
    assert s1.logged_in_s == 577.0
    assert s1.occupied_s == 73.0
    assert s1.occupancy == 73 / 577
    assert s1.not_ready_s == (("login", 100.0), ("meal", 300.0), ("rona", 7.0))
    assert s1.rona == 1
    s4 = next(s for s in f.seats if s.seat == "s4")
    assert (s4.answered, s4.aht_s, s4.logged_in_s, s4.occupancy) == (0, None, 100.0, 0.0)
    by_seat = group(DAY, by="seat", thresholds=TH, seat_intervals=spans, now=T0 + 100)
    assert by_seat["s4"].answered == 0
    assert by_seat["s4"].seats[0].logged_in_s == 100.0
    assert by_seat["s2"].seats[0].logged_in_s == 0.0


def test_window_is_half_open() -> None:
    assert [e.call_id for e in window(DAY, T0 + 100, T0 + 300)] == ["c2", "c3"]


def test_duplicate_ratings_count_once_the_latest() -> None:
    one = [entry("r", A, 1.0)]
    ratings = [
        Rating(call_id="r", node="n1", label="满意", at=T0 + 10),
        Rating(call_id="r", node="n1", label="不满意", at=T0 + 20),
    ]
    f = compute(one, thresholds=TH, ratings=ratings)
    assert (f.ratings, f.satisfaction_rate) == (1, 0.0)
    f = compute(one, thresholds=TH, ratings=reversed(ratings))
    assert (f.ratings, f.satisfaction_rate) == (1, 0.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("wait_s", math.nan), ("talk_s", -1.0), ("entered_at", math.inf), ("ring_s", -0.5)],
)
def test_bad_times_are_refused(field: str, value: float) -> None:
    good = QueueEntry(
        call_id="x", node="n1", line="12345", entered_at=T0, left_at=T0, outcome=Outcome.ABANDONED
    )
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(good, **{field: value})  # type: ignore[arg-type]


def test_inconsistent_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="connected_at and seat"):
        QueueEntry(call_id="x", node="n1", line="1", entered_at=T0, left_at=T0, outcome=A)
    with pytest.raises(ValueError, match="needs left_at"):
        QueueEntry(call_id="x", node="n1", line="1", entered_at=T0, outcome=Outcome.ABANDONED)
    with pytest.raises(ValueError, match="no left_at"):
        QueueEntry(call_id="x", node="n1", line="1", entered_at=T0, left_at=T0, outcome=None)
    with pytest.raises(ValueError, match="ends before"):
        SeatInterval(seat="s", status=SeatStatus.READY, start=T0, end=T0 - 1)
    with pytest.raises(ValueError, match="reason goes with not_ready"):
        SeatInterval(seat="s", status=SeatStatus.READY, reason=Reason.MEAL, start=T0)
    with pytest.raises(ValueError, match="more than one call"):
        collapse_call([entry("a", A, 1.0), entry("b", A, 1.0)])


@pytest.mark.parametrize(
    "kw",
    [
        {"answer_s": 0.0},
        {"also_n_s": (math.nan,)},
        {"short_abandon_s": -1.0},
        {"answer_rate_min": 1.5},
        {"n_s_rate_min": math.nan},
        {"satisfied": ("满意",), "unsatisfied": ("满意",)},
    ],
)
def test_bad_thresholds_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Thresholds(**kw)  # type: ignore[arg-type]


def test_other_thresholds() -> None:
    th = Thresholds(answer_s=20.0, also_n_s=(10.0, 30.0), short_abandon_s=2.0)
    f = compute(DAY, thresholds=th)
    assert [w.n_s for w in f.within] == [10.0, 20.0, 30.0]
    assert [w.answered for w in f.within] == [3, 5, 6]
    assert f.n_s_answer_rate == 5 / 9
    assert f.short_abandoned == 0  # 2 s is not shorter than 2 s
    with pytest.raises(KeyError):
        f.within_n(15.0)
