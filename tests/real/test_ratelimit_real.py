"""Rate limits against the real daemon (issue 15): a client guessing tokens gets 429 (with
Retry-After, logged once, no token in the log) while a good client's 110 push is accepted
and a normal call is still routed, popped and ticketed; the 110 push is limited per token.

The guesser connects from 127.0.0.2 (any 127/8 address reaches the daemon's 127.0.0.1 on
Linux), so it is another client address than the good clients on 127.0.0.1."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.real.daemon_harness import Harness
from tests.real.test_dispatch110_real import TOKEN_110, TOKEN_SEATS, api, configure, transfer
from tests.real.test_hostile_json_real import alive, serves_a_call

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

GUESSER = "127.0.0.2"


def configure_limits(tmp_path: Path) -> tuple[Path, str]:
    path, prefix = configure(tmp_path)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["http"]["auth_failure_limit"] = {"limit": 5, "window_s": 60}
    data["http"]["push110_rate_limit"] = {"limit": 3, "window_s": 60}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


def limited(h: Harness, which: str) -> list[dict[str, Any]]:
    return [r for r in h.logs_of("http_rate_limited") if r.get("limit") == which]


async def test_token_guessing_gets_429_while_good_clients_and_calls_are_served(
    tmp_path: Path,
) -> None:
    async with Harness(*configure_limits(tmp_path)) as h, await api(h) as good:
        await h.seat("1001", {"cmd": "login", "ready": True})
        guesses = ["g-" + secrets.token_hex(16) for _ in range(12)]
        guesser = httpx.AsyncClient(
            base_url=str(good.base_url),
            transport=httpx.AsyncHTTPTransport(local_address=GUESSER),
            timeout=10,
        )
        async with guesser:
            answers = [
                await guesser.get("/api/v1/seats", headers={"Authorization": f"Bearer {g}"})
                for g in guesses
            ]
            assert [a.status_code for a in answers] == [401] * 5 + [429] * 7
            last = answers[-1]
            assert last.json()["error"]["code"] == "rate_limited", last.text
            assert int(last.headers["Retry-After"]) >= 1
            # refused before the token is compared: the right token from there too
            right = await guesser.get(
                "/api/v1/seats", headers={"Authorization": f"Bearer {TOKEN_SEATS}"}
            )
            assert right.status_code == 429, right.text

        # the good clients on 127.0.0.1 are served meanwhile
        seats = await good.get("/api/v1/seats", headers={"Authorization": f"Bearer {TOKEN_SEATS}"})
        assert seats.status_code == 200, seats.text
        pushed = await good.post(
            "/api/v1/transfers/110",
            json=transfer("J" + secrets.token_hex(5), "13800000871", "data"),
        )
        assert pushed.status_code == 202, pushed.text
        alive(h)

        # logged once for the window, not once per refused request
        auth = await h.wait(lambda: limited(h, "auth_failures"), 5, "http_rate_limited")
        await h.wait(
            lambda: len([r for r in h.logs_of("http_request") if r.get("status") == 429]) >= 8,
            5,
            "the 8 refusals in the access log",
        )
        assert [(r["key"], r["refused"]) for r in limited(h, "auth_failures")] == [(GUESSER, 1)]
        assert auth[0]["level"] == "warning"
        # no token, guessed or real, in any log line
        text = "\n".join(json.dumps(r, ensure_ascii=False) for r in h.logs)
        for secret in (*guesses, TOKEN_110, TOKEN_SEATS):
            assert secret not in text
        await serves_a_call(h, "13800000872")


async def test_the_110_push_is_limited_per_token(tmp_path: Path) -> None:
    async with Harness(*configure_limits(tmp_path)) as h, await api(h) as c:
        await h.seat("1001", {"cmd": "login", "ready": True})
        tids = ["J" + secrets.token_hex(5) for _ in range(5)]
        got = [
            await c.post("/api/v1/transfers/110", json=transfer(tid, "13800000873", "data"))
            for tid in tids
        ]
        assert [r.status_code for r in got] == [202, 202, 202, 429, 429], [r.text for r in got]
        assert got[3].json()["error"]["code"] == "rate_limited"
        assert int(got[3].headers["Retry-After"]) == 20  # 60 s / 3
        # a refused push was not stored; an accepted one was
        assert (await c.get(f"/api/v1/transfers/110/{tids[3]}")).status_code == 404
        assert (await c.get(f"/api/v1/transfers/110/{tids[0]}")).status_code == 200
        push = await h.wait(lambda: limited(h, "push110"), 5, "http_rate_limited")
        assert [(r["key"], r["refused"]) for r in push] == [("dispatch-110", 1)], push
        # another token's requests are not the 110 token's limit
        seats = await c.get("/api/v1/seats", headers={"Authorization": f"Bearer {TOKEN_SEATS}"})
        assert seats.status_code == 200
        await serves_a_call(h, "13800000874")
