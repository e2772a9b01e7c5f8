"""The live figures as running totals: today-so-far and rolling 24 h, per line and centre.

Recomputing the figures of every entry of the last 24 h each second costs O(entries): at
50 calls/s that is ≈4 M entries a day, rebuilt once a second. Here each entry is counted
once when it arrives and once when it leaves (:class:`~cti.kpis.tally.Tally`, exact sums),
so an update costs O(entries of that call) and reading the figures O(lines).

**What is held.** A call is kept whole (its entries) for ``exact_s`` after it was given
(default 2 min): a repeat of it in that time (the daemon's seed overlapping the first calls
that end) replaces it. Then it is *sealed*: its entries are folded into **per-minute
aggregates** (per line and for the centre: the tallies and the longest wait of the
minute), and its entries are let go. Memory is O(minutes x lines x seats that answered in
a minute) plus the calls of the last ``exact_s`` — bounded, not O(calls of a day)
(docs/performance.md, the 30-minute run). A repeat given after its call was sealed counts
again (nothing remembers a sealed call: that memory is what this bounds).

**The windows.** The rolling window drops whole minutes (of ``entered_at``): it covers the
entries that entered at or after the start of the minute 24 h ago — between 24 h and
24 h 59 s back (:func:`rolling_start`). Today is the entries that entered at or after local
midnight (a minute boundary in every time zone in use) inside the rolling window; it is
reset when the day changes. A line counts the entries that entered in the window (one unit
per entry). **The centre counts the calls that began in the window** (their first entry
entered in it): one unit per call, all its entries collapsed
(:func:`~cti.kpis.collapse_call`), its seat figures from all its entries. So a call that
began before midnight is yesterday's call whole, and one that began 24 h ago leaves the
rolling centre whole when its first minute does — a call counts in the centre in one
minute, which is what lets a minute be dropped whole. Within those definitions the figures
are **equal** to :func:`cti.kpis.compute` over the same entries, which the tests pin with
hypothesis.

Entries still in progress are not facts (the core sends finished ones): ignored.

Pure: the time is passed in.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field

from cti.kpis.definitions import Figures, Thresholds, collapse_call
from cti.kpis.facts import OFFERED, Outcome, QueueEntry
from cti.kpis.tally import SeatTally, Tally, exact

__all__ = ["DAY_S", "EXACT_S", "MINUTE_S", "RunningWindows", "rolling_start"]

DAY_S = 86_400.0
MINUTE_S = 60.0
EXACT_S = 120.0
"""How long a given call is kept whole (a repeat replaces it) before it is sealed."""

CallKey = tuple[str, str]


def rolling_start(now: float) -> float:
    """The rolling window's start: the start of the minute 24 h before ``now``."""
    return math.floor((now - DAY_S) / MINUTE_S) * MINUTE_S


def _minute(at: float) -> int:
    return math.floor(at / MINUTE_S)


def _pack(n: int) -> tuple[int, int]:
    """An exact sum (an integer of 2⁻¹⁰⁷⁴, :func:`~cti.kpis.tally.exact`) as (odd part,
    shift): a talk time's exact integer has ≈1,030 trailing zero bits, 168 B as a Python
    int, 32 B without them — the sealed minutes hold one per seat and line."""
    if n == 0:
        return 0, 0
    shift = (n & -n).bit_length() - 1
    return n >> shift, shift


@dataclass(slots=True)
class _Agg:
    """A sealed minute's units of one line (or the centre's): only ever added to. The
    seats' sums packed (:func:`_pack`): seat -> (answered, talk, its shift, wrap-up, its
    shift)."""

    tally: Tally
    seats: dict[str, tuple[int, int, int, int, int]] = field(default_factory=dict)

    def add_seat(self, e: QueueEntry) -> None:
        if e.outcome is not Outcome.ANSWERED or e.seat is None:
            return
        n, tm, ts, wm, ws = self.seats.get(e.seat, (0, 0, 0, 0, 0))
        talk = _pack((tm << ts) + exact(e.talk_s))
        wrapup = _pack((wm << ws) + exact(e.wrapup_s))
        self.seats[e.seat] = (n + 1, *talk, *wrapup)


@dataclass(slots=True)
class _Minute:
    lines: dict[str, _Agg] = field(default_factory=dict)
    centre: _Agg | None = None


class _Running:
    """A window's tally of one line (or the centre) whose units come and go: the sealed
    minutes' sums plus the kept calls' units; the longest offered wait is the larger of the
    sealed minutes' longest (``sealed_longest``, set by the owner) and a lazy-deletion heap
    of the kept units' waits.

    The heap holds waits (negated) as bare floats, and a removed wait is counted in
    ``_gone`` until it reaches the top: a unit costs one float in the heap."""

    __slots__ = ("_dead", "_gone", "_heap", "sealed_longest", "seats", "tally")

    def __init__(self, thresholds: Thresholds) -> None:
        self.tally = Tally.of(thresholds)
        self.seats = SeatTally()
        self.sealed_longest: float | None = None
        self._heap: list[float] = []  # -wait of the kept offered units, and of removed ones
        self._gone: dict[float, int] = {}  # -wait -> removed units still in the heap
        self._dead = 0  # sum of _gone

    def add(self, u: QueueEntry, *, seats: bool) -> None:
        self.tally.add(u)
        if seats:
            self.seats.add(u)
        if u.outcome in OFFERED:
            heapq.heappush(self._heap, -u.wait_s)

    def remove(self, u: QueueEntry, *, seats: bool) -> None:
        """Take out a kept unit added before (the same object: its wait is the same float)."""
        self.tally.remove(u)
        if seats:
            self.seats.add(u, -1)
        if u.outcome in OFFERED:
            self._drop_wait(u.wait_s)

    def seal(self, u: QueueEntry) -> None:
        """A kept unit moved into a sealed minute: same sums, its wait leaves the heap."""
        if u.outcome in OFFERED:
            self._drop_wait(u.wait_s)
            self._see(u.wait_s)

    def merge(self, agg: _Agg, sign: int) -> None:
        """A sealed minute in (1) or out (-1); out leaves ``sealed_longest`` stale."""
        self.tally.merge(agg.tally, sign)
        seats = self.seats.seats
        for seat, (n, tm, ts, wm, ws) in agg.seats.items():
            have = seats.setdefault(seat, [0, 0, 0])
            have[0] += sign * n
            have[1] += sign * (tm << ts)
            have[2] += sign * (wm << ws)
            if have[0] == 0:
                del seats[seat]  # compute() lists only seats that answered
        if sign > 0:
            self.see_longest(agg)

    def see_longest(self, agg: _Agg) -> None:
        if agg.tally.longest_wait_s is not None:
            self._see(agg.tally.longest_wait_s)

    def _see(self, wait: float) -> None:
        if self.sealed_longest is None or wait > self.sealed_longest:
            self.sealed_longest = wait

    def _drop_wait(self, wait: float) -> None:
        w = -wait
        self._gone[w] = self._gone.get(w, 0) + 1
        self._dead += 1
        if self._dead > len(self._heap) - self._dead + 64:  # keep the heap's garbage bounded
            live: list[float] = []
            for h in self._heap:
                n = self._gone.get(h, 0)
                if n:
                    self._gone[h] = n - 1
                else:
                    live.append(h)
            heapq.heapify(live)
            self._heap, self._gone, self._dead = live, {}, 0

    def figures(self, thresholds: Thresholds) -> Figures:
        heap, gone = self._heap, self._gone
        while heap and (n := gone.get(heap[0], 0)):
            top = heapq.heappop(heap)
            self._dead -= 1
            if n == 1:
                del gone[top]
            else:
                gone[top] = n - 1
        longest = -heap[0] if heap else None
        if self.sealed_longest is not None and (longest is None or self.sealed_longest > longest):
            longest = self.sealed_longest
        self.tally.longest_wait_s = longest
        return self.tally.figures(thresholds, seats=self.seats.figures())


@dataclass(slots=True)
class _Window:
    """The running figures of the entries that entered at or after ``start``."""

    thresholds: Thresholds
    start: float
    lines: dict[str, _Running] = field(default_factory=dict)
    centre: _Running | None = None
    longest_stale: bool = False  # a sealed minute left: the sealed maxima are recomputed

    def line(self, line: str) -> _Running:
        running = self.lines.get(line)
        if running is None:
            running = self.lines[line] = _Running(self.thresholds)
        return running

    def running_centre(self) -> _Running:
        if self.centre is None:
            self.centre = _Running(self.thresholds)
        return self.centre


@dataclass(slots=True)
class _Call:
    """A call kept whole until it is sealed."""

    entries: list[QueueEntry]  # those that entered at or after the rolling window's start
    unit: QueueEntry | None  # the centre's unit; None once the call began before the window
    begin: float  # the earliest entered_at of its entries
    arrival: int  # which of the call's arrivals is due to seal it


class RunningWindows:
    """Today-so-far and rolling-24 h running figures over the entries given."""

    def __init__(self, thresholds: Thresholds, *, exact_s: float = EXACT_S) -> None:
        self._t = thresholds
        self._exact_s = exact_s
        self._calls: dict[CallKey, _Call] = {}  # kept whole, not sealed yet
        self._due: list[tuple[float, int, CallKey]] = []  # heap: (seal at, arrival, call)
        self._arrivals = itertools.count()
        self._minutes: dict[int, _Minute] = {}  # sealed minutes inside the rolling window
        self._now = -math.inf
        self.rolling = _Window(thresholds, -math.inf)
        self.today = _Window(thresholds, -math.inf)

    def __len__(self) -> int:
        """The entries in the rolling window (kept and sealed)."""
        sealed = sum(a.tally.units for m in self._minutes.values() for a in m.lines.values())
        return sealed + sum(len(c.entries) for c in self._calls.values())

    @property
    def kept_calls(self) -> int:
        """The calls kept whole (not sealed yet): what the memory bound's second term is."""
        return len(self._calls)

    # ------------------------------------------------------------------ membership

    def _in(self, w: _Window, at: float) -> bool:
        # today is inside the rolling window, as in a full recompute (a 25 h day included)
        return at >= w.start and at >= self.rolling.start

    def _windows(self) -> tuple[_Window, _Window]:
        return (self.rolling, self.today)

    def _count(self, c: _Call, sign: int, windows: tuple[_Window, ...]) -> None:
        """A kept call in (1) or out (-1) of ``windows``, as their starts say now."""
        for w in windows:
            for e in c.entries:
                if not self._in(w, e.entered_at):
                    continue
                running = w.line(e.line)
                if sign > 0:
                    running.add(e, seats=True)
                else:
                    running.remove(e, seats=True)
                    if running.tally.units == 0:
                        del w.lines[e.line]
            if c.unit is not None and self._in(w, c.begin):
                centre = w.running_centre()
                if sign > 0:
                    centre.add(c.unit, seats=False)
                else:
                    centre.remove(c.unit, seats=False)
                for e in c.entries:
                    centre.seats.add(e, sign)

    # ------------------------------------------------------------------ inputs

    def add(self, entries: list[QueueEntry]) -> list[QueueEntry]:
        """Entries of finished calls, each call's all together (as the core gives them at the
        call's end); a call given again while it is kept replaces it whole. Returns the
        entries new to the window (not repeats, not too old, finished)."""
        batches: dict[CallKey, dict[int, QueueEntry]] = {}
        for e in entries:
            if e.outcome is None or e.left_at is None:
                continue  # an entry in progress is not a fact yet
            batches.setdefault(e.key, {})[e.entry_seq] = e
        new: list[QueueEntry] = []
        start = self.rolling.start
        both = self._windows()
        for key, batch in batches.items():
            old = self._calls.pop(key, None)
            seen: set[int] = set()
            if old is not None:
                self._count(old, -1, both)
                seen = {e.entry_seq for e in old.entries}
            new.extend(e for s, e in batch.items() if s not in seen and e.entered_at >= start)
            mine = sorted(batch.values(), key=lambda e: e.entry_seq)
            begin = min(e.entered_at for e in mine)
            unit = collapse_call(mine) if begin >= start else None
            kept = mine if unit is not None else [e for e in mine if e.entered_at >= start]
            if not kept:
                continue  # already out of the window
            arrival = next(self._arrivals)
            c = self._calls[key] = _Call(kept, unit, begin, arrival)
            # given before the first clock step (the seed): sealed exact_s after it ended
            at = self._now if self._now > -math.inf else max(e.left_at or 0.0 for e in kept)
            heapq.heappush(self._due, (at + self._exact_s, arrival, key))
            self._count(c, 1, both)
        return new

    # ------------------------------------------------------------------ the clock

    def advance(self, now: float, midnight: float) -> bool:
        """Drop the minutes that left the rolling window; start a new day at ``midnight``
        (local midnight of ``now``); seal the calls kept long enough. True when a figure
        may have changed."""
        self._now = now
        changed = False
        start = rolling_start(now)
        if start > self.rolling.start:
            changed = self._move_start(start)
        if midnight != self.today.start:
            self._new_day(midnight)
            changed = True
        while self._due and self._due[0][0] <= now:
            _, arrival, key = heapq.heappop(self._due)
            c = self._calls.get(key)
            if c is not None and c.arrival == arrival:
                del self._calls[key]
                self._seal(c)
        return changed

    def _move_start(self, start: float) -> bool:
        changed = False
        both = self._windows()
        # a kept call that began before the new start: its unit (and maybe entries) leave
        moving = [k for k, c in self._calls.items() if c.begin < start]
        for key in moving:
            self._count(self._calls[key], -1, both)
        old = self.rolling.start
        self.rolling.start = start
        for key in moving:
            c = self._calls[key]
            c.unit = None
            c.entries = [e for e in c.entries if e.entered_at >= start]
            if c.entries:
                self._count(c, 1, both)
            else:
                del self._calls[key]
            changed = True
        first = _minute(start)
        for m in sorted(m for m in self._minutes if m < first):
            minute = self._minutes.pop(m)
            at = m * MINUTE_S
            # counted where it was in before the move (the rolling start is moved already)
            for w in both:
                if at >= old and (w is self.rolling or at >= w.start):
                    self._merge(w, minute, -1)
            changed = True
        return changed

    def _merge(self, w: _Window, minute: _Minute, sign: int) -> None:
        for line, agg in minute.lines.items():
            running = w.line(line)
            running.merge(agg, sign)
            if sign < 0 and running.tally.units == 0:
                del w.lines[line]
        if minute.centre is not None:
            w.running_centre().merge(minute.centre, sign)
        if sign < 0:
            w.longest_stale = True

    def _new_day(self, midnight: float) -> None:
        self.today = _Window(self._t, midnight)
        for m, minute in self._minutes.items():
            if self._in(self.today, m * MINUTE_S):
                self._merge(self.today, minute, 1)
        for c in self._calls.values():
            self._count(c, 1, (self.today,))

    def _seal(self, c: _Call) -> None:
        """Fold a kept call into its minutes (the windows' sums do not change)."""
        both = self._windows()
        for e in c.entries:
            minute = self._minutes.setdefault(_minute(e.entered_at), _Minute())
            agg = minute.lines.get(e.line)
            if agg is None:
                agg = minute.lines[e.line] = _Agg(Tally.of(self._t))
            agg.tally.add(e)
            agg.add_seat(e)
            for w in both:
                if self._in(w, e.entered_at):
                    w.lines[e.line].seal(e)
        if c.unit is not None:
            minute = self._minutes.setdefault(_minute(c.begin), _Minute())
            if minute.centre is None:
                minute.centre = _Agg(Tally.of(self._t))
            minute.centre.tally.add(c.unit)
            for e in c.entries:
                minute.centre.add_seat(e)
            for w in both:
                if self._in(w, c.begin):
                    w.running_centre().seal(c.unit)

    # ------------------------------------------------------------------ outputs

    def lines(self) -> set[str]:
        """The lines with an entry in the rolling window."""
        return set(self.rolling.lines)

    def _refresh_longest(self, w: _Window) -> None:
        """The sealed minutes' longest waits again, after a minute left (once a minute:
        O(minutes x lines))."""
        for running in w.lines.values():
            running.sealed_longest = None
        if w.centre is not None:
            w.centre.sealed_longest = None
        for m, minute in self._minutes.items():
            if not self._in(w, m * MINUTE_S):
                continue
            for line, agg in minute.lines.items():
                mine = w.lines.get(line)
                if mine is not None:
                    mine.see_longest(agg)
            if minute.centre is not None:
                w.running_centre().see_longest(minute.centre)
        w.longest_stale = False

    def figures(self, w: _Window, line: str | None) -> Figures:
        """A line's figures in ``w`` (one unit per entry), or the centre's (``None``: one
        unit per call begun in ``w``)."""
        if w.longest_stale:
            self._refresh_longest(w)
        if line is None:
            return w.running_centre().figures(self._t)
        running = w.lines.get(line)
        if running is None:
            return Tally.of(self._t).figures(self._t)
        return running.figures(self._t)
