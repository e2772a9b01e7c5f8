"""The roll-up report (cti/adapters/db/kpi_rollup.py) equals the raw report
(``report_sql``, the definition) for any facts and windows: whole days, windows that start
or end mid-day, calls spanning midnight (a call's entries 30 s apart from any time), seat
intervals and wrap-ups across midnight, in the report's zone (Asia/Shanghai, UTC+8: the
days are local days, not UTC ones); and after a fact written late for a rolled day.
The calls kept apart (crossing a midnight: entries on both sides, on one call id or several
sharing a linkedid; a wrap-up past the day's end + slack or before its start) are drawn
on purpose at the midnights, and the whole days are then still read from the roll-up.
On SQLite and PostgreSQL (``db_url``)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from cti.adapters.db import kpi_rollup
from cti.adapters.db.kpi_rollup import days_in, report
from cti.adapters.db.kpi_sql import report_sql
from cti.adapters.db.rows import queue_entry_row
from cti.adapters.db.store import Store
from cti.adapters.db.tables import KPI_ROLLUP
from cti.kpis import GroupBy, Outcome, QueueEntry
from tests.kpis.facts import T0, entry
from tests.kpis.test_kpi_sql import END, START, TZ, close, facts, store_facts
from tests.kpis.test_kpi_sql import T as THRESHOLDS

NAME = "Asia/Shanghai"
NOW = END + 10 * 86_400  # every day of the facts closed
DAY0 = days_in(START, END, TZ)[0].start  # the first local midnight after START
BYS: tuple[GroupBy | tuple[GroupBy, ...] | None, ...] = (
    None,
    "line",
    "department",
    "seat",
    "hour",
    "day",
    ("line", "day"),
)


@st.composite
def crossing(draw: st.DrawFn) -> tuple[list[QueueEntry], dict[str, str], list[dict[str, Any]]]:
    """``facts()`` and calls across the midnights on purpose: entries a few seconds to
    minutes either side (each entry's node drawn: one call id, or several sharing a
    linkedid), answered ones with wrap-up events just before midnight, or lasting past
    the day's end + the slack, or right after midnight for a call of the day before."""
    entries, rated, events = draw(facts())
    seats = ["s1", "s2", "s4"]
    for m in range(draw(st.integers(1, 6))):
        midnight = DAY0 + draw(st.integers(-1, 2)) * 86_400 - T0
        first = draw(st.floats(-300, 0, allow_nan=False, exclude_max=True))
        seat = draw(st.sampled_from(seats))
        n_entries = draw(st.integers(1, 3))
        for seq in range(1, n_entries + 1):
            outcome = draw(
                st.sampled_from([Outcome.ANSWERED, Outcome.ABANDONED, Outcome.VOICEMAIL])
            )
            entries.append(
                entry(
                    f"m{m}",
                    outcome,
                    draw(st.floats(0, 60, allow_nan=False)),
                    at=midnight + first + draw(st.floats(0, 200, allow_nan=False)) * (seq - 1),
                    talk_s=draw(st.floats(0.0, 400.0, allow_nan=False)),
                    seat=seat,
                    line=draw(st.sampled_from(["12345", "110"])),
                    entry_seq=seq,
                    node=draw(st.sampled_from(["n1", "n2"])),
                )
            )
        for c in {f"{e.node}:{e.call_id}" for e in entries if e.call_id == f"m{m}"}:
            if draw(st.booleans()):
                rated[c] = draw(st.sampled_from(["满意", "不满意", "?"]))
        # the wrap-up of the call's seat: before midnight, after it, or far after it
        wrap_at = T0 + midnight + draw(st.sampled_from([-30.0, 30.0, 3590.0, 3700.0]))
        nxt = draw(st.sampled_from([5.0, 60.0, 4000.0, None]))
        events.append(_ev(seat, wrap_at, "wrap_up", f"m{m}"))
        if nxt is not None:
            events.append(_ev(seat, wrap_at + nxt, "ready", None))
    events.sort(key=lambda e: e["at"])  # a seat's events are stored in time order
    return entries, rated, events


def _ev(seat: str, at: float, status: str, call_id: str | None) -> dict[str, Any]:
    return {
        "seat": seat,
        "at": at,
        "status": status,
        "reason": None,
        "previous": "ready",
        "cause": "test",
        "call_id": call_id,
    }


async def _both(store: Store, lo: float, hi: float, by: Any) -> None:
    want = await report_sql(store, lo, hi, thresholds=THRESHOLDS, by=by, tz=TZ)
    got = await report(store, lo, hi, thresholds=THRESHOLDS, by=by, tz=TZ, tz_name=NAME, now=NOW)
    close(got, want, f"{by} [{lo - DAY0}, {hi - DAY0})")


async def _fresh_store(db: Path | str, data: Any) -> Store:
    store = await store_facts(db, *data)
    async with store.engine.begin() as conn:
        await conn.execute(KPI_ROLLUP.delete())
    return store


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.one_of(facts(), crossing()),
    st.sampled_from(BYS),
    st.integers(-1, 1),
    st.integers(1, 3),
    st.floats(0, 86_399, allow_nan=False),
    st.floats(0, 86_399, allow_nan=False),
)
def test_the_roll_up_report_equals_the_raw_report(
    db_url: str,
    data: tuple[list[QueueEntry], dict[str, str], list[dict[str, Any]]],
    by: Any,
    first: int,
    n_days: int,
    head: float,
    tail: float,
) -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as d:
            db = Path(d) / "cti.db" if db_url.startswith("sqlite") else db_url
            store = await _fresh_store(db, data)
            try:
                lo = DAY0 + first * 86_400
                hi = lo + n_days * 86_400
                await _both(store, lo, hi, by)  # whole days (rolls them)
                await _both(store, lo - head, hi + tail, by)  # mid-day edges
                await _both(store, START, END, by)
                # a fact written late for a rolled day: a call's entry on day 1
                late = entry(
                    "late",
                    Outcome.ANSWERED,
                    4.0,
                    at=DAY0 + 86_400 + 600 - T0,
                    talk_s=30.0,
                    seat="s1",
                    line="12315",
                )
                await store.upsert_calls([], entry_rows=[queue_entry_row(late)])
                await _both(store, lo, hi, by)
                await _both(store, START, END, by)
            finally:
                await store.close()

    asyncio.run(run())


def test_whole_days_are_read_from_the_roll_up(db_url: str) -> None:
    # one day of ordinary calls: rolled once, then read (no second roll), and its counters
    # give the raw figures
    async def run() -> None:
        with tempfile.TemporaryDirectory() as d:
            db = Path(d) / "cti.db" if db_url.startswith("sqlite") else db_url
            at0 = DAY0 + 86_400 + 3600 - T0
            es = [
                entry(f"c{i}", Outcome.ANSWERED, float(i), at=at0 + 600 * i, talk_s=60.0)
                for i in range(20)
            ]
            store = await _fresh_store(db, (es, {}, []))
            try:
                lo, hi = DAY0 + 86_400, DAY0 + 2 * 86_400
                for by in BYS:
                    await _both(store, lo, hi, by)
                async with store.engine.connect() as conn:
                    n, rolled = (
                        await conn.execute(
                            select(func.count(), func.max(KPI_ROLLUP.c.rolled_at)).where(
                                KPI_ROLLUP.c.dirty.is_(False), KPI_ROLLUP.c.clean_start
                            )
                        )
                    ).one()
                assert n == 5  # one day, five grains
                await _both(store, lo, hi, "line")
                async with store.engine.connect() as conn:
                    again = (await conn.execute(select(func.max(KPI_ROLLUP.c.rolled_at)))).scalar()
                assert again == rolled  # read, not rolled again
                got, _ = await report(
                    store, lo, hi, thresholds=THRESHOLDS, by=None, tz=TZ, tz_name=NAME, now=NOW
                )
                assert got.answered == 20
            finally:
                await store.close()

    asyncio.run(run())


def test_the_open_interval_bound_in_sql_is_the_largest_double() -> None:
    # _WRAPS spells the bound out (a constant string for the SQL audit): keep it _BIG.
    assert repr(kpi_rollup._BIG) in kpi_rollup._WRAPS


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(crossing(), st.sampled_from(BYS))
def test_whole_days_with_calls_across_midnight_are_read_from_the_roll_up(
    db_url: str,
    data: tuple[list[QueueEntry], dict[str, str], list[dict[str, Any]]],
    by: Any,
) -> None:
    # the crossing calls go by the raw path over the window, restricted to them; every
    # whole day is read from its roll-up row (no raw piece but that one)
    async def run() -> None:
        with tempfile.TemporaryDirectory() as d:
            db = Path(d) / "cti.db" if db_url.startswith("sqlite") else db_url
            store = await _fresh_store(db, data)
            lo, hi = DAY0 - 86_400, DAY0 + 3 * 86_400
            try:
                await kpi_rollup.roll_days(
                    store, days_in(lo, hi, TZ), thresholds=THRESHOLDS, tz=TZ, tz_name=NAME
                )
                raw: list[tuple[float, float, bool]] = []
                real = getattr(kpi_rollup, "piece_sql")  # noqa: B009 - not in its __all__

                async def spy(conn: Any, start: float, end: float, **kw: Any) -> Any:
                    raw.append((start, end, kw.get("only", False)))
                    return await real(conn, start, end, **kw)

                setattr(kpi_rollup, "piece_sql", spy)  # noqa: B010
                try:
                    await _both(store, lo, hi, by)
                finally:
                    setattr(kpi_rollup, "piece_sql", real)  # noqa: B010
                assert all(only for _, _, only in raw), raw
            finally:
                await store.close()

    asyncio.run(run())


def test_a_row_of_the_previous_format_is_rolled_again(db_url: str) -> None:
    # format 1 rows (no calls kept apart) carried the thresholds' fingerprint alone: an
    # upgraded daemon rolls such a day again rather than read it
    async def run() -> None:
        with tempfile.TemporaryDirectory() as d:
            db = Path(d) / "cti.db" if db_url.startswith("sqlite") else db_url
            at0 = DAY0 + 86_400 + 3600 - T0
            es = [entry(f"c{i}", Outcome.ANSWERED, 1.0, at=at0 + 60 * i) for i in range(3)]
            store = await _fresh_store(db, (es, {}, []))
            try:
                lo, hi = DAY0 + 86_400, DAY0 + 2 * 86_400
                t = THRESHOLDS
                old = json.dumps(
                    [list(t.n_s), t.short_abandon_s, sorted(t.satisfied), sorted(t.unsatisfied)],
                    ensure_ascii=False,
                )
                assert old != kpi_rollup.fingerprint(t)
                await kpi_rollup.roll_days(
                    store, days_in(lo, hi, TZ), thresholds=t, tz=TZ, tz_name=NAME
                )
                async with store.engine.begin() as conn:  # as format 1 left it: wrong figures
                    await conn.execute(
                        KPI_ROLLUP.update().values(thresholds=old, data='{"bogus": 1}')
                    )
                await _both(store, lo, hi, "line")
                async with store.engine.connect() as conn:
                    fps = (await conn.execute(select(KPI_ROLLUP.c.thresholds).distinct())).all()
                assert fps == [(kpi_rollup.fingerprint(t),)]
            finally:
                await store.close()

    asyncio.run(run())
