"""The KPI report over whole days from a per-day roll-up, equal to the raw report.

A year's raw report (:func:`cti.adapters.db.kpi_sql.report_sql`) reads ≈1 M entries and
≈3.4 M seat events: tens of seconds. Its intermediate result, a
:class:`~cti.adapters.db.kpi_sql.Piece` (tallies of exact counts and sums per group, the
centre's tally, the seat time), is additive over windows laid end to end **when no call
crosses the cut between them**. So each closed local day of ``kpis.timezone`` is computed
once by the raw path (keys line x department x seat x hour, projected to each grain the
report offers: none, line, department, seat, hour; ``day`` is the day itself) and kept in
``kpi_rollup`` with its two **cut checks**; a report is then the days' pieces merged, with
the raw path for what is not a rolled day (the window's partial edges, today, a day not
rolled or dirty), and the raw path across any cut that is not clean.

A cut at midnight M is clean (``clean_end`` of the day before and ``clean_start`` of the
day after, computed for the raw parts on the fly by :func:`cut_checks`) when:

- no call (``call_id``, nor ``linkedid``) has entries on both sides of M (a call spanning
  midnight: its centre unit, its rating's owner, its wrap-up's owner are per call);
- no answered entry of the day before has a wrap-up event of its seat and call at or
  after M + the wrap-up slack (1 h), nor one whose seat's next event is missing or after
  M + slack (the raw window reads events to its end + slack: a wider window would see it);
- no answered entry of the day after has a wrap-up event before M.

Seat intervals across midnight are cut (their seconds add up) and counted once, by where
they start (``Piece.merge``). The callback figures are not rolled up: their own query over
the callback list (a few per cent of the calls) runs over the whole window.

Freshness: a day is rolled once it is closed (its end + the slack has passed). Any fact
written later for it — a call that ends after midnight and so writes its entries late, a
restart's records, a rating arriving later (``Store.rate_call``), a late seat event —
marks the days it may touch dirty (``Store``: every rolled day whose end + slack is after
the fact's earliest time), and the next report rolls them again. A day rolled with other
thresholds is rolled again too. Rolling happens on demand, in :func:`report` (``cti
report`` and the stats API), for the closed whole days of the window.

Assumption, as the raw path's: a seat's events are stored in time order (``id`` and
``at`` increase together), which the record writer guarantees per node.
"""

from __future__ import annotations

import json
import math
import time
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Final

from sqlalchemy import bindparam, select, text

from cti.adapters.db.kpi_sql import (
    _WRAPUP_SLACK_S,
    Piece,
    piece_figures,
    piece_sql,
    report_sql,
    with_callbacks_sql,
)
from cti.adapters.db.store import Store
from cti.adapters.db.tables import KPI_ROLLUP
from cti.kpis import Figures, GroupBy, Outcome, Thresholds
from cti.kpis.tally import SeatTally, Tally, exact, inexact

__all__ = ["GRAINS", "Apart", "apart_calls", "report", "roll_days"]

FINE: Final[tuple[GroupBy, ...]] = ("line", "department", "seat", "hour")
"""The keys a day is computed by, once; each grain is a projection of them."""
GRAINS: Final[tuple[tuple[GroupBy, ...], ...]] = (
    (),
    ("line",),
    ("department",),
    ("seat",),
    ("hour",),
)
SLACK_S: Final = _WRAPUP_SLACK_S
_EPOCH_DAY: Final = date(1970, 1, 1)
_BIG: Final = 1.7976931348623157e308


FORMAT: Final = 2
"""The stored rows' format: 2 leaves the calls kept apart out of the day (``x``); a row of
format 1 (the whole day, used only across clean cuts) has no ``x`` and must not be read as
one: its fingerprint differs, so it is rolled again (no migration needed)."""


def fingerprint(t: Thresholds) -> str:
    """What a day's counters depend on: the thresholds and the stored format (format 1's
    fingerprint was the thresholds' list alone)."""
    return json.dumps(
        [
            list(t.n_s),
            t.short_abandon_s,
            sorted(t.satisfied),
            sorted(t.unsatisfied),
            {"format": FORMAT},
        ],
        ensure_ascii=False,
    )


@dataclass(frozen=True, slots=True)
class Day:
    label: str  # YYYY-MM-DD in the zone
    index: int  # days since 1970-01-01: the report's `day` key
    start: float
    end: float


def days_in(start: float, end: float, tz: tzinfo) -> list[Day]:
    """The local days of ``tz`` wholly inside [start, end)."""
    d = datetime.fromtimestamp(start, tz).date()
    out: list[Day] = []
    while True:
        lo = datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()
        nxt = d + timedelta(days=1)
        hi = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp()
        if lo >= end:
            return out
        if lo >= start and hi <= end:
            out.append(Day(d.isoformat(), (d - _EPOCH_DAY).days, lo, hi))
        d = nxt


# ---------------------------------------------------------------------- calls kept apart

# a segment's calls with an entry outside it (by call id or by linkedid: the wrap-up's
# owner is per seat and linkedid, the centre's unit and the rating's owner per call id),
# and on which side
_PARTNER = """SELECT a.call_id, CASE WHEN b.entered_at < :lo THEN 1 ELSE 0 END
FROM queue_entries a JOIN queue_entries b ON b.{col} = a.{col}
WHERE a.entered_at >= :lo AND a.entered_at < :hi AND (b.entered_at < :lo OR b.entered_at >= :hi)"""
# its answered entries whose wrap-up the segment's own events would not see whole: a
# wrap-up event before the segment, at or after its end + the slack, or one whose seat's
# next event is missing or after that. The largest double spelt out rather than formatted
# in from _BIG: a constant string is what the SQL-injection audit (bandit B608) can see is
# constant.
_WRAPS = """SELECT a.call_id, CASE WHEN w.at < :lo THEN 1 ELSE 0 END
FROM queue_entries a JOIN seat_events w
  ON w.call_id = a.linkedid AND w.seat = a.seat AND w.status = 'wrap_up'
WHERE a.entered_at >= :lo AND a.entered_at < :hi AND a.outcome = 'answered'
  AND (w.at < :lo OR w.at >= :far
       OR COALESCE((SELECT n.at FROM seat_events n WHERE n.seat = w.seat AND n.id > w.id
                    ORDER BY n.id LIMIT 1), 1.7976931348623157e+308) >= :far)"""
_PAIRS = "SELECT call_id, linkedid FROM queue_entries WHERE entered_at >= :lo AND entered_at < :hi"


@dataclass(frozen=True, slots=True)
class Apart:
    """The calls of a segment [lo, hi) that its own raw piece cannot give as the report
    over a wider window would: computed by the raw path over the whole window instead."""

    calls: frozenset[str]
    clean_start: bool  # no call crosses lo
    clean_end: bool  # no call crosses hi (its entries, its wrap-up)


async def apart_calls(conn: Any, lo: float, hi: float) -> Apart:
    """The calls of [lo, hi) kept apart (see the module doc): those with an entry outside
    it (by call id or linkedid) or a wrap-up it cannot see whole, and every call of the
    segment linked to one of them by a linkedid (closed: a piece's wrap-up owner is ranked
    per seat and linkedid)."""
    params = {"lo": lo, "hi": hi, "far": hi + SLACK_S}
    seeds: set[str] = set()
    before = after = False
    for sql in (_PARTNER.format(col="call_id"), _PARTNER.format(col="linkedid"), _WRAPS):
        for call_id, earlier in await conn.execute(text(sql), params):
            seeds.add(call_id)
            if earlier:
                before = True
            else:
                after = True
    if not seeds:
        return Apart(frozenset(), clean_start=True, clean_end=True)
    links: dict[str, set[str]] = defaultdict(set)  # linkedid -> call ids
    of: dict[str, set[str]] = defaultdict(set)  # call id -> linkedids
    for call_id, linkedid in await conn.execute(text(_PAIRS), params):
        links[linkedid].add(call_id)
        of[call_id].add(linkedid)
    out = set(seeds)
    todo = list(seeds)
    while todo:
        for linkedid in of[todo.pop()]:
            for other in links[linkedid] - out:
                out.add(other)
                todo.append(other)
    return Apart(frozenset(out), clean_start=not before, clean_end=not after)


_CHUNK: Final = 500  # call ids or linkedids per IN list


async def _window_closure(
    conn: Any, start: float, end: float, calls: set[str]
) -> list[tuple[str, float]]:
    """``calls`` closed over the window's entries (adds, in place, every call of the window
    sharing a linkedid with one of them); returns (call id, entered_at) of their entries in
    the window."""
    by_id = text(
        "SELECT call_id, linkedid, entered_at FROM queue_entries "
        "WHERE call_id IN :v AND entered_at >= :start AND entered_at < :end"
    ).bindparams(bindparam("v", expanding=True))
    by_link = text(
        "SELECT call_id, linkedid, entered_at FROM queue_entries "
        "WHERE linkedid IN :v AND entered_at >= :start AND entered_at < :end"
    ).bindparams(bindparam("v", expanding=True))
    seen: dict[tuple[str, float], None] = {}
    links: set[str] = set()
    todo: list[str] = sorted(calls)
    todo_links: list[str] = []
    while todo or todo_links:
        rows: list[Any] = []
        for sql, vals in ((by_id, todo), (by_link, todo_links)):
            for i in range(0, len(vals), _CHUNK):
                p = {"v": vals[i : i + _CHUNK], "start": start, "end": end}
                rows += (await conn.execute(sql, p)).all()
        todo, todo_links = [], []
        for call_id, linkedid, at in rows:
            seen[(call_id, at)] = None
            if call_id not in calls:
                calls.add(call_id)
                todo.append(call_id)
            if linkedid not in links:
                links.add(linkedid)
                todo_links.append(linkedid)
    return list(seen)


# ---------------------------------------------------------------------- (de)serialising


def _tally_json(t: Tally) -> dict[str, Any]:
    return {
        "u": t.units,
        "o": {str(o): n for o, n in t.outcomes.items()},
        "sh": t.short_abandoned,
        "wi": t.within,
        # the exact sums as floats: a day's sum rounded once (a year of them merged is
        # within 1e-12 of the raw path's one SQL sum)
        "wa": inexact(t.answered_wait),
        "ta": inexact(t.talk),
        "wr": inexact(t.wrapup),
        "tr": t.transfers_out,
        "ro": t.rona,
        "ra": [t.ratings, t.ratings_satisfied, t.ratings_invalid],
        "lo": t.longest_wait_s,
    }


def _tally(d: dict[str, Any], t: Thresholds) -> Tally:
    out = Tally.of(t)
    out.units = d["u"]
    out.outcomes = {Outcome(o): n for o, n in d["o"].items()}
    out.short_abandoned = d["sh"]
    out.within = list(d["wi"])
    out.answered_wait, out.talk, out.wrapup = exact(d["wa"]), exact(d["ta"]), exact(d["wr"])
    out.transfers_out, out.rona = d["tr"], d["ro"]
    out.ratings, out.ratings_satisfied, out.ratings_invalid = d["ra"]
    out.longest_wait_s = d["lo"]
    return out


def _seats_json(s: SeatTally) -> dict[str, list[float]]:
    return {k: [n, inexact(ta), inexact(wr)] for k, (n, ta, wr) in s.seats.items()}


def _seats(d: dict[str, list[float]]) -> SeatTally:
    # made exact only if another day's are added to it (a report keyed by day never does)
    return SeatTally.of_floats(d)


def _project(p: Piece, idx: Sequence[int], t: Thresholds) -> Piece:
    """``p`` (keyed by FINE) keyed by the FINE positions ``idx`` only."""
    out = Piece(all_seats=p.all_seats, centre=p.centre, times=p.times)
    for k, tally in p.tallies.items():
        kk = tuple(k[i] for i in idx)
        have = out.tallies.get(kk)
        if have is None:
            have = out.tallies[kk] = Tally.of(t)
        have.merge(tally)
    for k, st in p.seat_tallies.items():
        mine = out.seat_tallies.setdefault(tuple(k[i] for i in idx), SeatTally())
        for seat, (n, ta, wr) in st.seats.items():
            mine.add_sums(seat, n, ta, wr)
    return out


def _piece_json(p: Piece, apart: frozenset[str]) -> str:
    times = {
        seat: {
            "li": [math.fsum(v["logged_in"])] if v["logged_in"] else [],
            "oc": [math.fsum(v["occupied"])] if v["occupied"] else [],
            "nr": {r: [math.fsum(d)] for r, d in v["not_ready"].items()},
            "rona": v["rona"],
            "carry": v["rona_carry"],
        }
        for seat, v in p.times.items()
    }
    return json.dumps(
        {
            "g": [[list(k), _tally_json(t)] for k, t in p.tallies.items()],
            "s": [[list(k), _seats_json(s)] for k, s in p.seat_tallies.items()],
            "a": _seats_json(p.all_seats),
            "c": None if p.centre is None else _tally_json(p.centre),
            "t": times,
            # the calls of the day left out of it (kept apart: the report computes them)
            "x": sorted(apart),
        },
        ensure_ascii=False,
    )


def _piece(d: dict[str, Any], t: Thresholds, day: Day, keys: Sequence[GroupBy]) -> Piece:
    """A rolled day's piece (its stored JSON, read), keyed as the report's ``keys`` (the
    day's index where ``day`` is one of them)."""

    def key(k: list[Any]) -> tuple[Any, ...]:
        it = iter(k)
        return tuple(day.index if name == "day" else next(it) for name in keys)

    out = Piece(all_seats=_seats(d["a"]), centre=None if d["c"] is None else _tally(d["c"], t))
    for k, tj in d["g"]:
        out.tallies[key(k)] = _tally(tj, t)
    for k, sj in d["s"]:
        out.seat_tallies[key(k)] = _seats(sj)
    for seat, v in d["t"].items():
        mine = out.times[seat]
        mine["logged_in"] = v["li"]
        mine["occupied"] = v["oc"]
        for r, lst in v["nr"].items():
            mine["not_ready"][r] = lst
        mine["rona"] = v["rona"]
        mine["rona_carry"] = v["carry"]
    return out


# ---------------------------------------------------------------------- rolling


async def roll_days(
    store: Store, days: Sequence[Day], *, thresholds: Thresholds, tz: tzinfo, tz_name: str
) -> int:
    """Compute these days by the raw path (each without its calls kept apart) and store
    them (each grain), replacing what was there: idempotent. Returns the days rolled."""
    fp = fingerprint(thresholds)
    for day in days:
        async with store.engine.connect() as conn:
            apart = await apart_calls(conn, day.start, day.end)
            p = await piece_sql(
                conn,
                day.start,
                day.end,
                thresholds=thresholds,
                keys=FINE,
                tz=tz,
                apart=apart.calls,
            )
        rows = [
            {
                "tz": tz_name,
                "day": day.label,
                "grain": ",".join(g),
                "thresholds": fp,
                "day_start": day.start,
                "day_end": day.end,
                "clean_start": apart.clean_start,
                "clean_end": apart.clean_end,
                "dirty": False,
                "rolled_at": time.time(),
                "data": _piece_json(
                    _project(p, [FINE.index(k) for k in g], thresholds), apart.calls
                ),
            }
            for g in GRAINS
        ]
        async with store.engine.begin() as conn:
            await conn.execute(
                KPI_ROLLUP.delete().where(KPI_ROLLUP.c.tz == tz_name, KPI_ROLLUP.c.day == day.label)
            )
            await conn.execute(KPI_ROLLUP.insert(), rows)
    return len(days)


async def _fresh(
    store: Store, days: Sequence[Day], grain: str, fp: str, tz_name: str
) -> dict[str, str]:
    if not days:
        return {}
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(KPI_ROLLUP.c.day, KPI_ROLLUP.c.data).where(
                KPI_ROLLUP.c.tz == tz_name,
                KPI_ROLLUP.c.grain == grain,
                KPI_ROLLUP.c.thresholds == fp,
                KPI_ROLLUP.c.dirty.is_(False),
                KPI_ROLLUP.c.day_start >= days[0].start,
                KPI_ROLLUP.c.day_end <= days[-1].end,
            )
        )
        return {r.day: r.data for r in rows}


@dataclass(slots=True)
class _Seg:
    lo: float
    hi: float
    day: Day | None = None  # a rolled day
    data: dict[str, Any] | None = None  # its stored JSON, read
    apart: frozenset[str] | None = None  # its calls kept apart (None: not known yet)


def _plan(start: float, end: float, closed: Sequence[Day], have: dict[str, str]) -> list[_Seg]:
    """The window as rolled days and the raw parts between them (adjacent raw parts
    joined)."""
    segs: list[_Seg] = []

    def raw(lo: float, hi: float) -> None:
        if lo >= hi:
            return
        if segs and segs[-1].day is None:
            segs[-1].hi = hi
        else:
            segs.append(_Seg(lo, hi))

    cursor = start
    for d in closed:
        if d.label in have:
            raw(cursor, d.start)
            data = json.loads(have[d.label])
            segs.append(_Seg(d.start, d.end, d, data, frozenset(data["x"])))
            cursor = d.end
    raw(cursor, end)
    return segs


async def _apart(conn: Any, start: float, end: float, segs: list[_Seg]) -> set[str]:
    """Every call of the window kept apart: those of each segment, closed over the window
    (a linkedid shared across segments). A rolled day that has one of them in its own
    piece (rolled before a fact it did not see, far from it in time: no dirty mark) goes
    by the raw path instead, until none does."""
    lows = [s.lo for s in segs]
    while True:
        for s in segs:
            if s.apart is None:
                s.apart = (await apart_calls(conn, s.lo, s.hi)).calls
        calls: set[str] = set().union(*(s.apart or () for s in segs))
        if not calls:
            return calls
        stale = set()
        for call_id, at in await _window_closure(conn, start, end, calls):
            i = bisect_right(lows, at) - 1
            s = segs[i]
            if s.day is not None and call_id not in (s.apart or ()):
                stale.add(i)
        if not stale:
            return calls
        for i in stale:
            segs[i].day = segs[i].data = segs[i].apart = None


async def report(
    store: Store,
    start: float,
    end: float,
    *,
    thresholds: Thresholds,
    by: GroupBy | Sequence[GroupBy] | None,
    tz: tzinfo,
    tz_name: str | None,
    now: float | None = None,
    roll: bool = True,
) -> tuple[Figures, list[tuple[str | None, Figures]]]:
    """The report of :func:`report_sql`, from the roll-up for the window's closed whole
    days (rolled first if missing, dirty or of other thresholds, when ``roll``), the raw
    path for the rest, and the raw path over the whole window for the calls kept apart.
    ``tz_name``: the zone's name, the roll-up's key (``None``: the machine's zone has no
    stable name, and the report is raw)."""
    keys: list[GroupBy] = [] if by is None else [by] if isinstance(by, str) else list(by)
    grain = tuple(k for k in keys if k != "day")
    now = time.time() if now is None else now
    closed = [d for d in days_in(start, end, tz) if d.end + SLACK_S <= now]
    if tz_name is None or grain not in GRAINS or keys.count("day") > 1 or not closed:
        return await report_sql(store, start, end, thresholds=thresholds, by=keys, tz=tz)
    fp = fingerprint(thresholds)
    g = ",".join(grain)
    have = await _fresh(store, closed, g, fp, tz_name)
    if roll and (missing := [d for d in closed if d.label not in have]):
        await roll_days(store, missing, thresholds=thresholds, tz=tz, tz_name=tz_name)
        have = await _fresh(store, closed, g, fp, tz_name)
    segs = _plan(start, end, closed, have)
    async with store.engine.connect() as conn:
        apart = await _apart(conn, start, end, segs)
        total = Piece()
        first = True
        for s in segs:
            if s.day is not None and s.data is not None:
                part = _piece(s.data, thresholds, s.day, keys)
            else:
                part = await piece_sql(
                    conn, s.lo, s.hi, thresholds=thresholds, keys=keys, tz=tz, apart=apart
                )
            # the first piece keeps the seat intervals carried into the window
            if first:
                total, first = part, False
            else:
                total.merge(part)
        if apart:  # no seat time: merged after the time pieces
            total.merge(
                await piece_sql(
                    conn,
                    start,
                    end,
                    thresholds=thresholds,
                    keys=keys,
                    tz=tz,
                    apart=apart,
                    only=True,
                )
            )
    whole, groups = piece_figures(total, thresholds=thresholds, keys=keys)
    return await with_callbacks_sql(
        store, start, end, whole, groups, thresholds=thresholds, keys=keys, tz=tz
    )
