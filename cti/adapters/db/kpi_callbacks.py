"""The callback list of a report window, read as the calculator's requests (docs/kpis.md).

One ``callbacks`` row per missed call whose citizen hung up in ``[start, end)``
(``abandoned_at``, indexed). ``attempts`` counts the callbacks placed; status ``done``
means the citizen answered one (cti/app/callbacks.py closes the entry only then), and
``callback_call_id`` is that last callback's call, whose record's ``answered_at`` is the
moment the citizen answered (the call tracker answers an originated call on the citizen's
leg, not the seat's). Should that record be missing, the entry's ``last_at`` (the
callback's end) stands in: later than the answer, so "within N minutes" is never
overstated.

`cti report` and the stats API count in SQL (:func:`callback_figures_sql`; 50 k requests,
a year's missed calls of a mid-size city, by line x day: 0.6 s, against 0.8-1.7 s read
row by row into the calculator, on a shared 2-vCPU machine);
:func:`load_callback_requests` reads the rows for the reference path (``load_facts``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from sqlalchemy import and_, literal, select, text

from cti.adapters.db.dialect import floor_sql
from cti.adapters.db.store import Store
from cti.adapters.db.tables import CALL_RECORDS, CALLBACKS
from cti.kpis.callbacks import (
    CallbackFigures,
    CallbackRequest,
    GroupBy,
    counted,
    join_key,
    keys_of,
    label,
)

__all__ = ["callback_figures_sql", "load_callback_requests"]


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


# Every UTC offset in use is a multiple of 15 minutes (Nepal +5:45, Chatham +12:45), and
# so is every instant a zone changes offset: a request's local hour and day are those of
# its 15-minute bucket, so SQL counts per bucket and Python names the few buckets.
_BUCKET_S = 900

# what CallbackRequest() refuses and load_callback_requests() therefore leaves out; the
# reach as _request() takes it (a done entry: the callback's answer, else its end)
_REQUESTS = """
WITH r0 AS (
  SELECT cb.line AS line, cb.last_seat AS seat, cb.abandoned_at AS at, cb.attempts AS att,
         CASE WHEN cb.status = 'done' THEN COALESCE(cr.answered_at, cb.last_at) END AS reach
  FROM callbacks cb
  LEFT JOIN call_records cr ON cb.status = 'done' AND cb.callback_call_id IS NOT NULL
       AND cr.call_id = cb.node || ':' || cb.callback_call_id
  WHERE cb.abandoned_at >= :start AND cb.abandoned_at < :end AND cb.abandoned_at >= 0
    AND cb.line <> '' AND cb.call_id <> '' AND cb.attempts >= 0
),
r AS (
  SELECT line, seat, at, reach,
         CASE WHEN reach IS NOT NULL AND att < 1 THEN 1 ELSE att END AS att
  FROM r0 WHERE reach IS NULL OR reach <= 1.7976931348623157e308
)"""


async def callback_figures_sql(
    store: Store,
    start: float,
    end: float,
    *,
    by: GroupBy | Sequence[GroupBy] | None,
    within_min: float,
    tz: tzinfo,
) -> tuple[CallbackFigures, dict[str | None, CallbackFigures]]:
    """What :func:`callback_figures` and :func:`group_callbacks` give over
    ``load_callback_requests(store, start, end)``, counted in SQL: the whole window and,
    with ``by``, its groups (tests/kpis/test_callbacks.py compares the two)."""
    keys = keys_of(by)
    # PostgreSQL's CAST rounds to nearest: FLOOR first, or a bucket's last half moves on
    bucket = f"CAST({floor_sql(store.engine.dialect.name)}(at / {_BUCKET_S}) AS INTEGER)"
    cols = {
        "line": "line",
        "seat": "seat",
        "department": "NULL",
        "hour": bucket,
        "day": bucket,
    }
    sel = [f"{cols[k]} AS k{i}" for i, k in enumerate(keys)]
    group = f" GROUP BY {', '.join(f'k{i}' for i in range(len(keys)))}" if keys else ""
    sql = (
        # the SQL text is this module's constants and the GroupBy names' columns (`cols`);
        # the window and the limit are bound parameters
        f"{_REQUESTS} SELECT {''.join(c + ', ' for c in sel)}COUNT(*), "  # noqa: S608 # nosec B608
        "SUM(CASE WHEN att > 0 THEN 1 ELSE 0 END), SUM(att), "
        "SUM(CASE WHEN reach IS NOT NULL THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN reach IS NOT NULL AND reach - at <= :limit THEN 1 ELSE 0 END) "
        f"FROM r{group}"
    )
    params = {"start": start, "end": end, "limit": within_min * 60.0}
    async with store.engine.connect() as conn:
        rows = (await conn.execute(text(sql), params)).all()
    n = len(keys)
    sums: dict[str | None, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    total = [0, 0, 0, 0, 0]
    for row in rows:
        counts = [int(v or 0) for v in row[n:]]
        if counts[0] == 0:
            continue  # no request: the one row of an empty window
        parts = [
            label(k, "", None, float(v) * _BUCKET_S, tz)
            if k in ("hour", "day")
            else (None if v is None else str(v))
            for k, v in zip(keys, row[:n], strict=True)
        ]
        have = sums[join_key(parts)] if keys else total
        for i, c in enumerate(counts):
            have[i] += c
            if keys:
                total[i] += c

    def fig(c: list[int]) -> CallbackFigures:
        return counted(
            within_min, requests=c[0], placed=c[1], attempts=c[2], reached=c[3], within=c[4]
        )

    return fig(total), {k: fig(c) for k, c in sums.items()}
