"""Who may call what: bearer tokens, each with a name and a flat set of scopes.

Designed for the 110 system too (issue 6): each token in ``http.tokens`` has a name and a
flat set of scopes; an endpoint needs exactly one scope (:func:`require_scope`); no scope
implies another, so the 110 system's token can hold ``transfers110`` and nothing else.
Tokens are compared in constant time (SHA-256 digests through :func:`hmac.compare_digest`,
so neither the content nor the length leaks), every configured token is compared on every
request. Token failures (401, 403) are counted per client address: past
``http.auth_failure_limit`` every request with a token from that address gets 429 before
its token is looked at (:mod:`cti.adapters.http.throttle`). A presented token is never
logged, nor kept: only its digest is compared.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from structlog.typing import FilteringBoundLogger

from cti.adapters.http.edge import client_address
from cti.adapters.http.errors import ApiError
from cti.adapters.http.throttle import api_limits, client_host
from cti.settings import HttpScope, HttpToken

__all__ = ["Principal", "TokenAuth", "require_scope"]


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
        log: FilteringBoundLogger = request.app.state.cti_log
        limits = api_limits(request)
        client = client_host(request.scope)
        if limits is not None:
            # refused before the token is compared: a guesser learns nothing more
            limits.take("auth_failures", client, log, cost=0)

        def failed() -> None:
            if limits is not None:
                limits.auth_failures.take(client, limits.clock())

        if credentials is None:
            failed()
            raise ApiError(
                401,
                "unauthorized",
                "a bearer token is needed (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = auth.authenticate(credentials.credentials)
        if principal is None:
            failed()
            log.warning(
                "http_auth_failed",
                client=client_address(request.scope),
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
            failed()
            log.warning("http_forbidden", token=principal.name, scope=scope, path=request.url.path)
            raise ApiError(
                403,
                "forbidden",
                f"the token {principal.name!r} lacks the scope {scope!r}",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
            )
        return principal

    return dependency
