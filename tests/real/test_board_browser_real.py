"""The supervisor's wallboard ``/board`` in a real browser (Debian's chromium through
Playwright) against the real daemon, Asterisk (sipp phones), Mosquitto: a supervisor logs in,
sees only its lines and their seats, a missed call on its list, the agent's call live; it
listens (a real ChanSpy channel on the agent's channel, seen with CoreShowChannels), switches
to whisper (ChanSpy's DTMF 5 received on the spy channel) and barge (DTMF 6), forces a logout
during the call (pending on the row; the seat logs out when the call ends, not before), stops,
forces not-ready after the call; every action is in the audit log on the page and in the
table. Security: an agent gets neither the page nor its stream nor its actions, a seat outside
the supervisor's lines is refused (and audited), a cross-site POST is refused. docs/board.png
is taken here."""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.async_api import Page, Playwright, async_playwright, expect

from cti.events import AmiEvent
from tests.conftest import PROJECT
from tests.real.daemon_harness import Harness, write_config
from tests.real.daemon_harness import poll_async as until
from tests.real.sip import SipBed
from tests.real.web_helpers import CHROMIUM, CHROMIUM_ARGS, HASH, PASSWORD, base_url, login

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

SCREENSHOT = PROJECT / "docs" / "board.png"
SUPERVISOR_PHONE = "6003"
# 1001 (sipp phone 6001) answers 12345; 1002 the market line 12315 (never logged in: a
# call there is missed); 1003 the other lines' skills: outside the supervisor's lines
SEATS = [
    {"id": "1001", "endpoint": "PJSIP/6001", "skills": {"general": 5}},
    {"id": "1002", "endpoint": "Local/1002@seats", "skills": {"market": 1}},
    {
        "id": "1003",
        "endpoint": "Local/1003@seats",
        "skills": {"env": 1, "health": 1, "hr": 1, "dialect": 1},
    },
]
QUEUE = {"ring_timeout_s": 10, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}


def configure(tmp: Path) -> tuple[Path, str]:
    path, prefix = write_config(tmp, seats=SEATS, queue=QUEUE)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["web"] = {
        "users": [
            {"name": "a1001", "role": "agent", "seat": "1001", "password_hash": HASH,
             "display_name": "张三", "test_only": True},
            {"name": "boss", "role": "supervisor", "lines": ["12345", "12315"],
             "endpoint": f"PJSIP/{SUPERVISOR_PHONE}", "display_name": "李班长",
             "password_hash": HASH, "test_only": True},
        ],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


async def log_in(page: Page, base: str, name: str) -> None:
    await page.goto(f"{base}/board")
    await expect(page).to_have_url(re.compile(r"/login$"))
    await page.fill("#username", name)
    await page.fill("#password", PASSWORD)
    await page.click("#login-button")
    await expect(page).to_have_url(re.compile(r"/board$"))
    await expect(page.locator("#link")).to_have_text("已连接", timeout=10_000)


async def board_csrf(c: httpx.AsyncClient) -> str:
    page = await c.get("/board")
    assert page.status_code == 200, page.status_code
    token = re.search(r'data-csrf="([^"]+)"', page.text)
    assert token is not None
    return token.group(1)


async def ami_event(h: Harness, channel: str, digit: str, timeout: float) -> AmiEvent:
    async with asyncio.timeout(timeout):
        while True:
            ev = await h.ami_events.get()
            if (
                isinstance(ev, AmiEvent)
                and ev.name == "DTMFEnd"
                and ev.headers.get("Channel") == channel
                and ev.headers.get("Digit") == digit
                and ev.headers.get("Direction") == "Received"
            ):
                return ev


async def test_supervisor_board_in_the_browser(tmp_path: Path) -> None:
    caller = f"139{random.randrange(10**8):08d}"
    missed = f"137{random.randrange(10**8):08d}"
    async with SipBed(tmp_path) as sip:
        await sip.phone("6001")
        await sip.phone(SUPERVISOR_PHONE)
        async with Harness(*configure(tmp_path)) as h, async_playwright() as pw:
            await board_story(h, sip, pw, caller, missed)
    with sqlite3.connect(tmp_path / "cti.db") as db:
        rows = db.execute(
            "select supervisor, action, seat, result, code from supervision_audit order by id"
        ).fetchall()
    assert rows == [
        ("boss", "listen", "1001", "ok", None),
        ("boss", "whisper", "1001", "ok", None),
        ("boss", "barge", "1001", "ok", None),
        ("boss", "logout", "1001", "ok", None),
        ("boss", "ready", "1003", "refused", "forbidden"),
        ("boss", "stop", "1001", "ok", None),
        ("boss", "not_ready", "1001", "ok", None),
    ]


async def board_story(h: Harness, sip: SipBed, pw: Playwright, caller: str, missed: str) -> None:
    base = await base_url(h)
    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    agent = httpx.AsyncClient(base_url=base, timeout=10)
    boss = httpx.AsyncClient(base_url=base, timeout=10)
    try:
        # ---- an agent: no board, no board stream, no board action
        assert (await login(agent, "a1001")).status_code == 303
        page_resp = await agent.get("/board")
        assert page_resp.status_code == 303
        assert page_resp.headers["location"] == "/console"
        assert (await agent.get("/board/events")).status_code == 403
        assert (await agent.get("/board/api/snapshot")).status_code == 403
        assert (await agent.get("/board/api/audit")).status_code == 403
        agent_csrf = re.search(r'data-csrf="([^"]+)"', (await agent.get("/console")).text)
        assert agent_csrf is not None
        forbidden = await agent.post(
            "/board/api/seats/1001/ready", headers={"X-CSRF-Token": agent_csrf.group(1)}
        )
        assert forbidden.status_code == 403

        # ---- the supervisor's board: its lines and their seats only
        page = await browser.new_page(viewport={"width": 1600, "height": 1000}, locale="zh-CN")
        await log_in(page, base, "boss")
        lines = page.locator("#lines tr")
        await expect(lines).to_have_count(2)
        await expect(page.locator('#lines tr[data-line="12345"]')).to_be_visible()
        await expect(page.locator('#lines tr[data-line="12315"]')).to_be_visible()
        seats = page.locator("#seats tr")
        await expect(seats).to_have_count(2)
        await expect(page.locator('#seats tr[data-seat="1003"]')).to_have_count(0)

        # ---- a missed call on 12315 (nobody there): on the callback list within 1 s
        gone = await h.call("12315", missed, "赵六")
        await asyncio.sleep(1.0)
        await h.hang_up(gone)
        await expect(page.locator("#abandoned")).to_contain_text(missed, timeout=5_000)

        # ---- the agent takes a call; the board shows it
        assert (await h.seat("1001", {"cmd": "login", "ready": True}))["ok"] is True
        await expect(page.locator('#seats tr[data-seat="1001"] .state')).to_have_text(
            "示闲", timeout=2_000
        )
        await sip.call("12345", caller, talk_s=120)
        offers = await h.wait(lambda: h.published("seats/1001/pop", type="offer"), 20, "offer pop")
        call_id = offers[0]["call"]["call_id"]
        await h.wait(lambda: h.answered_by(call_id), 15, "the seat's phone answered")
        row = page.locator('#seats tr[data-seat="1001"]')
        await expect(row.locator(".state")).to_have_text("通话中", timeout=2_000)
        await expect(row).to_contain_text(caller)

        # ---- 监听: the supervisor's phone up in a real ChanSpy on the agent's channel
        await row.locator('button[data-action="listen"]').click()
        await expect(page.locator("#reply")).to_contain_text("已执行")

        async def spy() -> dict[str, str] | None:
            return next(
                (
                    c
                    for c in (await h.channels()).values()
                    if c["Channel"].startswith(f"PJSIP/{SUPERVISOR_PHONE}-")
                    and c["Application"] == "ChanSpy"
                    and c["ApplicationData"].startswith("PJSIP/6001-")
                    and c["ChannelStateDesc"] == "Up"
                ),
                None,
            )

        spying = await until(spy, 15, "ChanSpy up on Asterisk")
        assert spying["Exten"] == "listen"
        await expect(page.locator("#my-spy")).to_have_text("正在监听坐席 1001", timeout=3_000)
        await expect(row.locator(".spy")).to_contain_text("boss 监听")

        # ---- 耳语: ChanSpy's DTMF 5 received on the same spy channel
        waiter = asyncio.create_task(ami_event(h, spying["Channel"], "5", 10))
        await row.locator('button[data-action="whisper"]').click()
        await waiter
        await expect(page.locator("#my-spy")).to_have_text("正在耳语坐席 1001", timeout=3_000)
        assert (await spy()) is not None  # still the same ChanSpy
        SCREENSHOT.parent.mkdir(exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)

        # ---- 强插: ChanSpy's DTMF 6 on the same spy channel, three parties
        waiter = asyncio.create_task(ami_event(h, spying["Channel"], "6", 10))
        await row.locator('button[data-action="barge"]').click()
        await waiter
        await expect(page.locator("#my-spy")).to_have_text("正在强插坐席 1001", timeout=3_000)
        await expect(row.locator(".spy")).to_contain_text("boss 强插")
        assert (await spy()) is not None

        # ---- 强制签出 during the call: pending, shown on the row, the call goes on
        await row.locator('button[data-action="logout"]').click()
        await expect(row).to_contain_text("通话后强制签出", timeout=3_000)
        await expect(row.locator(".state")).to_have_text("通话中")
        assert h.seat_states("1001")[-1][0] == "talking"

        # ---- a seat outside the supervisor's lines; a forged cross-site POST
        assert (await login(boss, "boss")).status_code == 303
        token = await board_csrf(boss)
        outside = await boss.post("/board/api/seats/1003/ready", headers={"X-CSRF-Token": token})
        assert outside.status_code == 403, outside.text
        assert outside.json()["error"]["code"] == "forbidden"
        forged = await boss.post(
            "/board/api/seats/1001/not_ready",
            json={"reason": "meal"},
            headers={"X-CSRF-Token": token, "Origin": "http://evil.example"},
        )
        assert forged.status_code == 403
        assert forged.json()["error"]["code"] == "csrf"
        no_token = await boss.post("/board/api/seats/1001/not_ready", json={"reason": "meal"})
        assert no_token.status_code == 403

        # ---- 停止: accepted and audited. The spy channel itself only goes with the call
        # on the testbed: sipp sends no RTP and ChanSpy ignores a soft hangup until audio
        # passes (asterisk/asterisk#978, docs/supervision.md)
        await row.locator('button[data-action="stop"]').click()
        await expect(page.locator("#reply")).to_contain_text("已执行")
        for c in (await h.channels()).values():
            if str(c["Channel"]).startswith("PJSIP/sipp-carrier"):
                await h.driver_action({"Action": "Hangup", "Channel": c["Channel"]})

        async def spy_gone() -> bool:
            return await spy() is None

        await until(spy_gone, 15, "the spy channel gone with the call")
        # the pending logout took effect when the call ended (after its wrap-up), not 示闲
        await expect(row.locator(".state")).to_have_text("未签入", timeout=10_000)
        await expect(row).not_to_contain_text("通话后")
        assert h.seat_states("1001")[-1][0] == "logged_out"
        await expect(page.locator("#my-spy")).to_have_text("", timeout=3_000)
        assert (await h.seat("1001", {"cmd": "login", "ready": True}))["ok"] is True
        await expect(row.locator(".state")).to_have_text("示闲", timeout=2_000)

        # ---- 示忙 with a reason: the seat changes, the board shows it
        await page.select_option("#force-reason", "meeting")
        await row.locator('button[data-action="not_ready"]').click()
        await h.wait(lambda: h.seat_states("1001")[-1] == ("not_ready", "meeting"), 5, "forced")
        await expect(row.locator(".state")).to_have_text("示忙", timeout=2_000)
        await expect(row).to_contain_text("会议")

        # ---- the audit log on the page: every action, the refusal too
        audit = page.locator("#audit tr")
        await expect(audit).to_have_count(7, timeout=3_000)
        actions = await page.locator("#audit tr td:nth-child(3)").all_inner_texts()
        assert actions == ["强制示忙", "停止监听", "强制示闲", "强制签出", "强插", "耳语", "监听"]
        await expect(audit.nth(2)).to_contain_text("forbidden")
        await expect(audit.nth(2)).to_have_class("refused")
    finally:
        await agent.aclose()
        await boss.aclose()
        await browser.close()
    assert not [r for r in h.logs if r.get("level") in {"error", "critical"}]
