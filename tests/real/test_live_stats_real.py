"""Live KPIs through the real testbed (issue 17): calls abandoned and answered on the real
Asterisk, then the retained `cti/stats/live` on the real Mosquitto shows the counts, the
24 h answer-rate alarm is raised by the abandon (here `answer_rate_min` is 0.5, so one
abandon of one call trips it) and cleared by the answer (1 of 2 = 50 %, not below), on
`cti/stats/alarms` and as `calls/events` of type `alarm`; the abandoned call goes on the
callback list and is called back from a seat: the live figures count the request, then it
placed and reached, equal to the stats API's callback figures of today; after a restart the
figures are seeded from the stored entries and the callback list.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.real.daemon_harness import Harness, settle, write_config
from tests.real.daemon_harness import poll_async as until

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

SEATS = [
    {"id": "1001", "endpoint": "Local/1001@seats", "skills": {"general": 5}},
    {
        "id": "1002",
        "endpoint": "Local/1002@seats",
        "skills": {"market": 1, "env": 1, "health": 1, "hr": 1, "dialect": 1},
    },
]
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}
RATE_ALARM = "12345/answer_rate_24h"
TOKEN = "s-" + secrets.token_hex(16)


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, str]:
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["http"] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 0,
        "tokens": [{"name": "supervisor", "token": TOKEN, "scopes": ["seats", "calls", "stats"]}],
    }
    data["kpis"] = {
        "live_callbacks_s": 1,
        "answer_s": 3.0,
        "also_n_s": [],
        "answer_rate_min": 0.5,
        "n_s_rate_min": 0.0,
        "longest_wait_max_s": 600,
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


def line_live(h: Harness, since: int = 0) -> list[dict[str, Any]]:
    return [
        b["lines"]["12345"]
        for t, b in h.messages[since:]
        if t == "stats/live" and isinstance(b, dict) and "12345" in b.get("lines", {})
    ]


def line_centre(h: Harness) -> dict[str, Any]:
    [*_, last] = [b["centre"] for t, b in h.messages if t == "stats/live" and isinstance(b, dict)]
    return dict(last)


def counts(h: Harness, offered: int, answered: int, abandoned: int, since: int = 0) -> bool:
    return any(
        (x["rolling_24h"]["offered"], x["rolling_24h"]["answered"], x["rolling_24h"]["abandoned"])
        == (offered, answered, abandoned)
        and x["today"]["offered"] == offered
        for x in line_live(h, since)
    )


def callbacks(h: Harness, since: int = 0) -> list[dict[str, Any]]:
    """The 12345 line's today callback figures of each stats/live message."""
    return [x["today"]["callbacks"] for x in line_live(h, since) if "callbacks" in x["today"]]


def cb_counts(h: Harness, requests: int, placed: int, reached: int, since: int = 0) -> bool:
    return any(
        (c["requests"], c["placed"], c["reached"]) == (requests, placed, reached)
        for c in callbacks(h, since)
    )


def alarm_list(h: Harness) -> list[str]:
    lists = h.published("stats/alarms")
    return [a["alarm_id"] for a in lists[-1]["alarms"]] if lists else []


async def test_live_figures_and_the_answer_rate_alarm(config: tuple[Path, str]) -> None:
    async with Harness(*config) as h:
        # abandoned: nobody ready
        lost = await h.call("12345", "13800000201")
        await settle(1.5)
        await h.hang_up(lost)
        await h.wait(lambda: h.log("call_ended", linkedid=lost), 10, "abandoned call ended")
        await h.wait(lambda: counts(h, 1, 0, 1), 5, "stats/live: 1 offered, 1 abandoned")
        raised = await h.wait(
            lambda: h.published("calls/events", type="alarm", alarm_id=RATE_ALARM, state="raised"),
            5,
            "the answer-rate alarm raised",
        )
        assert raised[0]["value"] == 0.0
        assert raised[0]["threshold"] == 0.5
        assert RATE_ALARM in alarm_list(h)

        # answered: 1 of 2 = 50 %, not below the minimum: cleared
        assert (await h.seat("1001", {"cmd": "login", "ready": True}))["ok"] is True
        won = await h.call("12345", "13800000202")
        await h.wait(lambda: h.answered_by(won), 10, "the call answered")
        await settle(1.0)
        await h.hang_up(won)
        await h.wait(lambda: h.log("call_ended", linkedid=won), 10, "answered call ended")
        await h.wait(lambda: counts(h, 2, 1, 1), 5, "stats/live: 2 offered, 1 answered")
        await h.wait(
            lambda: h.published("calls/events", type="alarm", alarm_id=RATE_ALARM, state="cleared"),
            5,
            "the answer-rate alarm cleared",
        )
        assert RATE_ALARM not in alarm_list(h)
        last = line_live(h)[-1]
        assert last["rolling_24h"]["answer_rate"] == 0.5
        assert last["ready_seats"] == 1
        # at most once a second: no two messages of stats/live within a second
        ats = [b["at"] for t, b in h.messages if t == "stats/live" and isinstance(b, dict)]
        assert all(b - a >= 0.99 for a, b in itertools.pairwise(ats))

        # /metrics through prometheus_client: parses with its own parser, the old names
        # are there, the waits histogram counts the two offered entries
        up = await h.wait(lambda: h.log("http_listening"), 10, "the HTTP API listening")
        async with httpx.AsyncClient(base_url=f"http://{up['host']}:{up['port']}") as c:
            text = (await c.get("/metrics")).text
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        for old in ("cti_ami_events_received", "cti_calls_waiting", "cti_seats", "cti_calls_ended"):
            assert old in fams, old
        waits = {s.name: s.value for s in fams["cti_queue_wait_seconds"].samples}
        assert waits["cti_queue_wait_seconds_count"] == 2
        assert waits["cti_queue_wait_seconds_sum"] >= 1.0  # the abandon waited ~1.5 s
        assert "cti_kpi_alarms_active" in fams

        # the abandoned call is on the callback list: 1 request, not placed yet
        await h.wait(lambda: cb_counts(h, 1, 0, 0), 10, "stats/live: 1 callback request")
        # called back from 1001 (ready): the seat's phone answers, then the citizen's
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(
            base_url=f"http://{up['host']}:{up['port']}", headers=auth, timeout=10
        ) as c:
            await h.wait(lambda: h.seat_states("1001")[-1][0] == "ready", 10, "1001 ready")
            resp = await c.post(f"/api/v1/callbacks/main:{lost}/call", json={"seat": "1001"})
            assert resp.status_code == 202, resp.text

            async def citizen() -> Any:
                chans = await h.channels()
                return [
                    ch
                    for ch in chans.values()
                    if ch["Channel"].startswith("Local/13800000201@citizen") and ch.get("BridgeId")
                ]

            [leg, *_] = await until(citizen, 15, "the citizen on the line")
            await asyncio.sleep(0.5)
            await h.driver_action({"Action": "Hangup", "Channel": leg["Channel"]})
            await h.wait(lambda: h.log("callback_ended"), 15, "the callback's end")
            await h.wait(lambda: cb_counts(h, 1, 1, 1), 10, "stats/live: placed and reached")
            live_cb = callbacks(h)[-1]
            assert (live_cb["attempts"], live_cb["reached_within"]) == (1, 1)
            # the same figures as the report's (the stats API, today so far, by line)
            stats = (await c.get("/api/v1/stats", params={"by": "line"})).json()
            [g] = [g for g in stats["groups"] if g["key"] == "12345"]
            assert g["callbacks"] == live_cb
            assert stats["centre"]["callbacks"] == line_centre(h)["today"]["callbacks"]

        # a restart: seeded from the stored entries of the last 24 h and the callback list
        await settle(1.0)  # the record writer's batch
        await h.stop_daemon()
        mark = len(h.messages)
        await h.start_daemon()
        # the callback itself is a call of its own (origin callback): not on line 12345
        await h.wait(lambda: counts(h, 2, 1, 1, since=mark), 15, "stats/live seeded at start")
        await h.wait(lambda: cb_counts(h, 1, 1, 1, since=mark), 15, "callbacks after restart")
