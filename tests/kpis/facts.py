"""Builders of queue-entry facts for the KPI tests."""

from __future__ import annotations

from typing import Any

from cti.kpis import Outcome, QueueEntry

T0 = 1_700_000_000.0  # 2023-11-15 06:13:20 in UTC+8


def entry(
    call_id: str,
    outcome: Outcome | None,
    wait_s: float,
    *,
    at: float = 0.0,
    talk_s: float = 0.0,
    wrapup_s: float = 0.0,
    seat: str | None = None,
    line: str = "12345",
    **kw: Any,
) -> QueueEntry:
    """An entry entering ``at`` seconds after T0; an answered one gets a seat and times."""
    entered = T0 + at
    answered = outcome is Outcome.ANSWERED
    return QueueEntry(
        call_id=call_id,
        node=kw.pop("node", "n1"),
        line=line,
        entered_at=entered,
        connected_at=kw.pop("connected_at", entered + wait_s if answered else None),
        left_at=None if outcome is None else entered + wait_s + talk_s,
        outcome=outcome,
        seat=seat if seat is not None or not answered else "s1",
        wait_s=wait_s,
        talk_s=talk_s,
        wrapup_s=wrapup_s,
        **kw,
    )
