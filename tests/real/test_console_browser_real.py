"""The seat console in a real browser (Debian's chromium through Playwright) against the real
daemon, Asterisk and Mosquitto: an agent logs in, goes ready, a citizen calls, the pop card
shows the caller, the line and its department within 1 s of the seat's phone ringing, then
the ticket number; the console survives a daemon restart. The screenshot in docs/ is
taken here."""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect

from cti.events import AmiEvent
from tests.conftest import PROJECT
from tests.real.daemon_harness import Harness
from tests.real.web_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LINE110,
    PASSWORD,
    TOKEN_110,
    base_url,
    free_port,
    web_config,
)

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

SCREENSHOT = PROJECT / "docs" / "console.png"


async def ring_times(h: Harness, seat: str, rings: dict[str, float]) -> None:
    """When the seat's phone started ringing, per call (the driver's AMI DialBegin to the
    seat's endpoint), on this machine's clock."""
    while True:
        item = await h.ami_events.get()
        if not isinstance(item, AmiEvent) or item.name != "DialBegin":
            continue
        dest = item.headers.get("DestChannel", "")
        if dest.startswith(f"Local/{seat}@seats"):
            linked = item.headers.get("DestLinkedid") or item.headers.get("Linkedid", "")
            rings.setdefault(linked, time.time())


async def log_in(page: Page, base: str, name: str) -> None:
    await page.goto(f"{base}/console")
    await expect(page).to_have_url(re.compile(r"/login$"))
    await page.fill("#username", name)
    await page.fill("#password", PASSWORD)
    await page.click("#login-button")
    await expect(page).to_have_url(re.compile(r"/console$"))
    await expect(page.locator("#link")).to_have_text("已连接", timeout=10_000)


async def test_agent_pop_card_in_the_browser(tmp_path: Path) -> None:
    caller = f"138{random.randrange(10**8):08d}"
    rings: dict[str, float] = {}
    async with Harness(*web_config(tmp_path, port=free_port())) as h, async_playwright() as pw:
        watcher = asyncio.create_task(ring_times(h, "1001", rings))
        base = await base_url(h)
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 860}, locale="zh-CN")
            await log_in(page, base, "a1001")
            await expect(page.locator("#seat-id")).to_have_text("1001")
            await expect(page.locator("#state")).to_have_text("未签入")

            await page.click("#btn-login")
            await expect(page.locator("#state")).to_have_text("示忙")
            await page.click("#btn-ready")
            await expect(page.locator("#state")).to_have_text("示闲")
            assert h.seat_states("1001")[-1] == ("ready", None)

            call = await h.call("12315", caller, "王五")
            card = page.locator("#pop-card")
            await expect(card).to_be_visible(timeout=5_000)
            await expect(page.locator("#pop-caller")).to_have_text(caller)
            await expect(page.locator("#pop-name")).to_have_text("王五")
            await expect(page.locator("#pop-line")).to_have_text("12315")
            await expect(page.locator("#pop-department")).to_have_text("市场监管局")
            assert await card.get_attribute("data-call-id") == call
            shown_at = int(await card.get_attribute("data-shown-at") or 0) / 1000
            rang = await h.wait(lambda: rings.get(call), 10, "the seat's phone ringing")
            delay = shown_at - rang
            # the offer pop goes out as the seat is dialled: the card may even come first
            print(f"pop card shown {delay * 1000:+.0f} ms from the ring")
            assert delay < 1.0, f"the pop card came {delay:.3f} s after the ring"

            ticket = page.locator("#pop-ticket")
            await expect(ticket).to_have_text(re.compile(r"^12345-\d{8}-\d+$"), timeout=10_000)
            number = await ticket.text_content()
            assert number == await h.wait(
                lambda: next(
                    (
                        p["ticket"]
                        for p in h.published("seats/1001/pop", type="update")
                        if p["call"]["call_id"] == call
                    ),
                    None,
                ),
                10,
                "the update pop with the ticket",
            )
            await expect(page.locator("#state")).to_have_text("通话中", timeout=10_000)
            await expect(page.locator("#pop-waited")).to_have_text(re.compile(r"秒$"))
            await page.screenshot(path=str(SCREENSHOT), full_page=True)

            # the daemon restarts: the page reconnects by itself and refetches the state
            await h.hang_up(call)
            await h.wait(lambda: h.log("call_ended", linkedid=call), 10, "the call ended")
            await h.stop_daemon()
            await expect(page.locator("#link")).to_have_text(re.compile("连接中断"), timeout=10_000)
            await h.start_daemon()
            # sessions are the daemon's memory: the page finds its session gone and goes to
            # the login page by itself; logged in again, the state is fetched afresh
            await expect(page).to_have_url(re.compile(r"/login$"), timeout=20_000)
            await page.fill("#username", "a1001")
            await page.fill("#password", PASSWORD)
            await page.click("#login-button")
            await expect(page.locator("#link")).to_have_text("已连接", timeout=10_000)
            await expect(page.locator("#state")).to_have_text("示闲")
        finally:
            watcher.cancel()
            await browser.close()


async def test_a_110_transfer_pops_with_110s_data(tmp_path: Path) -> None:
    tid = "J" + secrets.token_hex(5)
    caller = f"139{random.randrange(10**8):08d}"
    async with Harness(*web_config(tmp_path)) as h, async_playwright() as pw:
        base = await base_url(h)
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(locale="zh-CN")
            await log_in(page, base, "a1001")
            await page.click("#btn-login")
            await expect(page.locator("#state")).to_have_text("示忙")
            await page.click("#btn-ready")
            await expect(page.locator("#state")).to_have_text("示闲")
            push = {
                "transfer_id": tid, "mode": "voice", "caller": caller, "caller_name": "周九",
                "category": "噪音扰民", "summary": "楼下装修噪音 夜间施工", "address": "幸福路1号",
                "called_at": datetime.now(UTC).isoformat(), "operator_id": "110-0815",
            }  # fmt: skip
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {TOKEN_110}"}, timeout=10
            ) as c:
                resp = await c.post("/api/v1/transfers/110", json=push)
                assert resp.status_code == 202, resp.text
            call = await h.call(LINE110, caller, "周九", variables={"CTI_TRANSFER_ID": tid})
            await expect(page.locator("#pop-card")).to_be_visible(timeout=5_000)
            await expect(page.locator("#pop-caller")).to_have_text(caller)
            await expect(page.locator("#pop-110")).to_be_visible()
            await expect(page.locator("#pop-110-id")).to_have_text(tid)
            await expect(page.locator("#pop-110-category")).to_have_text("噪音扰民")
            await expect(page.locator("#pop-110-summary")).to_have_text("楼下装修噪音 夜间施工")
            await expect(page.locator("#pop-110-address")).to_have_text("幸福路1号")
            await h.hang_up(call)
        finally:
            await browser.close()
