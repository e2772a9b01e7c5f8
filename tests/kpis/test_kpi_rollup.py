"""The roll-up report (cti/adapters/db/kpi_rollup.py) equals the raw report
(``report_sql``, the definition) for any facts and windows: whole days, windows that start
or end mid-day, calls spanning midnight (a call's entries 30 s apart from any time), seat
intervals and wrap-ups across midnight, in the report's zone (Asia/Shanghai, UTC+8: the
days are local days, not UTC ones); and after a fact written late for a rolled day.
On SQLite and PostgreSQL (``db_url``)."""

from __future__ import annotations

import asyncio
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
    facts(),
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
    # _NEXT_AT spells the bound out (a constant string for the SQL audit): keep it _BIG.
    assert repr(kpi_rollup._BIG) in kpi_rollup._NEXT_AT
