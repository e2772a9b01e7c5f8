"""Additive KPI tallies: the figures of :func:`cti.kpis.compute` from running sums.

Every figure of :class:`~cti.kpis.Figures` (seat time apart) is a ratio of counts and
sums over units, or a maximum. A :class:`Tally` keeps those counts and sums, so it can
grow by one unit, shrink by one, or take in another tally (a group computed by SQL, a
minute of the live window) and still give the calculator's figures:

- counts are ints, exact;
- float sums are kept **exactly** as integers in units of 2**-1074 (every finite float is
  an integer multiple of that), so adding and removing in any order loses nothing, and
  ``total / 2**1074`` (Python's int division is correctly rounded) is the same float as
  :func:`math.fsum` of the values — equal figures, not just close ones;
- the longest wait is a maximum, which cannot be un-added: a tally that removes units
  has its caller set :attr:`Tally.longest_wait_s` (the live aggregator keeps a heap).

Pure: no clock, no I/O. The calculator stays the reference; tests compare the two.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from cti.kpis.definitions import Figures, SeatFigures, Thresholds, WithinN
from cti.kpis.facts import OFFERED, Outcome, QueueEntry

__all__ = ["EXACT_SCALE_BITS", "SeatTally", "Tally", "exact", "inexact"]

EXACT_SCALE_BITS = 1074
"""2**-1074 is the smallest float step: every finite float is an int multiple of it."""


def exact(x: float) -> int:
    """``x`` as an exact integer count of 2**-1074 (``x`` finite)."""
    num, den = x.as_integer_ratio()  # den is a power of two, at most 2**1074
    return num << (EXACT_SCALE_BITS - den.bit_length() + 1)


def inexact(n: int) -> float:
    """The float nearest to ``n`` * 2**-1074: what :func:`math.fsum` gives for the values."""
    return n / (1 << EXACT_SCALE_BITS)


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


@dataclass(slots=True)
class Tally:
    """Counts and exact sums of a set of finished units (entries, or calls collapsed)."""

    n_s: tuple[float, ...]
    """The N of the within-N counts (:attr:`Thresholds.n_s`)."""
    short_abandon_s: float
    units: int = 0
    outcomes: dict[Outcome, int] = field(default_factory=dict)
    short_abandoned: int = 0
    within: list[int] = field(default_factory=list)
    answered_wait: int = 0  # exact sums (see the module doc)
    talk: int = 0
    wrapup: int = 0
    transfers_out: int = 0
    rona: int = 0
    ratings: int = 0
    ratings_satisfied: int = 0
    ratings_invalid: int = 0
    longest_wait_s: float | None = None
    """Longest wait of an offered unit; kept by :meth:`add`, not by :meth:`remove`."""

    @classmethod
    def of(cls, thresholds: Thresholds) -> Tally:
        return cls(
            n_s=thresholds.n_s,
            short_abandon_s=thresholds.short_abandon_s,
            within=[0] * len(thresholds.n_s),
        )

    def _count(self, u: QueueEntry, sign: int) -> None:
        if u.outcome is None:
            raise ValueError("a tally counts finished units only")
        self.units += sign
        self.outcomes[u.outcome] = self.outcomes.get(u.outcome, 0) + sign
        if u.outcome is Outcome.ANSWERED:
            for i, n in enumerate(self.n_s):
                if u.wait_s <= n:  # inclusive, as compute()
                    self.within[i] += sign
            self.answered_wait += sign * exact(u.wait_s)
            self.talk += sign * exact(u.talk_s)
            self.wrapup += sign * exact(u.wrapup_s)
        elif u.outcome is Outcome.ABANDONED and u.wait_s < self.short_abandon_s:
            self.short_abandoned += sign
        if u.outcome is Outcome.TRANSFERRED_OUT or u.transferred_to is not None:
            self.transfers_out += sign
        self.rona += sign * u.offers

    def add(self, u: QueueEntry) -> None:
        self._count(u, 1)
        if u.outcome in OFFERED and (self.longest_wait_s is None or u.wait_s > self.longest_wait_s):
            self.longest_wait_s = u.wait_s

    def remove(self, u: QueueEntry) -> None:
        """Take out a unit added before (the longest wait is then the caller's to set)."""
        self._count(u, -1)

    def merge(self, other: Tally, sign: int = 1) -> None:
        """Add every unit of ``other`` (same thresholds); ``sign=-1`` takes them out again
        (the longest wait is then the caller's to set, as with :meth:`remove`)."""
        if other.n_s != self.n_s or other.short_abandon_s != self.short_abandon_s:
            raise ValueError("tallies of different thresholds")
        self.units += sign * other.units
        for o, k in other.outcomes.items():
            self.outcomes[o] = self.outcomes.get(o, 0) + sign * k
        self.short_abandoned += sign * other.short_abandoned
        self.within = [a + sign * b for a, b in zip(self.within, other.within, strict=True)]
        self.answered_wait += sign * other.answered_wait
        self.talk += sign * other.talk
        self.wrapup += sign * other.wrapup
        self.transfers_out += sign * other.transfers_out
        self.rona += sign * other.rona
        self.ratings += sign * other.ratings
        self.ratings_satisfied += sign * other.ratings_satisfied
        self.ratings_invalid += sign * other.ratings_invalid
        if (
            sign > 0
            and other.longest_wait_s is not None
            and (self.longest_wait_s is None or other.longest_wait_s > self.longest_wait_s)
        ):
            self.longest_wait_s = other.longest_wait_s

    def rate(self, label: str, thresholds: Thresholds) -> None:
        """One rating of an answered unit of this tally (compute()'s rule for labels)."""
        if label in thresholds.satisfied:
            self.ratings += 1
            self.ratings_satisfied += 1
        elif label in thresholds.unsatisfied:
            self.ratings += 1
        else:
            self.ratings_invalid += 1

    def figures(self, thresholds: Thresholds, *, seats: tuple[SeatFigures, ...] = ()) -> Figures:
        """The figures :func:`cti.kpis.compute` gives for the same units (``now=None``)."""
        c = self.outcomes.get
        answered = c(Outcome.ANSWERED, 0)
        abandoned = c(Outcome.ABANDONED, 0)
        offered = sum(c(o, 0) for o in OFFERED)
        talk, wrapup = inexact(self.talk), inexact(self.wrapup)
        short = self.short_abandoned
        return Figures(
            thresholds=thresholds,
            units=self.units,
            in_progress=0,
            offered=offered,
            answered=answered,
            abandoned=abandoned,
            short_abandoned=short,
            callback_requested=c(Outcome.CALLBACK_REQUESTED, 0),
            voicemail=c(Outcome.VOICEMAIL, 0),
            fallback=c(Outcome.FALLBACK, 0),
            transferred_out=c(Outcome.TRANSFERRED_OUT, 0),
            after_hours=c(Outcome.AFTER_HOURS, 0),
            blacklisted=c(Outcome.BLACKLISTED, 0),
            ivr_only=c(Outcome.IVR_ONLY, 0),
            answer_rate=_ratio(answered, offered),
            within=tuple(
                WithinN(
                    n_s=n,
                    answered=k,
                    answer_rate=_ratio(k, offered),
                    service_level=_ratio(k, answered),
                )
                for n, k in zip(self.n_s, self.within, strict=True)
            ),
            abandon_rate=_ratio(abandoned, offered),
            abandon_rate_excluding_short=_ratio(abandoned - short, offered - short),
            asa_s=None if answered == 0 else inexact(self.answered_wait) / answered,
            longest_wait_s=self.longest_wait_s if offered else None,
            longest_waiting_s=None,
            talk_s=talk,
            wrapup_s=wrapup,
            aht_s=_ratio(math.fsum((talk, wrapup)), answered),
            transfers_out=self.transfers_out,
            rona=self.rona,
            ratings=self.ratings,
            ratings_satisfied=self.ratings_satisfied,
            ratings_invalid=self.ratings_invalid,
            satisfaction_rate=_ratio(self.ratings_satisfied, self.ratings),
            rating_coverage=_ratio(self.ratings, answered),
            seats=seats,
        )


class SeatTally:
    """Per seat, its answered units' count, talk and wrap-up (exact): the entry side of
    :class:`~cti.kpis.SeatFigures`; seat time (intervals) is added by the caller.

    A tally read back from stored floats (:meth:`of_floats`: a rolled day's) keeps them as
    they are until something is added to it or its exact sums are asked for: a report
    keyed by day or hour reads each such tally once and turns it into figures, and the
    floats are those figures (``inexact(exact(x)) == x``), so a year's ≈1 M stored sums are
    not made exact for nothing.
    """

    __slots__ = ("_exact", "_floats")

    def __init__(self, seats: dict[str, list[int]] | None = None) -> None:
        self._exact: dict[str, list[int]] = {} if seats is None else seats
        self._floats: dict[str, list[float]] | None = None

    @classmethod
    def of_floats(cls, sums: dict[str, list[float]]) -> SeatTally:
        """A tally of per-seat [answered, talk, wrap-up] sums stored as floats (``answered``
        a whole number)."""
        out = cls()
        out._floats = sums
        return out

    @property
    def seats(self) -> dict[str, list[int]]:
        """seat -> [answered, talk, wrap-up], the sums exact (see the module doc)."""
        if self._floats is not None:
            self._exact = {
                k: [int(n), exact(ta), exact(wr)] for k, (n, ta, wr) in self._floats.items()
            }
            self._floats = None
        return self._exact

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeatTally):
            return NotImplemented
        return self.seats == other.seats

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass's

    def __repr__(self) -> str:
        return f"SeatTally(seats={self.seats!r})"

    def add(self, u: QueueEntry, sign: int = 1) -> None:
        if u.outcome is not Outcome.ANSWERED or u.seat is None:
            return
        have = self.seats.setdefault(u.seat, [0, 0, 0])
        have[0] += sign
        have[1] += sign * exact(u.talk_s)
        have[2] += sign * exact(u.wrapup_s)
        if have[0] == 0:
            del self.seats[u.seat]  # compute() lists only seats that answered

    def add_sums(self, seat: str, answered: int, talk: int, wrapup: int) -> None:
        have = self.seats.setdefault(seat, [0, 0, 0])
        have[0] += answered
        have[1] += talk
        have[2] += wrapup

    def figures(self) -> tuple[SeatFigures, ...]:
        """compute()'s seat figures when no seat interval is given."""
        if self._floats is not None:
            sums: Iterable[tuple[str, int, float, float]] = (
                (seat, int(n), ta, wr) for seat, (n, ta, wr) in sorted(self._floats.items())
            )
        else:
            sums = (
                (seat, n, inexact(ta), inexact(wr))
                for seat, (n, ta, wr) in sorted(self._exact.items())
            )
        # positional, in the field order (SeatFigures' own, checked against compute()'s
        # keyword-built figures by tests/kpis): a year's report by hour builds ≈0.5 M of
        # these, and _make costs 0.2 µs against 1.4 µs with keywords
        make = SeatFigures._make
        return tuple(
            make(
                (seat, n, talk, wrapup, _ratio(math.fsum((talk, wrapup)), n), 0.0, 0.0, None, (), 0)
            )
            for seat, n, talk, wrapup in sums
        )
