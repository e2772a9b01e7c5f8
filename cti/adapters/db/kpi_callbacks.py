"""The callback list of a report window, read as the calculator's requests (docs/kpis.md).

One ``callbacks`` row per missed call whose citizen hung up in ``[start, end)``
(``abandoned_at``, indexed). ``attempts`` counts the callbacks placed; status ``done``
means the citizen answered one (cti/app/callbacks.py closes the entry only then), and
``callback_call_id`` is that last callback's call, whose record's ``answered_at`` is the
moment the citizen answered (the call tracker answers an originated call on the citizen's
leg, not the seat's). Should that record be missing, the entry's ``last_at`` (the
callback's end) stands in: later than the answer, so "within N minutes" is never
overstated.

A report's requests are a few percent of its entries (the abandoned ones), so the rows are
read into Python and counted by :mod:`cti.kpis.callbacks`; the queue-entry figures stay
in SQL (cti/adapters/db/kpi_sql.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, literal, select

from cti.adapters.db.store import Store
from cti.adapters.db.tables import CALL_RECORDS, CALLBACKS
from cti.kpis.callbacks import CallbackRequest

__all__ = ["load_callback_requests"]


def _request(r: Any) -> CallbackRequest | None:
    node, _, linkedid = str(r.call_id).partition(":")
    reached = None
    if r.status == "done":
        at = r.answered_at if r.answered_at is not None else r.last_at
        # a clock step between the two writes must not make a reach precede its request
        reached = None if at is None else max(float(at), float(r.abandoned_at))
    try:
        return CallbackRequest(
            call_id=linkedid or str(r.call_id),
            node=r.node or node,
            line=r.line,
            requested_at=r.abandoned_at,
            attempts=max(int(r.attempts), 1 if reached is not None else 0),
            reached_at=reached,
            seat=r.last_seat,
        )
    except (TypeError, ValueError):
        return None  # a row the calculator refuses (NaN time, empty line): left out


async def load_callback_requests(store: Store, start: float, end: float) -> list[CallbackRequest]:
    """The callback requests of ``[start, end)`` (epoch seconds, by ``abandoned_at``)."""
    cb, cr = CALLBACKS, CALL_RECORDS
    joined = cb.outerjoin(
        cr,
        and_(
            cb.c.status == "done",
            cb.c.callback_call_id.is_not(None),
            cr.c.call_id == cb.c.node + literal(":") + cb.c.callback_call_id,
        ),
    )
    q = (
        select(
            cb.c.call_id,
            cb.c.node,
            cb.c.line,
            cb.c.abandoned_at,
            cb.c.attempts,
            cb.c.status,
            cb.c.last_seat,
            cb.c.last_at,
            cr.c.answered_at,
        )
        .select_from(joined)
        .where(cb.c.abandoned_at >= start, cb.c.abandoned_at < end)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return [req for req in map(_request, rows) if req is not None]
