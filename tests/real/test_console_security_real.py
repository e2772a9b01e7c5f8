"""The browser pages' security against the real daemon, over HTTP: nothing without a session,
an agent's stream and commands are its own seat's, a forged cross-site POST is refused, a
wrong password is refused and repeated ones lock the name out."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tests.real.daemon_harness import Harness
from tests.real.web_helpers import base_url, login, page_csrf, web_config

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]


async def test_no_page_stream_or_command_without_a_session(tmp_path: Path) -> None:
    async with Harness(*web_config(tmp_path)) as h:
        async with httpx.AsyncClient(base_url=await base_url(h), timeout=10) as c:
            page = await c.get("/console")
            assert page.status_code == 303
            assert page.headers["location"] == "/login"
            assert (await c.get("/events")).status_code == 401
            assert (await c.get("/console/api/state")).status_code == 401
            assert (await c.get("/console/api/callbacks")).status_code == 401
            cmd = await c.post("/console/api/command", json={"cmd": "login"})
            assert cmd.status_code == 401
            # a made-up session cookie is no session
            c.cookies.set("cti_session", "x" * 43)
            assert (await c.get("/events")).status_code == 401
        assert h.seat_states("1001") == [] or h.seat_states("1001")[-1][0] == "logged_out"


async def test_agent_sees_and_commands_only_its_own_seat(tmp_path: Path) -> None:
    async with Harness(*web_config(tmp_path)) as h:
        base = await base_url(h)
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            assert (await login(c, "a1001")).status_code == 303
            token = await page_csrf(c)
            # another seat's stream: refused
            other = await c.get("/events", params={"seat": "1002"})
            assert other.status_code == 403
            # the own stream: 1002's state changes do not show in it, 1001's do
            async with c.stream("GET", "/events") as stream:
                assert stream.status_code == 200
                await h.seat("1002", {"cmd": "login", "ready": True})
                ok = await c.post(
                    "/console/api/command",
                    json={"cmd": "login"},
                    headers={"X-CSRF-Token": token, "Origin": base},
                )
                assert ok.status_code == 200, ok.text
                seen: list[str] = []
                event = None
                async with asyncio.timeout(10):
                    async for line in stream.aiter_lines():
                        if line.startswith("event:"):
                            event = line.split(":", 1)[1].strip()
                        elif line.startswith("data:") and event == "state":
                            body = json.loads(line.split(":", 1)[1])
                            seen.append(body["topic"])
                            if body["seat"] == "1001":
                                break
                assert seen, "no state event"
                assert set(seen) == {"seats/1001/state"}, seen
                metrics = (await c.get("/metrics")).text
                assert "cti_web_sessions 1.0" in metrics
                assert "cti_web_streams 1.0" in metrics
                assert "cti_web_stream_overflows_total 0.0" in metrics
            # a command naming another seat is not a command at all
            refused = await c.post(
                "/console/api/command",
                json={"cmd": "logout", "seat": "1002"},
                headers={"X-CSRF-Token": token},
            )
            assert refused.status_code == 422
            # the session is no bearer token for the machines' API
            api = await c.post("/api/v1/seats/1002/commands", json={"cmd": "logout"})
            assert api.status_code == 401
        assert h.seat_states("1002")[-1] == ("ready", None)
        assert h.seat_states("1001")[-1] == ("not_ready", "login")


async def test_forged_cross_site_posts_are_refused(tmp_path: Path) -> None:
    async with Harness(*web_config(tmp_path)) as h:
        base = await base_url(h)
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            assert (await login(c, "a1001")).status_code == 303
            token = await page_csrf(c)
            evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
            no_token = await c.post(
                "/console/api/command", content=b'{"cmd":"login"}', headers=evil
            )
            assert no_token.status_code == 403
            wrong = await c.post(
                "/console/api/command",
                json={"cmd": "login"},
                headers={"X-CSRF-Token": "forged-" + token[7:]},
            )
            assert wrong.status_code == 403
            # the right token from another origin (a page that stole it): still refused
            cross = await c.post(
                "/console/api/command",
                json={"cmd": "login"},
                headers={"X-CSRF-Token": token, "Origin": "http://evil.example"},
            )
            assert cross.status_code == 403
            forged_login = await c.post(
                "/login",
                data={"username": "a1002", "password": "x", "csrf": "y"},
                headers={"Origin": "http://evil.example"},
            )
            assert forged_login.status_code == 403
        assert h.seat_states("1001") == [] or h.seat_states("1001")[-1][0] == "logged_out"
        assert len(h.logs_of("web_csrf_refused")) == 3


async def test_wrong_password_refused_and_repeated_ones_lock_out(tmp_path: Path) -> None:
    async with Harness(*web_config(tmp_path, lockout_after=3)) as h:
        async with httpx.AsyncClient(base_url=await base_url(h), timeout=10) as c:
            for _ in range(2):
                bad = await login(c, "a1001", "wrong-password")
                assert bad.status_code == 401
                assert "cti_session" not in bad.headers.get("set-cookie", "")
            assert (await login(c, "a1001", "wrong-password")).status_code == 429
            locked = await login(c, "a1001")  # the right password, but locked
            assert locked.status_code == 429
            assert (await c.get("/console/api/state")).status_code == 401
            assert (await login(c, "a1002")).status_code == 303  # others are not locked
        failed = h.logs_of("web_login_failed")
        assert [r["locked"] for r in failed] == [False, False, True, True]
        # the password is never logged
        assert not any("wrong-password" in json.dumps(r) for r in h.logs)
