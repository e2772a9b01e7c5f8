"""The SQL report path (cti/adapters/db/kpi_sql.py) gives the calculator's figures: random
entries, ratings and seat events stored in SQLite, then ``report_sql`` against
``report_figures(load_facts(...))`` for every grouping and the centre.

Counts are equal exactly; float sums (seconds) to 1e-9 relative, since SQL adds in its own
order where the calculator uses math.fsum.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from cti.adapters.db.kpi_queries import load_facts, report_figures
from cti.adapters.db.kpi_sql import report_sql
from cti.adapters.db.rows import queue_entry_row
from cti.adapters.db.store import Store
from cti.adapters.db.tables import CALL_RECORDS, QUEUE_ENTRIES, SEAT_EVENTS
from cti.kpis import GroupBy, Outcome, QueueEntry, Thresholds, group
from tests.kpis.facts import T0, entry
from tests.kpis.test_properties import LABELS, WAITS

TZ = ZoneInfo("Asia/Shanghai")
T = Thresholds()
START, END = T0 - 3600, T0 + 3 * 86_400


def close(a: Any, b: Any, path: str = "") -> None:
    """Equal, floats to 1e-9 relative, recursing into dataclasses and tuples."""
    if is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), path
        for f in fields(a):
            close(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, tuple | list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (path, a, b)
    else:
        assert a == b, (path, a, b)


@st.composite
def facts(draw: st.DrawFn) -> tuple[list[QueueEntry], dict[str, str], list[dict[str, Any]]]:
    entries: list[QueueEntry] = []
    for n in range(draw(st.integers(0, 14))):
        at = draw(st.floats(-7200, 3 * 86_400 + 3600, allow_nan=False))
        for seq in range(1, draw(st.integers(1, 3)) + 1):
            entries.append(  # noqa: PERF401 - each entry draws its own values
                entry(
                    f"c{n}",
                    draw(st.sampled_from(list(Outcome))),
                    draw(WAITS),
                    at=at + 30 * seq,
                    talk_s=draw(st.floats(0.0, 900.0, allow_nan=False)),
                    seat=draw(st.sampled_from(["s1", "s2", "s3"])),
                    line=draw(st.sampled_from(["12345", "12315", "110"])),
                    department=draw(st.sampled_from([None, "water", "roads"])),
                    entry_seq=seq,
                    offers=draw(st.integers(0, 3)),
                    node=draw(st.sampled_from(["n1", "n2"])),
                    transferred_to=draw(st.sampled_from([None, "dept"])),
                )
            )
    calls = sorted({f"{e.node}:{e.call_id}" for e in entries})
    rated = {c: draw(LABELS) for c in calls if draw(st.booleans())}
    events: list[dict[str, Any]] = []
    statuses = ["ready", "ringing", "talking", "wrap_up", "not_ready", "logged_out", "bogus"]
    at = T0 - 7200.0
    for _ in range(draw(st.integers(0, 25))):
        at += draw(st.floats(0.0, 20_000.0, allow_nan=False))
        status = draw(st.sampled_from(statuses))
        events.append(
            {
                "seat": draw(st.sampled_from(["s1", "s2", "s4"])),
                "at": at,
                "status": status,
                "reason": draw(st.sampled_from([None, "rona", "lunch", "weird"]))
                if status == "not_ready"
                else None,
                "previous": "ready",
                "cause": "test",
                "call_id": draw(st.sampled_from([e.call_id for e in entries] or ["x"]))
                if status == "wrap_up"
                else None,
            }
        )
    return entries, rated, events


async def store_facts(
    db: Path | str, entries: list[QueueEntry], rated: dict[str, str], events: list[dict[str, Any]]
) -> Store:
    store = Store(f"sqlite+aiosqlite:///{db}" if isinstance(db, Path) else db)
    await store.open()
    async with store.engine.begin() as conn:  # PostgreSQL: one database for every example
        for table in (QUEUE_ENTRIES, CALL_RECORDS, SEAT_EVENTS):
            await conn.execute(table.delete())
    rows = {(r["call_id"], r["entry_seq"]): r for r in map(queue_entry_row, entries)}
    async with store.engine.begin() as conn:
        if rows:
            await conn.execute(insert(QUEUE_ENTRIES), list(rows.values()))
        for call_id, label in rated.items():
            node, _, linkedid = call_id.partition(":")
            await conn.execute(
                insert(CALL_RECORDS),
                {
                    "call_id": call_id,
                    "node": node,
                    "linkedid": linkedid,
                    "caller": "x",
                    "caller_name": "",
                    "satisfaction": label,
                    "dialed": "12345",
                    "line": "12345",
                    "started_at": T0,
                    "ended_at": T0 + 5,
                    "rang": [],
                    "outcome": "answered",
                    "hangup_by": "caller",
                    "transfers": [],
                    "history_complete": True,
                    "stored_at": T0,
                },
            )
        if events:
            await conn.execute(insert(SEAT_EVENTS), events)
    return store


async def compare(store: Store) -> None:
    loaded = await load_facts(store, START, END)
    for by in (None, "line", "department", "seat", "hour", "day"):
        want = report_figures(loaded, thresholds=T, by=by, tz=TZ)
        got = await report_sql(store, START, END, thresholds=T, by=by, tz=TZ)
        close(got, want, str(by))
    # a window over a small part of the entries: read through the entered_at index, not
    # scanned (kpi_sql._scan), with calls and seat intervals cut at both ends
    lo, hi = T0 + 86_400, T0 + 86_400 + 7 * 3600
    part = await load_facts(store, lo, hi)
    part_by: tuple[GroupBy | None, ...] = (None, "line", "seat")
    for by in part_by:
        want = report_figures(part, thresholds=T, by=by, tz=TZ)
        close(await report_sql(store, lo, hi, thresholds=T, by=by, tz=TZ), want, f"part {by}")
    # line x day: the calculator's days of each line
    got_ld = dict((await report_sql(store, START, END, thresholds=T, by=("line", "day"), tz=TZ))[1])
    for line in {e.line for e in loaded.entries}:
        mine = [e for e in loaded.entries if e.line == line]
        rated = list(loaded.ratings)
        days: dict[str | None, Any] = group(
            mine, by="day", thresholds=T, tz=TZ, ratings=_ratings_of(loaded, line, rated)
        )
        for day, f in days.items():
            # the calculator's group() has no callback figures (with_callbacks adds them)
            close(replace(got_ld[f"{line} {day}"], callbacks=None), f, f"{line} {day}")


def _ratings_of(loaded: Any, line: str, ratings: list[Any]) -> list[Any]:
    # a rating belongs to its call's last answered entry of the window: keep it for this
    # line only when that entry is on it (as grouping by line would)
    owner: dict[tuple[str, str], QueueEntry] = {}
    for e in loaded.entries:
        have = owner.get(e.key)
        if e.answered and (
            have is None
            or (e.entry_seq, e.entered_at, e.wait_s)
            > (have.entry_seq, have.entered_at, have.wait_s)
        ):
            owner[e.key] = e
    return [r for r in ratings if r.key in owner and owner[r.key].line == line]


@settings(
    max_examples=60,
    deadline=None,
    # db_url: one database for all examples, emptied by store_facts
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(facts())
def test_sql_path_equals_the_calculator(
    db_url: str,
    data: tuple[list[QueueEntry], dict[str, str], list[dict[str, Any]]],
) -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as d:
            db = Path(d) / "cti.db" if db_url.startswith("sqlite") else db_url
            store = await store_facts(db, *data)
            try:
                await compare(store)
            finally:
                await store.close()

    asyncio.run(run())


def test_an_existing_database_gets_the_report_indexes() -> None:
    # a database made before the report's index (issue 17, schema revision 0002): Store.open
    # migrates it (0003 adds the index), and the seat intervals' LEAD then walks it in
    # order, with no sort of every event
    async def run() -> None:
        with tempfile.TemporaryDirectory() as d:
            db = Path(d) / "cti.db"
            store = await store_facts(db, [], {}, [])
            async with store.engine.begin() as conn:
                await conn.exec_driver_sql("DROP INDEX ix_seat_events_report")
                await conn.exec_driver_sql(
                    "UPDATE alembic_version SET version_num = '0002_pg_unbounded_text'"
                )
            await store.close()
            store = Store(f"sqlite+aiosqlite:///{db}")
            await store.open()
            try:
                async with store.engine.connect() as conn:
                    listed = await conn.exec_driver_sql("PRAGMA index_list(seat_events)")
                    names = {str(r._mapping["name"]) for r in listed}
                    plan = " ".join(
                        str(r)
                        for r in await conn.exec_driver_sql(
                            "EXPLAIN QUERY PLAN SELECT LEAD(at) OVER (PARTITION BY seat "
                            "ORDER BY id) FROM seat_events WHERE +at >= 0 AND +at < 1"
                        )
                    )
                assert "ix_seat_events_report" in names
                assert "ix_seat_events_report" in plan
                assert "TEMP B-TREE" not in plan
            finally:
                await store.close()

    asyncio.run(run())
