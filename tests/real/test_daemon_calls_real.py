"""The daemon end to end on a real call: AMI -> call tracking -> record in SQLite, call
events on MQTT, a `call_ended` log line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from cti.adapters.ami import AmiClient, EventQueue
from cti.events import AmiEvent
from tests.conftest import AMI_PORT, AMI_SECRET, MQTT_HOST, MQTT_LOGIN, MQTT_PORT, bed_node, unique

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

CONFIG = """\
ami:
  nodes:
    - {{name: main, host: 127.0.0.1, port: {port}, username: cti}}
mqtt: {{host: {mqtt_host}, port: {mqtt_port}, prefix: {prefix}, client_id: {client_id},
       username: hotline-cti, password: ctisecret}}
database: {{url: "sqlite+aiosqlite:///{db}"}}
logging: {{level: info, format: json}}
http: {{port: 0}}
"""


async def wait_log(
    proc: asyncio.subprocess.Process,
    event: str,
    timeout: float = 20,
    logger: str = "cti",
    **match: Any,
) -> Any:
    """The next log record of `event` from `logger` whose fields equal `match` (the testbed
    is shared: other tests' calls show up in this daemon's log too)."""
    assert proc.stderr is not None
    async with asyncio.timeout(timeout):
        while line := await proc.stderr.readline():
            rec = json.loads(line)
            if (
                rec.get("event") == event
                and rec.get("logger") == logger
                and all(rec.get(k) == v for k, v in match.items())
            ):
                return rec
    msg = f"daemon exited before {event}"
    raise AssertionError(msg)


async def test_an_answered_call_is_recorded_and_published(tmp_path: Path) -> None:
    prefix = f"test/{unique()}"
    db = tmp_path / "cti.db"
    cfg = tmp_path / "cti.yaml"
    cfg.write_text(
        CONFIG.format(
            port=AMI_PORT,
            mqtt_host=MQTT_HOST,
            mqtt_port=MQTT_PORT,
            prefix=prefix,
            client_id=unique("cti"),
            db=db,
        ),
        encoding="utf-8",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cti",
        "run",
        "-c",
        str(cfg),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CTI_AMI_SECRET": AMI_SECRET},
    )
    q = EventQueue(100_000)
    driver = AmiClient(bed_node(name="driver"), q)
    drive = asyncio.create_task(driver.run())
    try:
        await wait_log(proc, "ami_node_up")
        await driver.wait_connected(5)
        async with aiomqtt.Client(
            MQTT_HOST, MQTT_PORT, identifier=unique("sub"), **MQTT_LOGIN
        ) as sub:
            await sub.subscribe(f"{prefix}/calls/events", qos=1)
            a, b = unique("a"), unique("b")
            await driver.action(
                {
                    "Action": "Originate",
                    "Channel": "Local/12315@inbound",
                    "Context": "customer",
                    "Exten": "s",
                    "Priority": "1",
                    "Async": "true",
                    "ChannelId": a,
                    "OtherChannelId": b,
                    "CallerID": '"张三" <13800138000>',
                }
            )
            held = None
            async with asyncio.timeout(10):
                while held is None:
                    ev = await q.get()
                    if (
                        isinstance(ev, AmiEvent)
                        and ev.name == "MusicOnHoldStart"
                        and ev.headers.get("Uniqueid") == b
                    ):
                        held = ev.headers["Channel"]
            await driver.action(
                {
                    "Action": "Redirect",
                    "Channel": held,
                    "Context": "to-seat",
                    "Exten": "201",
                    "Priority": "1",
                }
            )
            got: list[dict[str, Any]] = []
            async with asyncio.timeout(15):
                async for m in sub.messages:
                    assert isinstance(m.payload, bytes)
                    body = json.loads(m.payload)
                    if body["call_id"] != a:
                        continue
                    got.append(body)
                    if body["type"] == "answered":
                        await asyncio.sleep(0.5)
                        await driver.action({"Action": "Hangup", "Channel": held})
                    if body["type"] == "ended":
                        break
        assert [g["type"] for g in got] == ["answered", "ended"]
        ended = got[-1]
        assert ended["schema_version"] == 1
        assert (ended["caller"], ended["caller_name"], ended["dialed"]) == (
            "13800138000",
            "张三",
            "12315",
        )
        assert (ended["outcome"], ended["answered_by"]) == ("answered", "201")
        assert ended["talk_s"] > 0.3
        logged = await wait_log(proc, "call_ended", linkedid=a)
        assert logged.get("caller") == "138****8000", logged  # masked in logs
    finally:
        drive.cancel()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                await proc.wait()
    assert proc.returncode == 0
    # the record is in the database once the daemon has stopped (flushed on shutdown)
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select call_id, caller, caller_name, outcome, answered_by from call_records "
            "where linkedid = ?",
            (a,),
        ).fetchall()
    assert rows == [(f"main:{a}", "13800138000", "张三", "answered", "201")]
