"""Supervisor controls over HTTP (docs/supervision.md, docs/http-api.md): listen, whisper,
barge, stop, and forced ready / not ready / logout of a seat; the audit log.

Every route needs the ``supervise`` scope; *what* a principal may supervise (the lines of
its seats and calls) is the core's decision, made on the supervisor the handler resolves
from the principal's name: a session-based user plugs in by resolving to the same name.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from cti.adapters.http.api import API_PREFIX, MAX_PAGE
from cti.adapters.http.auth import Principal, require_scope
from cti.adapters.http.errors import error_responses
from cti.adapters.http.json_bodies import JsonRoute
from cti.core.messages import SupervisorAction

__all__ = ["SupervisionBody", "SupervisionHandler", "supervision_router"]


class SupervisionBody(BaseModel):
    """The optional body of an action: the not-ready reason, a request id to echo."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str | None = Field(default=None, max_length=16, pattern=r"^[a-z_]+$")
    request_id: str | None = Field(default=None, max_length=64)


class SupervisionHandler(Protocol):
    def act(
        self,
        principal: str,
        action: SupervisorAction,
        seat: str,
        *,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> tuple[int, dict[str, Any]]: ...

    def audit(
        self, *, seat: str | None, supervisor: str | None, limit: int, offset: int
    ) -> Awaitable[list[dict[str, Any]]]: ...

    def spies(self) -> list[dict[str, Any]]: ...


_SEAT = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=32, description="Seat id.")
]
_Supervisor = Annotated[Principal, Depends(require_scope("supervise"))]


def supervision_router(handler: SupervisionHandler) -> APIRouter:
    """POST /api/v1/supervision/seats/{seat}/{action}; GET …/audit, …/spies."""
    api = APIRouter(
        prefix=f"{API_PREFIX}/supervision",
        tags=["supervision"],
        route_class=JsonRoute,
        responses=error_responses(401, 403, 422),
    )

    @api.post(
        "/seats/{seat}/{action}",
        summary="A supervisor's action on a seat (scope: supervise)",
        description="listen / whisper / barge (the supervisor's phone rings into ChanSpy on "
        "the agent's channel; again with another mode switches it), stop, ready, not_ready "
        "(body `reason`), logout (pending until the call ends). 200 done; 403 not a "
        "supervisor of the seat's or call's lines; 404 unknown seat; 409 impossible now "
        "(no call, not listening, phone not up yet, refused by the seat's state); 422 "
        "invalid. Every one is in the audit log.",
        responses=error_responses(404, 409, 413),
    )
    async def act(
        seat: _SEAT,
        action: SupervisorAction,
        who: _Supervisor,
        body: SupervisionBody | None = None,
    ) -> JSONResponse:
        b = body or SupervisionBody()
        status, reply = handler.act(
            who.name, action, seat, reason=b.reason, request_id=b.request_id
        )
        return JSONResponse(reply, status_code=status)

    @api.get("/audit", summary="The audit log, newest first (scope: supervise)")
    async def audit(
        _who: _Supervisor,
        seat: Annotated[str | None, Query(max_length=32)] = None,
        supervisor: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        rows = await handler.audit(seat=seat, supervisor=supervisor, limit=limit, offset=offset)
        return {"entries": rows, "offset": offset, "limit": limit, "at": time.time()}

    @api.get("/spies", summary="Who listens to whom now (scope: supervise)")
    async def spies(_who: _Supervisor) -> dict[str, Any]:
        return {"spies": handler.spies(), "at": time.time()}

    return api
