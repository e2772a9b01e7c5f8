"""A year of a mid-size city in SQLite, then the time of `cti report` over it.

Usage: python benchmarks/report.py [--calls 100000,1000000] [--db PATH] [--seed 1]
       [--old "line x day"] [--live N]

Generates --calls calls over one year (2025, Asia/Shanghai) into a fresh SQLite database
with the daemon's own schema (cti/adapters/db/tables.py): per call its queue entries (5 %
transferred on to a department line: a second entry), its call record (a survey rating
for a third of the answered) and its seat's events (ringing, talking, wrap-up, ready).
The mix: lines 12345 (70 %), 12315, 12369, 12333 and 110; outcomes ≈ 86 % answered, 7 %
abandoned, callback requests, voicemail, IVR-only, after hours, blacklisted; waits from
0 to a few minutes; calls by hour of day as a hotline's (peaks 9-11 and 14-16). Rows go
in with sqlite3's executemany, journal off (a benchmark database, not a daemon's).

Then it times the report of the whole year through the code path of `cti report` and GET
/api/v1/stats (cti/adapters/db/kpi_sql.py) by line, department, seat, hour, day and
line x day, and prints one table with the row counts, the database size and the machine.
For each size of --calls (comma-separated) a database is generated; the groupings named by
--old are also timed with the report as it was before issue 17's one-pass rewrite
(benchmarks/_kpi_sql_before.py), in the same run (the old one costs ≈50 s per grouping
at 1 M calls: by default only line x day, the target).
With --live N it also times one update of the live figures with N entries in the window,
the old way (every entry recomputed) and as running totals (cti/kpis/running.py).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, func, select

from benchmarks._kpi_sql_before import report_sql as report_sql_before
from benchmarks._machine import machine_line, version_of
from cti.adapters.db.kpi_rollup import days_in, report, roll_days
from cti.adapters.db.kpi_sql import report_sql
from cti.adapters.db.rows import queue_entry_row
from cti.adapters.db.store import Store
from cti.adapters.db.tables import (
    CALL_RECORDS,
    KPI_ROLLUP,
    METADATA,
    QUEUE_ENTRIES,
    SEAT_EVENTS,
)
from cti.kpis import GroupBy, Origin, Outcome, QueueEntry, Thresholds, compute
from cti.kpis.running import RunningWindows

TZ_NAME = "Asia/Shanghai"
TZ = ZoneInfo(TZ_NAME)
YEAR_START = datetime(2025, 1, 1, tzinfo=TZ).timestamp()
YEAR_END = datetime(2026, 1, 1, tzinfo=TZ).timestamp()
LINES = (("12345", 70), ("12315", 10), ("12369", 5), ("12333", 10), ("110", 5))
DEPARTMENTS = ("water", "roads", "housing", "health", "market", "transport", None)
OUTCOMES = (
    (Outcome.ANSWERED, 860),
    (Outcome.ABANDONED, 70),
    (Outcome.CALLBACK_REQUESTED, 20),
    (Outcome.VOICEMAIL, 10),
    (Outcome.IVR_ONLY, 20),
    (Outcome.AFTER_HOURS, 15),
    (Outcome.BLACKLISTED, 5),
)
# calls per hour of day (relative): a hotline's day
HOURS = (1, 1, 1, 1, 1, 2, 4, 8, 14, 18, 18, 15, 10, 12, 16, 17, 15, 12, 9, 7, 5, 4, 3, 2)
SEATS = [f"{1000 + i}" for i in range(100)]
LABELS = ("非常满意", "满意", "基本满意", "不满意")
GROUPINGS: tuple[tuple[str, GroupBy | tuple[GroupBy, ...]], ...] = (
    ("line", "line"),
    ("department", "department"),
    ("seat", "seat"),
    ("hour", "hour"),
    ("day", "day"),
    ("line x day", ("line", "day")),
)


def _pick(rng: random.Random, weighted: Sequence[tuple[Any, int]]) -> Any:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def calls(n: int, seed: int) -> Iterator[tuple[list[QueueEntry], str | None, list[dict[str, Any]]]]:
    """Per call: its entries, its rating (or None) and its seat events."""
    rng = random.Random(seed)
    days = int((YEAR_END - YEAR_START) // 86_400)
    hours = list(range(24))
    for i in range(n):
        at = (
            YEAR_START
            + rng.randrange(days) * 86_400
            + rng.choices(hours, HOURS)[0] * 3600
            + rng.random() * 3600
        )
        line = _pick(rng, LINES)
        outcome = _pick(rng, OUTCOMES)
        origin = (
            Origin.POLICE_110
            if line == "110"
            else rng.choice([Origin.DIRECT] * 8 + [Origin.SPECIAL_NUMBER, Origin.CALLBACK])
        )
        ivr = outcome in (Outcome.IVR_ONLY, Outcome.AFTER_HOURS, Outcome.BLACKLISTED)
        wait = 0.0 if ivr else min(600.0, rng.expovariate(1 / 12.0))
        answered = outcome is Outcome.ANSWERED
        seat = rng.choice(SEATS) if answered else None
        ring = min(wait, rng.uniform(2, 8)) if answered else 0.0
        talk = rng.uniform(60, 420) if answered else 0.0
        wrapup = rng.uniform(5, 60) if answered else 0.0
        transfer = answered and rng.random() < 0.05
        call_id = f"{1735660800 + i // 1000}.{i}"
        first = QueueEntry(
            call_id=call_id,
            node="main",
            line=line,
            department=rng.choice(DEPARTMENTS),
            origin=origin,
            entered_at=at,
            first_offered_at=at + wait - ring if answered else None,
            connected_at=at + wait if answered else None,
            left_at=at + wait + talk,
            outcome=outcome,
            seat=seat,
            wait_s=wait,
            ring_s=ring,
            talk_s=talk,
            offers=1 if answered and rng.random() < 0.03 else 0,
            transferred_to="dept-" + str(rng.choice(DEPARTMENTS[:-1])) if transfer else None,
        )
        entries = [first]
        events: list[dict[str, Any]] = []
        if answered and seat is not None and first.left_at is not None:
            end = first.left_at
            events = [
                _event(seat, at + wait - ring, "ringing", None),
                _event(seat, at + wait, "talking", None),
                _event(seat, end, "wrap_up", call_id),
                _event(seat, end + wrapup, "ready", None),
            ]
        if transfer and first.left_at is not None:
            w2 = rng.expovariate(1 / 20.0)
            entries.append(
                QueueEntry(
                    call_id=call_id,
                    node="main",
                    entry_seq=2,
                    line="dept-" + str(rng.choice(DEPARTMENTS[:-1])),
                    origin=Origin.TRANSFER,
                    entered_at=first.left_at,
                    left_at=first.left_at + w2,
                    outcome=Outcome.ABANDONED if rng.random() < 0.3 else Outcome.VOICEMAIL,
                    wait_s=w2,
                )
            )
        label = rng.choice(LABELS) if answered and rng.random() < 0.33 else None
        yield entries, label, events


def _event(seat: str, at: float, status: str, call_id: str | None) -> dict[str, Any]:
    return {
        "seat": seat,
        "at": at,
        "status": status,
        "reason": None,
        "previous": "",
        "cause": "bench",
        "call_id": call_id,
    }


def _record(e: QueueEntry, label: str | None) -> dict[str, Any]:
    return {
        "call_id": f"{e.node}:{e.call_id}",
        "node": e.node,
        "linkedid": e.call_id,
        "caller": "13800000000",
        "caller_name": "",
        "satisfaction": label,
        "dialed": e.line,
        "line": e.line,
        "started_at": e.entered_at,
        "answered_at": e.connected_at,
        "ended_at": e.left_at,
        "answered_by": e.seat,
        "rang": "[]",
        "outcome": str(e.outcome),
        "hangup_by": "caller",
        "cause": 16,
        "transfers": "[]",
        "wait_s": e.wait_s,
        "talk_s": e.talk_s,
        "history_complete": 1,
        "stored_at": e.left_at,
    }


def _insert(con: sqlite3.Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    cols = [c.name for c in table.columns if c.name != "id" or table is not SEAT_EVENTS]
    sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    con.executemany(sql, [tuple(r.get(c) for c in cols) for r in rows])


def existing(db: Path) -> dict[str, int]:
    """The row counts of a database generated before (``--reuse``)."""
    con = sqlite3.connect(db)
    try:
        n = {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in _TABLES}
        n["calls"] = n["call_records"]
        return n
    finally:
        con.close()


_TABLES = ("queue_entries", "call_records", "seat_events")


def generate(db: Path, n: int, seed: int) -> tuple[dict[str, int], float]:
    """The database of ``n`` calls; returns the row counts and the seconds it took."""
    t0 = time.perf_counter()
    db.unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{db}")
    METADATA.create_all(engine)  # the daemon's schema, indexes included
    engine.dispose()
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    entries: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    counts = {"calls": 0, "queue_entries": 0, "call_records": 0, "seat_events": 0}

    def flush() -> None:
        _insert(con, QUEUE_ENTRIES, entries)
        _insert(con, CALL_RECORDS, records)
        _insert(con, SEAT_EVENTS, events)
        counts["queue_entries"] += len(entries)
        counts["call_records"] += len(records)
        counts["seat_events"] += len(events)
        entries.clear()
        records.clear()
        events.clear()

    for es, label, evs in calls(n, seed):
        counts["calls"] += 1
        entries.extend(queue_entry_row(e) for e in es)
        records.append(_record(es[0], label))
        events.extend(evs)
        if len(entries) >= 50_000:
            flush()
    flush()
    # the daemon appends a seat's events in time order (the report reads a seat's
    # intervals by id); the calls above are drawn in random order, so number them by time
    cols = "seat, at, status, reason, previous, cause, call_id"
    con.execute(f"CREATE TEMP TABLE se AS SELECT {cols} FROM seat_events ORDER BY at, id")
    con.execute("DELETE FROM seat_events")
    con.execute(f"INSERT INTO seat_events ({cols}) SELECT {cols} FROM se ORDER BY rowid")
    con.execute("DROP TABLE se")
    con.commit()
    con.execute("ANALYZE")
    con.close()
    return counts, time.perf_counter() - t0


@dataclass
class Timed:
    name: str
    raw_s: float | None  # the raw one-pass report (kpi_sql.report_sql), None: not timed
    before_s: float | None  # the report before issue 17's one pass, None: not timed
    rollup_s: float  # the same report from the per-day roll-up (kpi_rollup.report)
    groups: int
    equal: bool | None  # the roll-up's figures equal the raw's (None: raw not timed)


@dataclass
class RollupBuild:
    days: int
    seconds: float
    rows: int


def _same(a: Any, b: Any) -> bool:
    """Equal figures, floats to 1e-9 relative (as tests/kpis/test_kpi_sql.py)."""
    if is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            _same(getattr(a, f.name), getattr(b, f.name)) for f in fields(a)
        )
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


async def time_reports(
    db: Path, old: Sequence[str], raw: Sequence[str]
) -> tuple[RollupBuild, list[Timed]]:
    """The roll-up's build (every day of the year rolled, as the first `cti report` over
    the year does), then per grouping the year's report from the roll-up and, for those
    in ``raw``/``old``, by the raw path / the path before issue 17 (same groups checked)."""
    store = Store(f"sqlite+aiosqlite:///{db}")
    await store.open()  # as the daemon: creates the indexes an existing database lacks
    t = Thresholds()
    now = YEAR_END + 86_400
    out = []
    try:
        t0 = time.perf_counter()
        n_days = await roll_days(
            store, days_in(YEAR_START, YEAR_END, TZ), thresholds=t, tz=TZ, tz_name=TZ_NAME
        )
        build_s = time.perf_counter() - t0
        async with store.engine.connect() as conn:
            n_rows = (await conn.execute(select(func.count()).select_from(KPI_ROLLUP))).scalar()
        build = RollupBuild(n_days, build_s, int(n_rows or 0))
        for name, by in GROUPINGS:
            t0 = time.perf_counter()
            r_whole, r_groups = await report(
                store, YEAR_START, YEAR_END, thresholds=t, by=by, tz=TZ, tz_name=TZ_NAME, now=now
            )
            rollup_s = time.perf_counter() - t0
            raw_s = before_s = None
            equal = None
            if name in raw:
                t0 = time.perf_counter()
                whole, groups = await report_sql(
                    store, YEAR_START, YEAR_END, thresholds=t, by=by, tz=TZ
                )
                raw_s = time.perf_counter() - t0
                equal = _same((r_whole, r_groups), (whole, groups))
                if not equal:
                    print(f"MISMATCH by {name}: the roll-up and the raw reports differ")
            if name in old:
                t0 = time.perf_counter()
                _, was = await report_sql_before(
                    store, YEAR_START, YEAR_END, thresholds=t, by=by, tz=TZ
                )
                before_s = time.perf_counter() - t0
                if [k for k, _ in was] != [k for k, _ in r_groups] or any(
                    a.units != b.units or a.answered != b.answered
                    for (_, a), (_, b) in zip(was, r_groups, strict=True)
                ):
                    print(f"MISMATCH by {name}: the old and new reports differ")
            out.append(Timed(name, raw_s, before_s, rollup_s, len(r_groups), equal))
    finally:
        await store.close()
    return build, out


@dataclass
class LiveCost:
    entries: int
    before_ms: float
    after_ms: float


def live_cost(n: int, seed: int) -> LiveCost:
    """One update with ``n`` entries in the 24 h window: the old full recompute (every line
    and the centre, today and rolling) against running totals (add one call, read all)."""
    t = Thresholds()
    rng = random.Random(seed)
    now = YEAR_START + 86_400
    es: list[QueueEntry] = []
    for es_, _, _ in calls(n, seed):
        for e in es_:
            at = now - rng.random() * 86_000
            shift = at - e.entered_at
            es.append(_moved(e, shift))
        if len(es) >= n:
            break
    lines = sorted({e.line for e in es})
    t0 = time.perf_counter()
    for line in lines:  # the old _recompute: per line and centre, today and rolling
        mine = [e for e in es if e.line == line]
        compute(mine, thresholds=t)
        compute([e for e in mine if e.entered_at >= now - 3600], thresholds=t)
    compute(es, thresholds=t, per_call=True)
    before = time.perf_counter() - t0
    r = RunningWindows(t)
    r.advance(now, now - 3600)
    r.add(es)
    extra = [_moved(e, now - 10 - e.entered_at) for e in next(calls(1, seed + 1))[0]]
    t0 = time.perf_counter()
    r.add(extra)
    for line in r.lines():
        r.figures(r.rolling, line)
        r.figures(r.today, line)
    r.figures(r.rolling, None)
    r.figures(r.today, None)
    after = time.perf_counter() - t0
    return LiveCost(len(es), before * 1000, after * 1000)


def _moved(e: QueueEntry, shift: float) -> QueueEntry:
    from dataclasses import replace  # noqa: PLC0415

    def m(x: float | None) -> float | None:
        return None if x is None else x + shift

    return replace(
        e,
        entered_at=e.entered_at + shift,
        first_offered_at=m(e.first_offered_at),
        connected_at=m(e.connected_at),
        left_at=m(e.left_at),
    )


def render(
    counts: dict[str, int],
    size: int,
    gen_s: float,
    build: RollupBuild,
    reports: list[Timed],
) -> list[str]:
    def sec(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    lines = [
        (
            f"calls {counts['calls']:,}  queue_entries {counts['queue_entries']:,}  "
            f"call_records {counts['call_records']:,}  seat_events {counts['seat_events']:,}  "
            f"database {size / 1e6:.0f} MB  generated in {gen_s:.1f} s"
        ),
        (
            f"roll-up: {build.days} days rolled in {build.seconds:.1f} s "
            f"({build.seconds / max(build.days, 1) * 1000:.0f} ms a day), "
            f"{build.rows:,} kpi_rollup rows"
        ),
        (
            f"{'report by':<12} {'raw s':>8} {'roll-up s':>9} {'speed-up':>8} {'before s':>8} "
            f"{'groups':>7} {'equal':>5}"
        ),
    ]
    for r in reports:
        ratio = "-" if r.raw_s is None else f"{r.raw_s / max(r.rollup_s, 1e-9):.0f}x"
        eq = "-" if r.equal is None else "yes" if r.equal else "NO"
        lines.append(
            f"{r.name:<12} {sec(r.raw_s):>8} {r.rollup_s:>9.2f} {ratio:>8} "
            f"{sec(r.before_s):>8} {r.groups:>7} {eq:>5}"
        )
    return lines


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--calls", type=_sizes, default=[100_000, 1_000_000], help="e.g. 100000,1000000")
    p.add_argument("--db", type=Path, default=Path("/tmp/cti-bench-report.db"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--old",
        default="",
        help="groupings also timed the old way, comma-separated ('all', '' for none)",
    )
    p.add_argument(
        "--raw",
        default="all",
        help="groupings also timed by the raw path (and compared), comma-separated ('' none)",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="time the reports over --db as it is (generated before: one --calls size; its "
        "roll-up is dropped and built again)",
    )
    p.add_argument("--live", type=int, default=0, help="entries in the live window (0: skip)")
    args = p.parse_args(argv)
    if not args.calls or not all(1 <= n <= 5_000_000 for n in args.calls):
        p.error("--calls 1..5000000 each")
    if not 0 <= args.live <= 5_000_000:
        p.error("--live 0..5000000")
    names = [n for n, _ in GROUPINGS]
    args.old = names if args.old == "all" else [o.strip() for o in args.old.split(",") if o.strip()]
    args.raw = names if args.raw == "all" else [o.strip() for o in args.raw.split(",") if o.strip()]
    if unknown := (set(args.old) | set(args.raw)) - set(names):
        p.error(f"--old: unknown grouping {sorted(unknown)}; one of {names}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(machine_line())
    print(f"SQLite {sqlite3.sqlite_version}; SQLAlchemy {version_of('sqlalchemy')}")
    for n in args.calls:
        if args.reuse:
            counts, gen_s = existing(args.db), 0.0
            con = sqlite3.connect(args.db)
            con.execute("DELETE FROM kpi_rollup")
            con.commit()
            con.close()
        else:
            counts, gen_s = generate(args.db, n, args.seed)
        build, reports = asyncio.run(time_reports(args.db, args.old, args.raw))
        for line in render(counts, args.db.stat().st_size, gen_s, build, reports):
            print(line, flush=True)
    if args.live:
        c = live_cost(args.live, args.seed)
        print(
            f"live update, {c.entries:,} entries in the window: full recompute "
            f"{c.before_ms:,.1f} ms, running totals {c.after_ms:.3f} ms "
            f"({c.before_ms / max(c.after_ms, 1e-9):,.0f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
