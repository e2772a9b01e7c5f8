"""JSON request bodies through the hardened loader (:func:`~cti.jsonin.load_json`).

FastAPI parses a body with Starlette's bare ``json.loads``; :class:`JsonRoute` parses it
first with the loader the MQTT side uses, so a body refused there (invalid UTF-8, deep
nesting, a huge number) is refused here with the same code and reason.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Final

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from cti.adapters.http.errors import error_envelope
from cti.jsonin import JsonRefused, load_json

__all__ = ["MAX_JSON_BODY", "JsonRoute"]

# Bodies are already cut at http.max_body_bytes (at most 1 MiB) by _Edge; this is a fence.
MAX_JSON_BODY: Final = 1024 * 1024


class _ParsedRequest(Request):
    """A request whose JSON body was parsed by :func:`~cti.jsonin.load_json` already."""

    parsed: Any = None

    async def json(self) -> Any:
        if self.parsed is None:
            self.parsed = load_json(await self.body(), max_bytes=MAX_JSON_BODY)
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
                    parsed.parsed = load_json(body, max_bytes=MAX_JSON_BODY)
                except JsonRefused as exc:
                    status = 413 if exc.code == "too_large" else 422
                    return JSONResponse(error_envelope(exc.code, exc.message), status_code=status)
            return await handler(parsed)

        return parse_first
