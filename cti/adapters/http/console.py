"""The seat console ``/console`` (坐席工作台) and the browsers' live stream ``/events``.

Server-rendered (Jinja2), one plain script (``static/console.js``, EventSource), no build
step and no asset from outside the daemon. An agent's session is bound to its seat: every
endpoint here takes the seat from the session, never from the request, so an agent cannot
read or command another seat. Commands go the way of every agent command
(:meth:`ConsoleBackend.seat_command`: the MQTT ``seats/{seat}/cmd`` parser and the core).
docs/console.md.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any, Final, Protocol

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from structlog.typing import FilteringBoundLogger

from cti.adapters.http.errors import ApiError
from cti.adapters.http.live import LiveHub, LiveStream, sse_frame
from cti.adapters.http.sessions import Session, SessionTable
from cti.adapters.http.sse import SseResponse
from cti.adapters.http.web_auth import (
    WebContext,
    home_of,
    install_login_redirect,
    require_page_session,
    require_session,
    web_auth_router,
)

__all__ = [
    "WEB_DIR",
    "ConsoleBackend",
    "PageSessionDep",
    "SessionDep",
    "install_web",
    "live_response",
]

WEB_DIR: Final = Path(__file__).parent / "web"
_COMMAND_STATUS: Final = {"bad_json": 422, "invalid_command": 422, "too_large": 413,
                          "unknown_seat": 404, "rejected": 409, "no_call": 409,
                          "unknown_target": 422, "mode_not_allowed": 422}  # fmt: skip
_CALL_ID = Annotated[
    str,
    PathParam(pattern=r"^[a-z0-9_-]{1,32}:[A-Za-z0-9._-]{1,64}$", description="<node>:<linkedid>"),
]


class ConsoleBackend(Protocol):
    """What the console needs from the daemon. Every method is called on the event loop."""

    def seat_state(self, seat: str) -> dict[str, Any] | None: ...

    def seat_command(self, seat: str, payload: bytes) -> dict[str, Any]: ...

    def console_plan(self) -> dict[str, Any]:
        """The lines (number, name, department) to transfer to, the emergency services."""
        ...

    def open_callbacks(self, limit: int) -> Awaitable[list[dict[str, Any]]]: ...

    def call_back(self, call_id: str, seat: str) -> Awaitable[tuple[int, dict[str, Any]]]: ...


SessionDep = Annotated[Session, Depends(require_session)]
PageSessionDep = Annotated[Session, Depends(require_page_session)]


def _seat_of(sess: Session) -> str:
    if sess.user.seat is None:
        raise ApiError(403, "not_an_agent", "the console is an agent's: this user has no seat")
    return sess.user.seat


def _console_router(backend: ConsoleBackend, hub: LiveHub, log: FilteringBoundLogger) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_model=None)
    async def home(sess: PageSessionDep) -> Response:
        return Response(status_code=303, headers={"Location": home_of(sess.user.role)})

    @router.get("/console", response_model=None)
    async def console(request: Request, sess: PageSessionDep) -> Response:
        ctx: WebContext = request.app.state.cti_web
        user = sess.user
        return ctx.page(
            request,
            "console.html",
            {
                "user": user,
                "seat": user.seat,
                "csrf": sess.csrf,
                "plan": backend.console_plan(),
            },
        )

    @router.get("/console/api/state")
    async def state(sess: SessionDep) -> dict[str, Any]:
        seat = _seat_of(sess)
        return {
            "seat": seat,
            "state": backend.seat_state(seat),
            "pop": hub.last_pop(seat),
            "at": time.time(),
        }

    @router.post("/console/api/command")
    async def command(request: Request, sess: SessionDep) -> JSONResponse:
        seat = _seat_of(sess)
        reply = backend.seat_command(seat, await request.body())
        code = None if reply.get("ok") else str((reply.get("error") or {}).get("code"))
        log.info(
            "web_seat_command", seat=seat, user=sess.user.name, cmd=reply.get("cmd"),
            ok=code is None, code=code,
        )  # fmt: skip
        return JSONResponse(
            reply, status_code=200 if code is None else _COMMAND_STATUS.get(code, 422)
        )

    @router.get("/console/api/callbacks")
    async def callbacks(
        sess: SessionDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
    ) -> dict[str, Any]:
        _seat_of(sess)
        return {"callbacks": await backend.open_callbacks(limit), "at": time.time()}

    @router.post("/console/api/callbacks/{call_id}/call")
    async def call_back(call_id: _CALL_ID, sess: SessionDep) -> JSONResponse:
        seat = _seat_of(sess)
        status, payload = await backend.call_back(call_id, seat)
        log.info("web_callback", seat=seat, user=sess.user.name, status=status)
        return JSONResponse(payload, status_code=status)

    @router.get("/events")
    async def events(
        request: Request,
        sess: SessionDep,
        seat: Annotated[str | None, Query(max_length=32)] = None,
    ) -> Response:
        user = sess.user
        if user.role == "agent" and seat not in (None, user.seat):
            log.warning("web_stream_refused", user=user.name, seat=seat)
            raise ApiError(403, "forbidden", "an agent's stream is its own seat's")
        return live_response(request, sess, hub)

    return router


def live_response(
    request: Request,
    sess: Session,
    hub: LiveHub,
    while_open: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
) -> Response:
    """The session user's live stream (``/events``, ``/board/events``): what the hub lets
    that user see, a ``hello`` first; `while_open` is entered for the stream's life."""
    user = sess.user
    ctx: WebContext = request.app.state.cti_web
    if sess.streams >= ctx.sessions.settings.max_streams_per_user:
        raise ApiError(429, "too_many_streams", "too many open streams for this user")
    # entered when the response starts and left when it ends (SseResponse pairs opener and
    # on_close), so a client gone before the first event leaves nothing entered behind
    held = contextlib.ExitStack()

    def opened() -> LiveStream:
        held.enter_context(while_open())
        try:
            stream = hub.open(user)
        except BaseException:
            held.close()
            raise
        sess.streams += 1
        return stream

    def closed(stream: LiveStream) -> None:
        try:
            hub.close_stream(stream)
            sess.streams -= 1
        finally:
            held.close()

    hello = sse_frame("hello", json.dumps({"user": user.name, "seat": user.seat}))
    return SseResponse(opened, hello, closed)


def install_web(
    app: FastAPI,
    backend: ConsoleBackend,
    sessions: SessionTable,
    hub: LiveHub,
    *,
    secure: bool,
    log: FilteringBoundLogger,
    routers: tuple[APIRouter, ...] = (),
) -> WebContext:
    """The login, the console, the stream, more pages' *routers* (the board) and the static
    assets, on *app*."""
    templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))
    ctx = WebContext(sessions, templates, secure=secure, log=log)
    app.state.cti_web = ctx
    install_login_redirect(app)
    app.include_router(web_auth_router())
    app.include_router(_console_router(backend, hub, log))
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")
    return ctx
