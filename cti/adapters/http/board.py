"""The supervisor's wallboard ``/board`` (班长席大屏, docs/board.md): the page, its live
stream and the supervisor controls, under the browser session.

Only a supervisor or an admin: an agent's request for the page goes to its console (303),
for the stream or the JSON endpoints it is 403. What the board shows is the backend's
snapshot of the user's own lines (cti/app/board.py); every action is a POST with the
session's CSRF token (:func:`~cti.adapters.http.web_auth.require_session`) into the same
core decision as the bearer-token API (docs/supervision.md), which refuses — and audits —
an action on a seat outside the user's lines.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from contextlib import AbstractContextManager
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from structlog.typing import FilteringBoundLogger

from cti.adapters.http.console import PageSessionDep, SessionDep, live_response
from cti.adapters.http.errors import ApiError
from cti.adapters.http.live import LiveHub
from cti.adapters.http.sessions import Session
from cti.adapters.http.web_auth import WebContext
from cti.core.messages import SupervisorAction
from cti.settings import WebUser

__all__ = ["BoardBackend", "board_router"]

_SEAT = Annotated[
    str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=32, description="Seat id.")
]


class BoardBackend(Protocol):
    """What the board needs from the daemon (cti/app/board.py). Called on the event loop."""

    def snapshot(self, user: WebUser, now: float) -> dict[str, Any]: ...

    def act(
        self, user: WebUser, action: SupervisorAction, seat: str, reason: str | None
    ) -> tuple[int, dict[str, Any]]: ...

    def audit(self, user: WebUser, limit: int) -> Awaitable[list[dict[str, Any]]]: ...

    def watching(self, user: WebUser) -> AbstractContextManager[None]: ...


class _ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str | None = Field(default=None, max_length=16, pattern=r"^[a-z_]+$")


def _board_user(sess: Session) -> WebUser:
    if sess.user.role == "agent":
        raise ApiError(403, "forbidden", "the board is a supervisor's: an agent has its console")
    return sess.user


def board_router(backend: BoardBackend, hub: LiveHub, log: FilteringBoundLogger) -> APIRouter:
    """``/board``, ``/board/events``, ``/board/api/…``."""
    router = APIRouter(include_in_schema=False)

    @router.get("/board", response_model=None)
    async def board(request: Request, sess: PageSessionDep) -> Response:
        if sess.user.role == "agent":
            log.warning("web_board_refused", user=sess.user.name)
            return Response(status_code=303, headers={"Location": "/console"})
        ctx: WebContext = request.app.state.cti_web
        user, now = sess.user, time.time()
        return ctx.page(
            request,
            "board.html",
            {"user": user, "csrf": sess.csrf, "now": now, "board": backend.snapshot(user, now)},
        )

    @router.get("/board/api/snapshot")
    async def snapshot(sess: SessionDep) -> dict[str, Any]:
        user = _board_user(sess)
        return {"at": time.time(), **backend.snapshot(user, time.time())}

    @router.get("/board/api/audit")
    async def audit(
        sess: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
    ) -> dict[str, Any]:
        user = _board_user(sess)
        return {"entries": await backend.audit(user, limit), "at": time.time()}

    @router.post("/board/api/seats/{seat}/{action}")
    async def act(
        request: Request, seat: _SEAT, action: SupervisorAction, sess: SessionDep
    ) -> JSONResponse:
        user = _board_user(sess)
        raw = await request.body()
        try:
            body = _ActionBody.model_validate_json(raw) if raw.strip() else _ActionBody()
        except ValidationError as exc:
            raise ApiError(422, "invalid_body", "body: {reason?}", fields=["reason"]) from exc
        status, reply = backend.act(user, action, seat, body.reason)
        log.info(
            "web_supervision", user=user.name, action=action, seat=seat, status=status,
        )  # fmt: skip
        return JSONResponse(reply, status_code=status)

    @router.get("/board/events")
    async def events(request: Request, sess: SessionDep) -> Response:
        user = _board_user(sess)
        return live_response(request, sess, hub, lambda: backend.watching(user))

    return router
