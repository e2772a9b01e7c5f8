"""The HTTP API over a fake facade, in memory (httpx.AsyncClient + ASGITransport)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from cti.adapters.http import (
    ApiFacade,
    HistogramMetric,
    Metric,
    ReadyPart,
    TokenAuth,
    build_api,
    render_metrics,
    serve_http,
)
from cti.seats.commands import CommandError, parse_seat_command
from cti.settings import ConfigError, HttpSettings, HttpToken, load_settings

SUPERVISOR = "s" * 32
AGENT = "a" * 32
POLICE = "p" * 32


class FakeFacade:
    """Answers like the daemon: seats 1001/1002, 1001 logged out."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, bytes]] = []
        self.ready = True
        self.seats = {
            "1001": {"seat": "1001", "status": "logged_out"},
            "1002": {"seat": "1002", "status": "ready"},
        }

    def seat_command(self, seat: str, payload: bytes) -> dict[str, Any]:
        self.commands.append((seat, payload))
        cmd = parse_seat_command(payload)
        if isinstance(cmd, CommandError):
            return cmd.reply()
        if seat not in self.seats:
            return CommandError(
                code="unknown_seat", message="no seat", request_id=cmd.request_id
            ).reply()
        if cmd.cmd == "wrapup_done":
            return {
                "ok": False,
                "request_id": cmd.request_id,
                "cmd": cmd.cmd,
                "error": {"code": "rejected", "message": "not in wrap-up", "fields": []},
            }
        return {"ok": True, "request_id": cmd.request_id, "cmd": cmd.cmd}

    def seat_states(self) -> list[dict[str, Any]]:
        return list(self.seats.values())

    def seat_state(self, seat: str) -> dict[str, Any] | None:
        return self.seats.get(seat)

    def queue_snapshot(self) -> dict[str, Any]:
        return {"waiting": 1, "offered": 0, "calls": [{"call_id": "c1", "position": 1}]}

    def active_calls(self, *, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        calls = [{"call_id": f"c{i}", "state": "waiting"} for i in range(1, 4)]
        return calls[offset : offset + limit], len(calls)

    async def call_records(
        self, *, caller: str | None, limit: int, offset: int = 0
    ) -> list[dict[str, Any]]:
        return [{"call_id": "old", "caller": caller, "limit": limit, "offset": offset}]

    def readiness(self) -> list[ReadyPart]:
        return [
            ReadyPart(name="ami.main", ready=self.ready, detail="connected"),
            ReadyPart(name="database", ready=True),
            ReadyPart(name="mqtt", ready=False, required=False),
        ]

    def metrics(self) -> list[Metric]:
        return [
            Metric(
                name="cti_ami_events_received_total",
                kind="counter",
                help="AMI events received.",
                samples=(({"node": "main"}, 42.0),),
            ),
            Metric(name="cti_calls_waiting", kind="gauge", help="w", samples=(({}, 1.0),)),
        ]


def _settings(**over: Any) -> HttpSettings:
    tokens = [
        HttpToken(
            name="supervisor",
            token=SecretStr(SUPERVISOR),
            scopes=("seats", "queue", "calls", "stats"),
        ),
        HttpToken(name="agent", token=SecretStr(AGENT), scopes=("seats",)),
        HttpToken(name="dispatch-110", token=SecretStr(POLICE), scopes=("transfers110",)),
    ]
    return HttpSettings.model_validate({"tokens": tokens, **over})


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def facade() -> FakeFacade:
    return FakeFacade()


@pytest.fixture
async def client(facade: FakeFacade) -> AsyncIterator[httpx.AsyncClient]:
    app = build_api(facade, _settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cti") as c:
        yield c


def test_fake_is_a_facade(facade: FakeFacade) -> None:
    ok: ApiFacade = facade  # mypy checks the Protocol
    assert ok is facade


# --------------------------------------------------------------------------- auth


async def test_no_token_is_401_with_www_authenticate(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/seats")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "header",
    [f"Bearer {'x' * 32}", f"Bearer {SUPERVISOR}x", f"Bearer {SUPERVISOR[:-1]}", "Bearer "],
)
async def test_wrong_token_is_401(client: httpx.AsyncClient, header: str) -> None:
    r = await client.get("/api/v1/seats", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_basic_auth_is_not_a_bearer_token(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/seats", headers={"Authorization": f"Basic {SUPERVISOR}"})
    assert r.status_code == 401


async def test_missing_scope_is_403(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/queue", headers=_auth(AGENT))
    assert r.status_code == 403
    assert 'scope="queue"' in r.headers["www-authenticate"]
    assert r.json()["error"]["code"] == "forbidden"
    # the 110 system's token opens nothing but its own API
    for path in ("/api/v1/seats", "/api/v1/queue", "/api/v1/calls", "/api/v1/calls/active"):
        assert (await client.get(path, headers=_auth(POLICE))).status_code == 403, path


def test_token_auth_constant_time_lookup() -> None:
    auth = TokenAuth(_settings().tokens)
    who = auth.authenticate(AGENT)
    assert who is not None
    assert who.name == "agent"
    assert who.scopes == frozenset({"seats"})
    assert auth.authenticate("") is None
    assert auth.authenticate("ü" * 40) is None  # non-ASCII does not break compare_digest


async def test_no_tokens_configured_means_401(facade: FakeFacade) -> None:
    app = build_api(facade, HttpSettings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as c:
        assert (await c.get("/api/v1/seats", headers=_auth(SUPERVISOR))).status_code == 401
        assert (await c.get("/healthz")).status_code == 200


# --------------------------------------------------------------------------- seats


async def test_seat_command_ok(client: httpx.AsyncClient, facade: FakeFacade) -> None:
    body = {"cmd": "not_ready", "reason": "meal", "request_id": "r1"}
    r = await client.post("/api/v1/seats/1001/commands", json=body, headers=_auth(AGENT))
    assert r.status_code == 200
    assert r.json() == {"ok": True, "request_id": "r1", "cmd": "not_ready"}
    [(seat, raw)] = facade.commands  # the raw body goes to the daemon, as on MQTT
    assert (seat, json.loads(raw)) == ("1001", body)


async def test_seat_command_invalid_is_422_with_field_paths(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/seats/1001/commands",
        json={"cmd": "not_ready", "reason": "nap"},
        headers=_auth(AGENT),
    )
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_command"
    assert err["fields"][0].startswith("reason: ")


async def test_seat_command_bad_json_is_422(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/seats/1001/commands", content=b'{"cmd": ', headers=_auth(AGENT))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "bad_json"
    assert "not JSON" in r.json()["error"]["message"]


async def test_seat_command_deep_nesting_is_422_not_500(client: httpx.AsyncClient) -> None:
    # under the 4 KiB command limit; a bare json.loads raised RecursionError: 500 (issue 16)
    r = await client.post(
        "/api/v1/seats/1001/commands",
        content=b"[" * 2000 + b"]" * 2000,
        headers=_auth(AGENT),
    )
    assert (r.status_code, r.json()["error"]["code"]) == (422, "bad_json")
    assert "nested deeper than 32 levels" in r.json()["error"]["message"]


async def test_seat_command_unknown_seat_is_404(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/seats/9999/commands", json={"cmd": "ready"}, headers=_auth(AGENT)
    )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "unknown_seat"


async def test_seat_command_rejected_is_409(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/seats/1001/commands", json={"cmd": "wrapup_done"}, headers=_auth(AGENT)
    )
    assert r.status_code == 409
    assert r.json()["error"] == {"code": "rejected", "message": "not in wrap-up", "fields": []}


async def test_seat_command_over_command_limit_is_413(client: httpx.AsyncClient) -> None:
    # 4 KiB is the command limit (as on MQTT), below the 16 KiB request limit
    body = json.dumps({"cmd": "ready", "request_id": "x" * 5000}).encode()
    r = await client.post("/api/v1/seats/1001/commands", content=body, headers=_auth(AGENT))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"


async def test_request_over_body_limit_is_413(
    client: httpx.AsyncClient, facade: FakeFacade
) -> None:
    r = await client.post("/api/v1/seats/1001/commands", content=b"x" * 20000, headers=_auth(AGENT))
    assert r.status_code == 413
    assert "16384" in r.json()["error"]["message"]
    assert facade.commands == []  # never reached the daemon


async def test_chunked_request_over_body_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"y" * 4000

    r = await client.post("/api/v1/seats/1001/commands", content=chunks(), headers=_auth(AGENT))
    assert r.status_code == 413


async def test_seat_states(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/seats", headers=_auth(AGENT))
    assert r.status_code == 200
    assert [s["seat"] for s in r.json()["seats"]] == ["1001", "1002"]
    one = await client.get("/api/v1/seats/1002", headers=_auth(AGENT))
    assert one.json() == {"seat": "1002", "status": "ready"}
    missing = await client.get("/api/v1/seats/9999", headers=_auth(AGENT))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_seat"
    bad = await client.get("/api/v1/seats/a%20b", headers=_auth(AGENT))
    assert bad.status_code == 422
    assert bad.json()["error"]["fields"][0].startswith("path.seat: ")


# --------------------------------------------------------------------------- queue, calls


async def test_queue(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/queue", headers=_auth(SUPERVISOR))
    assert r.status_code == 200
    assert r.json()["calls"] == [{"call_id": "c1", "position": 1}]


async def test_calls(client: httpx.AsyncClient) -> None:
    active = await client.get("/api/v1/calls/active", headers=_auth(SUPERVISOR))
    assert active.json()["calls"][0] == {"call_id": "c1", "state": "waiting"}
    assert (active.json()["total"], active.json()["next_offset"]) == (3, None)
    # paged: follow next_offset until it is null
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = await client.get(
            "/api/v1/calls/active", params={"limit": 2, "offset": offset}, headers=_auth(SUPERVISOR)
        )
        seen += [c["call_id"] for c in page.json()["calls"]]
        offset = page.json()["next_offset"]
    assert seen == ["c1", "c2", "c3"]
    too_big = await client.get(
        "/api/v1/calls/active", params={"limit": 1001}, headers=_auth(SUPERVISOR)
    )
    assert too_big.status_code == 422
    records = await client.get(
        "/api/v1/calls",
        params={"caller": "13800000001", "limit": 5, "offset": 10},
        headers=_auth(SUPERVISOR),
    )
    assert records.json()["calls"] == [
        {"call_id": "old", "caller": "13800000001", "limit": 5, "offset": 10}
    ]
    default = await client.get("/api/v1/calls", headers=_auth(SUPERVISOR))
    assert default.json()["calls"][0]["limit"] == 100


async def test_bad_query_is_422_with_path(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/calls", params={"limit": "lots"}, headers=_auth(SUPERVISOR))
    assert r.status_code == 422
    body = r.json()
    assert body["ok"] is False
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["fields"][0].startswith("query.limit: ")
    big = await client.get("/api/v1/calls", params={"limit": 5000}, headers=_auth(SUPERVISOR))
    assert big.status_code == 422


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nothing", headers=_auth(SUPERVISOR))
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    m = await client.delete("/api/v1/queue", headers=_auth(SUPERVISOR))
    assert m.status_code == 405


# --------------------------------------------------------------------------- probes


async def test_healthz_needs_no_token(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


async def test_readyz(client: httpx.AsyncClient, facade: FakeFacade) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["ready"] is True  # mqtt is down but not required
    assert r.json()["parts"]["mqtt"] == {"ready": False, "required": False, "detail": ""}
    facade.ready = False
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["not_ready"] == ["ami.main"]


async def test_metrics_public(client: httpx.AsyncClient) -> None:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE cti_ami_events_received_total counter" in r.text
    # read back by prometheus_client's own parser: the names, labels and values
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(r.text)
        for s in fam.samples
    }
    assert samples[("cti_ami_events_received_total", (("node", "main"),))] == 42
    assert samples[("cti_calls_waiting", ())] == 1


def test_render_metrics_histogram_parses() -> None:
    text = render_metrics(
        [
            HistogramMetric(
                name="cti_queue_wait_seconds",
                help="w",
                buckets=((5.0, 1), (15.0, 2)),
                count=3,
                sum=40.5,
            )
        ]
    )
    (fam,) = text_string_to_metric_families(text)
    assert fam.type == "histogram"
    got = {(s.name, s.labels.get("le")): s.value for s in fam.samples}
    assert got[("cti_queue_wait_seconds_bucket", "5.0")] == 1
    assert got[("cti_queue_wait_seconds_bucket", "+Inf")] == 3
    assert got[("cti_queue_wait_seconds_count", None)] == 3
    assert got[("cti_queue_wait_seconds_sum", None)] == 40.5


async def test_metrics_private_needs_stats_scope(facade: FakeFacade) -> None:
    app = build_api(facade, _settings(metrics_public=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as c:
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers=_auth(AGENT))).status_code == 403
        assert (await c.get("/metrics", headers=_auth(SUPERVISOR))).status_code == 200


def test_render_metrics_escapes_and_formats() -> None:
    text = render_metrics(
        [
            Metric(
                name="m",
                kind="gauge",
                help="a\\b\nc",
                samples=(({"k": 'q"\\\n'}, 0.5), ({}, float("inf")), ({}, float("nan"))),
            )
        ]
    )
    assert text.splitlines() == [
        "# HELP m a\\\\b\\nc",
        "# TYPE m gauge",
        'm{k="q\\"\\\\\\n"} 0.5',
        "m +Inf",
        "m NaN",
    ]


async def test_openapi_documents_endpoints_and_command_body(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    paths = spec["paths"]
    for path in (
        "/api/v1/seats",
        "/api/v1/seats/{seat}",
        "/api/v1/seats/{seat}/commands",
        "/api/v1/queue",
        "/api/v1/calls",
        "/api/v1/calls/active",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    body = paths["/api/v1/seats/{seat}/commands"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["discriminator"]["propertyName"] == "cmd"
    assert "NotReady" in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert (await client.get("/docs")).status_code == 200


# --------------------------------------------------------------------------- settings


def test_token_env_override_and_problems(tmp_path: Path) -> None:
    cfg = tmp_path / "cti.yaml"
    cfg.write_text(
        "ami: {nodes: [{name: main, username: cti, secret: s}]}\n"
        "http:\n"
        "  tokens:\n"
        "    - {name: dispatch-110, scopes: [transfers110]}\n",
        encoding="utf-8",
    )
    s = load_settings(cfg, {"CTI_HTTP_TOKEN_DISPATCH_110": POLICE})
    assert s.http.tokens[0].token.get_secret_value() == POLICE
    with pytest.raises(ConfigError) as missing:
        load_settings(cfg, {})
    assert "CTI_HTTP_TOKEN_DISPATCH_110" in str(missing.value)
    with pytest.raises(ConfigError) as stray:
        load_settings(cfg, {"CTI_HTTP_TOKEN_DISPATCH_110": POLICE, "CTI_HTTP_TOKEN_X": POLICE})
    assert "CTI_HTTP_TOKEN_X: matches no token" in str(stray.value)
    with pytest.raises(ConfigError) as short:
        load_settings(cfg, {"CTI_HTTP_TOKEN_DISPATCH_110": "short"})
    assert "at least 24" in str(short.value)
    assert "short" not in str(short.value).replace("short'", "")  # the value is not echoed


def test_token_settings_validation() -> None:
    with pytest.raises(ValueError, match="same"):
        HttpSettings.model_validate(
            {
                "tokens": [
                    {"name": "a", "token": AGENT, "scopes": ["seats"]},
                    {"name": "b", "token": AGENT, "scopes": ["queue"]},
                ]
            }
        )
    with pytest.raises(ValueError, match="scope listed twice"):
        HttpToken(name="a", token=SecretStr(AGENT), scopes=("seats", "seats"))
    with pytest.raises(ValueError, match="scopes"):
        HttpToken.model_validate({"name": "a", "token": AGENT, "scopes": ["root"]})


# --------------------------------------------------------------------------- serving


async def test_serve_http_binds_serves_and_stops_on_cancel(facade: FakeFacade) -> None:
    settings = _settings(port=0)
    bound: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_http(build_api(facade, settings), settings, bound=bound))
    host, port = await asyncio.wait_for(bound, 5)
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as c:
        assert (await c.get("/healthz")).status_code == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as c:
            await c.get("/healthz")


async def test_serve_http_retries_a_busy_port(facade: FakeFacade) -> None:
    first = _settings(port=0)
    bound: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    one = asyncio.create_task(serve_http(build_api(facade, first), first, bound=bound))
    _, port = await asyncio.wait_for(bound, 5)
    second = _settings(port=port)
    bound2: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    two = asyncio.create_task(
        serve_http(build_api(facade, second), second, bound=bound2, retry_min=0.05, retry_max=0.1)
    )
    await asyncio.sleep(0.3)
    assert not bound2.done()  # still retrying, not crashed
    one.cancel()
    await asyncio.gather(one, return_exceptions=True)
    assert (await asyncio.wait_for(bound2, 5))[1] == port  # took the port once free
    two.cancel()
    await asyncio.gather(two, return_exceptions=True)
