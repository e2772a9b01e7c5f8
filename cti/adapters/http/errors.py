"""The error envelope of every interface, and the HTTP app's exception handlers.

HTTP errors use the envelope of the MQTT reply (``cti/seats/{seat}/reply``)::

    {"ok": false, "request_id": null,
     "error": {"code": "invalid_command", "message": "...", "fields": ["reason: ..."]}}

:class:`ApiError` is what endpoints and dependencies raise; :func:`install_error_handlers`
turns it, FastAPI's validation errors, Starlette's HTTP errors and any unexpected
exception into that envelope, so no client ever sees another shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from structlog.typing import FilteringBoundLogger

__all__ = [
    "ApiError",
    "ErrorDetail",
    "ErrorReply",
    "error_envelope",
    "error_response",
    "error_responses",
    "install_error_handlers",
]


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
    429: "`rate_limited`: too many token failures from this address (http.auth_failure_limit)"
    " or, on the 110 push, too many pushes with this token (http.push110_rate_limit); "
    "try again after Retry-After seconds",
}
_RETRY_AFTER: Final = {
    "Retry-After": {
        "description": "Seconds until a request would pass again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the error statuses an endpoint can answer, each with the
    :class:`ErrorReply` body, so clients generated from the document know them.

    401 brings 429 with it: every route that checks a token refuses an address past
    ``http.auth_failure_limit`` (:mod:`cti.adapters.http.throttle`), so a router that
    documents its 401 documents that too.
    """
    wanted = (*statuses, 429) if 401 in statuses and 429 not in statuses else statuses
    return {
        status: {"model": ErrorReply, "description": _ERROR_DESCRIPTIONS[status]}
        | ({"headers": _RETRY_AFTER} if status == 429 else {})
        for status in wanted
    }


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(
        error_envelope(err.code, err.message, err.fields),
        status_code=err.status,
        headers=err.headers,
    )


_HTTP_CODES: Final[Mapping[int, str]] = {
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "rate_limited",
}


def install_error_handlers(app: FastAPI, log: FilteringBoundLogger) -> None:
    async def api_error(_request: Request, exc: Exception) -> Response:
        # Starlette calls this handler only for its class; a check that `python -O`
        # keeps (an assert would vanish), and the narrowing mypy needs
        if not isinstance(exc, ApiError):
            raise TypeError(type(exc).__name__) from exc
        return error_response(exc)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        if not isinstance(exc, RequestValidationError):
            raise TypeError(type(exc).__name__) from exc
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
        if not isinstance(exc, StarletteHTTPException):
            raise TypeError(type(exc).__name__) from exc
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
