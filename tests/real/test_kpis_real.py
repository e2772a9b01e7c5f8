"""KPIs from stored facts through the real testbed (issue 17): calls with known fates —
answered fast, answered after more than N s, abandoned short and long — then `cti report
--format json` (a subprocess) and GET /api/v1/stats give exactly the figures computed by
hand here; after a daemon restart they are unchanged.

To keep the test short the thresholds are small in this test's config: N (answer_s) is
3 s instead of 15 and a short abandon is < 2 s instead of 5, so "answered after > N s" is
a 5 s wait and the abandons are ~0.5 s (short) and ~4 s (not short). The definitions are
the same; only N changes.
"""

from __future__ import annotations

import asyncio
import json
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

from tests.real.daemon_harness import Harness, settle, write_config

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

SEATS = [
    {"id": "1001", "endpoint": "Local/1001@seats", "skills": {"general": 5}},
    # the plan's other skills (every skill needs a seat); never logged in here
    {
        "id": "1002",
        "endpoint": "Local/1002@seats",
        "skills": {"market": 1, "env": 1, "health": 1, "hr": 1, "dialect": 1},
    },
]
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}
TOKEN = "k-" + secrets.token_hex(16)
ANSWER_S = 3.0
SHORT_ABANDON_S = 2.0
SLOW_WAIT_S = 5.0
SHANGHAI = ZoneInfo("Asia/Shanghai")  # kpis.timezone below: --from/--to are read in it


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, str]:
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["http"] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 0,
        "tokens": [{"name": "supervisor", "token": TOKEN, "scopes": ["stats"]}],
    }
    data["kpis"] = {
        "answer_s": ANSWER_S,
        "also_n_s": [],
        "short_abandon_s": SHORT_ABANDON_S,
        "timezone": "Asia/Shanghai",
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


async def cti_report(config: Path, start: str, end: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cti",
        "report",
        "-c",
        str(config),
        "--from",
        start,
        "--to",
        end,
        "--format",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("CTI_")},
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    body: dict[str, Any] = json.loads(out)
    return body


async def stats(h: Harness, start: str, end: str) -> dict[str, Any]:
    up = await h.wait(lambda: h.log("http_listening"), 10, "the HTTP API listening")
    async with httpx.AsyncClient(
        base_url=f"http://{up['host']}:{up['port']}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    ) as c:
        r = await c.get("/api/v1/stats", params={"from": start, "to": end})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


def connected(h: Harness, call: str) -> dict[str, Any]:
    got = h.log("call_connected", linkedid=call)
    assert got is not None
    return got


async def test_report_and_stats_give_the_hand_computed_figures_across_a_restart(
    config: tuple[Path, str],
) -> None:
    path = config[0]
    start = (datetime.now(SHANGHAI) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
    async with Harness(*config) as h:
        # answered fast: the seat is ready before the call comes
        assert (await h.seat("1001", {"cmd": "login", "ready": True}))["ok"] is True
        fast = await h.call("12345", "13800000101")
        await h.wait(lambda: h.answered_by(fast), 10, "the fast call answered")
        await settle(1.0)
        await h.hang_up(fast)
        await h.wait(lambda: h.log("call_ended", linkedid=fast), 10, "fast call ended")

        # answered after more than N s: nobody ready for 5 s
        await h.seat("1001", {"cmd": "not_ready", "reason": "meal"})
        slow = await h.call("12345", "13800000102")
        await settle(SLOW_WAIT_S)
        await h.seat("1001", {"cmd": "ready"})
        await h.wait(lambda: h.answered_by(slow), 10, "the slow call answered")
        await settle(1.0)
        await h.seat("1001", {"cmd": "not_ready", "reason": "meal"})  # after this call
        await h.hang_up(slow)
        await h.wait(lambda: h.log("call_ended", linkedid=slow), 10, "slow call ended")

        # abandoned short (< 2 s) and long (> 2 s), nobody ready
        short = await h.call("12345", "13800000103")
        await settle(0.5)
        await h.hang_up(short)
        long_ = await h.call("12345", "13800000104")
        await settle(4.0)
        await h.hang_up(long_)
        await h.wait(lambda: h.log("call_ended", linkedid=short), 10, "short abandon ended")
        await h.wait(lambda: h.log("call_ended", linkedid=long_), 10, "long abandon ended")
        assert h.log("call_abandoned", linkedid=short) is not None
        await settle(1.0)  # the record writer's batch

        end = (datetime.now(SHANGHAI) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
        report = await cti_report(path, start, end)
        api = await stats(h, start, end)
        fast_wait = connected(h, fast)["waited_s"]
        slow_wait = connected(h, slow)["waited_s"]

        # by hand: 4 asked for a person, 2 answered (one within 3 s), 2 abandoned (one short)
        c = report["centre"]
        assert (c["offered"], c["answered"], c["abandoned"], c["short_abandoned"]) == (4, 2, 2, 1)
        assert c["answer_rate"] == 0.5
        assert c["n_s_answer_rate"] == 0.25  # 1 answered within 3 s ÷ 4 offered
        assert c["service_level"] == 0.5  # ÷ 2 answered
        assert c["abandon_rate"] == 0.5
        assert c["abandon_rate_excluding_short"] == pytest.approx(1 / 3)
        assert report["thresholds"] == {"answer_s": 3.0, "n_s": [3.0], "short_abandon_s": 2.0}
        # the waits are the dispatcher's (taken -> answered), ringing included
        assert fast_wait < ANSWER_S < SLOW_WAIT_S <= slow_wait
        assert c["asa_s"] == pytest.approx((fast_wait + slow_wait) / 2, abs=0.6)
        assert c["longest_wait_s"] >= 4.0  # the long abandon or the slow answer
        assert api["centre"] == c
        before = report

        await h.stop_daemon()
        await h.start_daemon()
        after = await cti_report(path, start, end)
        assert after["centre"] == before["centre"]
        assert (await stats(h, start, end))["centre"] == before["centre"]
