"""FROZEN COPY, for benchmarks/report.py only: cti/adapters/db/kpi_sql.py as it was before
issue 17's one-pass rewrite (five passes over the window), timed beside the new one.

A report's figures aggregated in SQL (GROUP BY on the stored facts), not row by row.

:func:`cti.adapters.db.kpi_queries.load_facts` + :func:`report_figures` read every entry of
the window into Python: a year of a mid-size city (≈1 M entries) takes tens of seconds.
Every figure but the centre's per-call collapse is a count, a sum or a maximum over
entries, so the database computes them per group and per outcome
(:class:`cti.kpis.tally.Tally` turns those into :class:`~cti.kpis.Figures`):

- one unit per entry, by group: ``GROUP BY key, outcome`` over the window's valid rows;
- each answered entry's wrap-up, as the calculator's path: the answering seat's
  ``wrap_up`` time for that call from ``seat_events`` (each row lasting until the seat's
  next), given to the seat's last answered entry of the call;
- ratings (``call_records.satisfaction``) to the call's last answered entry's group;
- seat time by (seat, status, reason) from ``seat_events``, cut to the window;
- the centre, one unit per call: the calls with a single entry in the window are their
  entry (the sum of the groups less the multi-entry calls), the few calls with several
  entries (transfers, overflows) are read and collapsed by :func:`cti.kpis.collapse_call`.

The pure calculator stays the reference: tests/kpis/test_kpi_sql.py checks on random data
that both give the same figures (counts exactly; float sums to 1e-9, as SQL adds in its
own order, not :func:`math.fsum`'s exact one). Rows the calculator would refuse (an unknown
outcome, a negative time …) are left out here too, by the same conditions.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import text

from cti.adapters.db.kpi_queries import _entry
from cti.adapters.db.store import Store
from cti.kpis import (
    OFFERED,
    Figures,
    GroupBy,
    Origin,
    Outcome,
    QueueEntry,
    SeatFigures,
    Thresholds,
    collapse_call,
)
from cti.kpis.tally import SeatTally, Tally, exact
from cti.seats.model import Reason, SeatStatus

__all__ = ["report_sql"]

_WRAPUP_SLACK_S = 3600.0  # as kpi_queries: a wrap-up follows its call
# The SQL below is built with f-strings (bandit B608, marked `nosec` line by line): what is
# interpolated is never outside input. Group keys come from the GroupBy names (`_key_sql`
# returns a column name only for "line", "department" and "seat"), thresholds are the
# validated numbers of the kpis settings (formatted with !r), outcome names are the core's
# constants quoted by `_in`; the window's bounds travel as bound parameters.
_MAX = "1.7976931348623157e308"  # the largest float: Infinity is not a time


def _in(values: Sequence[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _nonneg(col: str) -> str:
    return f"({col} >= 0 AND {col} <= {_MAX})"


# what QueueEntry() refuses and load_facts() therefore leaves out
_VALID = " AND ".join(
    [
        f"q.outcome IN ({_in(list(Outcome))})",
        f"q.origin IN ({_in(list(Origin))})",
        _nonneg("q.entered_at"),
        _nonneg("q.left_at"),
        *(f"(q.{c} IS NULL OR {_nonneg('q.' + c)})" for c in ("first_offered_at", "connected_at")),
        *(_nonneg(f"q.{c}") for c in ("wait_s", "ring_s", "talk_s", "wrapup_s")),
        "q.entry_seq >= 1",
        "q.offers >= 0",
        "q.linkedid <> ''",
        "q.line <> ''",
        "(q.outcome <> 'answered' OR (q.connected_at IS NOT NULL AND q.seat IS NOT NULL))",
    ]
)

# the seat events of the window (and each seat's last one before), each lasting until the
# seat's next: the calculator's intervals, in SQL
_EVENTS = """
ev AS (
  SELECT id, seat, at, status, reason, call_id,
         LEAD(at) OVER (PARTITION BY seat ORDER BY id) AS nxt
  FROM seat_events
  WHERE (at >= :start AND at < :slack)
     OR id IN (SELECT MAX(id) FROM seat_events WHERE at < :start GROUP BY seat)
),
wr AS (
  SELECT seat, call_id AS linkedid,
         SUM(CASE WHEN nxt > at THEN nxt - at ELSE 0 END) AS w
  FROM ev
  WHERE status = 'wrap_up' AND call_id IS NOT NULL AND call_id <> '' AND nxt IS NOT NULL
  GROUP BY seat, call_id
)"""

# the window's valid entries with their wrap-up as the calculator sees it: the chosen
# entry (last answered of its seat and call) gets the seat's wrap-up, or 0
_ENTRIES = f"""
base AS (
  SELECT q.*,
         CASE WHEN q.outcome = 'answered' THEN ROW_NUMBER() OVER (
           PARTITION BY q.seat, q.linkedid, q.outcome = 'answered'
           ORDER BY q.entry_seq DESC, q.entered_at, q.call_id) END AS wrn
  FROM queue_entries q
  WHERE q.entered_at >= :start AND q.entered_at < :end AND {_VALID}
),
e AS (
  SELECT base.*,
         CASE WHEN wrn = 1 THEN COALESCE(wr.w, 0.0) ELSE base.wrapup_s END AS wrap
  FROM base LEFT JOIN kpi_wr wr ON wr.seat = base.seat AND wr.linkedid = base.linkedid
)"""  # nosec B608


def _offsets(start: float, end: float, tz: tzinfo) -> list[tuple[float, float]]:
    """(from, utc offset s) pieces covering [start, end): an offset change is found by
    stepping hours, then halving to the second."""

    def off(t: float) -> float:
        o = datetime.fromtimestamp(t, tz).utcoffset()
        return 0.0 if o is None else o.total_seconds()

    pieces = [(start, off(start))]
    t = start
    while t < end:
        nxt = min(t + 3600.0, end)
        if off(nxt) != pieces[-1][1]:
            lo, hi = t, nxt
            while hi - lo > 1.0:
                mid = math.floor((lo + hi) / 2)
                lo, hi = (mid, hi) if off(mid) == pieces[-1][1] else (lo, mid)
            pieces.append((hi, off(hi)))
        t = nxt
    return pieces


def _key_sql(by: GroupBy, pieces: list[tuple[float, float]]) -> str:
    if by in ("line", "department", "seat"):
        return f"{by}"
    width = 86_400 if by == "day" else 3600
    offset = "CASE " + " ".join(f"WHEN entered_at >= {t!r} THEN {o!r}" for t, o in reversed(pieces))
    return f"CAST((entered_at + ({offset} ELSE {pieces[0][1]!r} END)) / {width} AS INTEGER)"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _label(by: GroupBy, v: Any) -> str | None:
    if v is None:
        return None
    if by == "day":
        return (_EPOCH + timedelta(days=int(v))).strftime("%Y-%m-%d")
    if by == "hour":
        return (_EPOCH + timedelta(hours=int(v))).strftime("%Y-%m-%d %H:00")
    return str(v)


def _key(by: Sequence[GroupBy], values: Sequence[Any]) -> str | None:
    parts = [_label(b, v) for b, v in zip(by, values, strict=True)]
    if len(parts) == 1:
        return parts[0]
    return " ".join("(无)" if p is None else p for p in parts)


def _status(v: str) -> SeatStatus | None:
    try:
        return SeatStatus(v)
    except ValueError:
        return None


def _reason(text_: str | None) -> str:
    if not text_:
        return "unspecified"
    try:
        return str(Reason(text_))
    except ValueError:
        return str(Reason.OTHER)


async def _seat_time(conn: Any, params: dict[str, float]) -> dict[str, dict[str, Any]]:
    rows = await conn.execute(
        text(
            f"WITH {_EVENTS.split('wr AS', maxsplit=1)[0].rstrip().rstrip(',')}, "  # nosec B608
            "iv AS (SELECT seat, status, reason, "
            "  CASE WHEN at > :start THEN at ELSE :start END AS lo, "
            "  CASE WHEN nxt IS NULL OR nxt > :end THEN :end ELSE nxt END AS hi FROM ev) "
            "SELECT seat, status, reason, SUM(hi - lo) AS s, COUNT(*) AS n FROM iv "
            "WHERE lo < :end AND hi >= lo GROUP BY seat, status, reason"
        ),
        params,
    )
    out: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"logged_in": [], "occupied": [], "not_ready": defaultdict(list), "rona": 0}
    )
    for seat, status_text, reason, s, n in rows:
        status = _status(status_text)
        if status is None:
            continue
        t = out[seat]
        if status is not SeatStatus.LOGGED_OUT:
            t["logged_in"].append(s)
        if status in (SeatStatus.RINGING, SeatStatus.TALKING, SeatStatus.WRAP_UP):
            t["occupied"].append(s)
        if status is SeatStatus.NOT_READY:
            r = _reason(reason)
            t["not_ready"][r].append(s)
            if r == str(Reason.RONA):
                t["rona"] += n
    return out


def _seat_figures(entries: SeatTally, times: dict[str, dict[str, Any]]) -> tuple[SeatFigures, ...]:
    base = {s.seat: s for s in entries.figures()}
    out = []
    for seat in sorted(base.keys() | times.keys()):
        t = times.get(seat)
        answered = base.get(seat)
        logged = math.fsum(t["logged_in"]) if t else 0.0
        occupied = math.fsum(t["occupied"]) if t else 0.0
        out.append(
            SeatFigures(
                seat=seat,
                answered=answered.answered if answered else 0,
                talk_s=answered.talk_s if answered else 0.0,
                wrapup_s=answered.wrapup_s if answered else 0.0,
                aht_s=answered.aht_s if answered else None,
                logged_in_s=logged,
                occupied_s=occupied,
                occupancy=None if logged == 0 else occupied / logged,
                not_ready_s=tuple(
                    (r, math.fsum(d)) for r, d in sorted((t["not_ready"] if t else {}).items())
                ),
                rona=t["rona"] if t else 0,
            )
        )
    return tuple(out)


async def report_sql(
    store: Store,
    start: float,
    end: float,
    *,
    thresholds: Thresholds,
    by: GroupBy | Sequence[GroupBy] | None,
    tz: tzinfo,
) -> tuple[Figures, list[tuple[str | None, Figures]]]:
    """What ``report_figures(await load_facts(store, start, end), ...)`` gives, from SQL:
    the centre (one unit per call) and, with ``by`` (one key or several, e.g. line and
    day), the groups (one unit per entry) sorted by key."""
    t = thresholds
    keys: list[GroupBy] = [] if by is None else [by] if isinstance(by, str) else list(by)
    pieces = _offsets(start, end, tz)
    cols = [f"{_key_sql(k, pieces)} AS k{i}" for i, k in enumerate(keys)]
    kcols = [f"k{i}" for i in range(len(keys))]
    group_cols = ", ".join([*kcols, "outcome"])
    within = ", ".join(
        f"SUM(CASE WHEN outcome = 'answered' AND wait_s <= {n!r} THEN 1 ELSE 0 END)" for n in t.n_s
    )
    offered = _in(sorted(OFFERED))
    params = {"start": start, "end": end, "slack": end + _WRAPUP_SLACK_S}
    prefix = (
        f"WITH {_ENTRIES}, m AS MATERIALIZED (SELECT DISTINCT q.call_id FROM queue_entries q "  # nosec B608
        f"WHERE q.entered_at >= :start AND q.entered_at < :end AND q.entry_seq > 1 AND {_VALID}), "
        f"g AS (SELECT e.*{''.join(', ' + c for c in cols)}, "
        "e.call_id IN (SELECT call_id FROM m) AS multi FROM e)"
    )
    sel_keys = "".join(c + ", " for c in kcols)
    async with store.engine.connect() as conn:
        # the wrap-ups, once, in an indexed temporary table of this connection (a CTE
        # joined to a million entries is scanned per row: no index on it in SQLite 3.40)
        await conn.execute(text("DROP TABLE IF EXISTS temp.kpi_wr"))
        await conn.execute(
            text(f"CREATE TEMP TABLE kpi_wr AS WITH {_EVENTS} SELECT seat, linkedid, w FROM wr"),  # nosec B608
            params,
        )
        await conn.execute(text("CREATE INDEX temp.ix_kpi_wr ON kpi_wr (seat, linkedid)"))
        groups_rows = await conn.execute(
            text(
                f"{prefix} SELECT {sel_keys}outcome, COUNT(*), "  # nosec B608
                f"SUM(CASE WHEN outcome = 'abandoned' AND wait_s < {t.short_abandon_s!r} "
                "THEN 1 ELSE 0 END), "
                f"{within + ', ' if within else ''}"
                "SUM(wait_s), SUM(talk_s), SUM(wrap), "
                "SUM(CASE WHEN outcome = 'transferred_out' OR transferred_to IS NOT NULL "
                "THEN 1 ELSE 0 END), SUM(offers), "
                f"MAX(CASE WHEN outcome IN ({offered}) THEN wait_s END), "
                f"MAX(CASE WHEN outcome IN ({offered}) AND NOT multi THEN wait_s END) "
                f"FROM g GROUP BY {group_cols}"
            ),
            params,
        )
        seat_result = await conn.execute(
            text(
                f"{prefix} SELECT {sel_keys}seat, COUNT(*), SUM(talk_s), SUM(wrap) FROM g "  # nosec B608
                f"WHERE outcome = 'answered' GROUP BY {', '.join([*kcols, 'seat'])}"
            ),
            params,
        )
        seat_rows = seat_result.all()
        # ratings: one per call, counted for its last answered entry of the window
        rating_result = await conn.execute(
            text(
                f"{prefix}, owner AS (SELECT g.*, ROW_NUMBER() OVER (PARTITION BY g.call_id "  # nosec B608
                "ORDER BY entry_seq DESC, entered_at DESC, wait_s DESC) AS rn FROM g "
                "WHERE outcome = 'answered' AND g.call_id IN (SELECT call_id FROM call_records "
                "WHERE satisfaction IS NOT NULL AND ended_at >= 0 AND ended_at <= "
                f"{_MAX})) SELECT {sel_keys}cr.satisfaction, COUNT(*) FROM owner "
                "JOIN call_records cr ON cr.call_id = owner.call_id WHERE rn = 1 "
                f"GROUP BY {', '.join([*kcols, 'cr.satisfaction'])}"
            ),
            params,
        )
        rating_rows = rating_result.all()
        # the calls with more than one entry in the window, read whole for the centre
        multi_rows = await conn.execute(
            text(f"{prefix} SELECT g.*, wrap AS wrap_eff FROM g WHERE multi"),  # nosec B608
            params,
        )
        multi = multi_rows.all()
        times = await _seat_time(conn, params)
        await conn.execute(text("DROP TABLE temp.kpi_wr"))

    n_k = len(keys)
    tallies: dict[tuple[Any, ...], Tally] = {}
    total = Tally.of(t)
    single_longest: float | None = None  # of the calls with one entry in the window
    for row in groups_rows:
        k = tuple(row[:n_k])
        outcome, units, short, *rest = row[n_k:]
        wn = rest[: len(t.n_s)]
        wait, talk, wrap, transfers, rona, longest, longest_single = rest[len(t.n_s) :]
        part = Tally.of(t)
        o = Outcome(outcome)
        part.units = units
        part.outcomes[o] = units
        part.short_abandoned = short
        if o is Outcome.ANSWERED:
            part.within = list(wn)
            part.answered_wait = exact(wait)
            part.talk = exact(talk)
            part.wrapup = exact(wrap)
        part.transfers_out = transfers
        part.rona = rona
        part.longest_wait_s = longest
        tallies.setdefault(k, Tally.of(t)).merge(part)
        total.merge(part)
        if longest_single is not None and (
            single_longest is None or longest_single > single_longest
        ):
            single_longest = longest_single
    for row in rating_rows:
        k = tuple(row[:n_k])
        label, n = row[n_k:]
        for _ in range(n):
            tallies.setdefault(k, Tally.of(t)).rate(label, t)
            total.rate(label, t)
    seat_tallies: dict[tuple[Any, ...], SeatTally] = defaultdict(SeatTally)
    all_seats = SeatTally()
    for row in seat_rows:
        k = tuple(row[:n_k])
        seat, n, talk, wrap = row[n_k:]
        seat_tallies[k].add_sums(seat, n, exact(talk), exact(wrap))
        all_seats.add_sums(seat, n, exact(talk), exact(wrap))

    # the centre: every entry as its own unit, less the multi-entry calls' entries, plus
    # those calls collapsed. A rating stays: a call has an answered entry (its rating's
    # owner) exactly when its collapsed unit is answered. The longest wait is a maximum,
    # which cannot be taken out: that of the single-entry calls, and of the collapsed.
    entries: dict[tuple[str, str], list[QueueEntry]] = defaultdict(list)
    for r in multi:
        e = _entry(r)
        if e is not None:
            entries[e.key].append(replace(e, wrapup_s=r.wrap_eff))
    centre = Tally.of(t)
    centre.merge(total)
    for es in entries.values():
        for e in es:
            centre.remove(e)
    centre.longest_wait_s = single_longest
    for es in entries.values():
        centre.add(collapse_call(es))
    whole = centre.figures(t, seats=_seat_figures(all_seats, times))
    groups: list[tuple[str | None, Figures]] = []
    for k, tally in tallies.items():
        seats = seat_tallies.get(k, SeatTally())
        if keys == ["seat"]:
            fig = tally.figures(
                t, seats=_seat_figures(seats, {k[0]: times[k[0]]} if k[0] in times else {})
            )
        else:
            fig = tally.figures(t, seats=seats.figures())
        groups.append((_key(keys, k), fig))
    if keys == ["seat"]:  # seats with time but no entry are groups too
        have = {k for k, _ in groups}
        for seat in sorted(times.keys() - have):
            empty = Tally.of(t).figures(t, seats=_seat_figures(SeatTally(), {seat: times[seat]}))
            groups.append((seat, empty))
    groups.sort(key=lambda kv: (kv[0] is not None, kv[0] or ""))
    return whole, groups if keys else []
