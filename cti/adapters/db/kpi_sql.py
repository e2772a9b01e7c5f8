"""A report's figures aggregated in SQL (GROUP BY on the stored facts), not row by row.

:func:`cti.adapters.db.kpi_queries.load_facts` + :func:`report_figures` read every entry of
the window into Python: a year of a mid-size city (≈1 M entries) takes tens of seconds.
Every figure but the centre's per-call collapse is a count, a sum or a maximum over
entries, so the database computes them per group and per outcome
(:class:`cti.kpis.tally.Tally` turns those into :class:`~cti.kpis.Figures`). The window
is read once (issue 17: the five passes of before took ≈5 s per 100 k entries): the seat
events into ``kpi_ev``, the entries into ``kpi_e``, both temporary tables of the report's
connection, then every figure from them:

- one unit per entry, by group: one ``GROUP BY keys, outcome, seat`` over the window's
  valid rows with every count and sum (:func:`_aggregates`);
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

# ruff: noqa: S608 - the SQL text is built from this module's constants, the enums'
# values and the thresholds' floats (repr); every outside value is a bound parameter
from __future__ import annotations

import math
import re
import secrets
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final

from sqlalchemy import TextClause, text

from cti.adapters.db.dialect import floor_int
from cti.adapters.db.kpi_callbacks import callback_figures_sql
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
from cti.kpis.callback_report import attach_callbacks
from cti.kpis.tally import SeatTally, Tally, exact
from cti.seats.model import Reason, SeatStatus

__all__ = ["Piece", "piece_figures", "piece_sql", "report_sql", "with_callbacks_sql"]

# the report's temporary tables and index, renamed per report on PostgreSQL (report_sql)
_TEMP_NAMES: Final = re.compile(r"\b(?:kpi_ev|kpi_e|kpi_x|ix_kpi_ev)\b")

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
        _nonneg("+q.entered_at"),  # never an index bound (see _window)
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
# seat's next: the calculator's intervals, in SQL. `+at`: an expression, not the column, so
# that SQLite walks ix_seat_events_report (seat, id, ...) in LEAD's own order instead of
# the `at` index followed by a sort of every event (portable: unary plus is PostgreSQL's too)
def _events(*, scan: bool) -> str:
    """The seat events of the window (and each seat's last one before), each lasting until
    the seat's next: the calculator's intervals, in SQL. ``scan`` (a long window): ``+at``,
    an expression, not the column, so that SQLite walks ix_seat_events_report (seat, id, ...)
    in LEAD's own order instead of the ``at`` index followed by a sort of every event
    (portable: unary plus is PostgreSQL's too); a short window (a day of the roll-up) reads
    its few events through the ``at`` index."""
    at = "+at" if scan else "at"
    # each seat's last event before the window: per seat (found by a skip-scan of the seat
    # index, one seek per seat) its last id with `at` before the start, walked back from
    # its newest: a few rows, where MAX(id) ... GROUP BY seat read every older event (for
    # a day late in a year, ~3 M of them: ~1 s per report or rolled day)
    return f"""
seats (seat) AS (
  SELECT MIN(seat) FROM seat_events
  UNION ALL
  SELECT (SELECT MIN(e.seat) FROM seat_events e WHERE e.seat > seats.seat)
  FROM seats WHERE seats.seat IS NOT NULL
),
before AS (
  SELECT (SELECT b.id FROM seat_events b WHERE b.seat = seats.seat AND b.at < :start
          ORDER BY b.id DESC LIMIT 1) AS id
  FROM seats WHERE seats.seat IS NOT NULL
),
ev AS MATERIALIZED (
  SELECT id, seat, at, status, reason, call_id,
         LEAD(at) OVER (PARTITION BY seat ORDER BY id) AS nxt
  FROM seat_events
  WHERE ({at} >= :start AND {at} < :slack)
     OR id IN (SELECT id FROM before WHERE id IS NOT NULL)
),
wr AS (
  SELECT seat, call_id AS linkedid,
         SUM(CASE WHEN nxt > at THEN nxt - at ELSE 0 END) AS w
  FROM ev
  WHERE status = 'wrap_up' AND call_id IS NOT NULL AND call_id <> '' AND nxt IS NOT NULL
  GROUP BY seat, call_id
),
iv AS (
  SELECT seat, status, reason, at,
         CASE WHEN at > :start THEN at ELSE :start END AS lo,
         CASE WHEN nxt IS NULL OR nxt > :end THEN :end ELSE nxt END AS hi
  FROM ev
)"""  # nosec B608


def _event_sums(*, scan: bool) -> str:
    """Both results of the events' one LEAD pass, in one temporary table of the connection:
    the wrap-ups (seat, linkedid, w) joined to the entries, and the seat time by (seat,
    status, reason) cut to the window (status NULL on the wrap-up rows; the NULLs typed, as
    PostgreSQL's UNION wants). The intervals are counted apart by where they start: ``n``
    in the window, ``nc`` before it (the one each seat carries in), so that windows laid
    end to end (the roll-up's days) count an interval across their cut once."""
    return f"""
CREATE TEMP TABLE kpi_ev AS WITH RECURSIVE {_events(scan=scan)}
SELECT seat, linkedid, w, CAST(NULL AS VARCHAR(16)) AS status,
       CAST(NULL AS VARCHAR(32)) AS reason, CAST(NULL AS FLOAT) AS s,
       CAST(NULL AS INTEGER) AS n, CAST(NULL AS INTEGER) AS nc
FROM wr
UNION ALL
SELECT seat, CAST(NULL AS VARCHAR(128)), CAST(NULL AS FLOAT), status, reason,
       SUM(hi - lo), SUM(CASE WHEN at >= :start THEN 1 ELSE 0 END),
       SUM(CASE WHEN at < :start THEN 1 ELSE 0 END)
FROM iv
WHERE lo < :end AND hi >= lo GROUP BY seat, status, reason
"""  # nosec B608


# The wrap-ups of the calls of kpi_x only (no seat time: that is the other pieces'), as
# _event_sums computes them: per (seat, linkedid) of an answered entry of those calls, its
# wrap_up events inside the window's events (at in [start, end + slack), or the seat's last
# event before the start) lasting until the seat's next event (by id) when that one is
# inside them too. A few index lookups per call where _event_sums reads every event.
_WRAPUPS_ONLY: Final = """
CREATE TEMP TABLE kpi_ev AS
WITH a AS (
  SELECT DISTINCT q.seat, q.linkedid FROM queue_entries q
  WHERE q.call_id IN (SELECT call_id FROM kpi_x) AND q.outcome = 'answered'
    AND q.seat IS NOT NULL AND +q.entered_at >= :start AND +q.entered_at < :end
),
w AS (
  SELECT w.id, w.seat, w.at, w.call_id FROM a JOIN seat_events w
    ON w.call_id = a.linkedid AND w.seat = a.seat AND w.status = 'wrap_up'
  WHERE (w.at >= :start AND w.at < :slack)
     OR w.id = (SELECT b.id FROM seat_events b WHERE b.seat = w.seat AND b.at < :start
                ORDER BY b.id DESC LIMIT 1)
),
x AS (
  SELECT w.seat, w.call_id, w.at,
         (SELECT n.at FROM seat_events n WHERE n.seat = w.seat AND n.id > w.id
          ORDER BY n.id LIMIT 1) AS nxt
  FROM w
)
SELECT seat, call_id AS linkedid, SUM(CASE WHEN nxt > at THEN nxt - at ELSE 0 END) AS w,
       CAST(NULL AS VARCHAR(16)) AS status, CAST(NULL AS VARCHAR(32)) AS reason,
       CAST(NULL AS FLOAT) AS s, CAST(NULL AS INTEGER) AS n, CAST(NULL AS INTEGER) AS nc
FROM x WHERE nxt IS NOT NULL AND nxt < :slack AND call_id <> '' GROUP BY seat, call_id
"""


def _window(alias: str, *, scan: bool) -> str:
    """The window's bounds on ``alias.entered_at``; ``scan``: as an expression, so that the
    planner reads the table in order rather than through the ``entered_at`` index (for a
    window over most of the table, a row lookup per entry costs ≈6x a scan, measured)."""
    col = f"+{alias}.entered_at" if scan else f"{alias}.entered_at"
    return f"{col} >= :start AND {col} < :end"


# which of the window's calls a piece reads (kpi_rollup.py keeps the calls that cross a
# midnight apart): all, all but those of ``kpi_x``, or only those
_CALLS: Final = {
    "all": "",
    "without": " AND q.call_id NOT IN (SELECT call_id FROM kpi_x)",
    "only": " AND q.call_id IN (SELECT call_id FROM kpi_x)",
}


def _entries_sql(key_cols: Sequence[str], *, scan: bool, calls: str = "all") -> str:
    """The window's valid entries, read once into ``kpi_e``: the group keys (``k0``..),
    the columns the aggregates read, the wrap-up as the calculator sees it (the chosen
    entry, last answered of its seat and call, gets the seat's wrap-up, or 0) and
    ``multi`` (its call has several entries in the window). ``calls``: a key of _CALLS."""
    keys = "".join(f", {c}" for c in key_cols)
    which = _CALLS[calls]
    return f"""
CREATE TEMP TABLE kpi_e AS
WITH base AS (
  SELECT q.call_id, q.linkedid, q.entry_seq, q.line, q.department, q.seat, q.outcome,
         q.entered_at, q.wait_s, q.talk_s, q.wrapup_s, q.offers, q.transferred_to{keys},
         CASE WHEN q.outcome = 'answered' THEN ROW_NUMBER() OVER (
           PARTITION BY q.seat, q.linkedid, q.outcome = 'answered'
           ORDER BY q.entry_seq DESC, q.entered_at, q.call_id) END AS wrn
  FROM queue_entries q
  WHERE {_window("q", scan=scan)} AND {_VALID}{which}
)
SELECT base.*,
       CASE WHEN wrn = 1 THEN COALESCE(wr.w, 0.0) ELSE base.wrapup_s END AS wrap,
       base.call_id IN (
         SELECT q.call_id FROM queue_entries q
         WHERE {_window("q", scan=scan)} AND q.entry_seq > 1 AND {_VALID}{which}) AS multi
FROM base LEFT JOIN kpi_ev wr ON wr.seat = base.seat AND wr.linkedid = base.linkedid
"""  # nosec B608


def _aggregates(t: Thresholds) -> list[tuple[str, str]]:
    """(name, SQL) of every figure summed per (keys, outcome, seat) over ``kpi_e``, in one
    pass: an extra aggregate is one more pair here, read back by its name."""
    offered = _in(sorted(OFFERED))
    return [
        ("units", "COUNT(*)"),
        (
            "short",
            (
                f"SUM(CASE WHEN outcome = 'abandoned' AND wait_s < {t.short_abandon_s!r} "
                "THEN 1 ELSE 0 END)"
            ),
        ),
        *(
            (
                f"within{i}",
                f"SUM(CASE WHEN outcome = 'answered' AND wait_s <= {n!r} THEN 1 ELSE 0 END)",
            )
            for i, n in enumerate(t.n_s)
        ),
        ("wait", "SUM(wait_s)"),
        ("talk", "SUM(talk_s)"),
        ("wrap", "SUM(wrap)"),
        (
            "transfers",
            (
                "SUM(CASE WHEN outcome = 'transferred_out' OR transferred_to IS NOT NULL "
                "THEN 1 ELSE 0 END)"
            ),
        ),
        ("rona", "SUM(offers)"),
        ("longest", f"MAX(CASE WHEN outcome IN ({offered}) THEN wait_s END)"),
        ("longest_single", f"MAX(CASE WHEN outcome IN ({offered}) AND NOT multi THEN wait_s END)"),
    ]


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


def _key_sql(by: GroupBy, pieces: list[tuple[float, float]], dialect: str) -> str:
    if by in ("line", "department", "seat"):
        return f"{by}"
    width = 86_400 if by == "day" else 3600
    offset = "CASE " + " ".join(f"WHEN entered_at >= {t!r} THEN {o!r}" for t, o in reversed(pieces))
    return floor_int(dialect, f"(entered_at + ({offset} ELSE {pieces[0][1]!r} END)) / {width}")


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


SeatTimes = dict[str, dict[str, Any]]
"""Per seat: ``logged_in``/``occupied`` (lists of seconds), ``not_ready`` (reason -> list),
``rona`` (RONA intervals starting in the window), ``rona_carry`` (the one carried in)."""


def _seat_times() -> SeatTimes:
    return defaultdict(
        lambda: {
            "logged_in": [],
            "occupied": [],
            "not_ready": defaultdict(list),
            "rona": 0,
            "rona_carry": 0,
        }
    )


async def _seat_time(conn: Any, q: Callable[[str], TextClause]) -> SeatTimes:
    rows = await conn.execute(
        q("SELECT seat, status, reason, s, n, nc FROM kpi_ev WHERE status IS NOT NULL")
    )
    out = _seat_times()
    for seat, status_text, reason, s, n, nc in rows:
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
                t["rona_carry"] += nc
    return out


def _seat_figures(entries: SeatTally, times: SeatTimes) -> tuple[SeatFigures, ...]:
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
                rona=t["rona"] + t["rona_carry"] if t else 0,
            )
        )
    return tuple(out)


async def _scan(conn: Any, start: float, end: float) -> bool:
    """Whether the window covers most of the stored entries (then scanned, see _window):
    two index lookups (MIN, MAX), whatever the table's size."""
    lo, hi = (
        await conn.execute(text("SELECT MIN(entered_at), MAX(entered_at) FROM queue_entries"))
    ).one()
    if lo is None or hi is None or hi <= lo:
        return False
    return bool((min(end, hi) - max(start, lo)) >= (hi - lo) / 4)


def _add_part(tally: Tally, o: Outcome, m: Any, x: tuple[int, int, int]) -> None:
    """One aggregate row of ``kpi_e`` (its units all of outcome ``o``; ``x`` its wait, talk
    and wrap-up sums, exact) into ``tally``."""
    tally.units += m["units"]
    tally.outcomes[o] = tally.outcomes.get(o, 0) + m["units"]
    tally.short_abandoned += m["short"]
    if o is Outcome.ANSWERED:
        tally.within = [w + m[f"within{i}"] for i, w in enumerate(tally.within)]
        tally.answered_wait += x[0]
        tally.talk += x[1]
        tally.wrapup += x[2]
    tally.transfers_out += m["transfers"]
    tally.rona += m["rona"]
    longest = m["longest"]
    if longest is not None and (tally.longest_wait_s is None or longest > tally.longest_wait_s):
        tally.longest_wait_s = longest


def _rate(tally: Tally, label: str, n: int, thresholds: Thresholds) -> None:
    """``n`` ratings ``label``: :meth:`Tally.rate` ``n`` times."""
    if label in thresholds.satisfied:
        tally.ratings += n
        tally.ratings_satisfied += n
    elif label in thresholds.unsatisfied:
        tally.ratings += n
    else:
        tally.ratings_invalid += n


@dataclass(slots=True)
class Piece:
    """A window's report before its figures: every part additive over windows laid end to
    end whose cuts no call crosses (cti/adapters/db/kpi_rollup.py), merged by :meth:`merge`
    in time order."""

    tallies: dict[tuple[Any, ...], Tally] = field(default_factory=dict)
    """Per group key (one value per grouping key), one unit per entry."""
    seat_tallies: dict[tuple[Any, ...], SeatTally] = field(default_factory=dict)
    all_seats: SeatTally = field(default_factory=SeatTally)
    centre: Tally | None = None
    """One unit per call."""
    times: SeatTimes = field(default_factory=_seat_times)

    def merge(self, later: Piece) -> None:
        """Add ``later`` (the window right after this one's); its parts become this one's
        where this one has none (a piece is merged once, then dropped)."""
        for k, tally in later.tallies.items():
            have = self.tallies.get(k)
            if have is None:
                self.tallies[k] = tally
            else:
                have.merge(tally)
        for k, st in later.seat_tallies.items():
            mine = self.seat_tallies.get(k)
            if mine is None:
                self.seat_tallies[k] = st
                continue
            for seat, (n, talk, wrap) in st.seats.items():
                mine.add_sums(seat, n, talk, wrap)
        for seat, (n, talk, wrap) in later.all_seats.seats.items():
            self.all_seats.add_sums(seat, n, talk, wrap)
        if later.centre is not None:
            if self.centre is None:
                self.centre = later.centre
            else:
                self.centre.merge(later.centre)
        _merge_times(self.times, later.times)


def _merge_times(mine: SeatTimes, later: SeatTimes) -> None:
    for seat, t in later.items():
        mine_t = mine[seat]
        mine_t["logged_in"] += t["logged_in"]
        mine_t["occupied"] += t["occupied"]
        for r, d in t["not_ready"].items():
            mine_t["not_ready"][r] += d
        # the interval carried into `later` started in the window before: counted there
        mine_t["rona"] += t["rona"]


def key_columns(
    keys: Sequence[GroupBy], pieces: list[tuple[float, float]], dialect: str
) -> list[str]:
    return [f"{_key_sql(k, pieces, dialect)} AS k{i}" for i, k in enumerate(keys)]


async def piece_sql(  # noqa: C901, PLR0912, PLR0915 - one pass over the results
    conn: Any,
    start: float,
    end: float,
    *,
    thresholds: Thresholds,
    keys: Sequence[GroupBy],
    tz: tzinfo,
    apart: Collection[str] = (),
    only: bool = False,
) -> Piece:
    """The window's :class:`Piece` from SQL, on ``conn`` (its temporary tables, see
    :func:`report_sql`). ``apart`` (call ids): the piece leaves these calls out; with
    ``only``, it is the piece of these calls alone, without seat time (which is the
    other pieces', cut by time; cti/adapters/db/kpi_rollup.py)."""
    t = thresholds
    pieces = _offsets(start, end, tz)
    kcols = [f"k{i}" for i in range(len(keys))]
    sel_keys = "".join(c + ", " for c in kcols)
    owner_keys = "".join(f"owner.{c}, " for c in kcols)
    aggs = _aggregates(t)
    params = {"start": start, "end": end, "slack": end + _WRAPUP_SLACK_S}
    dialect = conn.dialect.name
    # PostgreSQL keeps a connection's temporary tables and, in asyncpg, its prepared
    # statements for the pooled connection's life: a statement prepared on the last
    # report's kpi_e is refused once kpi_e has other columns (another grouping:
    # InvalidCachedStatementError). Each report names its tables anew there.
    tag = f"_{secrets.token_hex(4)}" if dialect == "postgresql" else ""

    def q(sql: str) -> TextClause:
        return text(_TEMP_NAMES.sub(lambda m: m.group(0) + tag, sql))

    cols = key_columns(keys, pieces, dialect)
    calls = "only" if only else "without" if apart else "all"
    # the calls of kpi_x are found by their key (the primary key's prefix), not by the
    # window's index: `scan` spells the window as an expression
    scan = True if only else await _scan(conn, start, end)
    await conn.execute(q("DROP TABLE IF EXISTS kpi_ev"))
    await conn.execute(q("DROP TABLE IF EXISTS kpi_e"))
    await conn.execute(q("DROP TABLE IF EXISTS kpi_x"))
    if calls != "all":
        await conn.execute(q("CREATE TEMP TABLE kpi_x (call_id VARCHAR(128) PRIMARY KEY)"))
        if apart:
            await conn.execute(
                q("INSERT INTO kpi_x (call_id) VALUES (:c)"), [{"c": c} for c in sorted(apart)]
            )
    # the events' sums (wrap-ups, seat time) once, in an indexed temporary table of
    # this connection (a CTE joined to a million entries is scanned per row: no index
    # on it in SQLite 3.40)
    await conn.execute(q(_WRAPUPS_ONLY if only else _event_sums(scan=scan)), params)
    await conn.execute(q("CREATE INDEX ix_kpi_ev ON kpi_ev (seat, linkedid)"))
    await conn.execute(q(_entries_sql(cols, scan=scan, calls=calls)), params)
    groups_rows = (
        await conn.execute(
            q(
                f"SELECT {sel_keys}outcome, seat, "  # nosec B608
                + ", ".join(f"{sql} AS {name}" for name, sql in aggs)
                + f" FROM kpi_e GROUP BY {', '.join([*kcols, 'outcome', 'seat'])}"
            )
        )
    ).all()
    # ratings: one per call, counted for its last answered entry of the window (a call
    # with one entry in the window: that entry; the few others ranked)
    rating_rows = (
        await conn.execute(
            q(
                f"WITH owner AS (SELECT {sel_keys}call_id FROM kpi_e "  # nosec B608
                "WHERE outcome = 'answered' AND NOT multi "
                f"UNION ALL SELECT {sel_keys}call_id FROM (SELECT kpi_e.*, ROW_NUMBER() "
                "OVER (PARTITION BY call_id ORDER BY entry_seq DESC, entered_at DESC, "
                "wait_s DESC) AS rn FROM kpi_e WHERE outcome = 'answered' AND multi) x "
                f"WHERE rn = 1) SELECT {owner_keys}"
                "cr.satisfaction, COUNT(*) FROM owner JOIN call_records cr "
                "ON cr.call_id = owner.call_id WHERE cr.satisfaction IS NOT NULL AND "
                f"cr.ended_at >= 0 AND cr.ended_at <= {_MAX} "
                f"GROUP BY {owner_keys}cr.satisfaction"
            )
        )
    ).all()
    # the calls with more than one entry in the window, read whole for the centre
    multi = (
        await conn.execute(
            q(
                "SELECT q.*, e.wrap AS wrap_eff FROM kpi_e e JOIN queue_entries q "
                "ON q.call_id = e.call_id AND q.entry_seq = e.entry_seq WHERE e.multi"
            )
        )
    ).all()
    times = await _seat_time(conn, q)
    await conn.execute(q("DROP TABLE kpi_e"))
    await conn.execute(q("DROP TABLE kpi_ev"))
    if calls != "all":
        await conn.execute(q("DROP TABLE kpi_x"))

    n_k = len(keys)
    out = Piece(times=times)
    tallies = out.tallies
    single_longest: float | None = None  # of the calls with one entry in the window
    for row in groups_rows:
        m = row._mapping  # noqa: SLF001 - SQLAlchemy's public row API
        k = tuple(row[:n_k])
        o = Outcome(m["outcome"])
        tally = tallies.get(k)
        if tally is None:
            tally = tallies[k] = Tally.of(t)
        answered = o is Outcome.ANSWERED
        x = (exact(m["wait"]), exact(m["talk"]), exact(m["wrap"])) if answered else (0, 0, 0)
        _add_part(tally, o, m, x)
        ls = m["longest_single"]
        if ls is not None and (single_longest is None or ls > single_longest):
            single_longest = ls
        if answered and m["seat"] is not None:
            out.seat_tallies.setdefault(k, SeatTally()).add_sums(m["seat"], m["units"], x[1], x[2])
            out.all_seats.add_sums(m["seat"], m["units"], x[1], x[2])
    for row in rating_rows:
        k = tuple(row[:n_k])
        label, n = row[n_k:]
        _rate(tallies.setdefault(k, Tally.of(t)), label, n, t)

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
    for tally in tallies.values():
        centre.merge(tally)
    for es in entries.values():
        for e in es:
            centre.remove(e)
    centre.longest_wait_s = single_longest
    for es in entries.values():
        centre.add(collapse_call(es))
    out.centre = centre
    return out


def piece_figures(
    p: Piece, *, thresholds: Thresholds, keys: Sequence[GroupBy]
) -> tuple[Figures, list[tuple[str | None, Figures]]]:
    """The centre and the groups (sorted by key) of a window's :class:`Piece`."""
    t = thresholds
    times = p.times
    whole = (p.centre or Tally.of(t)).figures(t, seats=_seat_figures(p.all_seats, times))
    groups: list[tuple[str | None, Figures]] = []
    for k, tally in p.tallies.items():
        seats = p.seat_tallies.get(k, SeatTally())
        if list(keys) == ["seat"]:
            fig = tally.figures(
                t, seats=_seat_figures(seats, {k[0]: times[k[0]]} if k[0] in times else {})
            )
        else:
            fig = tally.figures(t, seats=seats.figures())
        groups.append((_key(keys, k), fig))
    if list(keys) == ["seat"]:  # seats with time but no entry are groups too
        have = {k for k, _ in groups}
        for seat in sorted(times.keys() - have):
            empty = Tally.of(t).figures(t, seats=_seat_figures(SeatTally(), {seat: times[seat]}))
            groups.append((seat, empty))
    groups.sort(key=lambda kv: (kv[0] is not None, kv[0] or ""))
    return whole, groups


async def with_callbacks_sql(
    store: Store,
    start: float,
    end: float,
    whole: Figures,
    groups: list[tuple[str | None, Figures]],
    *,
    thresholds: Thresholds,
    keys: Sequence[GroupBy],
    tz: tzinfo,
) -> tuple[Figures, list[tuple[str | None, Figures]]]:
    """The report with the callback list's figures: a query of their own
    (cti/adapters/db/kpi_callbacks.py)."""
    t = thresholds
    cb_total, cb_groups = await callback_figures_sql(
        store, start, end, by=list(keys), within_min=t.callback_within_min, tz=tz
    )
    return attach_callbacks(
        whole, groups if keys else [], cb_total, cb_groups, grouped=bool(keys), thresholds=t
    )


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
    day), the groups (one unit per entry) sorted by key. The raw path: the definition the
    roll-up (cti/adapters/db/kpi_rollup.py) is checked against.

    The window's entries are read once (into the temporary ``kpi_e`` of this connection,
    keys and wrap-ups computed), then every count and sum comes from one ``GROUP BY keys,
    outcome, seat`` over it (:func:`_aggregates`); ratings and the multi-entry calls are
    small queries on the same table."""
    keys: list[GroupBy] = [] if by is None else [by] if isinstance(by, str) else list(by)
    async with store.engine.connect() as conn:
        p = await piece_sql(conn, start, end, thresholds=thresholds, keys=keys, tz=tz)
    whole, groups = piece_figures(p, thresholds=thresholds, keys=keys)
    return await with_callbacks_sql(
        store, start, end, whole, groups, thresholds=thresholds, keys=keys, tz=tz
    )
