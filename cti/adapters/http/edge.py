"""The app's edge: the request body's size limit and deadline, and the access log.

A pure ASGI middleware in front of FastAPI (:class:`Edge`, installed by
:func:`~cti.adapters.http.api.build_api`); the connection cap and the headers' deadline
are the protocol's (:mod:`cti.adapters.http.guard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.typing import FilteringBoundLogger

from cti.adapters.http.errors import ApiError, error_response

__all__ = ["Edge", "client_address"]


class Edge:
    """Pure ASGI: the body size limit (413), the body deadline (408) and one access-log
    line per request.

    The body is read here, up to the limit, before the app sees it: a chunked upload
    without Content-Length is cut off as soon as it passes the limit, and one that
    trickles in is cut off at ``body_timeout_s`` (the headers' deadline is the protocol's,
    :mod:`cti.adapters.http.guard`). A client gone before its body is complete is not
    served a half body.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        log: FilteringBoundLogger,
        body_timeout_s: float = 10.0,
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
            await error_response(
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
            await error_response(
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
            "client": client_address(scope),
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


def client_address(scope: Scope) -> str | None:
    """``host:port`` of the client, for the logs."""
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None
