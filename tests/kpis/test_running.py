"""The running totals of the live figures (cti/kpis/running.py) equal a full recompute by
the calculator over the same entries, whatever the sequence of entries and clock advances.

The one documented difference from an exact 24 h cut is the minute granularity: the
rolling window holds the entries that entered at or after ``rolling_start(now)`` (the
start of the minute 24 h ago), and today those at or after local midnight inside it.
"""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from cti.kpis import Outcome, QueueEntry, Thresholds, compute
from cti.kpis.running import DAY_S, RunningWindows, _Running, rolling_start
from cti.kpis.tally import SeatTally, exact, inexact
from tests.kpis.facts import T0, entry
from tests.kpis.test_properties import WAITS

TZ = ZoneInfo("Asia/Shanghai")
T = Thresholds()
FINISHED = list(Outcome)


def midnight(now: float) -> float:
    d = datetime.fromtimestamp(now, TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    return d.timestamp()


@st.composite
def call(draw: st.DrawFn, now: float) -> list[QueueEntry]:
    """One finished call's 1-3 entries, entered up to 26 h before ``now``."""
    n = draw(st.integers(0, 30))  # few ids: repeats (a call stored twice) happen
    back = draw(
        st.sampled_from([0.0, 30.0, 59.0, 3600.0, DAY_S - 30, DAY_S + 30]) | st.floats(0, 26 * 3600)
    )
    at = now - back - T0
    return [
        entry(
            f"c{n}",
            draw(st.sampled_from(FINISHED)),
            draw(WAITS),
            at=at + 40.0 * seq,
            talk_s=draw(st.floats(0.0, 900.0, allow_nan=False)),
            wrapup_s=draw(st.floats(0.0, 120.0, allow_nan=False)),
            seat=draw(st.sampled_from(["s1", "s2"])),
            line=draw(st.sampled_from(["12345", "12315", "110"])),
            entry_seq=seq,
            offers=draw(st.integers(0, 2)),
            transferred_to=draw(st.sampled_from([None, "dept"])),
        )
        for seq in range(1, draw(st.integers(1, 3)) + 1)
    ]


def check(r: RunningWindows, facts: dict[tuple[str, str, int], QueueEntry], now: float) -> None:
    start = rolling_start(now)
    rolling = [e for e in facts.values() if e.entered_at >= start]
    today = [e for e in rolling if e.entered_at >= midnight(now)]
    assert r.lines() == {e.line for e in rolling}
    for line in r.lines() | {"12345"}:
        for w, part in ((r.rolling, rolling), (r.today, today)):
            mine = [e for e in part if e.line == line]
            assert r.figures(w, line) == compute(mine, thresholds=T)
    assert r.figures(r.rolling, None) == compute(rolling, thresholds=T, per_call=True)
    assert r.figures(r.today, None) == compute(today, thresholds=T, per_call=True)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_running_figures_equal_a_full_recompute(data: st.DataObject) -> None:
    now = T0 + data.draw(st.floats(0, DAY_S))
    r = RunningWindows(T)
    facts: dict[tuple[str, str, int], QueueEntry] = {}
    r.advance(now, midnight(now))
    for _ in range(data.draw(st.integers(1, 12))):
        if data.draw(st.booleans()):
            batch = data.draw(call(now))
            r.add(batch)
            for e in batch:
                if e.entered_at >= r.rolling.start:
                    facts[e.node, e.call_id, e.entry_seq] = e
                else:  # too old to count; a repeat of a counted one takes it out
                    facts.pop((e.node, e.call_id, e.entry_seq), None)
        else:
            now += data.draw(st.sampled_from([1.0, 59.0, 60.0, 3600.0, 6 * 3600.0, DAY_S]))
            r.advance(now, midnight(now))
        check(r, facts, now)


def test_exact_sums_round_like_fsum() -> None:
    values = [0.1, 1e16, 0.2, -1e16, 3.3, 1e-300]
    total = sum(exact(v) for v in values)
    assert inexact(total) == math.fsum(values)
    assert inexact(total - exact(3.3)) == math.fsum([0.1, 1e16, 0.2, -1e16, 1e-300])


@given(
    st.dictionaries(
        st.sampled_from(["s1", "s2", "s3"]),
        st.tuples(st.integers(1, 50), WAITS, WAITS),
        max_size=3,
    ),
    st.dictionaries(
        st.sampled_from(["s2", "s3", "s4"]),
        st.tuples(st.integers(1, 50), WAITS, WAITS),
        max_size=3,
    ),
)
def test_a_tally_read_as_floats_is_the_exact_one(
    first: dict[str, tuple[int, float, float]], later: dict[str, tuple[int, float, float]]
) -> None:
    """A rolled day's seat sums, kept as floats (SeatTally.of_floats), give the figures of
    the same sums made exact, and merge with another day's exactly."""

    def exact_of(d: dict[str, tuple[int, float, float]]) -> SeatTally:
        return SeatTally({k: [n, exact(a), exact(b)] for k, (n, a, b) in d.items()})

    def floats_of(d: dict[str, tuple[int, float, float]]) -> SeatTally:
        return SeatTally.of_floats({k: [n, a, b] for k, (n, a, b) in d.items()})

    assert floats_of(first).figures() == exact_of(first).figures()
    merged, want = floats_of(first), exact_of(first)
    for seat, (n, a, b) in later.items():
        merged.add_sums(seat, n, exact(a), exact(b))
        want.add_sums(seat, n, exact(a), exact(b))
    assert merged.figures() == want.figures()
    assert merged == want


@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from([0.0, 1.0, 2.5, 15.0, 15.0, 40.0])),
        max_size=400,
    )
)
@settings(max_examples=60)
def test_longest_wait_with_duplicate_waits_across_compactions(
    ops: list[tuple[bool, float]],
) -> None:
    """The lazy-deletion heap of bare waits (removed waits counted until they reach the
    top, the heap rebuilt once the garbage outgrows the live units) gives the maximum of
    the units still in, whatever the order, with equal waits of different units."""

    r = _Running(Thresholds())
    live: list[QueueEntry] = []
    for i, (add, wait) in enumerate(ops):
        if add or not live:
            e = entry(f"c{i}", Outcome.ABANDONED, wait)
            r.add(e, seats=False)
            live.append(e)
        else:
            r.remove(live.pop(i % len(live)), seats=False)
        if i % 7 == 0:
            got = r.figures(Thresholds(), SeatTally()).longest_wait_s
            assert got == (max(x.wait_s for x in live) if live else None)
    got = r.figures(Thresholds(), SeatTally()).longest_wait_s
    assert got == (max(x.wait_s for x in live) if live else None)


def test_the_heap_is_rebuilt_when_its_garbage_outgrows_the_live_units() -> None:
    r = _Running(Thresholds())
    units = [entry(f"c{i}", Outcome.ABANDONED, float(i % 5)) for i in range(300)]
    for u in units:
        r.add(u, seats=False)
    for u in units[:250]:
        r.remove(u, seats=False)
    assert len(r._heap) < 300  # rebuilt: 50 live units and less than 64 + 50 removed ones
    assert r.figures(Thresholds(), SeatTally()).longest_wait_s == 4.0
    for u in units[250:]:
        r.remove(u, seats=False)
    assert r.figures(Thresholds(), SeatTally()).longest_wait_s is None
