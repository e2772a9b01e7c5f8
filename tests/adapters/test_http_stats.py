"""GET /api/v1/stats (issue 17): the same figures as `cti report`, scope stats, in the
OpenAPI with its error replies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cti.adapters.db.store import Store
from cti.adapters.http import build_api
from cti.adapters.http.stats import stats_router
from cti.kpis import Thresholds
from tests.adapters.test_http import AGENT, SUPERVISOR, FakeFacade, _auth, _settings
from tests.kpis.test_report_store import FATES, write


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = Store(f"sqlite+aiosqlite:///{tmp_path}/cti.db")
    await store.open()
    await write(store, FATES)
    app = build_api(
        FakeFacade(),
        _settings(),
        routers=[stats_router(store, Thresholds(), "Asia/Shanghai")],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cti") as c:
        yield c
    await store.close()


async def test_stats_give_the_hand_computed_figures(client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/api/v1/stats",
        params={"from": "2026-03-02", "to": "2026-03-02", "by": "line"},
        headers=_auth(SUPERVISOR),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    c = body["centre"]
    assert (c["offered"], c["answered"], c["abandoned"]) == (4, 2, 2)
    assert c["n_s_answer_rate"] == 0.25
    assert c["service_level"] == 0.5
    [line] = body["groups"]
    assert line["key"] == "12345"
    assert line["offered"] == 4


async def test_stats_need_the_stats_scope_and_a_sane_window(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/stats")).status_code == 401
    assert (await client.get("/api/v1/stats", headers=_auth(AGENT))).status_code == 403
    r = await client.get("/api/v1/stats", params={"from": "soon"}, headers=_auth(SUPERVISOR))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_window"
    r = await client.get("/api/v1/stats", params={"by": "moon"}, headers=_auth(SUPERVISOR))
    assert r.status_code == 422


async def test_openapi_names_the_stats_errors(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    responses = spec["paths"]["/api/v1/stats"]["get"]["responses"]
    for status in ("401", "403", "422"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorReply"}
    params = {p["name"] for p in spec["paths"]["/api/v1/stats"]["get"]["parameters"]}
    assert params == {"from", "to", "by"}
