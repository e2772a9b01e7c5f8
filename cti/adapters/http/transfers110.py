"""The 110 system's HTTP face: push a transfer, read its status (scope ``transfers110``).

The push's contract (:class:`~cti.adapters.dispatch110.TransferPush`, the same on MQTT)
and the transfers' storage are :mod:`cti.adapters.dispatch110`; the matching is the
core's. docs/dispatch110.md.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from cti.adapters.dispatch110 import TRANSFER_ID_PATTERN, TransferPush, reply_json
from cti.adapters.http.api import API_PREFIX
from cti.adapters.http.auth import require_scope
from cti.adapters.http.errors import ApiError, error_responses
from cti.adapters.http.json_bodies import JsonRoute
from cti.adapters.http.throttle import api_limits
from cti.core.messages import Reply110

__all__ = ["PushHandler", "transfers_router"]


class PushHandler(Protocol):
    def push110(self, push: TransferPush) -> Awaitable[Reply110]: ...

    def transfer110_status(self, transfer_id: str) -> Awaitable[dict[str, Any] | None]: ...


_TRANSFER_ID = Annotated[
    str, Path(pattern=TRANSFER_ID_PATTERN, max_length=64, description="110's incident number.")
]


async def _push_rate_limit(request: Request) -> None:
    """http.push110_rate_limit per token (after the scope check, which names it): a 110
    system in a retry loop must not flood the queue and the ticket backend."""
    limits = api_limits(request)
    if limits is not None:
        limits.take("push110", str(request.state.principal), request.app.state.cti_log)


def transfers_router(daemon: PushHandler) -> APIRouter:
    """POST /api/v1/transfers/110 and GET /api/v1/transfers/110/{id} (scope transfers110)."""
    scope = Depends(require_scope("transfers110"))
    api = APIRouter(
        prefix=f"{API_PREFIX}/transfers/110",
        tags=["110"],
        route_class=JsonRoute,
        responses=error_responses(401, 403),
    )

    @api.post(
        "",
        summary="Push a transfer from 110 (scope: transfers110)",
        description="202 accepted (stored before this answer); 200 the same push again "
        "(`duplicate`: nothing changes); 409 the same transfer_id with other content; 422 "
        "invalid (error.fields has the paths); 401/403 token; 429 more than "
        "http.push110_rate_limit pushes with this token (Retry-After). docs/dispatch110.md.",
        status_code=202,
        # in order: the scope names the token, whose pushes are then counted
        dependencies=[scope, Depends(_push_rate_limit)],
        responses={200: {"description": "duplicate"}, **error_responses(409, 413, 422)},
    )
    async def push(body: TransferPush) -> JSONResponse:
        reply = await daemon.push110(body)
        status, payload = reply_json(reply)
        return JSONResponse(payload, status_code=status)

    @api.get(
        "/{transfer_id}",
        summary="A transfer's current status (scope: transfers110)",
        dependencies=[scope],
        responses=error_responses(404, 422),
    )
    async def status(transfer_id: _TRANSFER_ID) -> dict[str, Any]:
        got = await daemon.transfer110_status(transfer_id)
        if got is None:
            raise ApiError(404, "not_found", f"no transfer {transfer_id!r}")
        return got

    return api
