"""The running totals of the live figures (cti/kpis/running.py) equal a full recompute by
the calculator over the same entries, whatever the sequence of calls given, clock
advances and sealing (a call folded into per-minute sums after ``exact_s``).

The definitions pinned (the module's doc): the rolling window holds the entries that
entered at or after ``rolling_start(now)`` (the start of the minute 24 h ago), today those
at or after local midnight inside it; a line counts its entries in the window, the centre
the calls that *began* in it, whole. A call given again while kept replaces it; once
sealed, it counts again.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
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


@dataclass
class Given:
    """The model's record of one call as given: what the windows must count."""

    entries: list[QueueEntry]
    seal_at: float

    @property
    def begin(self) -> float:
        return min(e.entered_at for e in self.entries)


class Model:
    """What RunningWindows holds, the slow way: every call as given (a repeat while kept
    replaces it; after it is sealed, it is a new call), every figure by compute()."""

    def __init__(self, exact_s: float) -> None:
        self.exact_s = exact_s
        self.kept: dict[tuple[str, str], Given] = {}
        self.sealed: list[Given] = []

    def add(self, batch: list[QueueEntry], now: float) -> None:
        self.kept[batch[0].key] = Given(batch, now + self.exact_s)

    def advance(self, now: float) -> None:
        for key, g in list(self.kept.items()):
            if g.seal_at <= now:
                self.sealed.append(self.kept.pop(key))

    def calls(self) -> list[Given]:
        return [*self.sealed, *self.kept.values()]


def check(r: RunningWindows, model: Model, now: float) -> None:
    start = rolling_start(now)
    day = midnight(now)
    calls = model.calls()
    rolling = [e for g in calls for e in g.entries if e.entered_at >= start]
    assert r.lines() == {e.line for e in rolling}
    for w, since in ((r.rolling, start), (r.today, max(start, day))):
        mine = [e for e in rolling if e.entered_at >= since]
        for line in r.lines() | {"12345"}:
            assert r.figures(w, line) == compute(
                [e for e in mine if e.line == line], thresholds=T
            ), line
        # the centre: the calls that began in the window, whole; a sealed call given again
        # is two calls (a distinct id each, as compute() sees calls)
        begun = [
            dataclasses.replace(e, call_id=f"{e.call_id}#{i}")
            for i, g in enumerate(calls)
            if g.begin >= since
            for e in g.entries
        ]
        assert r.figures(w, None) == compute(begun, thresholds=T, per_call=True)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_running_figures_equal_a_full_recompute(data: st.DataObject) -> None:
    now = T0 + data.draw(st.floats(0, DAY_S))
    exact_s = data.draw(st.sampled_from([0.0, 30.0, 300.0, 10 * DAY_S]))
    r = RunningWindows(T, exact_s=exact_s)
    model = Model(exact_s)
    r.advance(now, midnight(now))
    for _ in range(data.draw(st.integers(1, 14))):
        if data.draw(st.booleans()):
            batch = data.draw(call(now))
            r.add(batch)
            model.add(batch, now)
        else:
            now += data.draw(st.sampled_from([1.0, 59.0, 60.0, 300.0, 3600.0, 6 * 3600.0, DAY_S]))
            r.advance(now, midnight(now))
            model.advance(now)
        check(r, model, now)


def test_a_call_is_sealed_after_exact_s_and_its_entries_let_go() -> None:
    """After ``exact_s`` a call lives on only in its minutes' sums: the figures stay."""
    r = RunningWindows(T, exact_s=300.0)
    now = T0 + 12 * 3600.0
    r.advance(now, midnight(now))
    for i in range(100):
        r.add([entry(f"c{i}", Outcome.ANSWERED, float(i % 7), at=now - T0 - 50.0, seat="s1")])
    before = r.figures(r.rolling, None), r.figures(r.rolling, "12345")
    assert r.kept_calls == 100
    r.advance(now + 301.0, midnight(now))
    assert r.kept_calls == 0
    assert len(r) == 100
    assert (r.figures(r.rolling, None), r.figures(r.rolling, "12345")) == before
    assert before[0].longest_wait_s == 6.0


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
            got = r.figures(Thresholds()).longest_wait_s
            assert got == (max(x.wait_s for x in live) if live else None)
    got = r.figures(Thresholds()).longest_wait_s
    assert got == (max(x.wait_s for x in live) if live else None)


def test_the_heap_is_rebuilt_when_its_garbage_outgrows_the_live_units() -> None:
    r = _Running(Thresholds())
    units = [entry(f"c{i}", Outcome.ABANDONED, float(i % 5)) for i in range(300)]
    for u in units:
        r.add(u, seats=False)
    for u in units[:250]:
        r.remove(u, seats=False)
    assert len(r._heap) < 300  # rebuilt: 50 live units and less than 64 + 50 removed ones
    assert r.figures(Thresholds()).longest_wait_s == 4.0
    for u in units[250:]:
        r.remove(u, seats=False)
    assert r.figures(Thresholds()).longest_wait_s is None
