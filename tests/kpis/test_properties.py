"""Properties of the calculator over any facts: order, sums, ratio bounds, thresholds."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from cti.kpis import (
    OFFERED,
    Figures,
    GroupBy,
    Outcome,
    QueueEntry,
    Rating,
    Thresholds,
    centre,
    collapse_call,
    compute,
    group,
)
from tests.kpis.facts import T0, entry

# waits near every default threshold, plus anything in between
WAITS = st.sampled_from([0.0, 2.0, 4.999, 5.0, 14.999, 15.0, 15.001, 20.0, 20.5]) | st.floats(
    0.0, 600.0, allow_nan=False
)
LINES = st.sampled_from(["12345", "12315", "110", "dept-water"])
LABELS = st.sampled_from(["非常满意", "满意", "基本满意", "不满意", "?"])


@st.composite
def calls(draw: st.DrawFn, *, finished: bool = False) -> list[QueueEntry]:
    """The entries of the calls of a day: 1-3 entries a call, distinct entry_seq."""
    out: list[QueueEntry] = []
    outcomes = list(Outcome) if finished else [*Outcome, None]
    for n in range(draw(st.integers(0, 12))):
        at = draw(st.floats(0.0, 86_400.0, allow_nan=False))
        for seq in range(1, draw(st.integers(1, 3)) + 1):
            out.append(  # noqa: PERF401 - each entry draws its own values
                entry(
                    f"c{n}",
                    draw(st.sampled_from(outcomes)),
                    draw(WAITS),
                    at=at + seq,
                    talk_s=draw(st.floats(0.0, 900.0, allow_nan=False)),
                    wrapup_s=draw(st.floats(0.0, 120.0, allow_nan=False)),
                    seat=draw(st.sampled_from(["s1", "s2", "s3"])),
                    line=draw(LINES),
                    entry_seq=seq,
                    offers=draw(st.integers(0, 3)),
                    node=draw(st.sampled_from(["n1", "n2"])),
                )
            )
    return out


@st.composite
def ratings_for(draw: st.DrawFn, entries: list[QueueEntry]) -> list[Rating]:
    keys = sorted({e.key for e in entries})
    return [
        Rating(node=node, call_id=call_id, label=draw(LABELS), at=T0 + draw(st.integers(0, 9)))
        for node, call_id in keys
        if draw(st.booleans())
    ]


def _ratios(f: Figures) -> list[float | None]:
    out = [
        f.answer_rate,
        f.abandon_rate,
        f.abandon_rate_excluding_short,
        f.satisfaction_rate,
        f.rating_coverage,
    ]
    out += [w.answer_rate for w in f.within] + [w.service_level for w in f.within]
    return out + [s.occupancy for s in f.seats]


@settings(max_examples=200)
@given(st.data())
def test_any_order_gives_the_same_figures(data: st.DataObject) -> None:
    entries = data.draw(calls())
    ratings = data.draw(ratings_for(entries))
    shuffled = entries[:]
    random.Random(data.draw(st.integers())).shuffle(shuffled)
    rev = list(reversed(ratings))
    th = Thresholds()
    now = T0 + 90_000
    assert compute(entries, thresholds=th, ratings=ratings, now=now) == compute(
        shuffled, thresholds=th, ratings=rev, now=now
    )
    assert centre(entries, thresholds=th, ratings=ratings, now=now) == centre(
        shuffled, thresholds=th, ratings=rev, now=now
    )
    assert group(entries, by="line", thresholds=th, ratings=ratings) == group(
        shuffled, by="line", thresholds=th, ratings=rev
    )


@given(calls())
def test_counts_add_up_and_ratios_stay_in_0_1(entries: list[QueueEntry]) -> None:
    for f in (compute(entries, thresholds=Thresholds()), centre(entries, thresholds=Thresholds())):
        assert (
            f.offered == f.answered + f.abandoned + f.callback_requested + f.voicemail + f.fallback
        )
        assert f.units == f.offered + f.transferred_out + f.ivr_counted_apart + f.in_progress
        assert 0 <= f.short_abandoned <= f.abandoned
        for r in _ratios(f):
            assert r is None or 0.0 <= r <= 1.0
        assert (f.answer_rate is None) == (f.offered == 0)
        assert (f.service_level is None) == (f.answered == 0)
        assert (f.asa_s is None) == (f.answered == 0)
        if f.asa_s is not None:
            assert f.longest_wait_s is not None
            assert f.asa_s <= f.longest_wait_s * (1 + 1e-12)


@given(calls(finished=True))
def test_lines_add_up_to_the_entries_and_to_the_centre_by_the_dedup_rule(
    entries: list[QueueEntry],
) -> None:
    th = Thresholds()
    by_line = group(entries, by="line", thresholds=th)
    every = compute(entries, thresholds=th)
    for name in ("units", "offered", "answered", "abandoned", "short_abandoned", "rona"):
        assert sum(getattr(f, name) for f in by_line.values()) == getattr(every, name)
    for n in th.n_s:
        assert sum(f.within_n(n).answered for f in by_line.values()) == every.within_n(n).answered
    # the centre: one unit per call; offered once if any entry asked for a person
    per_call = Counter(e.key for e in entries if e.outcome in OFFERED)
    whole = centre(entries, thresholds=th)
    assert whole.units == len({e.key for e in entries})
    assert whole.offered == len(per_call)
    assert every.offered - whole.offered == sum(n - 1 for n in per_call.values())
    assert whole.answered == len({e.key for e in entries if e.outcome is Outcome.ANSWERED})


@given(calls(finished=True), st.data())
def test_ratings_count_once_whatever_the_grouping(
    entries: list[QueueEntry], data: st.DataObject
) -> None:
    ratings = data.draw(ratings_for(entries))
    th = Thresholds()
    whole = centre(entries, thresholds=th, ratings=ratings)
    bys: tuple[GroupBy, ...] = ("line", "department", "seat")
    for by in bys:
        groups = group(entries, by=by, thresholds=th, ratings=ratings)
        assert sum(f.ratings for f in groups.values()) == whole.ratings
        assert sum(f.ratings_invalid for f in groups.values()) == whole.ratings_invalid


@given(WAITS)
def test_thresholds_are_inclusive(wait: float) -> None:
    th = Thresholds(answer_s=max(wait, 0.001))
    f = compute([entry("x", Outcome.ANSWERED, wait)], thresholds=th)
    assert f.n_s_answer_rate == 1.0
    assert f.service_level == 1.0
    f = compute([entry("x", Outcome.ABANDONED, wait)], thresholds=Thresholds(short_abandon_s=wait))
    assert f.short_abandoned == 0  # a short abandon is strictly shorter


@given(calls(), st.lists(st.floats(0.5, 120.0, allow_nan=False), min_size=1, max_size=5))
def test_n_second_figures_grow_with_n(entries: list[QueueEntry], ns: list[float]) -> None:
    f = compute(entries, thresholds=Thresholds(answer_s=ns[0], also_n_s=tuple(ns[1:])))
    counts = [w.answered for w in f.within]
    assert [w.n_s for w in f.within] == sorted(set(ns))
    assert counts == sorted(counts)
    assert all(c <= f.answered for c in counts)


@given(calls())
def test_a_call_of_one_entry_is_itself_for_the_centre(entries: list[QueueEntry]) -> None:
    keys = Counter(e.key for e in entries)
    single = [e for e in entries if keys[e.key] == 1]
    for e in single:
        assert collapse_call([e]) == e
    th = Thresholds()
    assert centre(single, thresholds=th, now=T0) == compute(single, thresholds=th, now=T0)
