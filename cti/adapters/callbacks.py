"""The missed-call callback list (漏接电话回拨): every call abandoned in the queue lands in
it; supervisors and seats work through it with a one-click callback.

The list is a table in the daemon's database, filled in the transaction of the abandoned
call's record (`RecordWriter`), so no missed call is left off. A callback is the core's
`CallbackRequested`: the seat's phone rings first, then the citizen is dialled through the
generated `cti-callback` context; the outcome comes back as `CallbackDone` and the entry is
closed (answered) or reopened for another try. docs/callbacks.md.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Annotated, Any, Final, Literal, Protocol

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Column, Float, Integer, String, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from cti.adapters.db.store import METADATA, Store
from cti.adapters.http import API_PREFIX, ApiError, JsonRoute, error_responses, require_scope
from cti.calls.model import CallSummary

__all__ = [
    "CALLBACKS",
    "CallbackCommand",
    "callback_row",
    "callbacks_router",
    "get_callback",
    "list_callbacks",
    "mark_callback",
    "write_callback_rows",
]

Status = Literal["open", "calling", "done"]

CALLBACKS: Final = Table(
    "callbacks",
    METADATA,
    Column("call_id", String(128), primary_key=True),  # the missed call, "<node>:<linkedid>"
    Column("node", String(32), nullable=False),
    Column("caller", String(64), nullable=False, index=True),
    Column("caller_name", String(128), nullable=False),
    Column("line", String(64), nullable=False),
    Column("abandoned_at", Float, nullable=False, index=True),
    Column("waited_s", Float),
    Column("status", String(16), nullable=False, index=True),  # open | calling | done
    Column("attempts", Integer, nullable=False),
    Column("last_seat", String(32)),
    Column("last_at", Float),
    Column("last_outcome", String(32)),
    Column("callback_call_id", String(128)),  # the last callback's own call id
)


def callback_row(summary: CallSummary) -> dict[str, Any]:
    """The list entry of a call abandoned in the queue."""
    return {
        "call_id": f"{summary.node}:{summary.call_id}",
        "node": summary.node,
        "caller": summary.caller,
        "caller_name": summary.caller_name,
        "line": summary.line or summary.dialed,
        "abandoned_at": summary.ended_at,
        "waited_s": summary.wait_s,
        "status": "open",
        "attempts": 0,
        "last_seat": None,
        "last_at": None,
        "last_outcome": None,
        "callback_call_id": None,
    }


async def write_callback_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Inside the call records' transaction; an entry written twice (a retried batch, a
    restart) is kept once."""
    if not rows:
        return
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(CALLBACKS).on_conflict_do_nothing(index_elements=["call_id"])
    await conn.execute(stmt, rows)


async def list_callbacks(store: Store, *, status: str | None, limit: int) -> list[dict[str, Any]]:
    q = select(CALLBACKS).order_by(CALLBACKS.c.abandoned_at).limit(limit)
    if status is not None:
        q = q.where(CALLBACKS.c.status == status)
    async with store.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(q)]  # noqa: SLF001 - SQLAlchemy's public row API


async def get_callback(store: Store, call_id: str) -> dict[str, Any] | None:
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(CALLBACKS).where(CALLBACKS.c.call_id == call_id))).first()
    return None if row is None else dict(row._mapping)  # noqa: SLF001


async def mark_callback(
    store: Store, call_id: str, *, expect: str | None = None, **values: Any
) -> bool:
    """Update an entry (only if its status is `expect`, when given): False if it was not."""
    stmt = update(CALLBACKS).where(CALLBACKS.c.call_id == call_id)
    if expect is not None:
        stmt = stmt.where(CALLBACKS.c.status == expect)
    async with store.engine.begin() as conn:
        res = await conn.execute(stmt.values(**values))
    return bool(res.rowcount)


# ------------------------------------------------------------------ HTTP


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
        status: Annotated[Status | None, Query()] = "open",
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
