"""HTTP API: JSON over ``/api/v1/…`` with scoped bearer tokens, plus the operator's probes.

The outside face described in docs/http-api.md. The app reads and drives the daemon only
through :class:`ApiFacade` (the :class:`~cti.app.Daemon` implements it; tests use a fake),
so this module knows nothing of the core's internals.

Every endpoint is ``async def`` on purpose: FastAPI runs plain ``def`` endpoints and
dependencies in a thread pool, and the core is single-threaded (it must only be touched
from the event loop, between two inputs).

Auth model (designed for the 110 system too, issue 6): each token in ``http.tokens`` has a
name and a flat set of scopes; an endpoint needs exactly one scope (:func:`require_scope`);
no scope implies another, so the 110 system's token can hold ``transfers110`` and nothing
else. Tokens are compared in constant time (SHA-256 digests through
:func:`hmac.compare_digest`, so neither the content nor the length leaks), every configured
token is compared on every request.

Errors use the envelope of the MQTT reply (``cti/seats/{seat}/reply``)::

    {"ok": false, "request_id": null,
     "error": {"code": "invalid_command", "message": "...", "fields": ["reason: ..."]}}
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import math
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, Protocol

import structlog
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field, TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cti import __version__
from cti.adapters.backoff import backoff_delay
from cti.adapters.http.guard import GuardStats, guarded_protocol
from cti.jsonin import JsonRefused, load_json
from cti.seats.commands import SeatCommand
from cti.settings import HttpScope, HttpSettings, HttpToken

__all__ = [
    "ApiError",
    "ApiFacade",
    "ErrorReply",
    "JsonRoute",
    "Metric",
    "Principal",
    "ReadyPart",
    "TokenAuth",
    "build_api",
    "error_envelope",
    "error_responses",
    "render_metrics",
    "require_scope",
    "serve_http",
]

API_PREFIX: Final = "/api/v1"
# The largest page of a list endpoint: 120,000 active calls in one response were 16 MB and
# held the event loop (and so every call) for 1.7 s (issue 16); a page of 1000 is <1 MB.
MAX_PAGE: Final = 1000
METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
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


# --------------------------------------------------------------------------- the facade


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyPart:
    """One part of the daemon /readyz reports on (``ami.main``, ``database``, ``mqtt``).

    Attributes:
        required: whether /readyz is 503 while this part is not ready.
        detail: a short human-readable state (``connected``, ``backoff: refused``).
    """

    name: str
    ready: bool
    required: bool = True
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    """One Prometheus metric family: its samples are ``(labels, value)`` pairs."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    samples: tuple[tuple[Mapping[str, str], float], ...]


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

    def metrics(self) -> list[Metric]: ...


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An HTTP error with the reply envelope; raised by endpoints and dependencies."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = tuple(fields)
        self.headers = dict(headers or {})


def error_envelope(
    code: str, message: str, fields: Sequence[str] = (), *, request_id: str | None = None
) -> dict[str, Any]:
    """The error reply every interface uses (HTTP, MQTT replies): ok false, the error."""
    return {
        "ok": False,
        "request_id": request_id,
        "error": {"code": code, "message": message, "fields": list(fields)},
    }


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable: unauthorized, forbidden, bad_json, …")
    message: str
    fields: list[str] = Field(description="`path: message` of each invalid field.")


class ErrorReply(BaseModel):
    """The error envelope, for the OpenAPI document (the body of every 4xx and 5xx)."""

    ok: Literal[False]
    request_id: str | None
    error: ErrorDetail


_ERROR_DESCRIPTIONS: Final[Mapping[int, str]] = {
    401: "`unauthorized`: no bearer token, or not a configured one",
    403: "`forbidden`: the token lacks this endpoint's scope",
    404: "`not_found` / `unknown_seat`: no such thing",
    409: "`rejected` / `conflict` / `no_call`: not possible in the current state",
    413: "`too_large`: the body is over the limit (http.max_body_bytes, or the endpoint's)",
    422: "`bad_json` (not UTF-8 JSON, nested deeper than 32 levels, a number of more than "
    "40 digits) or `invalid_request` / `invalid_command` (error.fields has the paths)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the error statuses an endpoint can answer, each with the
    :class:`ErrorReply` body, so clients generated from the document know them."""
    return {
        status: {"model": ErrorReply, "description": _ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


def _error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(
        error_envelope(err.code, err.message, err.fields),
        status_code=err.status,
        headers=err.headers,
    )


_HTTP_CODES: Final[Mapping[int, str]] = {
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


# --------------------------------------------------------------------------- JSON bodies

# Bodies are already cut at http.max_body_bytes (at most 1 MiB) by _Edge; this is a fence.
_MAX_JSON_BODY: Final = 1024 * 1024


class _ParsedRequest(Request):
    """A request whose JSON body was parsed by :func:`~cti.jsonin.load_json` already."""

    parsed: Any = None

    async def json(self) -> Any:
        if self.parsed is None:
            self.parsed = load_json(await self.body(), max_bytes=_MAX_JSON_BODY)
        return self.parsed


class JsonRoute(APIRoute):
    """A route whose JSON body FastAPI validates goes through the hardened loader first.

    FastAPI parses a body with Starlette's bare ``json.loads`` and turns every error but
    ``JSONDecodeError`` (invalid UTF-8, a 5,000-digit integer, deep nesting) into
    ``400 http_error``. Here the body is parsed by :func:`~cti.jsonin.load_json`: what it
    refuses is ``422 bad_json`` (``413 too_large``) with the reason, like on MQTT.
    Routers that take a body use it: ``APIRouter(route_class=JsonRoute)``.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:  # no body, or the endpoint reads the raw bytes itself
            return handler

        async def parse_first(request: Request) -> Response:
            parsed = _ParsedRequest(request.scope, request.receive)
            body = await parsed.body()
            if body:
                try:
                    parsed.parsed = load_json(body, max_bytes=_MAX_JSON_BODY)
                except JsonRefused as exc:
                    status = 413 if exc.code == "too_large" else 422
                    return JSONResponse(error_envelope(exc.code, exc.message), status_code=status)
            return await handler(parsed)

        return parse_first


# --------------------------------------------------------------------------- auth


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the token's name and scopes."""

    name: str
    scopes: frozenset[str]


class TokenAuth:
    """The configured tokens, compared in constant time."""

    def __init__(self, tokens: Sequence[HttpToken]) -> None:
        self._tokens = [
            (_digest(t.token.get_secret_value()), Principal(t.name, frozenset(t.scopes)))
            for t in tokens
        ]

    def authenticate(self, presented: str) -> Principal | None:
        """The principal whose token is *presented*, or ``None``.

        Compares against every token (no early exit) so the time does not tell which
        token came close, nor how many there are before the matching one.
        """
        digest = _digest(presented)
        found: Principal | None = None
        for expected, principal in self._tokens:
            if hmac.compare_digest(digest, expected) and found is None:
                found = principal
        return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


_BEARER: Final = HTTPBearer(
    auto_error=False,
    description="A token from `http.tokens` (config/cti.yaml; secret in CTI_HTTP_TOKEN_<NAME>).",
)


def require_scope(scope: HttpScope) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the request's :class:`Principal`, which holds *scope*.

    No or a wrong token: 401 with ``WWW-Authenticate: Bearer``; a valid token without the
    scope: 403. Use it on any router included in the app built by :func:`build_api`::

        @router.post("/api/v1/transfers/110")
        async def push(who: Annotated[Principal, Depends(require_scope("transfers110"))]): ...
    """

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> Principal:
        auth: TokenAuth = request.app.state.cti_auth
        log = request.app.state.cti_log
        if credentials is None:
            raise ApiError(
                401,
                "unauthorized",
                "a bearer token is needed (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = auth.authenticate(credentials.credentials)
        if principal is None:
            log.warning(
                "http_auth_failed",
                client=_client(request.scope),
                method=request.method,
                path=request.url.path,
            )
            raise ApiError(
                401,
                "unauthorized",
                "invalid token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        request.state.principal = principal.name
        if scope not in principal.scopes:
            log.warning("http_forbidden", token=principal.name, scope=scope, path=request.url.path)
            raise ApiError(
                403,
                "forbidden",
                f"the token {principal.name!r} lacks the scope {scope!r}",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
            )
        return principal

    return dependency


# module level: FastAPI resolves the (string) annotations of endpoints in module globals
_SeatsPrincipal = Annotated[Principal, Depends(require_scope("seats"))]


# --------------------------------------------------------------------------- metrics


def render_metrics(metrics: Sequence[Metric]) -> str:
    """The Prometheus text exposition format (0.0.4) of *metrics*.

    Hand-rolled instead of ``prometheus_client``: the numbers already live in the daemon's
    objects and are read at scrape time, so a process-global registry and its collectors
    would only add a dependency and global state (two daemons in one test process).
    """
    out: list[str] = []
    for m in metrics:
        out.append(f"# HELP {m.name} {_escape_help(m.help)}")
        out.append(f"# TYPE {m.name} {m.kind}")
        for labels, value in m.samples:
            if labels:
                inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items()))
                out.append(f"{m.name}{{{inner}}} {_number(value)}")
            else:
                out.append(f"{m.name} {_number(value)}")
    return "\n".join(out) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


# --------------------------------------------------------------------------- edge middleware


class _Edge:
    """Pure ASGI: the body size limit (413), the body deadline (408) and one access-log
    line per request.

    The body is read here, up to the limit, before the app sees it: a chunked upload
    without Content-Length is cut off as soon as it passes the limit, and one that
    trickles in is cut off at ``body_timeout_s`` (the headers' deadline is the protocol's,
    :mod:`cti.adapters.httpguard`). A client gone before its body is complete is not
    served a half body.
    """

    def __init__(
        self, app: ASGIApp, *, max_body: int, log: Any, body_timeout_s: float = 10.0
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.log = log
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            async with asyncio.timeout(self.body_timeout_s):
                body = await self._read_body(scope, receive)
        except TimeoutError:
            status = 408
            await _error_response(
                ApiError(
                    408,
                    "request_timeout",
                    f"the request body did not arrive within {self.body_timeout_s:g} s",
                    headers={"Connection": "close"},
                )
            )(scope, receive, send)
            self._access(scope, status, started)
            return
        if body is _GONE:
            return  # the client left mid-body: nobody to answer, nothing to act on
        if body is None:
            status = 413
            await _error_response(
                ApiError(413, "too_large", f"the request body is over {self.max_body} bytes")
            )(scope, receive, send)
        else:
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            try:
                await self.app(scope, replay, send_logged)
            except Exception:
                status = status or 500
                raise
            finally:
                self._access(scope, status, started)
            return
        self._access(scope, status, started)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                with contextlib.suppress(ValueError):
                    if int(value) > self.max_body:
                        return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect: nothing more comes
                return _GONE
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _access(self, scope: Scope, status: int, started: float) -> None:
        method = scope.get("method", "")
        path = scope.get("path", "")
        state = scope.get("state") or {}
        facts = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "client": _client(scope),
            "token": state.get("principal"),
        }
        if path == "/readyz" and method in {"GET", "HEAD"}:
            # a probe: its 503 is the answer, not an error; the daemon logs each change of
            # readiness once (readiness_changed), not each of the probes that saw it
            self.log.debug("http_request", **facts)
        elif status >= 500:
            self.log.error("http_request", **facts)
        elif method in {"GET", "HEAD"} and status < 400:
            self.log.debug("http_request", **facts)  # probes and dashboards poll often
        else:
            self.log.info("http_request", **facts)


_GONE: Final = b"\0gone"  # _read_body's answer when the client disconnected mid-body


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


# --------------------------------------------------------------------------- the app


_COMMAND_SCHEMA: Final = TypeAdapter[SeatCommand](
    Annotated[SeatCommand, Field(discriminator="cmd")]
).json_schema(ref_template="#/components/schemas/{model}")


def build_api(
    facade: ApiFacade,
    settings: HttpSettings,
    *,
    routers: Sequence[APIRouter] = (),
    log: Any = None,
) -> FastAPI:
    """The FastAPI app of the daemon (OpenAPI at ``/docs`` and ``/openapi.json``).

    Args:
        facade: the daemon (or a fake in tests).
        settings: the ``http`` section: tokens, ``metrics_public``, ``max_body_bytes``.
        routers: more routers (e.g. the 110 push API); guard them with :func:`require_scope`.
        log: structlog logger (default ``cti.http``).
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
    _install_error_handlers(app, log)

    app.include_router(_api_router(facade, log))
    for router in routers:
        app.include_router(router)
    _add_probes(app, facade, settings)
    _add_command_schemas(app)
    app.add_middleware(
        _Edge, max_body=settings.max_body_bytes, log=log, body_timeout_s=settings.body_timeout_s
    )
    return app


def _api_router(facade: ApiFacade, log: Any) -> APIRouter:
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


def _install_error_handlers(app: FastAPI, log: Any) -> None:
    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error_response(exc)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        fields = []
        bad_json = False
        for err in exc.errors():
            bad_json = bad_json or err.get("type") == "json_invalid"
            path = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
            fields.append(f"{path}: {err.get('msg', 'invalid')}")
        code, message = (
            ("bad_json", "the body is not valid JSON")
            if bad_json
            else ("invalid_request", "; ".join(fields))
        )
        return JSONResponse(error_envelope(code, message, fields), status_code=422)

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_envelope(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error(
            "http_internal_error",
            method=request.method,
            path=request.url.path,
            error=repr(exc),
            exc_info=exc,
        )
        return JSONResponse(error_envelope("internal", "internal error (logged)"), status_code=500)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)


# --------------------------------------------------------------------------- serving


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT and stops
    this server by cancelling its task (uvicorn >= 0.29 captures signals in
    ``capture_signals``; older releases in ``install_signal_handlers``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:
        return


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # asyncio's create_server(sock=...) makes it non-blocking
    # the backlog holds no descriptor of ours: connections waiting there cost nothing
    return socket.create_server((host, port), family=family, backlog=128)


async def serve_http(
    app: ASGIApp,
    settings: HttpSettings,
    *,
    log: Any = None,
    bound: asyncio.Future[tuple[str, int]] | None = None,
    retry_min: float = 1.0,
    retry_max: float = 30.0,
    stats: GuardStats | None = None,
) -> None:
    """Serve *app* on ``settings.host:settings.port`` until cancelled (one TaskGroup task).

    The address is bound here, not by uvicorn: a port already in use is logged at error
    level and retried with backoff (calls keep being routed meanwhile) instead of
    uvicorn's ``sys.exit``. On cancellation the listener closes and open requests get up
    to 3 s to finish. uvicorn's own logs go to the standard library (warnings and up,
    rendered by structlog); its access log is off: :class:`_Edge` logs each request.

    Slow clients are bounded (docs/http-api.md, "Limits"): at most
    ``http.max_connections`` connections (past it 503 and closed), the headers within
    ``header_timeout_s`` (:mod:`cti.adapters.httpguard`), the body within
    ``body_timeout_s`` (:class:`_Edge`), idle keep-alive ``keepalive_timeout_s``, headers
    at most ``max_header_bytes``.

    Args:
        bound: resolved with the bound ``(host, port)`` once listening (tests; port 0).
        stats: the connection guard's counters (the daemon shows them in /metrics).
    """
    log = log or structlog.get_logger("cti.http")
    attempt = 0
    while True:
        try:
            sock = _bind(settings.host, settings.port)
        except OSError as exc:
            delay = backoff_delay(attempt, retry_min, retry_max)
            attempt += 1
            log.error(
                "http_bind_failed",
                host=settings.host,
                port=settings.port,
                error=str(exc),
                retry_in_s=round(delay, 2),
                hint="another process listens there? change http.port or set http.enabled: false",
            )
            await asyncio.sleep(delay)
            continue
        break
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        # the h11 protocol with the connection cap and the header deadline: uvicorn's own
        # limit_concurrency only counts connections once a request is complete, which a
        # slow client never sends (see cti/adapters/httpguard.py)
        http=guarded_protocol(
            max_connections=settings.max_connections,
            header_timeout_s=settings.header_timeout_s,
            stats=stats if stats is not None else GuardStats(),
            log=log,
        ),
        timeout_keep_alive=settings.keepalive_timeout_s,  # type: ignore[arg-type]  # float works
        h11_max_incomplete_event_size=settings.max_header_bytes,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=3,
    )
    server = _Server(config)
    log.info("http_listening", host=host, port=port, docs=f"http://{host}:{port}/docs")
    if bound is not None and not bound.done():
        bound.set_result((host, port))
    try:
        await server.serve(sockets=[sock])
    except asyncio.CancelledError:
        server.should_exit = True
        if server.started:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await server.shutdown(sockets=[sock])
        log.info("http_stopped", host=host, port=port)
        raise
    finally:
        sock.close()
