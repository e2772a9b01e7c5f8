"""`scripts/testbed call` places a call the daemon takes and pops, with the caller and the
name given (what a newcomer runs beside `scripts/dev run` to see the console pop)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from tests.conftest import PROJECT
from tests.real.daemon_harness import Harness
from tests.real.web_helpers import web_config

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]


async def test_testbed_call_pops_on_the_ready_seat(tmp_path: Path) -> None:
    caller = f"137{random.randrange(10**8):08d}"
    async with Harness(*web_config(tmp_path)) as h:
        assert (await h.seat("1001", {"cmd": "login", "ready": True}))["ok"]
        proc = await asyncio.create_subprocess_exec(
            str(PROJECT / "scripts" / "testbed"), "call", "12315", "--from", caller,
            "--name", "李四",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert f"calling 12315 from {caller} 李四" in out.decode()
        pops = await h.wait(
            lambda: [
                p for p in h.published("seats/1001/pop", type="offer")
                if p["call"]["caller"] == caller
            ],
            15,
            "the offer pop of the test call",
        )  # fmt: skip
        call = pops[0]["call"]
        assert call["caller_name"] == "李四"
        assert call["line"] == "12315"
        assert call["department"] == "市场监管局"
        await h.hang_up(call["call_id"])
