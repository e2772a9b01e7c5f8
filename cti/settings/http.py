"""The ``http`` section: the HTTP API's listener, limits and bearer tokens with scopes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from cti.settings.base import FROZEN, Seconds
from cti.settings.tls import TlsServerSettings

__all__ = ["HttpScope", "HttpSettings", "HttpToken", "RateLimit", "http_token_env_var"]


def http_token_env_var(name: str) -> str:
    """Name of the environment variable holding the HTTP bearer token *name*.

    ``supervisor`` -> ``CTI_HTTP_TOKEN_SUPERVISOR``, ``dispatch-110`` ->
    ``CTI_HTTP_TOKEN_DISPATCH_110``.
    """
    return "CTI_HTTP_TOKEN_" + name.upper().replace("-", "_")


HttpScope = Literal["seats", "queue", "calls", "stats", "admin", "transfers110", "supervise"]
"""What a bearer token may do. Flat: no scope implies another (docs/http-api.md)."""


class HttpToken(BaseModel):
    """One bearer token of the HTTP API and what it may do."""

    model_config = FROZEN

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        max_length=32,
        description="Who holds the token (lower-case slug): logged with every request it "
        "makes, and names its environment variable CTI_HTTP_TOKEN_<NAME>.",
    )
    token: SecretStr = Field(
        min_length=24,
        description="The secret bearer token (24+ characters, e.g. `openssl rand -hex 32`). "
        "In production set it with CTI_HTTP_TOKEN_<NAME> instead of writing it in the file.",
    )
    scopes: tuple[HttpScope, ...] = Field(
        min_length=1,
        description="What the token may do: seats, queue, calls, stats, admin, transfers110.",
    )

    @field_validator("scopes")
    @classmethod
    def _unique_scopes(cls, scopes: tuple[str, ...]) -> tuple[str, ...]:
        doubled = sorted({s for s in scopes if scopes.count(s) > 1})
        if doubled:
            msg = f"scope listed twice: {', '.join(doubled)}"
            raise ValueError(msg)
        return scopes


class RateLimit(BaseModel):
    """At most ``limit`` per ``window_s`` (a token bucket: the burst is ``limit``, one more
    every ``window_s / limit`` seconds); past it 429 with Retry-After."""

    model_config = FROZEN

    limit: int = Field(ge=0, le=1_000_000, description="How many per window; 0 = no limit.")
    window_s: Seconds = Field(le=86_400, description="The window, in seconds.")


class HttpSettings(BaseModel):
    """The HTTP API (JSON, bearer tokens with scopes), /metrics, /healthz and /readyz."""

    model_config = FROZEN

    enabled: bool = Field(default=True, description="Serve the HTTP API.")
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address to listen on; 0.0.0.0 for every interface (put TLS in front).",
    )
    port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="TCP port to listen on; 0 = any free port, logged in `http_listening` "
        "(tests, several daemons on one host).",
    )
    tokens: tuple[HttpToken, ...] = Field(
        default=(),
        description="Bearer tokens; none means every /api/v1 request gets 401.",
    )
    metrics_public: bool = Field(
        default=True,
        description="/metrics without a token (false: a token with the `stats` scope).",
    )
    max_body_bytes: int = Field(
        default=16384,
        ge=1024,
        le=1048576,
        description="Larger request bodies get 413.",
    )
    # Slow clients (issue 16): a connection that trickles its headers or body must not
    # hold a file descriptor for ever, nor starve AMI and FastAGI of theirs.
    max_connections: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Open HTTP connections at most; past it a new connection gets 503 and "
        "is closed at once. Must fit RLIMIT_NOFILE with room for AMI and FastAGI (checked "
        "at start).",
    )
    header_timeout_s: Seconds = Field(
        default=10.0,
        le=300,
        description="A request's line and headers must arrive within this, from the "
        "connection (or the previous response); else 408 and the connection is closed.",
    )
    body_timeout_s: Seconds = Field(
        default=10.0,
        le=300,
        description="The request body must arrive within this once the headers did; else 408.",
    )
    keepalive_timeout_s: Seconds = Field(
        default=5.0,
        le=300,
        description="An idle keep-alive connection is closed after this.",
    )
    max_header_bytes: int = Field(
        default=16384,
        ge=1024,
        le=1048576,
        description="Request line and headers larger than this get 400.",
    )

    # Rate limits (issue 15): 429 with Retry-After, one log line per window per client.
    push110_rate_limit: RateLimit = Field(
        default=RateLimit(limit=120, window_s=60),
        description="POST /api/v1/transfers/110 per token: a 110 system gone wrong (a "
        "retry loop) must not flood the queue and the ticket backend. 110 pushes a "
        "transfer every few minutes on a busy day.",
    )
    auth_failure_limit: RateLimit = Field(
        default=RateLimit(limit=10, window_s=60),
        description="Token failures (401/403) per client address: past it every request "
        "with a token from that address gets 429 before its token is even looked at, so "
        "guessing tokens is slow. A good client behind the same address (NAT, proxy) is "
        "refused too while it lasts.",
    )
    # TLS (issue 15): cti/settings/tls.py; the files are loaded when the file is validated
    tls: TlsServerSettings | None = Field(
        default=None,
        description="Serve HTTPS with this certificate and key (optionally mutual TLS); "
        "none = plain HTTP (loopback, or a TLS proxy in front).",
    )

    @field_validator("tokens")
    @classmethod
    def _check_tokens(cls, tokens: tuple[HttpToken, ...]) -> tuple[HttpToken, ...]:
        names: dict[str, int] = {}
        values: dict[str, int] = {}
        for index, tok in enumerate(tokens):
            var = http_token_env_var(tok.name)
            if var in names:
                msg = (
                    f"token names {tokens[names[var]].name!r} and {tok.name!r} "
                    f"share the environment variable {var}"
                )
                raise ValueError(msg)
            names[var] = index
            secret = tok.token.get_secret_value()
            if secret in values:
                # the API could not tell the two holders apart (logs, scopes)
                msg = f"tokens {tokens[values[secret]].name!r} and {tok.name!r} are the same"
                raise ValueError(msg)
            values[secret] = index
        return tokens
