"""Keep a request's own credentials out of what is logged about its response (issue 15).

A backend's error page may echo the request's headers (a debug page, a proxy): the
excerpt of its body that goes into a log line or a parked row must not carry the bearer
token we sent. Found by tests/test_secrets.py.
"""

from __future__ import annotations

import httpx

__all__ = ["redact_credentials"]

_MIN_SECRET = 8  # shorter values would redact ordinary words


def redact_credentials(text: str, request: httpx.Request | None) -> str:
    """*text* with the Authorization header of *request* (and its bare token) masked."""
    if request is None:
        return text
    value = request.headers.get("authorization")
    if not value:
        return text
    scheme, _, credential = value.partition(" ")
    for secret in (value, credential.strip() if credential else scheme):
        if len(secret) >= _MIN_SECRET:
            text = text.replace(secret, "<redacted>")
    return text
