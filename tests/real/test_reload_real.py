"""Reload without a restart, through the real daemon (a `cti run` process) and the testbed.

A call waits (its only seat is logged out); the file changes — a new seat with the call's
skill, the HTTP token replaced, the office hours of line 12348 closed — and SIGHUP makes the
daemon re-read it: the waiting call keeps its place and its channel, the old token is
refused and the new one accepted, the new seat logs in and is offered the waiting call, a
call to 12348 is now after hours. A file with errors is refused with the very lines
`cti check-config` prints, and the daemon runs on as it was. Then `cti reload` (the
pidfile): the new seat, removed while it talks, stays on its call and leaves when it ends.

Another daemon may share the testbed's Asterisk meanwhile: everything here looks only at
this test's own call ids."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from tests.conftest import AMI_SECRET
from tests.real.daemon_harness import Harness, poll_async, write_config
from tests.real.logcapture import note_secrets
from tests.real.web_helpers import HASH, base_url, login, web_config

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

ALL_SKILLS = {"general": 5, "market": 3, "hr": 1, "env": 1, "health": 1, "dialect": 1}
SEATS = [{"id": "1001", "endpoint": "Local/1001@seats", "skills": ALL_SKILLS}]
NEW_SEAT = {"id": "1002", "endpoint": "Local/1002@seats", "skills": {"general": 5}}
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}
OLD, NEW, NEWER = ("t-" + secrets.token_hex(16) for _ in range(3))
ZONE = "Asia/Shanghai"
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def office(*, open_now: bool) -> list[dict[str, Any]]:
    today = datetime.now(ZoneInfo(ZONE)).date()
    closed = [] if open_now else [str(today + timedelta(days=d)) for d in (-1, 0, 1)]
    rule = {"days": EVERY_DAY, "start": "00:00", "end": "24:00"}
    return [{"name": "office", "timezone": ZONE, "rules": [rule], "closed_dates": closed}]


def token(value: str) -> list[dict[str, Any]]:
    return [{"name": "supervisor", "token": value, "scopes": ["seats", "queue", "calls"]}]


def save(path: Path, data: dict[str, Any]) -> None:
    # write-then-rename, as an editor or a config manager does
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    tmp.replace(path)
    note_secrets(config=path)  # a reloaded token must not reach the log either


async def cti(*args: str) -> tuple[int, str, str]:
    """The `cti` command (with the testbed's AMI secret, like the daemon's environment)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cti",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CTI_AMI_SECRET": AMI_SECRET},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_reload_applies_seats_tokens_and_hours_live_and_refuses_a_bad_file(
    tmp_path: Path,
) -> None:
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["http"] = {"enabled": True, "host": "127.0.0.1", "port": 0, "tokens": token(OLD)}
    data["numberplan"]["hours"] = office(open_now=True)
    save(path, data)
    pidfile = tmp_path / "cti.pid"

    async with Harness(path, prefix, args=["--pidfile", str(pidfile)]) as h:
        up = await h.wait(lambda: h.log("http_listening"), 10, "the HTTP API listening")
        assert h.proc is not None
        assert pidfile.read_text().strip() == str(h.proc.pid)
        async with httpx.AsyncClient(base_url=f"http://{up['host']}:{up['port']}") as c:

            async def status(tok: str, url: str = "/api/v1/queue") -> int:
                return (await c.get(url, headers={"Authorization": f"Bearer {tok}"})).status_code

            async def queued(tok: str) -> list[str]:
                got = await c.get("/api/v1/queue", headers={"Authorization": f"Bearer {tok}"})
                return [row["call_id"] for row in got.json()["calls"]]

            # a call waits: seat 1001 is logged out
            waiting = await h.call("12345", "13800000961", "褚十三")
            assert waiting in await queued(OLD)
            held_before = held(await h.channels(), waiting)
            assert held_before is not None
            assert await status(NEW) == 401

            # the file changes: a seat with the call's skill, a new token, 12348 closed
            data["numberplan"]["seats"] = [*SEATS, NEW_SEAT]
            data["http"]["tokens"] = token(NEW)
            data["numberplan"]["hours"] = office(open_now=False)
            save(path, data)
            h.proc.send_signal(1)  # SIGHUP
            done = await h.wait(lambda: h.log("config_reloaded"), 10, "the reload")
            assert set(done["applied"]) == {"numberplan.hours", "numberplan.seats", "http.tokens"}
            assert done["needs_restart"] == []
            assert done["dialplan_stale"] is True  # the fallback queues gain seat 1002
            await h.wait(lambda: h.log("dialplan_stale"), 5, "the stale dialplan said")

            # the waiting call: still waiting, first, on the same channel in hold
            assert await status(OLD) == 401
            assert await status(NEW) == 200
            assert (await queued(NEW))[0] == waiting
            assert held(await h.channels(), waiting) == held_before  # the same channel
            assert h.log("call_ended", linkedid=waiting) is None
            assert h.published("seats/1002/state", status="logged_out")  # the new seat

            # the new seat logs in and gets the call
            assert (await h.seat("1002", {"cmd": "login", "ready": True}))["ok"] is True
            await h.wait(lambda: h.answered_by(waiting), 15, "the call answered")
            assert h.answered_by(waiting) == "1002"

            # 12348's hours are closed now (the daemon decides over FastAGI at each call)
            late = await h.call("12348", "13800000962", taken=False)
            await h.wait(lambda: h.log("ivr_after_hours", linkedid=late), 15, "after hours")
            await h.hang_up(late)

            # a file with errors: refused with check-config's lines; the old config stays
            bad = {**data, "http": {**data["http"], "port": "eighty"}}
            bad["numberplan"] = {**data["numberplan"], "seats": [{**NEW_SEAT, "skils": {}}]}
            save(path, bad)
            code, _, err = await cti("check-config", "-c", str(path))
            assert code == 2
            expected = [ln.removeprefix("config error: ") for ln in err.splitlines()]
            assert any("skils" in p and "did you mean 'skills'" in p for p in expected), expected
            h.proc.send_signal(1)
            refused = await h.wait(lambda: h.log("config_reload_refused"), 10, "the refusal")
            assert refused["problems"] == expected
            assert await status(NEW) == 200
            assert await status(NEW, "/api/v1/seats/1002") == 200
            seat = await c.get("/api/v1/seats/1002", headers={"Authorization": f"Bearer {NEW}"})
            assert seat.json()["status"] == "talking"
            metrics = (await c.get("/metrics")).text
            assert 'cti_config_reloads_total{result="applied"} 1.0' in metrics
            assert 'cti_config_reloads_total{result="refused"} 1.0' in metrics

            # `cti reload` with that file: exit 2 and the same lines
            code, _, err = await cti("reload", "--pidfile", str(pidfile))
            assert code == 2
            assert [ln.removeprefix("config error: ") for ln in err.splitlines()][:-1] == expected

            # `cti reload`: seat 1002 removed while it talks, the token changed again
            data["numberplan"]["seats"] = SEATS
            data["http"]["tokens"] = token(NEWER)
            save(path, data)
            code, out, err = await cti("reload", "--pidfile", str(pidfile))
            assert code == 0, err
            assert out.splitlines()[0] == "reloaded: numberplan.seats, http.tokens"
            assert await status(NEW) == 401
            assert await status(NEWER) == 200
            states = await c.get("/api/v1/seats/1002", headers={"Authorization": f"Bearer {NEWER}"})
            assert states.json()["status"] == "talking"  # stays on its call
            assert not h.published("seats/1002/state", cause="config_removed")

            # the call ends: the seat leaves the plan
            await h.hang_up(waiting)
            await h.wait(
                lambda: h.published("seats/1002/state", cause="config_removed"), 15, "seat gone"
            )
            assert await status(NEWER, "/api/v1/seats/1002") == 404
            await poll_async(
                lambda: _gone(h, waiting), 10, "the call's channels gone from Asterisk"
            )
    assert not pidfile.exists()  # removed at exit


def held(channels: dict[str, dict[str, str]], call_id: str) -> str | None:
    """The call's channel in the holding loop (the ;2 half of the originated pair)."""
    return next(
        (
            ch["Channel"]
            for ch in channels.values()
            if ch.get("Linkedid") == call_id and ch.get("Context") == "cti-hold"
        ),
        None,
    )


async def _gone(h: Harness, call_id: str) -> bool:
    return call_id not in await h.channels()


async def test_reload_changes_web_users_live_and_ends_removed_users_sessions(
    tmp_path: Path,
) -> None:
    """The browser pages' users (`web.users`) at `cti reload`: a disabled agent and a
    removed supervisor are logged out at once (their pages, their open live stream), an
    unchanged agent stays logged in, a new admin can log in. A user entry with a clear
    password where the hash belongs is refused like any bad file — without writing that
    password to the terminal or the daemon's log — and the users stay as they were."""
    path, prefix = web_config(tmp_path)
    pidfile = tmp_path / "cti.pid"
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    async with Harness(path, prefix, args=["--pidfile", str(pidfile)]) as h:
        url = await base_url(h)
        async with (
            httpx.AsyncClient(base_url=url, timeout=10) as kept,
            httpx.AsyncClient(base_url=url, timeout=10) as disabled,
            httpx.AsyncClient(base_url=url, timeout=10) as removed,
        ):
            for c, name in ((kept, "a1001"), (disabled, "a1002"), (removed, "boss")):
                assert (await login(c, name)).status_code == 303, name
            assert (await kept.get("/console")).status_code == 200
            assert (await disabled.get("/console")).status_code == 200
            async with disabled.stream("GET", "/events") as stream:
                assert stream.status_code == 200
                lines = stream.aiter_lines()
                async with asyncio.timeout(10):
                    async for line in lines:
                        if line.startswith("event: hello"):
                            break
                # the file: a1002 disabled, boss gone, an admin added; a1001 as it was
                users = data["web"]["users"]
                data["web"]["users"] = [
                    users[0],
                    {**users[1], "disabled": True},
                    {"name": "root", "role": "admin", "password_hash": HASH},
                ]
                save(path, data)
                code, out, err = await cti("reload", "--pidfile", str(pidfile))
                assert code == 0, err
                assert out.splitlines()[0] == "reloaded: web.users", out
                # the disabled agent's open stream ends (not only its next request)
                async with asyncio.timeout(10):
                    rest = [line async for line in lines]
                assert not any(line.startswith("event: pop") for line in rest)
            ended = await h.wait(lambda: h.log("web_sessions_ended"), 10, "sessions ended")
            assert ended["users"] == ["a1002", "boss"]
            assert ended["streams"] == 1
            assert (await kept.get("/console")).status_code == 200  # unchanged: still in
            for c in (disabled, removed):
                assert (await c.get("/console")).status_code in (302, 303, 307)
                assert (await c.get("/events")).status_code == 401
            assert (await login(disabled, "a1002")).status_code != 303  # refused now
            async with httpx.AsyncClient(base_url=url, timeout=10) as admin:
                assert (await login(admin, "root")).status_code == 303  # the new user

                # a bad entry: the password pasted where its hash belongs
                pasted = "Pasted-" + secrets.token_hex(8)
                note_secrets(pasted)  # the log scan looks for it in the whole run's logs
                new = {"name": "new", "role": "admin", "password_hash": pasted}
                bad = {**data, "web": {**data["web"], "users": [*data["web"]["users"], new]}}
                save(path, bad)
                code, _, err = await cti("reload", "--pidfile", str(pidfile))
                assert code == 2
                assert "web.users.3.password_hash" in err, err
                assert pasted not in err
                refused = await h.wait(
                    lambda: h.log("config_reload_refused"), 10, "the refusal logged"
                )
                assert pasted not in str(refused)
                # nothing changed: the sessions and users of the last good file hold
                assert (await kept.get("/console")).status_code == 200
                async with httpx.AsyncClient(base_url=url, timeout=10) as again:
                    assert (await login(again, "new", pasted)).status_code != 303
                    assert (await login(again, "root")).status_code == 303
    assert not any(pasted in str(e) for e in h.logs_of("config_reload_refused"))
