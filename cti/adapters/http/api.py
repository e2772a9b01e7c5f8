"""HTTP API: JSON over ``/api/v1/…`` with scoped bearer tokens, plus the operator's probes.

The outside face described in docs/http-api.md. The app reads and drives the daemon only
through :class:`ApiFacade` (the daemon implements it; tests use a fake), so this module
knows nothing of the core's internals. :func:`build_api` puts the pieces of this package
together: the routes here, the tokens (:mod:`~cti.adapters.http.auth`), the error envelope
(:mod:`~cti.adapters.http.errors`), the body limits (:mod:`~cti.adapters.http.edge`,
:mod:`~cti.adapters.http.json_bodies`) and the probes' content
(:mod:`~cti.adapters.http.metrics`); more routers come in through ``routers=``.

Every endpoint is ``async def`` on purpose: FastAPI runs plain ``def`` endpoints and
dependencies in a thread pool, and the core is single-threaded (it must only be touched
from the event loop, between two inputs).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final, Protocol

import structlog
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import Field, TypeAdapter
from structlog.typing import FilteringBoundLogger

from cti import __version__
from cti.adapters.http.auth import Principal, TokenAuth, require_scope
from cti.adapters.http.edge import Edge
from cti.adapters.http.errors import ApiError, error_responses, install_error_handlers
from cti.adapters.http.json_bodies import JsonRoute
from cti.adapters.http.metrics import (
    METRICS_CONTENT_TYPE,
    HistogramMetric,
    Metric,
    ReadyPart,
    render_metrics,
)
from cti.adapters.http.throttle import ApiLimits
from cti.seats.commands import SeatCommand
from cti.settings import HttpSettings

__all__ = ["API_PREFIX", "MAX_PAGE", "ApiFacade", "build_api"]

API_PREFIX: Final = "/api/v1"
# The largest page of a list endpoint: 120,000 active calls in one response were 16 MB and
# held the event loop (and so every call) for 1.7 s (issue 16); a page of 1000 is <1 MB.
MAX_PAGE: Final = 1000
# the reply codes of cti.seats.commands.CommandError (and the core's "rejected")
_COMMAND_STATUS: Final[Mapping[str, int]] = {
    "bad_json": 422,
    "invalid_command": 422,
    "too_large": 413,
    "unknown_seat": 404,
    "rejected": 409,
    # the refusals of escalate and leave: docs/escalation.md
    "no_call": 409,
    "unknown_target": 422,
    "mode_not_allowed": 422,
}
_SEAT_ID = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=32, description="Seat id.")
]


class ApiFacade(Protocol):
    """What the HTTP API needs from the daemon. Every method is called on the event loop."""

    def seat_command(self, seat: str, payload: bytes) -> dict[str, Any]:
        """Apply one agent command (the raw JSON body, as on MQTT); return the reply
        (``{"ok": true, …}`` or the :class:`~cti.seats.commands.CommandError` reply)."""
        ...

    def seat_states(self) -> list[dict[str, Any]]: ...

    def seat_state(self, seat: str) -> dict[str, Any] | None: ...

    def queue_snapshot(self) -> dict[str, Any]: ...

    def active_calls(self, *, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """One page of the calls in progress (oldest first) and how many there are."""
        ...

    async def call_records(
        self, *, caller: str | None, limit: int, offset: int = 0
    ) -> list[dict[str, Any]]: ...

    def readiness(self) -> list[ReadyPart]: ...

    def metrics(self) -> Sequence[Metric | HistogramMetric]: ...


# module level: FastAPI resolves the (string) annotations of endpoints in module globals
_SeatsPrincipal = Annotated[Principal, Depends(require_scope("seats"))]


_COMMAND_SCHEMA: Final = TypeAdapter[SeatCommand](
    Annotated[SeatCommand, Field(discriminator="cmd")]
).json_schema(ref_template="#/components/schemas/{model}")


def build_api(
    facade: ApiFacade,
    settings: HttpSettings,
    *,
    routers: Sequence[APIRouter] = (),
    log: FilteringBoundLogger | None = None,
    limits: ApiLimits | None = None,
) -> FastAPI:
    """The FastAPI app of the daemon (OpenAPI at ``/docs`` and ``/openapi.json``).

    Args:
        facade: the daemon (or a fake in tests).
        settings: the ``http`` section: tokens, ``metrics_public``, ``max_body_bytes``.
        routers: more routers (e.g. the 110 push API); guard them with :func:`require_scope`.
        log: structlog logger (default ``cti.http``).
        limits: the rate limiters (default: new ones from *settings*); the daemon passes
            its own to count their refusals in /metrics.
    """
    log = log or structlog.get_logger("cti.http")
    # /docs and /redoc from files in the package, not from a public CDN: the centre's
    # network reaches none (issue 16). The validator badge would call validator.swagger.io.
    app = FastAPIOffline(
        title="hotline-cti",
        version=__version__,
        description="CTI server of the 12345 hotline: seats, queue, calls. docs/http-api.md",
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.cti_auth = TokenAuth(settings.tokens)
    app.state.cti_log = log
    # rate limits: throttle.py
    app.state.cti_limits = limits if limits is not None else ApiLimits.from_settings(settings)
    install_error_handlers(app, log)

    app.include_router(_api_router(facade, log))
    for router in routers:
        app.include_router(router)
    _add_probes(app, facade, settings)
    _add_command_schemas(app)
    app.add_middleware(
        Edge, max_body=settings.max_body_bytes, log=log, body_timeout_s=settings.body_timeout_s
    )
    return app


def _api_router(facade: ApiFacade, log: FilteringBoundLogger) -> APIRouter:
    seats_scope = Depends(require_scope("seats"))
    api = APIRouter(prefix=API_PREFIX, route_class=JsonRoute, responses=error_responses(401, 403))

    @api.get("/seats", summary="Every seat's state (scope: seats)", dependencies=[seats_scope])
    async def seats() -> dict[str, Any]:
        return {"seats": facade.seat_states()}

    @api.get(
        "/seats/{seat}",
        summary="One seat's state (scope: seats)",
        dependencies=[seats_scope],
        responses=error_responses(404, 422),
    )
    async def seat(seat: _SEAT_ID) -> dict[str, Any]:
        state = facade.seat_state(seat)
        if state is None:
            raise ApiError(404, "unknown_seat", f"no seat {seat!r} in the number plan")
        return state

    @api.post(
        "/seats/{seat}/commands",
        summary="An agent command, as on MQTT cti/seats/{seat}/cmd (scope: seats)",
        description="200 with the reply; 422 invalid command (error.fields has the paths), "
        "404 unknown seat, 409 impossible in the seat's state, 413 too large.",
        responses=error_responses(404, 409, 413, 422),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _command_body_schema()}},
            }
        },
    )
    async def seat_command(
        seat: _SEAT_ID,
        request: Request,
        who: _SeatsPrincipal,
    ) -> JSONResponse:
        reply = facade.seat_command(seat, await request.body())
        code = None if reply.get("ok") else str((reply.get("error") or {}).get("code"))
        log.info(
            "http_seat_command",
            seat=seat,
            cmd=reply.get("cmd"),
            token=who.name,
            ok=code is None,
            code=code,
            request_id=reply.get("request_id"),
        )
        status = 200 if code is None else _COMMAND_STATUS.get(code, 422)
        return JSONResponse(reply, status_code=status)

    @api.get(
        "/queue",
        summary="The queue snapshot and the waiting calls (scope: queue)",
        dependencies=[Depends(require_scope("queue"))],
    )
    async def queue() -> dict[str, Any]:
        return facade.queue_snapshot()

    calls_scope = Depends(require_scope("calls"))

    @api.get(
        "/calls/active",
        summary="Calls in progress, one page, oldest first (scope: calls)",
        description="A live view: `total` is the count now; follow `next_offset` until it "
        f"is null (`limit` at most {MAX_PAGE}). A call that ends between two pages shifts "
        "the rest by one, so a page may repeat or skip one call.",
        dependencies=[calls_scope],
        responses=error_responses(422),
    )
    async def calls_active(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = 100,
        offset: Annotated[
            int, Query(ge=0, le=10_000_000, description="Calls to skip (`next_offset`).")
        ] = 0,
    ) -> dict[str, Any]:
        rows, total = facade.active_calls(offset=offset, limit=limit)
        following = offset + len(rows)
        return {
            "calls": rows,
            "total": total,
            "offset": offset,
            "limit": limit,
            "next_offset": following if following < total else None,
        }

    @api.get(
        "/calls",
        summary="Call records, newest first (scope: calls)",
        dependencies=[calls_scope],
        responses=error_responses(422),
    )
    async def calls(
        caller: Annotated[str | None, Query(max_length=64, description="Caller number.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000, description="Records to skip.")] = 0,
    ) -> dict[str, Any]:
        rows = await facade.call_records(caller=caller, limit=limit, offset=offset)
        return {"calls": rows, "offset": offset, "limit": limit}

    return api


def _add_probes(app: FastAPI, facade: ApiFacade, settings: HttpSettings) -> None:
    started = time.monotonic()

    @app.get("/healthz", summary="Liveness: 200 while the event loop serves requests")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "uptime_s": _uptime(started)}

    @app.get(
        "/readyz",
        summary="Readiness: 200 when every AMI node is connected and the database is open",
        responses={503: {"description": "Not ready; `not_ready` names the parts"}},
    )
    async def readyz() -> JSONResponse:
        parts = facade.readiness()
        not_ready = [p.name for p in parts if p.required and not p.ready]
        body = {
            "ready": not not_ready,
            "not_ready": not_ready,
            "parts": {
                p.name: {"ready": p.ready, "required": p.required, "detail": p.detail}
                for p in parts
            },
        }
        return JSONResponse(body, status_code=503 if not_ready else 200)

    async def metrics() -> Response:
        return Response(render_metrics(facade.metrics()), media_type=METRICS_CONTENT_TYPE)

    app.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        summary="Prometheus metrics" + ("" if settings.metrics_public else " (scope: stats)"),
        response_class=Response,
        dependencies=[] if settings.metrics_public else [Depends(require_scope("stats"))],
        responses={} if settings.metrics_public else error_responses(401, 403),
    )


def _uptime(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _command_body_schema() -> dict[str, Any]:
    return {k: v for k, v in _COMMAND_SCHEMA.items() if k != "$defs"}


def _add_command_schemas(app: FastAPI) -> None:
    """Put the seat command models into the OpenAPI components (they are validated by
    :func:`~cti.seats.commands.parse_seat_command`, not by FastAPI, so it does not know
    them)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(_COMMAND_SCHEMA.get("$defs", {}))
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way
