"""The 110 push over MQTT is rate limited like the HTTP one (issue 15), and /metrics counts
every rate-limited request: token failures, 110 pushes over HTTP and over MQTT."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.real.daemon_harness import Harness
from tests.real.test_dispatch110_real import TOKEN_SEATS, api, configure, transfer
from tests.real.test_hostile_json_real import serves_a_call

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

GUESSER = "127.0.0.2"


def configure_limits(tmp_path: Path) -> tuple[Path, str]:
    path, prefix = configure(tmp_path)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["mqtt"]["push110_rate_limit"] = {"limit": 2, "window_s": 60}
    data["http"]["push110_rate_limit"] = {"limit": 1, "window_s": 60}
    data["http"]["auth_failure_limit"] = {"limit": 2, "window_s": 60}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


def rate_limited(metrics: str) -> dict[tuple[str, str], float]:
    got: dict[tuple[str, str], float] = {}
    for line in metrics.splitlines():
        if line.startswith("cti_rate_limited_total{"):
            labels, value = line.removeprefix("cti_rate_limited_total{").split("} ")
            parts = dict(p.split("=") for p in labels.split(","))
            got[parts["limit"].strip('"'), parts["via"].strip('"')] = float(value)
    return got


async def test_mqtt_pushes_past_the_limit_get_rate_limited_replies_and_metrics_count_429s(
    tmp_path: Path,
) -> None:
    async with Harness(*configure_limits(tmp_path)) as h, await api(h) as c:
        await h.seat("1001", {"cmd": "login", "ready": True})
        before = rate_limited((await c.get("/metrics")).text)
        assert before == {
            ("auth_failures", "http"): 0,
            ("push110", "http"): 0,
            ("push110", "mqtt"): 0,
        }
        assert h._mqtt is not None
        tids = ["M" + secrets.token_hex(5) for _ in range(4)]
        for n, tid in enumerate(tids):
            body = {**transfer(tid, "13800000891", "data"), "request_id": f"rl{n}"}
            await h._mqtt.publish(f"{h.prefix}/110/transfers", json.dumps(body), qos=1)
        replies = await h.wait(
            lambda: (
                len(h.published("110/transfers/reply")) >= 4 and h.published("110/transfers/reply")
            ),
            10,
            "four MQTT replies",
        )
        by_rid = {r["request_id"]: r for r in replies}
        assert [by_rid["rl0"]["ok"], by_rid["rl1"]["ok"]] == [True, True], replies
        for rid in ("rl2", "rl3"):
            assert by_rid[rid]["ok"] is False
            assert by_rid[rid]["error"]["code"] == "rate_limited"
            assert by_rid[rid]["retry_after_s"] == 30  # 60 s / 2
        # refused pushes were not stored; the accepted ones were
        scoped = httpx.Headers(c.headers)
        assert (await c.get(f"/api/v1/transfers/110/{tids[0]}", headers=scoped)).status_code == 200
        assert (await c.get(f"/api/v1/transfers/110/{tids[2]}", headers=scoped)).status_code == 404
        # logged once for the window, not once per refused push
        await h.wait(lambda: h.logs_of("push110_rate_limited"), 5, "push110_rate_limited")
        logged = h.logs_of("push110_rate_limited")
        assert [(r["via"], r["refused"], r["level"]) for r in logged] == [("mqtt", 1, "warning")]

        # the HTTP limits: one push too many, and a token guesser past its limit
        pushes = [
            await c.post(
                "/api/v1/transfers/110",
                json=transfer("H" + secrets.token_hex(5), "13800000892", "data"),
            )
            for _ in range(2)
        ]
        assert [p.status_code for p in pushes] == [202, 429]
        guesser = httpx.AsyncClient(
            base_url=str(c.base_url),
            transport=httpx.AsyncHTTPTransport(local_address=GUESSER),
            timeout=10,
        )
        async with guesser:
            bad = {"Authorization": "Bearer g-" + secrets.token_hex(16)}
            answers = [
                (await guesser.get("/api/v1/seats", headers=bad)).status_code for _ in range(4)
            ]
        assert answers == [401, 401, 429, 429]

        after = rate_limited((await c.get("/metrics")).text)
        assert after == {
            ("auth_failures", "http"): 2,
            ("push110", "http"): 1,
            ("push110", "mqtt"): 2,
        }, after
        seats = await c.get("/api/v1/seats", headers={"Authorization": f"Bearer {TOKEN_SEATS}"})
        assert seats.status_code == 200
        await serves_a_call(h, "13800000893")
