"""A token bucket per key (a token's name, a client's address), time passed in.

Pure (no I/O, no clock of its own) so the tests drive it with made-up times. Used by the
HTTP API for two limits (issue 15, docs/http-api.md "Rate limits"): the 110 push per
token, and token failures (401/403) per client address.

``limit`` per ``window_s``: a key may spend ``limit`` at once (the burst), and gets one
back every ``window_s / limit`` seconds. A refused request learns when the next one would
pass (``Retry-After``). Refusals are meant to be logged once per window per key, not once
per request: :attr:`Verdict.log_refused` says when, and how many were refused since the
last line.

Memory is bounded: past ``max_keys`` keys, those whose bucket is full again (idle ones,
which forget nothing by being dropped) go first, then the least recently seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

__all__ = ["RateLimiter", "Verdict"]

_DEFAULT_MAX_KEYS: Final = 10_000


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one request."""

    allowed: bool
    retry_after_s: float = 0.0  # refused: when one more would pass
    log_refused: int = 0  # > 0: log now; this many refused since the key's last log line

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` (whole seconds, at least 1)."""
        return str(max(1, math.ceil(self.retry_after_s)))


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    logged_at: float = -math.inf
    unlogged: int = 0


class RateLimiter:
    """``limit`` per ``window_s`` per key; ``limit`` 0 turns it off."""

    def __init__(self, limit: int, window_s: float, *, max_keys: int = _DEFAULT_MAX_KEYS) -> None:
        if limit < 0 or window_s <= 0 or max_keys < 1:
            raise ValueError("limit >= 0, window_s > 0 and max_keys >= 1")
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._rate = limit / window_s  # tokens per second
        self._buckets: dict[str, _Bucket] = {}
        self.refused = 0  # in all, for the tests and metrics

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def take(self, key: str, now: float, *, cost: int = 1) -> Verdict:
        """Spend *cost* from *key*'s bucket if it holds a whole token.

        ``cost=0`` asks without spending (is the key refused now?); the refusal then
        counts like any other.
        """
        if not self.enabled:
            return Verdict(allowed=True)
        bucket = self._refill(key, now)
        if bucket.tokens >= 1:
            bucket.tokens -= cost
            return Verdict(allowed=True)
        self.refused += 1
        bucket.unlogged += 1
        retry = (1 - bucket.tokens) / self._rate
        if now - bucket.logged_at >= self.window_s:
            refused, bucket.unlogged, bucket.logged_at = bucket.unlogged, 0, now
            return Verdict(allowed=False, retry_after_s=retry, log_refused=refused)
        return Verdict(allowed=False, retry_after_s=retry)

    def __len__(self) -> int:
        return len(self._buckets)

    def _refill(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.pop(key, None)  # re-inserted last: the most recently seen
        if bucket is None:
            bucket = _Bucket(tokens=float(self.limit), at=now)
        else:
            elapsed = max(0.0, now - bucket.at)  # a clock that steps back refills nothing
            bucket.tokens = min(float(self.limit), bucket.tokens + elapsed * self._rate)
            bucket.at = max(bucket.at, now)
        self._buckets[key] = bucket
        if len(self._buckets) > self.max_keys:
            self._prune(now)
        return bucket

    def _prune(self, now: float) -> None:
        target = max(1, self.max_keys * 9 // 10)
        # the oldest-seen first; the newest (just touched) is kept
        for key in list(self._buckets)[:-1]:
            if len(self._buckets) <= target:
                return
            b = self._buckets[key]
            if b.tokens + (now - b.at) * self._rate >= self.limit:
                del self._buckets[key]
        for key in list(self._buckets)[:-1]:
            if len(self._buckets) <= target:
                return
            del self._buckets[key]
