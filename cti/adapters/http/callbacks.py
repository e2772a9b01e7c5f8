"""The missed-call callback list over HTTP (漏接电话回拨): read it, call a citizen back.

The list is a table in the daemon's database, filled in the transaction of the abandoned
call's record (:mod:`cti.adapters.db.rows`), so no missed call is left off; its queries are
:mod:`cti.adapters.db.callbacks`. A callback is the core's `CallbackRequested`: the seat's
phone rings first, then the citizen is dialled through the generated `cti-callback`
context; the outcome comes back as `CallbackDone` and the entry is closed (answered) or
reopened for another try. docs/callbacks.md.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from cti.adapters.db.callbacks import CallbackStatus, list_callbacks
from cti.adapters.db.store import Store
from cti.adapters.http.api import API_PREFIX
from cti.adapters.http.auth import require_scope
from cti.adapters.http.errors import ApiError, error_responses
from cti.adapters.http.json_bodies import JsonRoute

__all__ = ["CallbackCommand", "CallbackHandler", "callbacks_router"]


class CallbackCommand(BaseModel):
    """POST /api/v1/callbacks/{call_id}/call: which seat calls the citizen back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seat: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=32)


class CallbackHandler(Protocol):
    def call_back(self, call_id: str, seat: str) -> Awaitable[tuple[int, dict[str, Any]]]: ...

    @property
    def store(self) -> Store: ...


_CALL_ID = Annotated[
    str,
    Path(pattern=r"^[a-z0-9_-]{1,32}:[A-Za-z0-9._-]{1,64}$", description="<node>:<linkedid>"),
]


def callbacks_router(daemon: CallbackHandler) -> APIRouter:
    """GET /api/v1/callbacks (scope calls), POST /api/v1/callbacks/{call_id}/call (seats)."""
    api = APIRouter(
        prefix=f"{API_PREFIX}/callbacks",
        tags=["callbacks"],
        route_class=JsonRoute,
        responses=error_responses(401, 403, 422),
    )

    @api.get(
        "",
        summary="The missed-call callback list, oldest first (scope: calls)",
        dependencies=[Depends(require_scope("calls"))],
    )
    async def callbacks(
        status: Annotated[CallbackStatus | None, Query()] = "open",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        rows = await list_callbacks(daemon.store, status=status, limit=limit)
        return {"callbacks": rows, "at": time.time()}

    @api.post(
        "/{call_id}/call",
        summary="Call the citizen back from a seat (scope: seats)",
        description="202: the seat's phone rings, then the citizen is dialled. 404 no such "
        "entry; 409 the entry is not open (being called, done) or the seat is busy; 422 "
        "invalid.",
        status_code=202,
        dependencies=[Depends(require_scope("seats"))],
        responses=error_responses(404, 409, 413),
    )
    async def call(call_id: _CALL_ID, body: CallbackCommand) -> JSONResponse:
        status, payload = await daemon.call_back(call_id, body.seat)
        if status >= 400:
            err = payload.get("error", {})
            raise ApiError(status, str(err.get("code", "error")), str(err.get("message", "")))
        return JSONResponse(payload, status_code=status)

    return api
