"""GET /api/v1/stats: the official KPIs of a window (docs/kpis.md), from the stored facts.

The same SQL aggregation as ``cti report`` (:mod:`cti.adapters.db.kpi_sql`, checked
against the calculator :mod:`cti.kpis`), and the same JSON as ``cti report --format json``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from cti.adapters.db.kpi_rollup import report
from cti.adapters.db.store import Store
from cti.adapters.http.api import API_PREFIX
from cti.adapters.http.auth import require_scope
from cti.adapters.http.errors import ApiError, error_responses
from cti.adapters.http.json_bodies import JsonRoute
from cti.kpis import Thresholds
from cti.kpis.period import ReportWindowError, report_window
from cti.kpis.report import report_json

__all__ = ["stats_router"]

_WHEN_HELP = (
    "ISO date (2026-03-01) or date-time (2026-03-01T08:00), local time in kpis.timezone; "
    "a date as `to` includes that day. Default: today so far."
)


def stats_router(
    store: Store, thresholds: Thresholds, timezone: str | None, *, rollup: bool = True
) -> APIRouter:
    """GET /api/v1/stats (scope stats)."""
    api = APIRouter(
        prefix=API_PREFIX,
        tags=["stats"],
        route_class=JsonRoute,
        responses=error_responses(401, 403, 422),
    )

    @api.get(
        "/stats",
        summary="KPIs of a window: 接通率, N秒接通率, SL, 放弃率, ASA, AHT… (scope: stats)",
        description="The queue entries that began in [from, to), the centre counted once "
        "per call and, with `by`, one group per line/department/seat/hour/day. 422: a "
        "bound that is not an ISO date, an empty or over-long window.",
        dependencies=[Depends(require_scope("stats"))],
    )
    async def stats(
        start: Annotated[
            str | None, Query(alias="from", max_length=40, description=_WHEN_HELP)
        ] = None,
        end: Annotated[str | None, Query(alias="to", max_length=40, description=_WHEN_HELP)] = None,
        by: Annotated[Literal["line", "department", "seat", "hour", "day"] | None, Query()] = None,
    ) -> dict[str, Any]:
        try:
            w = report_window(start, end, timezone, now=time.time())
        except ReportWindowError as exc:
            raise ApiError(422, "invalid_window", str(exc), fields=["from", "to"]) from exc
        # aggregated in SQL, the calculator's figures (tests/kpis/test_kpi_sql.py); closed
        # whole days from the roll-up (tests/kpis/test_kpi_rollup.py)
        whole, groups = await report(
            store,
            w.start,
            w.end,
            thresholds=thresholds,
            by=by,
            tz=w.tz,
            tz_name=timezone if rollup else None,
        )
        return report_json(
            start=w.start_label,
            end=w.end_label,
            timezone=w.tz_name,
            by=by,
            thresholds=thresholds,
            centre=whole,
            groups=groups,
        )

    return api
