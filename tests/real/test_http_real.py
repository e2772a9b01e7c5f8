"""The HTTP API of the real daemon (a `cti run` process) against the testbed: an agent
logs in and goes ready over HTTP, the waiting call shows in /api/v1/queue and is answered.

Another daemon (a benchmark) may share the testbed's Asterisk meanwhile: everything here
looks only at this test's own call id and caller number."""

from __future__ import annotations

import asyncio
import random
import re
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.real.daemon_harness import Harness, write_config

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

# one seat with every skill of the plan (every skill needs a seat)
SEATS = [
    {
        "id": "1001",
        "endpoint": "Local/1001@seats",
        "skills": {"general": 5, "market": 3, "hr": 1, "env": 1, "health": 1, "dialect": 1},
    }
]
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}
TOKEN = "t-" + secrets.token_hex(16)
READ_ONLY = "r-" + secrets.token_hex(16)


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, str]:
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["http"] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 0,  # any free port: the daemon logs it (http_listening)
        "tokens": [
            {"name": "supervisor", "token": TOKEN, "scopes": ["seats", "queue", "calls"]},
            {"name": "wallboard", "token": READ_ONLY, "scopes": ["queue"]},
        ],
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


async def test_http_seat_commands_queue_calls_and_probes(config: tuple[Path, str]) -> None:
    caller = f"139{random.randrange(10**8):08d}"  # this test's own caller
    async with Harness(*config) as h:
        up = await h.wait(lambda: h.log("http_listening"), 10, "the HTTP API listening")
        base = f"http://{up['host']}:{up['port']}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=base, headers=auth, timeout=10) as c:
            assert (await c.get("/healthz")).status_code == 200
            ready = await c.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["parts"]["ami.main"]["ready"] is True

            # auth: no token, a token without the scope
            assert (await c.get("/api/v1/seats", headers={"Authorization": ""})).status_code == 401
            ro = {"Authorization": f"Bearer {READ_ONLY}"}
            assert (await c.get("/api/v1/seats", headers=ro)).status_code == 403

            login = await c.post("/api/v1/seats/1001/commands", json={"cmd": "login"})
            assert login.status_code == 200, login.text
            assert login.json()["ok"] is True
            bad = await c.post(
                "/api/v1/seats/1001/commands", json={"cmd": "not_ready", "reason": "nap"}
            )
            assert bad.status_code == 422
            assert bad.json()["error"]["fields"][0].startswith("reason: ")
            unknown = await c.post("/api/v1/seats/0000/commands", json={"cmd": "ready"})
            assert unknown.status_code == 404

            # the seat is logged in but not ready: the call waits and shows in the queue
            call = await h.call("12345", caller)
            queue = (await c.get("/api/v1/queue", headers=ro)).json()
            mine = [q for q in queue["calls"] if q["call_id"] == call]
            assert mine, queue
            assert mine[0]["line"] == "12345"
            assert mine[0]["position"] >= 1
            assert queue["waiting"] >= 1
            active = (await c.get("/api/v1/calls/active")).json()["calls"]
            assert [a["state"] for a in active if a["call_id"] == call] == ["waiting"]

            go = await c.post(
                "/api/v1/seats/1001/commands", json={"cmd": "ready", "request_id": "http-1"}
            )
            assert go.json() == {"ok": True, "request_id": "http-1", "cmd": "ready"}
            await h.wait(lambda: h.answered_by(call), 15, "the call answered by 1001")
            assert h.answered_by(call) == "1001"
            seat = (await c.get("/api/v1/seats/1001")).json()
            assert seat["status"] == "talking"
            assert seat["call_id"] == call
            # impossible in this state: logging in again while talking
            again = await c.post("/api/v1/seats/1001/commands", json={"cmd": "login"})
            assert again.status_code == 409, again.text
            assert again.json()["error"]["code"] == "rejected"

            metrics = (await c.get("/metrics", headers={"Authorization": ""})).text
            found = re.search(
                r'^cti_ami_events_received_total\{node="main"\} ([0-9.]+)$', metrics, re.MULTILINE
            )
            assert found, metrics
            assert float(found.group(1)) > 0
            assert 'cti_seats{status="talking"} 1.0' in metrics

            await h.hang_up(call)
            records = await h.wait(lambda: h.log("call_ended", linkedid=call), 10, "the call ended")
            assert records
            for _ in range(50):  # written behind: poll until the record is stored
                rows = (await c.get("/api/v1/calls", params={"caller": caller})).json()["calls"]
                if rows:
                    break
                await asyncio.sleep(0.1)
            assert [r["linkedid"] for r in rows] == [call]
            assert rows[0]["answered_by"] == "1001"
        # the HTTP server stops with the daemon
    assert h.log("http_stopped") is not None
    assert not [r for r in h.logs if r.get("level") in {"error", "critical"}], [
        r for r in h.logs if r.get("level") in {"error", "critical"}
    ]
