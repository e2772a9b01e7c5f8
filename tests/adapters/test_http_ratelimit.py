"""Rate limits (issue 15): the pure token bucket, then the API's two limits in memory."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs

from cti.adapters.http import build_api
from cti.adapters.http.ratelimit import RateLimiter
from cti.adapters.http.throttle import ApiLimits
from cti.adapters.http.transfers110 import transfers_router
from cti.settings import ConfigError, HttpSettings, load_settings
from tests.adapters.test_http import AGENT, POLICE, SUPERVISOR, FakeFacade, _auth, _settings
from tests.adapters.test_http_json import GOOD, PUSH, FakePushes

# ------------------------------------------------------------------ the pure limiter


def test_bucket_allows_the_burst_then_refuses_with_retry_after() -> None:
    lim = RateLimiter(3, 60.0)
    assert [lim.take("a", 0.0).allowed for _ in range(3)] == [True, True, True]
    v = lim.take("a", 0.0)
    assert not v.allowed
    assert v.retry_after_s == pytest.approx(20.0)  # one back every 60/3 s
    assert v.retry_after_header == "20"
    assert lim.take("b", 0.0).allowed  # per key
    assert lim.take("a", 19.9).allowed is False
    assert lim.take("a", 20.0).allowed is True
    assert lim.refused == 2


def test_refused_requests_do_not_spend_and_the_bucket_caps_at_limit() -> None:
    lim = RateLimiter(2, 10.0)
    lim.take("a", 0.0)
    lim.take("a", 0.0)
    for t in (1.0, 2.0, 3.0, 4.0):
        assert not lim.take("a", t).allowed
    assert lim.take("a", 5.0).allowed  # refusals did not push the refill back
    # idle for an hour: the burst is back, but never more than the limit
    assert [lim.take("a", 3600.0).allowed for _ in range(3)] == [True, True, False]


def test_cost_zero_asks_without_spending() -> None:
    lim = RateLimiter(1, 10.0)
    assert lim.take("a", 0.0, cost=0).allowed
    assert lim.take("a", 0.0, cost=0).allowed
    assert lim.take("a", 0.0).allowed
    assert not lim.take("a", 0.0, cost=0).allowed


def test_refusals_are_logged_once_per_window_with_the_count() -> None:
    lim = RateLimiter(1, 10.0)
    lim.take("a", 0.0)
    logs = [lim.take("a", t).log_refused for t in (0.0, 1.0, 2.0, 3.0)]
    assert logs == [1, 0, 0, 0]  # the first refusal of the window is logged, not the rest
    lim.take("a", 10.0)  # refilled: allowed, spends it
    assert lim.take("a", 10.5).log_refused == 4  # a window later: 3 unlogged + this one
    assert lim.take("b", 0.0).log_refused == 0  # allowed: nothing to log


def test_zero_limit_is_off_and_bad_arguments_are_refused() -> None:
    lim = RateLimiter(0, 1.0)
    assert all(lim.take("a", 0.0).allowed for _ in range(1000))
    assert len(lim) == 0
    with pytest.raises(ValueError, match="window_s"):
        RateLimiter(1, 0.0)
    with pytest.raises(ValueError, match="limit"):
        RateLimiter(-1, 1.0)


def test_a_clock_stepping_back_refills_nothing() -> None:
    lim = RateLimiter(1, 10.0)
    lim.take("a", 100.0)
    assert not lim.take("a", 50.0).allowed
    assert not lim.take("a", 100.0).allowed


def test_memory_is_bounded_idle_keys_go_first() -> None:
    lim = RateLimiter(2, 10.0, max_keys=100)
    lim.take("guesser", 0.0)
    lim.take("guesser", 0.0)  # empty: must be remembered
    for i in range(1000):
        lim.take(f"k{i}", 0.0 + i * 0.001)
    assert len(lim) <= 100
    # the refusals of an address are not forgotten while idle keys can go instead
    lim2 = RateLimiter(2, 10.0, max_keys=100)
    lim2.take("guesser", 0.0)
    lim2.take("guesser", 0.0)
    for i in range(150):
        lim2.take(f"k{i}", 0.1, cost=0)  # keys that spent nothing: full, idle
    assert len(lim2) <= 100
    assert not lim2.take("guesser", 0.2).allowed


# ------------------------------------------------------------------ the API's limits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _app(clock: Clock, **over: Any) -> tuple[FastAPI, FakePushes]:
    pushes = FakePushes()
    settings = _settings(**over)
    app = build_api(FakeFacade(), settings, routers=[transfers_router(pushes)])
    app.state.cti_limits = ApiLimits.from_settings(settings, clock=clock)
    return app, pushes


def _client(app: FastAPI, host: str = "10.0.0.9") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://cti")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def guessed(clock: Clock) -> tuple[FastAPI, FakePushes]:
    return _app(clock, auth_failure_limit={"limit": 3, "window_s": 30})


async def test_token_guessing_gets_429_after_n_failures(
    guessed: tuple[FastAPI, FakePushes], clock: Clock
) -> None:
    app, pushes = guessed
    async with _client(app) as guesser, _client(app, "10.0.0.10") as good:
        statuses = []
        with capture_logs() as logs:
            for i in range(8):
                r = await guesser.get("/api/v1/seats", headers=_auth(f"guess-{i:030d}"))
                statuses.append(r.status_code)
        assert statuses == [401, 401, 401, 429, 429, 429, 429, 429]
        assert r.headers["Retry-After"] == "10"  # 30 s / 3
        assert r.json()["error"]["code"] == "rate_limited"
        # refused before the token is looked at: even the right one, from that address
        r = await guesser.get("/api/v1/seats", headers=_auth(SUPERVISOR))
        assert r.status_code == 429
        # logged once for the window, not once per request; no token in any line
        limited = [e for e in logs if e["event"] == "http_rate_limited"]
        assert len(limited) == 1
        assert limited[0]["key"] == "10.0.0.9"
        assert limited[0]["limit"] == "auth_failures"
        assert not any("guess-" in repr(e) for e in logs)
        # another address is served, the 110 push too
        assert (await good.get("/api/v1/seats", headers=_auth(SUPERVISOR))).status_code == 200
        assert (await good.post(PUSH, json=GOOD, headers=_auth(POLICE))).status_code == 202
        assert len(pushes.pushes) == 1
        # after Retry-After the address may try once more
        clock.now += 10
        assert (await guesser.get("/api/v1/seats", headers=_auth(SUPERVISOR))).status_code == 200


async def test_missing_token_and_missing_scope_count_as_failures(
    guessed: tuple[FastAPI, FakePushes],
) -> None:
    app, _ = guessed
    async with _client(app) as c:
        assert (await c.get("/api/v1/seats")).status_code == 401
        assert (await c.get("/api/v1/queue", headers=_auth(AGENT))).status_code == 403
        assert (await c.post(PUSH, json=GOOD, headers=_auth(AGENT))).status_code == 403
        r = await c.get("/api/v1/seats", headers=_auth(AGENT))
        assert (r.status_code, r.json()["error"]["code"]) == (429, "rate_limited")
        # the probes need no token and are never refused
        assert (await c.get("/healthz")).status_code == 200


async def test_good_requests_are_not_counted(clock: Clock) -> None:
    app, _ = _app(clock, auth_failure_limit={"limit": 2, "window_s": 60})
    async with _client(app) as c:
        for _ in range(50):
            assert (await c.get("/api/v1/seats", headers=_auth(SUPERVISOR))).status_code == 200


async def test_push110_is_limited_per_token(clock: Clock) -> None:
    app, pushes = _app(clock, push110_rate_limit={"limit": 2, "window_s": 60})
    async with _client(app) as c:
        with capture_logs() as logs:
            got = [
                (
                    await c.post(PUSH, json={**GOOD, "transfer_id": f"J{i}"}, headers=_auth(POLICE))
                ).status_code
                for i in range(5)
            ]
        assert got == [202, 202, 429, 429, 429]
        assert len(pushes.pushes) == 2  # a refused push reaches nothing
        limited = [e for e in logs if e["event"] == "http_rate_limited"]
        assert [(e["limit"], e["key"], e["refused"]) for e in limited] == [
            ("push110", "dispatch-110", 1)
        ]
        # the other endpoints of the token are not the push's limit
        r = await c.get(f"{PUSH}/J0", headers=_auth(POLICE))
        assert r.status_code == 404
        clock.now += 30
        r = await c.post(PUSH, json={**GOOD, "transfer_id": "J9"}, headers=_auth(POLICE))
        assert r.status_code == 202


async def test_push110_429_has_retry_after(clock: Clock) -> None:
    app, _ = _app(clock, push110_rate_limit={"limit": 1, "window_s": 60})
    async with _client(app) as c:
        await c.post(PUSH, json=GOOD, headers=_auth(POLICE))
        r = await c.post(PUSH, json={**GOOD, "transfer_id": "J2"}, headers=_auth(POLICE))
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "60"
        assert "at most 1 per 60 s" in r.json()["error"]["message"]


async def test_openapi_documents_429_with_retry_after(clock: Clock) -> None:
    app, _ = _app(clock)
    async with _client(app) as c:
        doc = (await c.get("/openapi.json")).json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if "401" in op["responses"]:
                assert "429" in op["responses"], (method, path)
                assert "Retry-After" in op["responses"]["429"]["headers"]
    assert "429" not in doc["paths"]["/healthz"]["get"]["responses"]


def test_defaults_and_validation() -> None:
    s = HttpSettings()
    assert (s.push110_rate_limit.limit, s.push110_rate_limit.window_s) == (120, 60)
    assert (s.auth_failure_limit.limit, s.auth_failure_limit.window_s) == (10, 60)
    assert HttpSettings.model_validate({"auth_failure_limit": {"limit": 0, "window_s": 1}})


def test_config_errors_name_the_field(tmp_path: Any) -> None:
    path = tmp_path / "cti.yaml"
    path.write_text("http:\n  push110_rate_limit: {limit: -1, window_s: 0}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    text = str(err.value)
    assert "push110_rate_limit.limit" in text
    assert "push110_rate_limit.window_s" in text
