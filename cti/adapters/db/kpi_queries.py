"""The stored facts of a report window, read back as the calculator's types (docs/kpis.md).

`queue_entries` rows whose entry began in ``[start, end)``; the survey ratings of their
calls (``call_records.satisfaction``); the seats' status intervals rebuilt from
``seat_events`` (each row lasts until the seat's next row), cut to the window; and each
answered entry's wrap-up: the answering seat's ``wrap_up`` interval for that call, which
ends after the call (so it is read from the events, not written with the entry).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from typing import Any

from sqlalchemy import and_, func, select

from cti.adapters.db.kpi_callbacks import load_callback_requests
from cti.adapters.db.store import Store
from cti.adapters.db.tables import CALL_RECORDS, QUEUE_ENTRIES, SEAT_EVENTS
from cti.kpis import (
    CallbackRequest,
    Figures,
    GroupBy,
    Origin,
    Outcome,
    QueueEntry,
    Rating,
    SeatInterval,
    Thresholds,
    centre,
    group,
    grouped_by_key,
    with_callbacks,
)
from cti.seats.model import Reason, SeatStatus

__all__ = ["Facts", "load_facts", "report_figures"]

# a seat's wrap-up follows its call: read the events this long past the window
_WRAPUP_SLACK_S = 3600.0


@dataclass(frozen=True, slots=True)
class Facts:
    entries: list[QueueEntry]
    ratings: list[Rating]
    intervals: list[SeatInterval]
    callbacks: list[CallbackRequest] = field(default_factory=list)
    """The callback list's requests of the window (cti/adapters/db/kpi_callbacks.py)."""


def _entry(r: Any) -> QueueEntry | None:
    try:
        return QueueEntry(
            call_id=r.linkedid,
            node=r.node,
            entry_seq=r.entry_seq,
            line=r.line,
            department=r.department,
            origin=Origin(r.origin),
            priority=r.priority,
            entered_at=r.entered_at,
            first_offered_at=r.first_offered_at,
            connected_at=r.connected_at,
            left_at=r.left_at,
            outcome=Outcome(r.outcome),
            seat=r.seat,
            wait_s=r.wait_s,
            ring_s=r.ring_s,
            talk_s=r.talk_s,
            wrapup_s=r.wrapup_s,
            offers=r.offers,
            transferred_to=r.transferred_to,
        )
    except ValueError:
        return None  # a row no longer valid (an outcome renamed): left out, not a crash


def _status(text: str) -> SeatStatus | None:
    try:
        return SeatStatus(text)
    except ValueError:
        return None


def _reason(text: str | None) -> Reason | None:
    try:
        return Reason(text) if text else None
    except ValueError:
        return Reason.OTHER


async def load_facts(store: Store, start: float, end: float) -> Facts:
    """Every fact of ``[start, end)`` (epoch seconds)."""
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(QUEUE_ENTRIES)
                .where(QUEUE_ENTRIES.c.entered_at >= start, QUEUE_ENTRIES.c.entered_at < end)
                .order_by(QUEUE_ENTRIES.c.entered_at, QUEUE_ENTRIES.c.call_id)
            )
        ).all()
        rated = (
            await conn.execute(
                select(
                    CALL_RECORDS.c.node,
                    CALL_RECORDS.c.linkedid,
                    CALL_RECORDS.c.satisfaction,
                    CALL_RECORDS.c.ended_at,
                ).where(
                    CALL_RECORDS.c.satisfaction.is_not(None),
                    CALL_RECORDS.c.call_id.in_(
                        select(QUEUE_ENTRIES.c.call_id).where(
                            QUEUE_ENTRIES.c.entered_at >= start, QUEUE_ENTRIES.c.entered_at < end
                        )
                    ),
                )
            )
        ).all()
        # each seat's last change before the window says where it stood when it opened
        last = (
            select(SEAT_EVENTS.c.seat, func.max(SEAT_EVENTS.c.id).label("id"))
            .where(SEAT_EVENTS.c.at < start)
            .group_by(SEAT_EVENTS.c.seat)
            .subquery()
        )
        before = (
            await conn.execute(select(SEAT_EVENTS).join(last, SEAT_EVENTS.c.id == last.c.id))
        ).all()
        during = (
            await conn.execute(
                select(SEAT_EVENTS)
                .where(and_(SEAT_EVENTS.c.at >= start, SEAT_EVENTS.c.at < end + _WRAPUP_SLACK_S))
                .order_by(SEAT_EVENTS.c.id)
            )
        ).all()
    events: dict[str, list[Any]] = defaultdict(list)
    for r in [*before, *during]:
        events[r.seat].append(r)
    intervals: list[SeatInterval] = []
    wrapups: dict[tuple[str, str], float] = defaultdict(float)  # (seat, linkedid) -> s
    for seat, evs in events.items():
        evs.sort(key=lambda r: r.id)
        for i, r in enumerate(evs):
            status = _status(r.status)
            if status is None:
                continue
            nxt = evs[i + 1].at if i + 1 < len(evs) else None
            if status is SeatStatus.WRAP_UP and r.call_id and nxt is not None:
                wrapups[seat, r.call_id] += max(0.0, nxt - r.at)
            lo, hi = max(r.at, start), end if nxt is None else min(nxt, end)
            if lo >= end or hi < lo:
                continue
            intervals.append(
                SeatInterval(
                    seat=seat,
                    status=status,
                    reason=_reason(r.reason) if status is SeatStatus.NOT_READY else None,
                    start=lo,
                    end=hi,
                )
            )
    entries = [e for e in map(_entry, rows) if e is not None]
    entries = _with_wrapups(entries, wrapups)
    ratings = [
        Rating(call_id=r.linkedid, node=r.node, label=r.satisfaction, at=r.ended_at)
        for r in rated
        if math.isfinite(r.ended_at) and r.ended_at >= 0
    ]
    callbacks = await load_callback_requests(store, start, end)
    return Facts(entries=entries, ratings=ratings, intervals=intervals, callbacks=callbacks)


def _with_wrapups(
    entries: list[QueueEntry], wrapups: dict[tuple[str, str], float]
) -> list[QueueEntry]:
    # the wrap-up goes to the seat's last answered entry of the call (one wrap-up per talk)
    last: dict[tuple[str, str], QueueEntry] = {}
    for e in entries:
        if e.answered and e.seat is not None:
            k = (e.seat, e.call_id)
            if k not in last or e.entry_seq > last[k].entry_seq:
                last[k] = e
    chosen = {id(e): wrapups.get(k, 0.0) for k, e in last.items()}
    return [replace(e, wrapup_s=chosen[id(e)]) if id(e) in chosen else e for e in entries]


def report_figures(
    facts: Facts, *, thresholds: Thresholds, by: GroupBy | None, tz: tzinfo
) -> tuple[Figures, list[tuple[str | None, Figures]]]:
    """The centre (one unit per call) and, with `by`, the groups (one unit per entry)."""
    whole = centre(
        facts.entries,
        thresholds=thresholds,
        ratings=facts.ratings,
        seat_intervals=facts.intervals,
    )
    if by is None:
        return with_callbacks(whole, [], facts.callbacks, by=None, thresholds=thresholds)
    parts = group(
        facts.entries,
        by=by,
        thresholds=thresholds,
        tz=tz,
        ratings=facts.ratings,
        seat_intervals=facts.intervals,
    )
    return with_callbacks(
        whole, grouped_by_key(parts), facts.callbacks, by=by, thresholds=thresholds, tz=tz
    )
