"""The live figures as running totals: today-so-far and rolling 24 h, per line and centre.

Recomputing the figures of every entry of the last 24 h each second costs O(entries): at
50 calls/s that is ≈4 M entries a day, rebuilt once a second. Here each entry is counted
once when it arrives and once when it leaves (:class:`~cti.kpis.tally.Tally`, exact sums),
so an update costs O(entries of that call) and reading the figures O(lines).

The window is kept as **per-minute buckets** (of ``entered_at``): the rolling window drops
whole minutes, so it covers the entries that entered at or after the start of the minute
24 h ago — between 24 h and 24 h 59 s back (:func:`rolling_start`). Today is the entries
that entered at or after local midnight (a minute boundary in every time zone in use);
it is reset when the day changes. Within those bounds the figures are **equal** to
:func:`cti.kpis.compute` over the same entries (per line, one unit per entry; the centre,
one unit per call, collapsed over the call's entries inside the window), which the tests
pin with hypothesis.

A call's centre unit depends on which of its entries are in the window, so a call whose
entries straddle the window's start is collapsed again when its first entries leave.
Entries still in progress are not facts (the core sends finished ones): ignored.

Pure: the time is passed in.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from dataclasses import dataclass, field

from cti.kpis.definitions import Figures, Thresholds, collapse_call
from cti.kpis.facts import OFFERED, QueueEntry
from cti.kpis.tally import SeatTally, Tally

__all__ = ["DAY_S", "MINUTE_S", "RunningWindows", "rolling_start"]

DAY_S = 86_400.0
MINUTE_S = 60.0

EntryKey = tuple[str, str, int]  # node, call id, entry seq
CallKey = tuple[str, str]


def rolling_start(now: float) -> float:
    """The rolling window's start: the start of the minute 24 h before ``now``."""
    return math.floor((now - DAY_S) / MINUTE_S) * MINUTE_S


def _minute(at: float) -> int:
    return math.floor(at / MINUTE_S)


class _Running:
    """A tally whose units come and go; the longest offered wait from a lazy-deletion heap.

    The heap holds the offered units' waits (negated) as bare floats, and a removed wait is
    counted in ``_gone`` until it reaches the top: a unit costs one float in the heap (24 B)
    instead of a (wait, token) tuple and a token in a live set (≈110 B), and the window holds
    a day of units (docs/performance.md, the 30-minute run)."""

    __slots__ = ("_dead", "_gone", "_heap", "seats", "tally")

    def __init__(self, thresholds: Thresholds) -> None:
        self.tally = Tally.of(thresholds)
        self.seats = SeatTally()
        self._heap: list[float] = []  # -wait of the offered units, and of removed ones
        self._gone: dict[float, int] = {}  # -wait -> removed units still in the heap
        self._dead = 0  # sum of _gone

    def add(self, u: QueueEntry, *, seats: bool) -> None:
        self.tally.add(u)
        if seats:
            self.seats.add(u)
        if u.outcome in OFFERED:
            heapq.heappush(self._heap, -u.wait_s)

    def remove(self, u: QueueEntry, *, seats: bool) -> None:
        """Take out a unit added before (the same object: its wait is the same float)."""
        self.tally.remove(u)
        if seats:
            self.seats.add(u, -1)
        if u.outcome not in OFFERED:
            return
        w = -u.wait_s
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

    def figures(self, thresholds: Thresholds, seats: SeatTally) -> Figures:
        heap, gone = self._heap, self._gone
        while heap and (n := gone.get(heap[0], 0)):
            top = heapq.heappop(heap)
            self._dead -= 1
            if n == 1:
                del gone[top]
            else:
                gone[top] = n - 1
        self.tally.longest_wait_s = -heap[0] if heap else None
        return self.tally.figures(thresholds, seats=seats.figures())


@dataclass(slots=True)
class _Window:
    """The running figures of the entries that entered at or after ``start``."""

    thresholds: Thresholds
    start: float
    lines: dict[str, _Running] = field(default_factory=dict)
    centre: _Running | None = None
    centre_seats: SeatTally = field(default_factory=SeatTally)  # raw entries, as compute()
    counted: set[EntryKey] = field(default_factory=set)  # the entries counted in ``lines``
    units: dict[CallKey, QueueEntry] = field(default_factory=dict)  # each call's centre unit

    def running_centre(self) -> _Running:
        if self.centre is None:
            self.centre = _Running(self.thresholds)
        return self.centre


class RunningWindows:
    """Today-so-far and rolling-24 h running figures over the entries given."""

    def __init__(self, thresholds: Thresholds) -> None:
        self._t = thresholds
        self._entries: dict[EntryKey, QueueEntry] = {}
        self._buckets: dict[int, set[EntryKey]] = {}  # minute -> entries that entered in it
        self._minutes: list[int] = []  # heap of the buckets' minutes, oldest first
        # call -> its entries' keys: a list, not a set (most calls have one entry; a set
        # costs 216 B, a day of calls is held)
        self._calls: dict[CallKey, list[EntryKey]] = defaultdict(list)
        self.rolling = _Window(thresholds, -math.inf)
        self.today = _Window(thresholds, -math.inf)

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------------ membership

    def _in(self, w: _Window, e: QueueEntry) -> bool:
        # today is inside the rolling window, as in a full recompute (a 25 h day included)
        return e.entered_at >= w.start and e.entered_at >= self.rolling.start

    def _count(self, w: _Window, key: EntryKey, e: QueueEntry) -> None:
        running = w.lines.get(e.line)
        if running is None:
            running = w.lines[e.line] = _Running(self._t)
        running.add(e, seats=True)
        w.centre_seats.add(e)
        w.counted.add(key)

    def _uncount(self, w: _Window, key: EntryKey, e: QueueEntry) -> None:
        if key not in w.counted:
            return
        w.counted.discard(key)
        running = w.lines[e.line]
        running.remove(e, seats=True)
        w.centre_seats.add(e, -1)
        if running.tally.units == 0:
            del w.lines[e.line]

    def _collapse(self, w: _Window, call: CallKey) -> None:
        old = w.units.pop(call, None)
        centre = w.running_centre()
        if old is not None:
            centre.remove(old, seats=False)
        mine = [e for k in self._calls.get(call, ()) if self._in(w, e := self._entries[k])]
        if mine:
            unit = collapse_call(mine)
            centre.add(unit, seats=False)
            w.units[call] = unit

    # ------------------------------------------------------------------ inputs

    def add(self, entries: list[QueueEntry]) -> list[QueueEntry]:
        """Entries of finished calls; a repeat (same node, call, seq) replaces. Returns the
        entries new to the window (not repeats, not too old, finished)."""
        calls: set[CallKey] = set()
        new: list[QueueEntry] = []
        for e in entries:
            if e.outcome is None or e.left_at is None:
                continue  # an entry in progress is not a fact yet
            key = (e.node, e.call_id, e.entry_seq)
            call = e.key  # one tuple for the call's keys here and in _calls / units
            old = self._entries.get(key)
            if old is not None:
                self._forget(key, old)
                calls.add(call)
            if e.entered_at < self.rolling.start:
                continue  # already out of the window
            if old is None:
                new.append(e)
            self._keep(key, e, call)
            calls.add(call)
        for call in calls:
            for w in (self.rolling, self.today):
                self._collapse(w, call)
        return new

    def _keep(self, key: EntryKey, e: QueueEntry, call: CallKey) -> None:
        self._entries[key] = e
        minute = _minute(e.entered_at)
        bucket = self._buckets.get(minute)
        if bucket is None:
            bucket = self._buckets[minute] = set()
            heapq.heappush(self._minutes, minute)
        bucket.add(key)
        self._calls[call].append(key)
        for w in (self.rolling, self.today):
            if self._in(w, e):
                self._count(w, key, e)

    def _forget(self, key: EntryKey, e: QueueEntry) -> None:
        del self._entries[key]
        bucket = self._buckets.get(_minute(e.entered_at))
        if bucket is not None:
            bucket.discard(key)
        mine = self._calls.get(e.key)
        if mine is not None:
            if key in mine:
                mine.remove(key)
            if not mine:
                del self._calls[e.key]
        for w in (self.rolling, self.today):
            self._uncount(w, key, e)

    # ------------------------------------------------------------------ the clock

    def advance(self, now: float, midnight: float) -> bool:
        """Drop the minutes that left the rolling window; start a new day at ``midnight``
        (local midnight of ``now``). True when a figure may have changed."""
        changed = False
        start = rolling_start(now)
        if start > self.rolling.start:
            self.rolling.start = start
            calls: set[CallKey] = set()
            first = _minute(start)
            while self._minutes and self._minutes[0] < first:
                minute = heapq.heappop(self._minutes)
                for key in self._buckets.pop(minute, set()):
                    e = self._entries[key]
                    self._forget(key, e)
                    calls.add(e.key)
                    changed = True
            for call in calls:
                for w in (self.rolling, self.today):
                    self._collapse(w, call)
        if midnight != self.today.start:
            self._new_day(midnight)
            changed = True
        return changed

    def _new_day(self, midnight: float) -> None:
        self.today = _Window(self._t, midnight)
        first = _minute(midnight)
        calls: set[CallKey] = set()
        for minute, bucket in self._buckets.items():
            if minute < first:
                continue
            for key in bucket:
                e = self._entries[key]
                if self._in(self.today, e):
                    self._count(self.today, key, e)
                    calls.add(e.key)
        for call in calls:
            self._collapse(self.today, call)

    # ------------------------------------------------------------------ outputs

    def lines(self) -> set[str]:
        """The lines with an entry in the rolling window."""
        return set(self.rolling.lines)

    def figures(self, w: _Window, line: str | None) -> Figures:
        """A line's figures in ``w`` (one unit per entry), or the centre's (``None``)."""
        if line is None:
            return w.running_centre().figures(self._t, w.centre_seats)
        running = w.lines.get(line)
        if running is None:
            return Tally.of(self._t).figures(self._t)
        return running.figures(self._t, running.seats)
