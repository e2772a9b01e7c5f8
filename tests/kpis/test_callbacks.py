"""The callback figures (cti/kpis/callbacks.py) against a brute-force reading of their
definition (docs/kpis.md), over any requests; and the store's reading of the callback list
(cti/adapters/db/kpi_callbacks.py) through the report paths."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from cti.adapters.db.kpi_callbacks import callback_figures_sql, load_callback_requests
from cti.adapters.db.kpi_queries import load_facts, report_figures
from cti.adapters.db.kpi_sql import report_sql
from cti.adapters.db.store import Store
from cti.adapters.db.tables import CALL_RECORDS, CALLBACKS
from cti.kpis import (
    CallbackFigures,
    CallbackRequest,
    GroupBy,
    Thresholds,
    callback_figures,
    compute,
    group_callbacks,
    with_callbacks,
)
from cti.kpis.report import figures_json, report_csv, report_table
from tests.kpis.facts import T0, entry

TZ = ZoneInfo("Asia/Shanghai")
N_MIN = st.sampled_from([1.0, 5.0, 30.0, 120.0])
# reach delays near the default N (30 min) on both sides, and anything up to two days
DELAYS = st.sampled_from([0.0, 1799.999, 1800.0, 1800.001, 60.0, 300.0]) | st.floats(
    0.0, 172_800.0, allow_nan=False
)


@st.composite
def requests(draw: st.DrawFn) -> list[CallbackRequest]:
    out = []
    for n in range(draw(st.integers(0, 20))):
        at = T0 + draw(st.floats(0.0, 3 * 86_400.0, allow_nan=False))
        attempts = draw(st.integers(0, 4))
        reached = attempts > 0 and draw(st.booleans())
        out.append(
            CallbackRequest(
                call_id=f"c{n}",
                node=draw(st.sampled_from(["n1", "n2"])),
                line=draw(st.sampled_from(["12345", "12315", "110"])),
                requested_at=at,
                attempts=attempts,
                reached_at=at + draw(DELAYS) if reached else None,
                seat=draw(st.sampled_from([None, "s1", "s2"])) if attempts else None,
            )
        )
    return out


def brute(reqs: list[CallbackRequest], within_min: float) -> dict[str, Any]:
    """The definition, read literally, one figure at a time."""
    n = len(reqs)
    reached = [r for r in reqs if r.reached_at is not None]
    within = [r for r in reached if r.reached_at is not None and
              r.reached_at - r.requested_at <= within_min * 60]  # fmt: skip
    return {
        "requests": n,
        "placed": len([r for r in reqs if r.attempts >= 1]),
        "attempts": sum(r.attempts for r in reqs),
        "reached": len(reached),
        "reached_within": len(within),
        "reach_rate": len(reached) / n if n else None,
        "reached_within_rate": len(within) / n if n else None,
    }


def as_dict(f: CallbackFigures) -> dict[str, Any]:
    return {k: getattr(f, k) for k in brute([], 1.0)}


@settings(max_examples=300, deadline=None)
@given(requests(), N_MIN)
def test_the_figures_are_the_definition_in_any_order(
    reqs: list[CallbackRequest], within_min: float
) -> None:
    f = callback_figures(reqs, within_min=within_min)
    assert as_dict(f) == brute(reqs, within_min)
    assert f.within_min == within_min
    shuffled = list(reqs)
    random.Random(len(reqs)).shuffle(shuffled)
    assert callback_figures(shuffled, within_min=within_min) == f
    # consistent: every reached request was placed; within N is a part of reached
    assert f.reached_within <= f.reached <= f.placed <= f.requests
    assert f.placed <= f.attempts
    for ratio in (f.reach_rate, f.reached_within_rate):
        assert ratio is None or 0.0 <= ratio <= 1.0
    assert (f.reach_rate is None) == (f.requests == 0)


@settings(max_examples=200, deadline=None)
@given(requests(), N_MIN, st.sampled_from(["line", "seat", "hour", "day", "department"]))
def test_groups_add_up_to_the_whole(
    reqs: list[CallbackRequest], within_min: float, by: Any
) -> None:
    parts = group_callbacks(reqs, by=by, within_min=within_min, tz=TZ)
    whole = callback_figures(reqs, within_min=within_min)
    for name in ("requests", "placed", "attempts", "reached", "reached_within"):
        assert sum(getattr(p, name) for p in parts.values()) == getattr(whole, name)
    for key, part in parts.items():
        mine = [r for r in reqs if _label(by, r) == key]
        assert as_dict(part) == brute(mine, within_min), key


def _label(by: str, r: CallbackRequest) -> str | None:
    if by == "line":
        return r.line
    if by == "seat":
        return r.seat
    if by == "department":
        return None
    fmt = "%Y-%m-%d %H:00" if by == "hour" else "%Y-%m-%d"
    return datetime.fromtimestamp(r.requested_at, TZ).strftime(fmt)


def test_within_n_is_inclusive_and_measured_from_the_request() -> None:
    at = T0
    exactly = CallbackRequest(
        call_id="a", node="n", line="12345", requested_at=at, attempts=1, reached_at=at + 1800
    )
    past = CallbackRequest(
        call_id="b", node="n", line="12345", requested_at=at, attempts=2, reached_at=at + 1800.001
    )
    never = CallbackRequest(call_id="c", node="n", line="12345", requested_at=at, attempts=3)
    waiting = CallbackRequest(call_id="d", node="n", line="12345", requested_at=at)
    f = callback_figures([exactly, past, never, waiting], within_min=30.0)
    assert (f.requests, f.placed, f.attempts, f.reached, f.reached_within) == (4, 3, 6, 2, 1)
    assert (f.reach_rate, f.reached_within_rate) == (0.5, 0.25)
    assert callback_figures([], within_min=30.0).reach_rate is None


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"requested_at": float("nan")}, "requested_at"),
        ({"requested_at": -1.0}, "requested_at"),
        ({"attempts": -1}, "attempts"),
        ({"reached_at": T0 + 5}, "called back"),  # reached, never placed
        ({"attempts": 1, "reached_at": T0 - 5}, "before"),
        ({"attempts": 1, "reached_at": float("inf")}, "reached_at"),
        ({"line": ""}, "line"),
    ],
)
def test_a_bad_request_is_refused_naming_the_field(kw: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {"call_id": "a", "node": "n", "line": "12345", "requested_at": T0}
    with pytest.raises(ValueError, match=field):
        CallbackRequest(**{**base, **kw})


def test_thresholds_refuse_a_bad_callback_n() -> None:
    with pytest.raises(ValueError, match="callback_within_min"):
        Thresholds(callback_within_min=0)


def test_with_callbacks_adds_a_group_that_has_requests_only() -> None:
    t = Thresholds()
    e = entry("x", None, 0.0, line="12345")
    groups = [("12345", compute([e], thresholds=t))]
    req = CallbackRequest(call_id="y", node="n1", line="12315", requested_at=T0)
    centre, out = with_callbacks(
        compute([e], thresholds=t), groups, [req], by="line", thresholds=t, tz=TZ
    )
    assert [k for k, _ in out] == ["12315", "12345"]
    assert out[0][1].units == 0
    assert out[0][1].callbacks is not None
    assert out[0][1].callbacks.requests == 1
    assert out[1][1].callbacks is not None
    assert out[1][1].callbacks.requests == 0
    assert centre.callbacks is not None
    assert centre.callbacks.requests == 1
    assert figures_json(centre)["callbacks"]["requests"] == 1
    assert "callbacks" not in figures_json(groups[0][1])  # not computed: not shown


# ---------------------------------------------------------------- the stored list


def _cb(call: str, at: float, **kw: Any) -> dict[str, Any]:
    return {
        "call_id": f"main:{call}",
        "node": "main",
        "caller": "13800000000",
        "caller_name": "",
        "line": kw.pop("line", "12345"),
        "abandoned_at": at,
        "waited_s": 3.0,
        "status": "open",
        "attempts": 0,
        "last_seat": None,
        "last_at": None,
        "last_outcome": None,
        "callback_call_id": None,
        **kw,
    }


def _record(linkedid: str, answered_at: float | None) -> dict[str, Any]:
    return {
        "call_id": f"main:{linkedid}",
        "node": "main",
        "linkedid": linkedid,
        "caller": "1001",
        "caller_name": "",
        "dialed": "13800000000",
        "line": "",
        "started_at": T0,
        "answered_at": answered_at,
        "ended_at": T0 + 99_999,
        "rang": [],
        "outcome": "answered" if answered_at else "no_answer",
        "hangup_by": "caller",
        "transfers": [],
        "history_complete": True,
        "stored_at": T0,
    }


def test_the_stored_list_in_report_sql_and_the_calculator_path() -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as d:
            store = Store(f"sqlite+aiosqlite:///{Path(d) / 'cti.db'}")
            await store.open()
            try:
                async with store.engine.begin() as conn:
                    await conn.execute(
                        insert(CALLBACKS),
                        [
                            # reached 10 min after, by the record's answer (within 30)
                            _cb("a", T0, status="done", attempts=1, last_seat="1001",
                                last_at=T0 + 3000, callback_call_id="cba"),
                            # reached on the second try, 40 min after (not within 30)
                            _cb("b", T0 + 60, status="done", attempts=2, last_seat="1002",
                                last_at=T0 + 2460, callback_call_id="cbb", line="12315"),
                            # done, the callback's record not there: last_at stands in
                            _cb("c", T0 + 120, status="done", attempts=1, last_seat="1001",
                                last_at=T0 + 120 + 1700, callback_call_id="cbc"),
                            # tried, the citizen did not answer; being called now; untried
                            _cb("d", T0 + 180, status="open", attempts=1, last_seat="1001",
                                last_outcome="no_answer", callback_call_id="cbd"),
                            _cb("e", T0 + 240, status="calling", attempts=1, last_seat="1002"),
                            _cb("f", T0 + 300),
                            # outside the window; and a bad row, left out
                            _cb("g", T0 + 86_400 * 5, status="done", attempts=1),
                            _cb("h", T0 + 10, line=""),
                        ],
                    )  # fmt: skip
                    await conn.execute(
                        insert(CALL_RECORDS),
                        [
                            _record("cba", T0 + 600),
                            _record("cbb", T0 + 60 + 2400),
                            _record("cbd", None),
                        ],
                    )
                start, end = T0 - 3600, T0 + 86_400
                reqs = {r.call_id: r for r in await load_callback_requests(store, start, end)}
                assert sorted(reqs) == ["a", "b", "c", "d", "e", "f"]
                assert reqs["a"].reached_at == T0 + 600
                assert reqs["c"].reached_at == T0 + 120 + 1700
                assert reqs["d"].reached_at is None
                t = Thresholds()
                for by in (None, "line", "seat", "day"):
                    sql = await report_sql(store, start, end, thresholds=t, by=by, tz=TZ)
                    ref = report_figures(
                        await load_facts(store, start, end), thresholds=t, by=by, tz=TZ
                    )
                    assert sql == ref, by
                whole, groups = await report_sql(store, start, end, thresholds=t, by="line", tz=TZ)
                assert whole.callbacks is not None
                assert as_dict(whole.callbacks) == {
                    "requests": 6,
                    "placed": 5,
                    "attempts": 6,  # 1 + 2 + 1 + 1 + 1 + 0
                    "reached": 3,
                    "reached_within": 2,
                    "reach_rate": 0.5,
                    "reached_within_rate": 2 / 6,
                }
                by_line = {k: f.callbacks for k, f in groups}
                assert by_line["12315"] is not None
                assert by_line["12315"].reached_within == 0
                assert by_line["12345"] is not None
                assert by_line["12345"].requests == 5
            finally:
                await store.close()

    asyncio.run(run())


def test_the_table_and_csv_show_the_callback_figures() -> None:
    t = Thresholds(callback_within_min=45)
    reqs = [
        CallbackRequest(
            call_id="a", node="n", line="12345", requested_at=T0, attempts=2, reached_at=T0 + 60
        ),
        CallbackRequest(call_id="b", node="n", line="12345", requested_at=T0),
    ]
    centre, groups = with_callbacks(
        compute([], thresholds=t), [], reqs, by="line", thresholds=t, tz=TZ
    )
    table = report_table(
        start="s", end="e", timezone="UTC", by="line", thresholds=t, centre=centre, groups=groups
    )
    cols, *rows = csv.reader(
        io.StringIO(report_csv(by="line", thresholds=t, centre=centre, groups=groups))
    )
    for heading in ("漏接待回拨", "已回拨", "回拨接通", "45分钟内回拨接通"):
        assert heading in table
        assert heading in cols
    line = dict(zip(cols, rows[0], strict=True))
    assert (line["线路"], line["漏接待回拨"], line["已回拨"], line["回拨接通"]) == (
        "12345",
        "2",
        "1",
        "1",
    )
    assert line["45分钟内回拨接通"] == "1"


BYS: list[list[GroupBy]] = [[], ["line"], ["seat"], ["department"], ["hour"], ["day"]]
BYS.append(["line", "day"])


@st.composite
def stored_list(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of the callback list in any state, and the records of some of their callbacks."""
    rows, records = [], []
    for i in range(draw(st.integers(0, 15))):
        at = T0 + draw(st.floats(-7200, 3 * 86_400, allow_nan=False))
        status = draw(st.sampled_from(["open", "calling", "done"]))
        attempts = draw(st.integers(0, 3))
        cb_id = f"cb{i}" if attempts or status == "done" else None
        last_at = at + draw(DELAYS) if draw(st.booleans()) else None
        rows.append(
            _cb(
                f"m{i}",
                at,
                line=draw(st.sampled_from(["12345", "12315", ""])),
                status=status,
                attempts=attempts,
                last_seat=draw(st.sampled_from([None, "1001", "1002"])),
                last_at=last_at,
                callback_call_id=cb_id,
            )
        )
        if cb_id is not None and draw(st.booleans()):
            answered = draw(st.sampled_from([None, at - 5, at + 1800, at + 1800.5]))
            records.append(_record(cb_id, answered))
    return rows, records


@settings(max_examples=40, deadline=None)
@given(stored_list())
def test_counted_in_sql_equals_the_calculator(
    data: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    rows, records = data

    async def run() -> None:
        with tempfile.TemporaryDirectory() as d:
            store = Store(f"sqlite+aiosqlite:///{Path(d) / 'cti.db'}")
            await store.open()
            try:
                async with store.engine.begin() as conn:
                    if rows:
                        await conn.execute(insert(CALLBACKS), rows)
                    if records:
                        await conn.execute(insert(CALL_RECORDS), records)
                start, end = T0 - 3600, T0 + 2 * 86_400
                reqs = await load_callback_requests(store, start, end)
                for by in BYS:
                    total, per = await callback_figures_sql(
                        store, start, end, by=by, within_min=30.0, tz=TZ
                    )
                    assert total == callback_figures(reqs, within_min=30.0), by
                    if by:
                        want = group_callbacks(reqs, by=by, within_min=30.0, tz=TZ)
                        assert per == want, by
            finally:
                await store.close()

    asyncio.run(run())
