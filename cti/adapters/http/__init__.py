"""The HTTP side: the API app (:mod:`~cti.adapters.http.api`) and the connection guard
(:mod:`~cti.adapters.http.guard`); split by role in the next step."""

from cti.adapters.http.api import (
    API_PREFIX,
    ApiError,
    ApiFacade,
    ErrorReply,
    JsonRoute,
    Metric,
    Principal,
    ReadyPart,
    TokenAuth,
    build_api,
    error_envelope,
    error_responses,
    render_metrics,
    require_scope,
    serve_http,
)

__all__ = [
    "API_PREFIX",
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
