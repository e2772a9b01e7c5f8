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
from itertools import count

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
    """A tally whose units come and go; the longest offered wait from a lazy-deletion heap."""

    __slots__ = ("_heap", "_live", "seats", "tally")

    def __init__(self, thresholds: Thresholds) -> None:
        self.tally = Tally.of(thresholds)
        self.seats = SeatTally()
        self._heap: list[tuple[float, int]] = []  # (-wait, token) of offered units
        self._live: set[int] = set()

    def add(self, u: QueueEntry, token: int, *, seats: bool) -> None:
        self.tally.add(u)
        if seats:
            self.seats.add(u)
        if u.outcome in OFFERED:
            heapq.heappush(self._heap, (-u.wait_s, token))
            self._live.add(token)

    def remove(self, u: QueueEntry, token: int, *, seats: bool) -> None:
        self.tally.remove(u)
        if seats:
            self.seats.add(u, -1)
        self._live.discard(token)
        if len(self._heap) > 2 * len(self._live) + 64:  # keep the heap's garbage bounded
            self._heap = [h for h in self._heap if h[1] in self._live]
            heapq.heapify(self._heap)

    def figures(self, thresholds: Thresholds, seats: SeatTally) -> Figures:
        while self._heap and self._heap[0][1] not in self._live:
            heapq.heappop(self._heap)
        self.tally.longest_wait_s = -self._heap[0][0] if self._heap else None
        return self.tally.figures(thresholds, seats=seats.figures())


@dataclass(slots=True)
class _Window:
    """The running figures of the entries that entered at or after ``start``."""

    thresholds: Thresholds
    start: float
    lines: dict[str, _Running] = field(default_factory=dict)
    centre: _Running | None = None
    centre_seats: SeatTally = field(default_factory=SeatTally)  # raw entries, as compute()
    entry_tokens: dict[EntryKey, int] = field(default_factory=dict)
    units: dict[CallKey, tuple[QueueEntry, int]] = field(default_factory=dict)

    def running_centre(self) -> _Running:
        if self.centre is None:
            self.centre = _Running(self.thresholds)
        return self.centre


class RunningWindows:
    """Today-so-far and rolling-24 h running figures over the entries given."""

    def __init__(self, thresholds: Thresholds) -> None:
        self._t = thresholds
        self._tokens = count()
        self._entries: dict[EntryKey, QueueEntry] = {}
        self._buckets: dict[int, set[EntryKey]] = {}  # minute -> entries that entered in it
        self._minutes: list[int] = []  # heap of the buckets' minutes, oldest first
        self._calls: dict[CallKey, set[EntryKey]] = defaultdict(set)
        self.rolling = _Window(thresholds, -math.inf)
        self.today = _Window(thresholds, -math.inf)

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------------ membership

    def _in(self, w: _Window, e: QueueEntry) -> bool:
        # today is inside the rolling window, as in a full recompute (a 25 h day included)
        return e.entered_at >= w.start and e.entered_at >= self.rolling.start

    def _count(self, w: _Window, key: EntryKey, e: QueueEntry) -> None:
        token = next(self._tokens)
        running = w.lines.get(e.line)
        if running is None:
            running = w.lines[e.line] = _Running(self._t)
        running.add(e, token, seats=True)
        w.centre_seats.add(e)
        w.entry_tokens[key] = token

    def _uncount(self, w: _Window, key: EntryKey, e: QueueEntry) -> None:
        token = w.entry_tokens.pop(key, None)
        if token is None:
            return
        running = w.lines[e.line]
        running.remove(e, token, seats=True)
        w.centre_seats.add(e, -1)
        if running.tally.units == 0:
            del w.lines[e.line]

    def _collapse(self, w: _Window, call: CallKey) -> None:
        old = w.units.pop(call, None)
        centre = w.running_centre()
        if old is not None:
            centre.remove(old[0], old[1], seats=False)
        mine = [e for k in self._calls.get(call, ()) if self._in(w, e := self._entries[k])]
        if mine:
            unit = collapse_call(mine)
            token = next(self._tokens)
            centre.add(unit, token, seats=False)
            w.units[call] = (unit, token)

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
            old = self._entries.get(key)
            if old is not None:
                self._forget(key, old)
                calls.add(e.key)
            if e.entered_at < self.rolling.start:
                continue  # already out of the window
            if old is None:
                new.append(e)
            self._keep(key, e)
            calls.add(e.key)
        for call in calls:
            for w in (self.rolling, self.today):
                self._collapse(w, call)
        return new

    def _keep(self, key: EntryKey, e: QueueEntry) -> None:
        self._entries[key] = e
        minute = _minute(e.entered_at)
        bucket = self._buckets.get(minute)
        if bucket is None:
            bucket = self._buckets[minute] = set()
            heapq.heappush(self._minutes, minute)
        bucket.add(key)
        self._calls[e.key].add(key)
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
            mine.discard(key)
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
