"""The HTTP API fuzzed from its own OpenAPI document with schemathesis (issue 15), bounded.

The app is the one the daemon serves (``build_api`` with the 110 push and the callback
routers) over the in-memory fake facade of ``test_http.py``, called in process (ASGI, no
network). For every operation of ``/openapi.json``, schemathesis generates requests from
the schema (valid ones and ones that break it) and checks each answer: never a 5xx, only a
status the document lists for that operation, the documented content type, and a body
that matches the documented schema. Bounded so it stays a unit test (a few seconds):
``FUZZ_EXAMPLES`` examples per operation, a deadline per example.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis import checks

from cti.adapters.db.store import Store
from cti.adapters.http import build_api
from cti.adapters.http.callbacks import callbacks_router
from cti.adapters.http.transfers110 import transfers_router
from cti.settings import HttpSettings, HttpToken, RateLimit
from tests.adapters.test_http import FakeFacade
from tests.adapters.test_http_json import FakePushes

# CTI_FUZZ_EXAMPLES=500 for a deeper run by hand
FUZZ_EXAMPLES: Final = int(os.environ.get("CTI_FUZZ_EXAMPLES", "25"))
FUZZER = "f" * 40  # a token with every scope: the requests reach the endpoints
_DIR = Path(tempfile.mkdtemp(prefix="cti-fuzz-"))


class FuzzCallbacks:
    """The callback router's daemon: a real (empty) store, every callback refused as the
    daemon refuses an unknown entry."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def store(self) -> Store:
        return self._store

    async def call_back(self, call_id: str, seat: str) -> tuple[int, dict[str, Any]]:
        del seat
        return 404, {"ok": False, "error": {"code": "not_found", "message": call_id}}


def _store() -> Store:
    store = Store(f"sqlite+aiosqlite:///{_DIR}/cti.db")

    async def create() -> None:
        await store.open()
        # the connections made here belong to this loop; the ASGI client's loop makes its own
        await store.engine.dispose()

    asyncio.run(create())
    return store


def _app() -> Any:
    settings_ = HttpSettings(
        tokens=(
            HttpToken(
                name="fuzzer",
                token=SecretStr(FUZZER),
                scopes=("seats", "queue", "calls", "stats", "admin", "transfers110"),
            ),
        ),
        # off here: with them, the fuzzer's own invalid tokens would soon make every answer
        # a 429 and hide the endpoints (the limits have their own tests)
        auth_failure_limit=RateLimit(limit=0, window_s=60),
        push110_rate_limit=RateLimit(limit=0, window_s=60),
    )
    routers = [transfers_router(FakePushes()), callbacks_router(FuzzCallbacks(_store()))]
    return build_api(FakeFacade(), settings_, routers=routers)


APP: Final = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)

CHECKS: Final = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=timedelta(seconds=2),
    suppress_health_check=list(HealthCheck),
    database=None,  # no example database in the worktree; each run starts fresh
)
def test_api_from_its_openapi(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {FUZZER}"}, checks=CHECKS)


def test_every_operation_is_fuzzed() -> None:
    """The parametrisation above covers the routes: none may drop out of the document."""
    paths = {result.ok().path for result in schema.get_all_operations()}  # type: ignore[union-attr]  # an Err (broken schema) fails here
    assert {
        "/api/v1/seats",
        "/api/v1/seats/{seat}",
        "/api/v1/seats/{seat}/commands",
        "/api/v1/queue",
        "/api/v1/calls",
        "/api/v1/calls/active",
        "/api/v1/transfers/110",
        "/api/v1/transfers/110/{transfer_id}",
        "/api/v1/callbacks",
        "/api/v1/callbacks/{call_id}/call",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= paths
