"""The browser pages over a fake backend: login, sessions, CSRF, lockout, the live stream's
filter and its bounded queues (docs/console.md). In memory (ASGI) except the stream tests,
which need a real socket (an SSE response never ends)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cti import cli
from cti.adapters.http import build_api, serve_http
from cti.adapters.http.console import install_web
from cti.adapters.http.live import LiveHub, visible
from cti.adapters.http.sessions import (
    LoginRefused,
    SessionTable,
    hash_password,
    verify_password,
)
from cti.seats.commands import CommandError, parse_seat_command
from cti.settings import HttpSettings, WebSettings, WebUser
from tests.adapters.test_http import FakeFacade

PASSWORD = "correct horse 1"
HASH = hash_password(PASSWORD)


def users() -> tuple[WebUser, ...]:
    return (
        WebUser(name="a1001", role="agent", seat="1001", password_hash=HASH),
        WebUser(name="a1002", role="agent", seat="1002", password_hash=HASH),
        WebUser(name="boss", role="supervisor", lines=("12315",), password_hash=HASH),
    )


class FakeBackend:
    def __init__(self) -> None:
        self.facade = FakeFacade()
        self.callbacks: list[tuple[str, str]] = []

    def seat_state(self, seat: str) -> dict[str, Any] | None:
        return self.facade.seat_state(seat)

    def seat_command(self, seat: str, payload: bytes) -> dict[str, Any]:
        return self.facade.seat_command(seat, payload)

    def console_plan(self) -> dict[str, Any]:
        return {
            "lines": [{"number": "12315", "name": "12315", "department": "市场监管局"}],
            "emergency": [{"number": "110", "name": "公安110", "modes": ["blind"]}],
        }

    async def open_callbacks(self, limit: int) -> list[dict[str, Any]]:
        return [{"call_id": "main:1.1", "caller": "13800000000", "line": "12345"}][:limit]

    async def call_back(self, call_id: str, seat: str) -> tuple[int, dict[str, Any]]:
        self.callbacks.append((call_id, seat))
        return 202, {"ok": True, "call_id": call_id, "seat": seat}


def make_app(
    web: WebSettings | None = None, hub: LiveHub | None = None
) -> tuple[FastAPI, FakeBackend, LiveHub]:
    backend = FakeBackend()
    app = build_api(backend.facade, HttpSettings())
    hub = hub if hub is not None else LiveHub()
    install_web(
        app,
        backend,
        SessionTable(web or WebSettings(users=users(), lockout_after=3)),
        hub,
        secure=False,
        log=__import__("structlog").get_logger("test"),
    )
    return app, backend, hub


@contextlib.asynccontextmanager
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as c:
        yield c


async def login(c: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    form = await c.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    return await c.post(
        "/login", data={"username": name, "password": password, "csrf": token.group(1)}
    )


async def csrf_of(c: httpx.AsyncClient) -> str:
    page = await c.get("/console")
    assert page.status_code == 200
    token = re.search(r'data-csrf="([^"]+)"', page.text)
    assert token is not None
    return token.group(1)


def test_password_hash_round_trip() -> None:
    assert HASH.startswith("$argon2id$")
    assert verify_password(HASH, PASSWORD)
    assert not verify_password(HASH, PASSWORD + "x")
    assert not verify_password("$argon2id$garbage", PASSWORD)


def test_agent_needs_a_seat() -> None:
    with pytest.raises(ValueError, match="needs `seat`"):
        WebUser(name="x", role="agent", password_hash=HASH)
    with pytest.raises(ValueError, match="listed twice"):
        WebSettings(users=(users()[0], users()[0]))


async def test_no_page_or_stream_or_command_without_a_session() -> None:
    app, backend, _ = make_app()
    async with client(app) as c:
        page = await c.get("/console")
        assert page.status_code == 303
        assert page.headers["location"] == "/login"
        assert (await c.get("/events")).status_code == 401
        assert (await c.get("/console/api/state")).status_code == 401
        refused = await c.post("/console/api/command", json={"cmd": "ready"})
        assert refused.status_code == 401
        assert backend.facade.commands == []


async def test_login_sets_a_strict_httponly_cookie_and_the_console_shows_the_seat() -> None:
    app, _, _ = make_app()
    async with client(app) as c:
        resp = await login(c, "a1001")
        assert resp.status_code == 303
        assert resp.headers["location"] == "/console"
        cookie = resp.headers["set-cookie"]
        assert "cti_session=" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Secure" not in cookie  # plain HTTP here; http.tls sets it
        page = await c.get("/console")
        assert '坐席 <b id="seat-id">1001</b>' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        state = (await c.get("/console/api/state")).json()
        assert state["seat"] == "1001"
        assert state["state"]["status"] == "logged_out"


async def test_secure_cookie_under_tls() -> None:
    backend = FakeBackend()
    app = build_api(backend.facade, HttpSettings())
    install_web(
        app,
        backend,
        SessionTable(WebSettings(users=users())),
        LiveHub(),
        secure=True,
        log=__import__("structlog").get_logger("test"),
    )
    async with client(app) as c:
        resp = await login(c, "a1001")
        assert "Secure" in resp.headers["set-cookie"]


async def test_commands_need_the_csrf_token_and_go_to_the_own_seat_only() -> None:
    app, backend, _ = make_app()
    async with client(app) as c:
        await login(c, "a1001")
        token = await csrf_of(c)
        no_token = await c.post("/console/api/command", json={"cmd": "ready"})
        assert no_token.status_code == 403
        assert no_token.json()["error"]["code"] == "csrf"
        wrong = await c.post(
            "/console/api/command", json={"cmd": "ready"}, headers={"X-CSRF-Token": "x" * 43}
        )
        assert wrong.status_code == 403
        cross = await c.post(
            "/console/api/command",
            json={"cmd": "ready"},
            headers={"X-CSRF-Token": token, "Origin": "http://evil.example"},
        )
        assert cross.status_code == 403
        assert backend.facade.commands == []
        ok = await c.post(
            "/console/api/command",
            json={"cmd": "not_ready", "reason": "meal"},
            headers={"X-CSRF-Token": token, "Origin": "http://testserver"},
        )
        assert ok.status_code == 200, ok.text
        # a seat in the body is not a field of any command: refused, nothing sent elsewhere
        other = await c.post(
            "/console/api/command",
            json={"cmd": "ready", "seat": "1002"},
            headers={"X-CSRF-Token": token},
        )
        assert other.status_code == 422
        assert [seat for seat, _ in backend.facade.commands] == ["1001", "1001"]
        cb = await c.post("/console/api/callbacks/main:1.1/call", headers={"X-CSRF-Token": token})
        assert cb.status_code == 202
        assert backend.callbacks == [("main:1.1", "1001")]


async def test_forged_login_and_logout_refused() -> None:
    app, _, _ = make_app()
    async with client(app) as c:
        forged = await c.post(
            "/login", data={"username": "a1001", "password": PASSWORD, "csrf": "x" * 43}
        )
        assert forged.status_code == 403
        assert "cti_session" not in forged.headers.get("set-cookie", "")
        await login(c, "a1001")
        out = await c.post("/logout", data={"csrf": "nope"})
        assert out.status_code == 403
        assert (await c.get("/console/api/state")).status_code == 200
        out = await c.post("/logout", data={"csrf": await csrf_of(c)})
        assert out.status_code == 303
        assert (await c.get("/console/api/state")).status_code == 401


async def test_wrong_password_refused_then_the_name_locks() -> None:
    app, _, _ = make_app()
    async with client(app) as c:
        for _ in range(2):
            bad = await login(c, "a1001", "wrong password")
            assert bad.status_code == 401
            assert "用户名或密码错误" in bad.text
        locked = await login(c, "a1001", "wrong password")
        assert locked.status_code == 429
        # locked: even the right password is refused while it lasts
        still = await login(c, "a1001")
        assert still.status_code == 429
        assert "已锁定" in still.text
        assert (await c.get("/console/api/state")).status_code == 401
        # another name is not locked
        assert (await login(c, "a1002")).status_code == 303


async def test_lock_expires() -> None:
    now = [1000.0]
    table = SessionTable(
        WebSettings(users=users(), lockout_after=2, lockout_s=60), clock=lambda: now[0]
    )
    for _ in range(2):
        with pytest.raises(Exception, match=r"bad_credentials|locked"):
            table.login("a1001", "bad")
    with pytest.raises(Exception, match="locked"):
        table.login("a1001", PASSWORD)
    now[0] += 61
    sid, sess = table.login("a1001", PASSWORD)
    assert table.get(sid) is sess


def test_session_expires_when_idle_and_after_its_ttl() -> None:
    now = [0.0]
    table = SessionTable(
        WebSettings(users=users(), session_idle_s=10, session_ttl_s=100), clock=lambda: now[0]
    )
    sid, _ = table.login("a1001", PASSWORD)
    now[0] = 9
    assert table.get(sid) is not None
    now[0] = 20
    assert table.get(sid) is None
    sid, sess = table.login("a1001", PASSWORD)
    sess.streams = 1  # an open stream keeps it alive, but not past the ttl
    now[0] = 100
    assert table.get(sid) is not None
    now[0] = 121
    assert table.get(sid) is None


def test_reload_ends_sessions_of_removed_users() -> None:
    table = SessionTable(WebSettings(users=users()))
    sid, _ = table.login("a1002", PASSWORD)
    table.use_settings(WebSettings(users=users()[:1]))
    assert table.get(sid) is None


def test_reload_ends_sessions_of_disabled_or_changed_users_and_keeps_the_others() -> None:
    a1, a2, boss = users()
    table = SessionTable(WebSettings(users=users()))
    kept, _ = table.login("a1001", PASSWORD)
    disabled, _ = table.login("a1002", PASSWORD)
    moved, _ = table.login("boss", PASSWORD)
    ended = table.use_settings(
        WebSettings(
            users=(
                a1,
                a2.model_copy(update={"disabled": True}),
                boss.model_copy(update={"lines": ("12345",)}),
            )
        )
    )
    assert ended == ["a1002", "boss"]
    assert table.get(kept) is not None
    assert table.get(disabled) is None
    assert table.get(moved) is None
    with pytest.raises(LoginRefused):  # disabled: refused like an unknown name
        table.login("a1002", PASSWORD)
    assert table.login("boss", PASSWORD)[1].user.lines == ("12345",)  # the new entry


def test_a_disabled_user_cannot_log_in_from_the_start() -> None:
    a1, *_ = users()
    table = SessionTable(WebSettings(users=(a1.model_copy(update={"disabled": True}),)))
    with pytest.raises(LoginRefused) as info:
        table.login("a1001", PASSWORD)
    assert not info.value.locked


def test_reload_ends_the_live_streams_of_users_it_ended() -> None:
    a1, a2, _ = users()
    hub = LiveHub()
    s1, s2 = hub.open(a1), hub.open(a2)
    table = SessionTable(WebSettings(users=users()))
    table.use_settings(WebSettings(users=(a1,)))
    assert hub.end_streams(table.current) == 1
    assert len(hub) == 1
    assert s2.closed  # its next_chunk() ends the response
    assert not s1.closed
    hub.publish("seats/1001/state", {"status": "ready"})
    hub.publish("seats/1002/state", {"status": "ready"})
    hub.flush()  # what the hub's task does
    assert len(s1.take()) == 1
    assert s2.take() == []  # nothing more for the ended stream


def test_visibility() -> None:
    a1, _a2, boss = users()
    pop = {"type": "offer", "call": {"line": "12315"}}
    assert visible(a1, "seats/1001/pop", pop)
    assert not visible(a1, "seats/1002/pop", pop)
    assert not visible(a1, "queue/snapshot", {})
    assert visible(a1, "seats/1001/state", {})
    assert visible(boss, "seats/1002/pop", pop)
    assert not visible(boss, "seats/1002/pop", {"call": {"line": "12345"}})
    assert not visible(boss, "seats/1002/reply", {})
    # the centre-wide feeds carry other lines: a supervisor gets its own board snapshot
    for topic in ("queue/snapshot", "seats/1002/state", "stats/live", "calls/events"):
        assert not visible(boss, topic, {}), topic
    assert visible(boss, "board/boss", {})
    assert not visible(boss, "board/other", {})
    assert not visible(a1, "board/a1001", {})


def test_a_slow_stream_is_closed_alone() -> None:
    a1, a2, _ = users()
    hub = LiveHub(queue_size=8)
    slow, fast = hub.open(a1), hub.open(a2)
    for i in range(20):
        hub.publish("seats/1001/state", {"n": i})
        hub.publish("seats/1002/state", {"n": i})
        hub.flush()  # what the hub's task does
        fast.take()
    assert slow.overflowed
    assert not fast.overflowed
    assert len(hub) == 1
    assert hub.overflows == 1


async def test_the_stream_carries_only_the_own_seat() -> None:
    hub = LiveHub()
    app, _, _ = make_app(hub=hub)
    bound: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve_http(app, HttpSettings(port=0), bound=bound))
    fanout = asyncio.create_task(hub.run())  # the daemon's adapter.http.live task
    try:
        host, port = await bound
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5) as c:
            await login(c, "a1001")
            other = await c.get("/events", params={"seat": "1002"})
            assert other.status_code == 403
            async with c.stream("GET", "/events") as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                lines = resp.aiter_lines()
                got: list[dict[str, Any]] = []
                event = None
                while len(hub) == 0:
                    await asyncio.sleep(0.01)
                hub.publish("seats/1002/pop", {"type": "offer", "call": {"caller": "x"}})
                hub.publish("seats/1001/pop", {"type": "offer", "call": {"caller": "138"}})
                async with asyncio.timeout(5):
                    async for line in lines:
                        if line.startswith("event:"):
                            event = line.split(":", 1)[1].strip()
                        elif line.startswith("data:") and event == "pop":
                            got.append(json.loads(line.split(":", 1)[1]))
                            break
                assert got == [
                    {"topic": "seats/1001/pop", "type": "offer", "call": {"caller": "138"}}
                ]
            state = (await c.get("/console/api/state")).json()
            assert state["pop"]["call"]["caller"] == "138"
    finally:
        for task in (server, fanout):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def test_parse_seat_command_refuses_a_seat_field() -> None:
    assert isinstance(parse_seat_command(b'{"cmd":"ready","seat":"1002"}'), CommandError)


def test_cli_hash_password_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough one\n"))
    assert cli.main(["hash-password"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("$argon2id$")
    assert verify_password(printed, "a long enough one")
    WebUser(name="x", role="admin", password_hash=printed)  # the config accepts it
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["hash-password"]) == 2
