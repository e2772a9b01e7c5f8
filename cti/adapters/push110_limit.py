"""The reply to a 110 push over MQTT refused by ``mqtt.push110_rate_limit`` (issue 15).

The same envelope and code as the HTTP 429 (``rate_limited``), with ``retry_after_s``
since MQTT has no Retry-After header; the push's ``request_id`` is echoed when the payload
is a JSON object that carries one (read with the same limits as a push, never trusted).
"""

from __future__ import annotations

from typing import Any

from cti.adapters.dispatch110 import MAX_PUSH_BYTES
from cti.adapters.http.errors import error_envelope
from cti.adapters.http.ratelimit import RateLimiter, Verdict
from cti.jsonin import JsonRefused, load_json

__all__ = ["refused_push_reply"]


def refused_push_reply(payload: bytes, limiter: RateLimiter, verdict: Verdict) -> dict[str, Any]:
    """The ``rate_limited`` error reply for *payload* (published on 110/transfers/reply)."""
    request_id: str | None = None
    try:
        data = load_json(payload, max_bytes=MAX_PUSH_BYTES)
    except JsonRefused:
        data = None
    if isinstance(data, dict):
        rid = data.get("request_id")
        if isinstance(rid, str) and len(rid) <= 64:
            request_id = rid
    reply = error_envelope(
        "rate_limited",
        f"too many pushes: at most {limiter.limit} per {limiter.window_s:g} s on this "
        f"topic; try again in {verdict.retry_after_header} s (not stored)",
        request_id=request_id,
    )
    reply["retry_after_s"] = int(verdict.retry_after_header)
    return reply
