"""HTTP bodies go through cti.jsonin (JsonRoute): hostile JSON is 422 bad_json, never 400
or 500; and the OpenAPI document names every error response (issue 16 items 6, 7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from cti.adapters.db.store import Store
from cti.adapters.dispatch110 import TransferPush
from cti.adapters.http import build_api
from cti.adapters.http.callbacks import callbacks_router
from cti.adapters.http.transfers110 import transfers_router
from cti.core import Reply110
from tests.adapters.test_http import AGENT, POLICE, FakeFacade, _auth, _settings

PUSH = "/api/v1/transfers/110"
GOOD = {
    "transfer_id": "J1",
    "mode": "data",
    "caller": "138 0013 8000",
    "summary": "路灯坏了",
    "called_at": "2026-11-27T10:00:00+08:00",
    "operator_id": "A1",
}


class FakePushes:
    def __init__(self) -> None:
        self.pushes: list[TransferPush] = []

    async def push110(self, push: TransferPush) -> Reply110:
        self.pushes.append(push)
        return Reply110(
            transfer_id=push.transfer_id,
            result="new",
            request_id=None,
            status={"transfer_id": push.transfer_id},
        )

    async def transfer110_status(self, transfer_id: str) -> dict[str, Any] | None:
        del transfer_id
        return None


class FakeCallbacks:
    @property
    def store(self) -> Store:
        raise NotImplementedError

    async def call_back(self, call_id: str, seat: str) -> tuple[int, dict[str, Any]]:
        return 202, {"ok": True, "call_id": call_id, "seat": seat}


@pytest.fixture
def pushes() -> FakePushes:
    return FakePushes()


@pytest.fixture
async def client(pushes: FakePushes) -> AsyncIterator[httpx.AsyncClient]:
    routers = [transfers_router(pushes), callbacks_router(FakeCallbacks())]
    app = build_api(FakeFacade(), _settings(), routers=routers)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cti") as c:
        yield c


HOSTILE = [
    (b"\xff{", "not UTF-8"),
    (b"[" * 5000 + b"]" * 5000, "nested deeper than 32 levels"),
    (b'{"transfer_id":"a","location":{"lat":' + b"9" * 5000 + b',"lon":1}}', "40 digits"),
    (b'{"transfer_id": ', "not JSON"),
]


@pytest.mark.parametrize(("body", "fragment"), HOSTILE)
async def test_push_hostile_json_is_422_bad_json(
    client: httpx.AsyncClient, pushes: FakePushes, body: bytes, fragment: str
) -> None:
    headers = {**_auth(POLICE), "Content-Type": "application/json"}
    r = await client.post(PUSH, content=body, headers=headers)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "bad_json"
    assert fragment in err["message"]
    assert pushes.pushes == []


async def test_push_still_validates_and_accepts(
    client: httpx.AsyncClient, pushes: FakePushes
) -> None:
    r = await client.post(PUSH, json={**GOOD, "priority": 1}, headers=_auth(POLICE))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")
    assert r.json()["error"]["fields"][0].startswith("body.priority")
    r = await client.post(PUSH, json=GOOD, headers=_auth(POLICE))
    assert r.status_code == 202, r.text
    assert [p.caller for p in pushes.pushes] == ["138 0013 8000"]


async def test_callback_body_hostile_json_is_422(client: httpx.AsyncClient) -> None:
    url = "/api/v1/callbacks/main:1733212345.12/call"
    r = await client.post(url, content=b"{" * 3000, headers=_auth(AGENT))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "bad_json")
    r = await client.post(url, json={"seat": "1001"}, headers=_auth(AGENT))
    assert r.status_code == 202, r.text


async def test_openapi_names_the_error_responses(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    expected = {
        ("get", "/api/v1/seats"): {"401", "403"},
        ("get", "/api/v1/seats/{seat}"): {"401", "403", "404", "422"},
        ("post", "/api/v1/seats/{seat}/commands"): {"401", "403", "404", "409", "413", "422"},
        ("get", "/api/v1/queue"): {"401", "403"},
        ("get", "/api/v1/calls"): {"401", "403", "422"},
        ("get", "/api/v1/calls/active"): {"401", "403", "422"},
        ("post", PUSH): {"401", "403", "409", "413", "422"},
        ("get", PUSH + "/{transfer_id}"): {"401", "403", "404", "422"},
        ("get", "/api/v1/callbacks"): {"401", "403", "422"},
        ("post", "/api/v1/callbacks/{call_id}/call"): {"401", "403", "404", "409", "413", "422"},
    }
    for (method, path), statuses in expected.items():
        responses = spec["paths"][path][method]["responses"]
        assert statuses <= set(responses), (method, path, sorted(responses))
        for status in statuses:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorReply"}, (path, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # not our 422 body
    error = spec["components"]["schemas"]["ErrorReply"]
    assert set(error["required"]) == {"ok", "request_id", "error"}
