"""The HTTP API's rate limits: token failures per client address, the 110 push per token.

The limiter is :mod:`cti.adapters.http.ratelimit` (pure); this module holds the app's two
limiters (``app.state.cti_limits``, built by :func:`~cti.adapters.http.api.build_api`
from the ``http`` settings), the clock, and the one shape of a refusal: 429
``rate_limited`` with ``Retry-After``, logged at most once per window per key
(``http_rate_limited``, with how many were refused since the last line). docs/http-api.md
"Rate limits".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from starlette.requests import Request
from starlette.types import Scope
from structlog.typing import FilteringBoundLogger

from cti.adapters.http.errors import ApiError
from cti.adapters.http.ratelimit import RateLimiter, Verdict
from cti.settings import HttpSettings

__all__ = ["ApiLimits", "LimitName", "api_limits", "client_host"]

LimitName = Literal["auth_failures", "push110"]


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """The two limiters of one app, and the clock they read (monotonic; tests pass theirs)."""

    auth_failures: RateLimiter
    push110: RateLimiter
    clock: Callable[[], float] = field(default=time.monotonic)

    @classmethod
    def from_settings(
        cls, settings: HttpSettings, clock: Callable[[], float] = time.monotonic
    ) -> ApiLimits:
        auth, push = settings.auth_failure_limit, settings.push110_rate_limit
        return cls(
            auth_failures=RateLimiter(auth.limit, auth.window_s),
            push110=RateLimiter(push.limit, push.window_s),
            clock=clock,
        )

    def take(
        self,
        which: LimitName,
        key: str,
        log: FilteringBoundLogger,
        *,
        cost: int = 1,
    ) -> None:
        """Spend from *key*'s bucket of limiter *which*; refused: raise the 429."""
        limiter: RateLimiter = getattr(self, which)
        verdict = limiter.take(key, self.clock(), cost=cost)
        if not verdict.allowed:
            raise _refusal(which, key, limiter, verdict, log)


def api_limits(request: Request) -> ApiLimits | None:
    """The app's limits (``None`` for an app not built by ``build_api``: no limits)."""
    limits = getattr(request.app.state, "cti_limits", None)
    return limits if isinstance(limits, ApiLimits) else None


def client_host(scope: Scope) -> str:
    """The client's address without the port: the key of the token-failure limit (a
    guesser opens a new connection, and so a new port, as often as it likes)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _refusal(
    which: LimitName, key: str, limiter: RateLimiter, verdict: Verdict, log: FilteringBoundLogger
) -> ApiError:
    if verdict.log_refused:
        # once per window per key: a flood of refusals must not become a flood of logs
        log.warning(
            "http_rate_limited",
            limit=which,
            key=key,
            refused=verdict.log_refused,
            per=limiter.limit,
            window_s=limiter.window_s,
            retry_after_s=round(verdict.retry_after_s, 1),
        )
    what = "token failures from this address" if which == "auth_failures" else "pushes"
    return ApiError(
        429,
        "rate_limited",
        f"too many {what}: at most {limiter.limit} per {limiter.window_s:g} s; "
        f"try again in {verdict.retry_after_header} s",
        headers={"Retry-After": verdict.retry_after_header},
    )
