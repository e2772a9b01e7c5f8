"""The official KPIs of a 12345 centre, computed from queue-entry facts (docs/kpis.md).

Pure: facts in, frozen :class:`Figures` out. No clock is read (``now`` is passed in), no
float is summed in an order-dependent way (:func:`math.fsum`), and a ratio whose
denominator is 0 is ``None`` — never a division by zero, never NaN. The same facts in any
order give equal figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Literal, NamedTuple

from cti.kpis.callbacks import CallbackFigures
from cti.kpis.facts import OFFERED, Outcome, QueueEntry, Rating, SeatInterval
from cti.seats.model import Reason, SeatStatus

__all__ = [
    "Figures",
    "GroupBy",
    "SeatFigures",
    "Thresholds",
    "WithinN",
    "centre",
    "collapse_call",
    "compute",
    "group",
    "grouped_by_key",
    "window",
]

GroupBy = Literal["line", "department", "seat", "hour", "day"]

_OCCUPIED = frozenset({SeatStatus.RINGING, SeatStatus.TALKING, SeatStatus.WRAP_UP})


def _positive(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"{name} must be within 0..1, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """The configurable limits of the definitions (defaults: GB/T 33358-2016, city practice).

    All "within N s" thresholds are inclusive (wait ≤ N); a short abandon is strictly
    shorter (wait < ``short_abandon_s``); an alarm fires strictly past its limit.
    """

    answer_s: float = 15.0
    """N of N秒接通率 and of SL / 应答及时率."""
    also_n_s: tuple[float, ...] = (20.0,)
    """Further N reported beside ``answer_s`` (a city that uses 20 s)."""
    short_abandon_s: float = 5.0
    answer_rate_min: float = 0.95
    """Alarm: rolling 24 h 接通率 below this."""
    n_s_rate_min: float = 0.80
    """Alarm: today's ``answer_s`` 接通率 (÷ offered) below this."""
    longest_wait_max_s: float = 15.0
    """Alarm: a caller has been waiting longer than this."""
    callback_within_min: float = 30.0
    """N of "callbacks reached within N minutes" (inclusive; :mod:`cti.kpis.callbacks`)."""
    satisfied: tuple[str, ...] = ("非常满意", "满意", "基本满意")
    """Rating labels that count as satisfied (the numerator of 满意率)."""
    unsatisfied: tuple[str, ...] = ("不满意",)
    """The other valid labels; any label in neither tuple is an invalid rating."""

    def __post_init__(self) -> None:
        _positive("answer_s", self.answer_s)
        for n in self.also_n_s:
            _positive("also_n_s", n)
        if not math.isfinite(self.short_abandon_s) or self.short_abandon_s < 0:
            raise ValueError(f"short_abandon_s must be >= 0, got {self.short_abandon_s!r}")
        _positive("longest_wait_max_s", self.longest_wait_max_s)
        _positive("callback_within_min", self.callback_within_min)
        _fraction("answer_rate_min", self.answer_rate_min)
        _fraction("n_s_rate_min", self.n_s_rate_min)
        if both := set(self.satisfied) & set(self.unsatisfied):
            raise ValueError(f"labels both satisfied and unsatisfied: {sorted(both)}")

    @property
    def n_s(self) -> tuple[float, ...]:
        """Every N reported, ascending, without repeats."""
        return tuple(sorted({self.answer_s, *self.also_n_s}))


@dataclass(frozen=True, slots=True, kw_only=True)
class WithinN:
    """The answered-within-N figures for one N (inclusive: wait ≤ N)."""

    n_s: float
    answered: int
    answer_rate: float | None
    """N秒接通率 = answered within N ÷ offered (the Chinese convention)."""
    service_level: float | None
    """SL / 应答及时率 = answered within N ÷ answered (Asterisk, Wazo, the city rule)."""


class SeatFigures(NamedTuple):
    """One seat: calls from its answered entries, time from its status intervals.

    A named tuple, not a frozen dataclass as the rest: a year's report by hour or by line x
    day builds ≈0.5 M of them (every seat of every group), and a frozen dataclass's
    ``__init__`` (one ``object.__setattr__`` per field) cost 2.9 µs each against 0.3 µs
    here — 1.3 s of a 2 s budget (benchmarks/report.py). Immutable all the same; build it
    with keywords."""

    seat: str
    answered: int
    talk_s: float
    wrapup_s: float
    aht_s: float | None
    """(talk + wrap-up) ÷ answered, from the entries."""
    logged_in_s: float
    """Time in any status but logged out, from the intervals."""
    occupied_s: float
    """Time ringing, talking or in wrap-up, from the intervals."""
    occupancy: float | None
    """occupied ÷ logged in."""
    not_ready_s: tuple[tuple[str, float], ...]
    """Not-ready time by reason, sorted by reason (``unspecified`` for a row without one)."""
    rona: int
    """Ring-no-answer count: not-ready intervals with reason ``rona``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    """Every KPI of a set of queue entries (or of calls, for the centre)."""

    thresholds: Thresholds
    units: int
    """Entries counted (calls, for :func:`centre`), finished or not."""
    in_progress: int
    offered: int
    """人工请求量: answered + abandoned + callback_requested + voicemail + fallback."""
    answered: int
    abandoned: int
    short_abandoned: int
    """Abandoned with wait < short_abandon_s."""
    callback_requested: int
    voicemail: int
    fallback: int
    transferred_out: int
    """Outcome ``transferred_out``: left before an answer, sent elsewhere. Not offered."""
    after_hours: int
    blacklisted: int
    ivr_only: int
    answer_rate: float | None
    """接通率 = answered ÷ offered."""
    within: tuple[WithinN, ...]
    """One per N of :attr:`Thresholds.n_s`, ascending."""
    abandon_rate: float | None
    """放弃率 = abandoned ÷ offered."""
    abandon_rate_excluding_short: float | None
    """(abandoned - short) ÷ (offered - short): short abandons leave both sides."""
    asa_s: float | None
    """Mean wait of the answered (a true mean)."""
    longest_wait_s: float | None
    """Longest wait of a finished offered entry (answered or not)."""
    longest_waiting_s: float | None
    """Longest wait so far of an entry still waiting (needs ``now``)."""
    talk_s: float
    wrapup_s: float
    aht_s: float | None
    """(talk + wrap-up) ÷ answered."""
    transfers_out: int
    """Units sent on: ``transferred_to`` set (a seat transferred it; an overflow) or the
    outcome ``transferred_out``. The calculator cannot tell a department line of the centre
    from an outside number, so both count; the centre counts a call sent on once."""
    rona: int
    """Ring-no-answer offers (sum of ``offers``)."""
    ratings: int
    """Valid ratings of answered units."""
    ratings_satisfied: int
    ratings_invalid: int
    """Ratings of answered units whose label is on neither list."""
    satisfaction_rate: float | None
    """满意率 = (非常满意 + 满意 + 基本满意) ÷ valid ratings."""
    rating_coverage: float | None
    """Answered units with a valid rating ÷ answered."""
    seats: tuple[SeatFigures, ...] = field(default=())
    """Per seat, sorted by seat id."""
    callbacks: CallbackFigures | None = None
    """The callback list's figures of the window (:func:`cti.kpis.callbacks.with_callbacks`:
    ``cti report``, the stats API); ``None`` where they are not computed (the live figures)."""

    def within_n(self, n_s: float) -> WithinN:
        """The figures for one N; ``KeyError`` for an N the thresholds do not report."""
        for w in self.within:
            if w.n_s == n_s:
                return w
        raise KeyError(n_s)

    @property
    def n_s_answer_rate(self) -> float | None:
        """N秒接通率 for ``thresholds.answer_s`` (15秒接通率 by default)."""
        return self.within_n(self.thresholds.answer_s).answer_rate

    @property
    def service_level(self) -> float | None:
        """应答及时率 / SL for ``thresholds.answer_s``."""
        return self.within_n(self.thresholds.answer_s).service_level

    @property
    def ivr_counted_apart(self) -> int:
        """IVR-only units (after hours, blacklisted, self-service): never offered."""
        return self.after_hours + self.blacklisted + self.ivr_only


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def _mean(values: Sequence[float]) -> float | None:
    return None if not values else math.fsum(values) / len(values)


def _order(e: QueueEntry) -> tuple[int, float, float]:
    # entry_seq orders a call's entries; the times only break ties of bad data, so the
    # result never depends on the order the rows came in
    return (e.entry_seq, e.entered_at, e.wait_s)


def collapse_call(entries: Sequence[QueueEntry]) -> QueueEntry:
    """One call's entries as the single unit the centre counts (deduplication by call).

    The rule, for the entries of one ``(node, call_id)`` in ``entry_seq`` order:

    - **outcome**: ``answered`` if any entry was answered, decided by the *first* answered
      entry (the citizen reached a person; a later department entry that is abandoned
      does not undo that); otherwise ``None`` (in progress) if an entry is still open;
      otherwise the outcome of the last *offered* entry (overflowed, then abandoned →
      abandoned); otherwise the outcome of the last entry (all IVR-only or sent out).
    - **wait**: the sum of ``wait_s`` over the entries that asked for a person (offered,
      ``transferred_out`` or open) up to and including the deciding one — an overflow's
      waits add up; time spent talking before a transfer is not wait.
    - **ring, talk, wrap-up, offers**: summed over all entries: what the centre spent.
    - **transferred_to**: the first one set. Line, department, origin, priority,
      ``entered_at``: from the first entry; seat and ``connected_at`` from the deciding one.

    A call with one entry collapses to an equal entry, so per-line and centre figures
    agree wherever no call has two entries.
    """
    if not entries:
        raise ValueError("a call has at least one entry")
    if len({e.key for e in entries}) != 1:
        raise ValueError("entries of more than one call")
    ordered = sorted(entries, key=_order)
    if len(ordered) == 1:
        return ordered[0]
    first = ordered[0]
    answered = [e for e in ordered if e.outcome is Outcome.ANSWERED]
    open_ = [e for e in ordered if e.outcome is None]
    offered = [e for e in ordered if e.offered]
    deciding: QueueEntry
    outcome: Outcome | None
    if answered:
        deciding, outcome = answered[0], Outcome.ANSWERED
    elif open_:
        deciding, outcome = open_[-1], None
    elif offered:
        deciding, outcome = offered[-1], offered[-1].outcome
    else:
        deciding, outcome = ordered[-1], ordered[-1].outcome
    upto = _order(deciding)
    chain = [
        e
        for e in ordered
        if _order(e) <= upto
        and (e.offered or e.outcome is None or e.outcome is Outcome.TRANSFERRED_OUT)
    ]
    lefts = [e.left_at for e in ordered if e.left_at is not None]
    offered_at = [e.first_offered_at for e in ordered if e.first_offered_at is not None]
    transferred = [e.transferred_to for e in ordered if e.transferred_to is not None]
    return QueueEntry(
        call_id=first.call_id,
        node=first.node,
        entry_seq=first.entry_seq,
        line=first.line,
        department=first.department,
        origin=first.origin,
        priority=first.priority,
        entered_at=first.entered_at,
        first_offered_at=min(offered_at) if offered_at else None,
        connected_at=deciding.connected_at if outcome is Outcome.ANSWERED else None,
        left_at=None if outcome is None else max(lefts),
        outcome=outcome,
        seat=deciding.seat if outcome is Outcome.ANSWERED else None,
        wait_s=math.fsum(e.wait_s for e in chain) if chain else deciding.wait_s,
        ring_s=math.fsum(e.ring_s for e in ordered),
        talk_s=math.fsum(e.talk_s for e in ordered),
        wrapup_s=math.fsum(e.wrapup_s for e in ordered),
        offers=sum(e.offers for e in ordered),
        transferred_to=transferred[0] if transferred else None,
    )


def _by_call(entries: Iterable[QueueEntry]) -> dict[tuple[str, str], list[QueueEntry]]:
    calls: dict[tuple[str, str], list[QueueEntry]] = defaultdict(list)
    for e in entries:
        calls[e.key].append(e)
    return calls


def _seat_figures(
    entries: Sequence[QueueEntry], intervals: Sequence[SeatInterval], now: float | None
) -> tuple[SeatFigures, ...]:
    answered: dict[str, list[QueueEntry]] = defaultdict(list)
    for e in entries:
        if e.outcome is Outcome.ANSWERED and e.seat is not None:
            answered[e.seat].append(e)
    times: dict[str, list[SeatInterval]] = defaultdict(list)
    for i in intervals:
        times[i.seat].append(i)
    out = []
    for seat in sorted(answered.keys() | times.keys()):
        mine = answered.get(seat, [])
        spans = times.get(seat, [])
        talk = math.fsum(e.talk_s for e in mine)
        wrapup = math.fsum(e.wrapup_s for e in mine)
        logged_in = math.fsum(
            i.duration(now) for i in spans if i.status is not SeatStatus.LOGGED_OUT
        )
        occupied = math.fsum(i.duration(now) for i in spans if i.status in _OCCUPIED)
        not_ready: dict[str, list[float]] = defaultdict(list)
        for i in spans:
            if i.status is SeatStatus.NOT_READY:
                not_ready[str(i.reason) if i.reason else "unspecified"].append(i.duration(now))
        out.append(
            SeatFigures(
                seat=seat,
                answered=len(mine),
                talk_s=talk,
                wrapup_s=wrapup,
                aht_s=_ratio(math.fsum((talk, wrapup)), len(mine)),
                logged_in_s=logged_in,
                occupied_s=occupied,
                occupancy=_ratio(occupied, logged_in),
                not_ready_s=tuple((r, math.fsum(d)) for r, d in sorted(not_ready.items())),
                rona=sum(
                    1 for i in spans if i.status is SeatStatus.NOT_READY and i.reason is Reason.RONA
                ),
            )
        )
    return tuple(out)


def _one_rating_per_call(ratings: Iterable[Rating]) -> dict[tuple[str, str], Rating]:
    # One survey per call is the daemon's rule; should two rows exist, the latest counts
    # (label breaks a tie), whatever order they came in.
    chosen: dict[tuple[str, str], Rating] = {}
    for r in ratings:
        have = chosen.get(r.key)
        if have is None or (r.at, r.label) > (have.at, have.label):
            chosen[r.key] = r
    return chosen


def compute(
    entries: Iterable[QueueEntry],
    *,
    thresholds: Thresholds,
    ratings: Iterable[Rating] = (),
    seat_intervals: Iterable[SeatInterval] = (),
    now: float | None = None,
    per_call: bool = False,
) -> Figures:
    """Every KPI of ``entries``, one unit per entry (``per_call=False``) or per call.

    With ``per_call`` each call's entries are first collapsed by :func:`collapse_call`
    (that is :func:`centre`). A rating counts for the *last* answered unit of its call
    among the units given (the survey follows the last agent); ratings of calls with no
    answered unit here are ignored. Entries still open count only in ``units``,
    ``in_progress`` and — when ``now`` is given and no seat has answered — in
    ``longest_waiting_s`` with ``max(wait_s, now - entered_at)``. Seat figures come from
    the raw entries (each seat's own answers) and ``seat_intervals``; an open interval
    counts up to ``now``.
    """
    raw = list(entries)
    units = [collapse_call(c) for c in _by_call(raw).values()] if per_call else raw
    t = thresholds
    count: dict[Outcome | None, int] = defaultdict(int)
    for u in units:
        count[u.outcome] += 1
    answered = [u for u in units if u.outcome is Outcome.ANSWERED]
    n_answered = len(answered)
    offered = sum(count[o] for o in OFFERED)
    short = sum(1 for u in units if u.outcome is Outcome.ABANDONED and u.wait_s < t.short_abandon_s)
    waits = [u.wait_s for u in answered]
    within_counts = [(n, sum(1 for w in waits if w <= n)) for n in t.n_s]  # inclusive
    within = tuple(
        WithinN(
            n_s=n,
            answered=k,
            answer_rate=_ratio(k, offered),
            service_level=_ratio(k, n_answered),
        )
        for n, k in within_counts
    )
    offered_waits = [u.wait_s for u in units if u.offered]
    waiting = [
        max(u.wait_s, now - u.entered_at)
        for u in units
        if now is not None and u.outcome is None and u.connected_at is None
    ]
    talk = math.fsum(u.talk_s for u in answered)
    wrapup = math.fsum(u.wrapup_s for u in answered)

    last_answered: dict[tuple[str, str], QueueEntry] = {}
    for u in answered:
        have = last_answered.get(u.key)
        if have is None or _order(u) > _order(have):
            last_answered[u.key] = u
    valid = invalid = satisfied = 0
    for key, r in _one_rating_per_call(ratings).items():
        if key not in last_answered:
            continue
        if r.label in t.satisfied:
            valid, satisfied = valid + 1, satisfied + 1
        elif r.label in t.unsatisfied:
            valid += 1
        else:
            invalid += 1

    return Figures(
        thresholds=t,
        units=len(units),
        in_progress=count[None],
        offered=offered,
        answered=n_answered,
        abandoned=count[Outcome.ABANDONED],
        short_abandoned=short,
        callback_requested=count[Outcome.CALLBACK_REQUESTED],
        voicemail=count[Outcome.VOICEMAIL],
        fallback=count[Outcome.FALLBACK],
        transferred_out=count[Outcome.TRANSFERRED_OUT],
        after_hours=count[Outcome.AFTER_HOURS],
        blacklisted=count[Outcome.BLACKLISTED],
        ivr_only=count[Outcome.IVR_ONLY],
        answer_rate=_ratio(n_answered, offered),
        within=within,
        abandon_rate=_ratio(count[Outcome.ABANDONED], offered),
        abandon_rate_excluding_short=_ratio(count[Outcome.ABANDONED] - short, offered - short),
        asa_s=_mean(waits),
        longest_wait_s=max(offered_waits, default=None),
        longest_waiting_s=max(waiting, default=None),
        talk_s=talk,
        wrapup_s=wrapup,
        aht_s=_ratio(math.fsum((talk, wrapup)), n_answered),
        transfers_out=sum(
            1 for u in units if u.outcome is Outcome.TRANSFERRED_OUT or u.transferred_to is not None
        ),
        rona=sum(u.offers for u in units),
        ratings=valid,
        ratings_satisfied=satisfied,
        ratings_invalid=invalid,
        satisfaction_rate=_ratio(satisfied, valid),
        rating_coverage=_ratio(valid, n_answered),
        seats=_seat_figures(raw, list(seat_intervals), now),
    )


def centre(
    entries: Iterable[QueueEntry],
    *,
    thresholds: Thresholds,
    ratings: Iterable[Rating] = (),
    seat_intervals: Iterable[SeatInterval] = (),
    now: float | None = None,
) -> Figures:
    """The whole centre: :func:`compute` with one unit per call (see :func:`collapse_call`).

    A call transferred from 12345 to a department line has two entries; the centre counts
    it once as offered (and once as answered if either entry was answered), while each
    line still counts its own entry.
    """
    return compute(
        entries,
        thresholds=thresholds,
        ratings=ratings,
        seat_intervals=seat_intervals,
        now=now,
        per_call=True,
    )


def window(entries: Iterable[QueueEntry], start: float, end: float) -> list[QueueEntry]:
    """The entries that entered the line in ``[start, end)`` (a day, the last 24 h, …)."""
    return [e for e in entries if start <= e.entered_at < end]


def _key_function(by: GroupBy, tz: tzinfo | None) -> Callable[[QueueEntry], str | None]:
    if by == "line":
        return lambda e: e.line
    if by == "department":
        return lambda e: e.department
    if by == "seat":
        return lambda e: e.seat
    if tz is None:
        raise ValueError(f"grouping by {by} needs a time zone (tz=)")
    fmt = "%Y-%m-%d %H:00" if by == "hour" else "%Y-%m-%d"
    return lambda e: datetime.fromtimestamp(e.entered_at, tz).strftime(fmt)


def _ratings_by_group(
    parts: Mapping[str | None, Sequence[QueueEntry]],
    ratings: Iterable[Rating],
    key_of: Callable[[QueueEntry], str | None],
) -> dict[str | None, list[Rating]]:
    # A rating belongs to its call's last answered entry among *all* the entries, so a
    # call answered on two lines is rated on one of them only: the groups add up.
    owner: dict[tuple[str, str], QueueEntry] = {}
    for part in parts.values():
        for e in part:
            have = owner.get(e.key)
            if e.outcome is Outcome.ANSWERED and (have is None or _order(e) > _order(have)):
                owner[e.key] = e
    rated: dict[str | None, list[Rating]] = defaultdict(list)
    for r in ratings:
        rated_entry = owner.get(r.key)
        if rated_entry is not None:
            rated[key_of(rated_entry)].append(r)
    return rated


def group(
    entries: Iterable[QueueEntry],
    *,
    by: GroupBy,
    thresholds: Thresholds,
    tz: tzinfo | None = None,
    ratings: Iterable[Rating] = (),
    seat_intervals: Iterable[SeatInterval] = (),
    now: float | None = None,
    per_call: bool = False,
) -> dict[str | None, Figures]:
    """Figures per line, department, seat, hour or day (of ``entered_at`` in ``tz``).

    Each entry falls in exactly one group, so the groups' counts add up to the
    per-entry figures of all of them; with ``per_call`` a call's entries are collapsed
    *within* each group. A rating goes to the group of its call's last answered entry
    (the survey follows the last agent). The key is ``None`` for an entry without a department (by
    department) or not answered by a seat (by seat). Seat intervals go to the seat
    groups only (``by="seat"``): an interval belongs to a seat, not to a line or an hour.
    """
    key_of = _key_function(by, tz)
    parts: dict[str | None, list[QueueEntry]] = defaultdict(list)
    for e in entries:
        parts[key_of(e)].append(e)
    rated = _ratings_by_group(parts, ratings, key_of)
    spans: dict[str, list[SeatInterval]] = defaultdict(list)
    if by == "seat":
        for i in seat_intervals:
            spans[i.seat].append(i)
        for seat in spans:
            parts.setdefault(seat, [])
    out: dict[str | None, Figures] = {}
    for key, part in parts.items():
        out[key] = compute(
            part,
            thresholds=thresholds,
            ratings=rated.get(key, ()),
            seat_intervals=spans.get(key, ()) if key is not None else (),
            now=now,
            per_call=per_call,
        )
    return out


def grouped_by_key(figures: Mapping[str | None, Figures]) -> list[tuple[str | None, Figures]]:
    """The groups sorted by key (``None`` first), for a stable report."""
    return sorted(figures.items(), key=lambda kv: (kv[0] is not None, kv[0] or ""))
