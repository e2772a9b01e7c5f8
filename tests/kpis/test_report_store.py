"""The stored facts of issue 17 end to end without Asterisk: queue entries written with
their call records (once, whatever the retries), read back by `cti report`."""

from __future__ import annotations

import asyncio
import json
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from cti import cli
from cti.adapters.db.records import RecordWriter
from cti.adapters.db.store import Store
from cti.adapters.db.tables import QUEUE_ENTRIES
from cti.kpis import Outcome, QueueEntry
from cti.kpis.period import ReportWindowError, report_window
from tests.adapters.test_store import summary

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=TZ).timestamp()


def entry(n: int, outcome: Outcome, wait: float, **kw: Any) -> QueueEntry:
    at = T0 + 60 * n
    answered = outcome is Outcome.ANSWERED
    base: dict[str, Any] = {
        "call_id": f"1732665600.{n}",
        "node": "main",
        "line": "12345",
        "entered_at": at,
        "connected_at": at + wait if answered else None,
        "left_at": at + wait + (30 if answered else 0),
        "outcome": outcome,
        "seat": "1001" if answered else None,
        "wait_s": wait,
        "talk_s": 30.0 if answered else 0.0,
    }
    base.update(kw)
    return QueueEntry(**base)


FATES = [
    entry(1, Outcome.ANSWERED, 3.0),
    entry(2, Outcome.ANSWERED, 20.0),
    entry(3, Outcome.ABANDONED, 2.0),
    entry(4, Outcome.ABANDONED, 20.0),
    entry(5, Outcome.IVR_ONLY, 0.0),
]


async def write(store: Store, entries: list[QueueEntry], *, twice: bool = False) -> None:
    writer = RecordWriter(store)
    task = asyncio.create_task(writer.run())
    for _ in range(2 if twice else 1):
        for i, e in enumerate(entries):
            writer.add(summary(i), entries=[e])
    writer.add_seat_event(
        {
            "seat": "1001",
            "at": FATES[0].left_at,
            "status": "wrap_up",
            "reason": None,
            "previous": "talking",
            "cause": "hangup",
            "call_id": FATES[0].call_id,
        }
    )
    writer.add_seat_event(
        {
            "seat": "1001",
            "at": (FATES[0].left_at or 0) + 10.0,
            "status": "ready",
            "reason": None,
            "previous": "wrap_up",
            "cause": "wrapup_done",
            "call_id": None,
        }
    )
    async with asyncio.timeout(10):
        await writer.flushed()
    task.cancel()


async def test_entries_are_written_once_whatever_the_retries(store: Store) -> None:
    await write(store, FATES, twice=True)
    async with store.engine.connect() as conn:
        n = (await conn.execute(select(func.count()).select_from(QUEUE_ENTRIES))).scalar()
    assert n == len(FATES)


async def test_cti_report_json_gives_the_hand_computed_figures(
    store: Store, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await write(store, FATES)
    config = tmp_path / "cti.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            ami:
              nodes: [{{name: main, username: cti, secret: s}}]
            database: {{url: "{db_url}"}}
            kpis: {{answer_s: 15, timezone: Asia/Shanghai}}
            """
        ),
        encoding="utf-8",
    )
    code = await asyncio.to_thread(
        cli.main,
        [
            "report",
            "-c",
            str(config),
            "--from",
            "2026-03-02",
            "--to",
            "2026-03-02",
            "--format",
            "json",
        ],
    )
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    c = body["centre"]
    # by hand: offered = 2 answered + 2 abandoned (the IVR-only call apart)
    assert (c["offered"], c["answered"], c["abandoned"], c["ivr_only"]) == (4, 2, 2, 1)
    assert c["answer_rate"] == 0.5
    assert c["n_s_answer_rate"] == 0.25  # only the 3 s answer is within 15 s, ÷ 4 offered
    assert c["service_level"] == 0.5  # ÷ 2 answered
    assert c["abandon_rate"] == 0.5
    assert c["short_abandoned"] == 1  # the 2 s abandon (< 5 s)
    assert c["abandon_rate_excluding_short"] == pytest.approx(1 / 3)
    assert c["asa_s"] == pytest.approx(11.5)
    assert c["longest_wait_s"] == 20.0
    assert c["aht_s"] == pytest.approx((30 + 30 + 10) / 2)  # the 10 s wrap-up of call 1
    assert body["timezone"] == "Asia/Shanghai"
    assert body["from"] == "2026-03-02T00:00:00+08:00"
    assert body["to"] == "2026-03-03T00:00:00+08:00"

    code = await asyncio.to_thread(
        cli.main,
        ["report", "-c", str(config), "--from", "2026-03-02", "--to", "2026-03-03", "--by", "line"],
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "15秒接通率" in table
    assert "接通率" in table
    assert "12345" in table
    assert "全中心" in table


def test_report_window_refuses_bad_bounds() -> None:
    with pytest.raises(ReportWindowError, match="not an ISO"):
        report_window("yesterday", None, "Asia/Shanghai", now=T0)
    with pytest.raises(ReportWindowError, match="not after"):
        report_window("2026-03-02", "2026-03-01T12:00", "Asia/Shanghai", now=T0)
    w = report_window("2026-03-02T08:30", "2026-03-02T09:00", "Asia/Shanghai", now=T0)
    assert w.end - w.start == 1800
