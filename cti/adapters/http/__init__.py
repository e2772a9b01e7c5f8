"""The HTTP side: the API app, its tokens and errors, the server, the connection guard.

Modules by role: :mod:`~cti.adapters.http.api` (``build_api``, the routes, the facade the
daemon implements), :mod:`~cti.adapters.http.auth` (tokens, scopes),
:mod:`~cti.adapters.http.errors` (the envelope, the exception handlers),
:mod:`~cti.adapters.http.json_bodies` and :mod:`~cti.adapters.http.edge` (what a body may
be), :mod:`~cti.adapters.http.metrics` (/readyz and /metrics content),
:mod:`~cti.adapters.http.server` (uvicorn) and :mod:`~cti.adapters.http.guard` (slow
clients), and the routers of two capabilities: :mod:`~cti.adapters.http.callbacks` and
:mod:`~cti.adapters.http.transfers110`.

The names below are re-exported for the daemon and the tests. The two capability routers
are not: they import adapters (the 110 push contract) that import
:mod:`~cti.adapters.http.errors`, and re-exporting them here would make loading those
adapters load themselves half-way. Import them from their modules.
"""

from cti.adapters.http.api import API_PREFIX, MAX_PAGE, ApiFacade, build_api
from cti.adapters.http.auth import Principal, TokenAuth, require_scope
from cti.adapters.http.errors import ApiError, ErrorReply, error_envelope, error_responses
from cti.adapters.http.guard import GuardStats
from cti.adapters.http.json_bodies import JsonRoute
from cti.adapters.http.metrics import HistogramMetric, Metric, ReadyPart, render_metrics
from cti.adapters.http.server import serve_http

__all__ = [
    "API_PREFIX",
    "MAX_PAGE",
    "ApiError",
    "ApiFacade",
    "ErrorReply",
    "GuardStats",
    "HistogramMetric",
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
