"""`cti run` as a process against the real testbed: start, survive an Asterisk restart,
stop on SIGTERM within a second, and refuse a wrong secret with a clear exit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AMI_PORT, AMI_SECRET, TESTBED

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

CONFIG = """\
ami:
  nodes:
    - name: main
      host: 127.0.0.1
      port: {port}
      username: cti
      ping_interval: 2
      ping_timeout: 1
      reconnect_min: 0.2
      reconnect_max: 1
database:
  url: sqlite+aiosqlite:///{db}
logging:
  level: info
  format: json
http:
  port: 0
"""


async def start_daemon(tmp_path: Path, secret: str) -> asyncio.subprocess.Process:
    cfg = tmp_path / "cti.yaml"
    cfg.write_text(CONFIG.format(port=AMI_PORT, db=tmp_path / "cti.db"), encoding="utf-8")
    env = {**os.environ, "CTI_AMI_SECRET": secret}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cti",
        "run",
        "-c",
        str(cfg),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def next_log(
    proc: asyncio.subprocess.Process,
    event: str,
    seen: list[dict[str, Any]],
    timeout: float = 20.0,
    **match: Any,
) -> dict[str, Any]:
    assert proc.stderr is not None
    async with asyncio.timeout(timeout):
        while True:
            line = await proc.stderr.readline()
            if not line:
                msg = f"daemon exited before logging {event}: {seen[-5:]}"
                raise AssertionError(msg)
            rec: dict[str, Any] = json.loads(line)  # every log line is one JSON object
            seen.append(rec)
            if rec.get("event") == event and all(rec.get(k) == v for k, v in match.items()):
                return rec


async def test_runs_survives_asterisk_restart_and_stops_within_a_second(tmp_path: Path) -> None:
    proc = await start_daemon(tmp_path, AMI_SECRET)
    seen: list[dict[str, Any]] = []
    try:
        up = await next_log(proc, "ami_node_up", seen, node="main", reconnect=False)
        assert up["version"]
        restart = await asyncio.create_subprocess_exec(
            str(TESTBED),
            "restart-asterisk",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        down = await next_log(proc, "ami_node_down", seen, timeout=30, node="main")
        assert down["reason"]
        again = await next_log(proc, "ami_node_up", seen, timeout=60, node="main", reconnect=True)
        assert again["gap_s"] > 0  # the gap is logged with its length
        assert await restart.wait() == 0
        assert proc.returncode is None  # kept running all along
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            code = await proc.wait()
        elapsed = time.monotonic() - t0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0
    assert elapsed < 1.0, f"SIGTERM to exit took {elapsed:.2f} s"
    assert not [r for r in seen if r.get("level") in {"error", "critical"}], seen


async def test_wrong_secret_exits_3_with_a_clear_message(tmp_path: Path) -> None:
    proc = await start_daemon(tmp_path, "wrong-secret")
    async with asyncio.timeout(20):
        _, err = await proc.communicate()
    assert proc.returncode == 3
    fatal = [json.loads(line) for line in err.decode().splitlines() if '"cti_fatal"' in line]
    assert fatal, err.decode()
    assert "Authentication failed" in fatal[0]["error"]
    assert "CTI_AMI_SECRET" in fatal[0]["hint"]


async def test_bad_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "ami:\n  nodes:\n    - name: main\n      username: cti\n      port: x\n", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cti",
        "run",
        "-c",
        str(cfg),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    text = err.decode()
    assert "ami.nodes.0.port" in text
    assert "ami.nodes.0.secret" in text
