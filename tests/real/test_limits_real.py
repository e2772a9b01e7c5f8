"""Exhaustion through the real daemon (issue 16 items 3, 4, 9): slow HTTP clients, an AMI
peer that floods Newchannel events without a Hangup, and /docs without a CDN. Each time
a normal call on the real testbed is still routed, popped and ticketed.

Everything is bounded and on 127.0.0.1 only: a few hundred sockets, a fake AMI peer in
this process. Another daemon may share the testbed's Asterisk meanwhile: everything here
looks only at this test's own call ids."""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fakeami import FakeAmi
from tests.real.daemon_harness import Harness, write_config
from tests.real.daemon_harness import poll as until

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

SEATS = [
    {
        "id": "1001",
        "endpoint": "Local/1001@seats",
        "skills": {"general": 5, "market": 3, "hr": 1, "env": 1, "health": 1, "dialect": 1},
    }
]
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert found, status
    return int(found.group(1))


def metric(text: str, name: str, **labels: str) -> float:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name + (f"{{{inner}}}" if inner else "")) + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    assert found, f"{name}{labels} not in /metrics"
    return float(found.group(1))


async def normal_call(h: Harness, db: Path) -> str:
    """A citizen calls 12345: routed to seat 1001, offered and answered there (pops), and
    a ticket opened for it; then the citizen hangs up."""
    caller = f"139{random.randrange(10**8):08d}"
    call = await h.call("12345", caller)
    await h.wait(
        lambda: (
            [p for p in h.published("seats/1001/pop", type="offer") if p.get("call_id") == call]
            or [
                p
                for p in h.published("seats/1001/pop", type="offer")
                if (p.get("call") or {}).get("call_id") == call
            ]
        ),
        10,
        f"the offer of {call}",
    )
    await h.wait(lambda: h.answered_by(call) == "1001", 15, f"{call} answered by 1001")
    await until(
        lambda: rows(db, "select number from tickets where create_key = ?", f"main:{call}:create"),
        10,
        f"the ticket of {call}",
    )
    await h.hang_up(call)
    await h.wait(lambda: h.log("call_ended", linkedid=call), 10, f"{call} ended")
    return call


# --------------------------------------------------------------------------- item 3


async def _loris(host: str, port: int, results: list[bytes], period: float) -> None:
    """Open a connection and send one header byte every `period` until it is closed;
    keep what the server said."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        results.append(f"connect failed: {exc}".encode())
        return
    got = bytearray()
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    try:
        for b in request:
            writer.write(bytes([b]))
            try:
                async with asyncio.timeout(period):
                    chunk = await reader.read(4096)
            except TimeoutError:
                continue
            got += chunk
            if not chunk:
                break
            got += await reader.read()  # the rest, up to the close
            break
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        results.append(bytes(got))


async def test_slow_http_clients_are_cut_off_and_calls_go_on(tmp_path: Path) -> None:
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["http"].update(max_connections=40, header_timeout_s=2, body_timeout_s=2)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    db = tmp_path / "cti.db"
    async with Harness(path, prefix) as h:
        up = await h.wait(lambda: h.log("http_listening"), 10, "the HTTP API listening")
        host, port = up["host"], up["port"]
        assert host == "127.0.0.1"
        assert h.proc is not None
        before = fds(h.proc.pid)
        await h.seat("1001", {"cmd": "login", "ready": True})

        results: list[bytes] = []
        started = time.monotonic()
        attack = [asyncio.create_task(_loris(host, port, results, 0.5)) for _ in range(300)]
        await asyncio.sleep(0.5)  # the attack is on
        during = fds(h.proc.pid)
        # a call meanwhile: AMI and the pops are not starved of descriptors
        call = await normal_call(h, db)
        await asyncio.gather(*attack)
        took = time.monotonic() - started

        busy = [r for r in results if r.startswith(b"HTTP/1.1 503 ")]
        slow = [r for r in results if r.startswith(b"HTTP/1.1 408 ")]
        print(
            f"fds before {before}, during the attack {during}; 300 slow clients: "
            f"{len(busy)} refused 503, {len(slow)} cut off 408, all gone after {took:.1f} s"
        )
        assert len(slow) + len(busy) == 300, {r[:40] for r in results}
        assert 1 <= len(slow) <= 40
        assert len(busy) >= 260
        assert took < 15  # the header deadline (2 s) cut them, not the client giving up
        assert during <= before + 40 + 10

        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5) as c:
            assert (await c.get("/healthz")).status_code == 200
            metrics = (await c.get("/metrics")).text
            assert metric(metrics, "cti_http_connections_refused_total") >= 260
            assert metric(metrics, "cti_http_header_timeouts_total") >= len(slow)

            # item 9: the API documentation works without a public CDN
            page = await c.get("/docs")
            assert page.status_code == 200
            assert "http://" not in page.text
            assert "https://" not in page.text
            for ref in re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', page.text):
                assert ref.startswith("/"), ref
                assert (await c.get(ref)).status_code == 200, ref

        # and a second call after the attack, for good measure
        again = await normal_call(h, db)
        assert again != call
    assert not [r for r in h.logs if r.get("level") in {"error", "critical"}]


# --------------------------------------------------------------------------- item 4


def _flood(fake: FakeAmi, count: int, tag: str) -> None:
    for i in range(count):
        uid = f"{tag}.{i}"
        fake.push(
            {
                "Event": "Newchannel",
                "Privilege": "call,all",
                "Channel": f"PJSIP/carrier-{i:08x}",
                "ChannelState": "0",
                "ChannelStateDesc": "Down",
                "CallerIDNum": "10000",
                "Context": "from-carrier",
                "Exten": "12345",
                "Priority": "1",
                "Uniqueid": uid,
                "Linkedid": uid,
            }
        )


async def test_a_newchannel_flood_is_bounded_and_calls_go_on(tmp_path: Path) -> None:
    fake = await FakeAmi(secret="floodsecret").start()
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["ami"]["max_channels"] = 1000
    data["ami"]["nodes"].append(
        {
            "name": "flood",
            "host": "127.0.0.1",
            "port": fake.port,
            "username": "cti",
            "secret": "floodsecret",
        }
    )
    data["http"]["tokens"] = [{"name": "sup", "token": "s" * 32, "scopes": ["calls"]}]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    db = tmp_path / "cti.db"
    try:
        async with Harness(path, prefix) as h:
            await h.wait(lambda: h.log("ami_node_up", node="flood"), 20, "the flood node up")
            await h.wait(lambda: h.log("ami_node_up", node="main"), 20, "the main node up")
            up = await h.wait(lambda: h.log("http_listening"), 10, "the HTTP API listening")
            assert h.proc is not None
            await h.seat("1001", {"cmd": "login", "ready": True})
            rss_before = rss_kib(h.proc.pid)

            _flood(fake, 30_000, "f1")  # 30 times the cap, no Hangup ever
            auth = {"Authorization": "Bearer " + "s" * 32}
            async with httpx.AsyncClient(
                base_url=f"http://{up['host']}:{up['port']}", headers=auth, timeout=10
            ) as c:

                async def refused() -> float:
                    text = (await c.get("/metrics")).text
                    return metric(
                        text, "cti_tracker_anomalies_total", kind="channel_refused_table_full"
                    )

                async with asyncio.timeout(30):
                    while (
                        "channel_refused_table_full" not in (await c.get("/metrics")).text
                        or await refused() < 29_000
                    ):
                        await asyncio.sleep(0.2)
                metrics = (await c.get("/metrics")).text
                assert metric(metrics, "cti_tracker_channels", node="flood") == 1000
                assert metric(metrics, "cti_tracker_max_channels") == 1000
                assert await refused() == 29_000
                full = h.logs_of("call_tracker_full")
                assert 1 <= len(full) <= 4, len(full)  # loud, not a log flood
                assert {r["level"] for r in full} == {"error"}
                assert full[0]["node"] == "flood"
                rss_after = rss_kib(h.proc.pid)

                # the list endpoint pages: never the whole table in one response
                page = (await c.get("/api/v1/calls/active", params={"limit": 1000})).json()
                assert page["total"] >= 1000
                assert len(page["calls"]) == 1000
                started = time.monotonic()
                seen = 0
                offset: int | None = 0
                while offset is not None:
                    got = await c.get(
                        "/api/v1/calls/active", params={"limit": 250, "offset": offset}
                    )
                    assert len(got.content) < 250_000
                    seen += len(got.json()["calls"])
                    offset = got.json()["next_offset"]
                paging = time.monotonic() - started
                assert seen >= 1000
                assert (
                    await c.get("/api/v1/calls/active", params={"limit": 5000})
                ).status_code == 422

                # a normal call on the real node: routed, popped, ticketed
                call = await normal_call(h, db)
            print(
                f"RSS {rss_before} KiB before 30,000 Newchannels, {rss_after} KiB after "
                f"(cap 1,000); {seen} active calls paged in {paging * 1000:.0f} ms"
            )
            assert rss_after - rss_before < 30_000  # KiB: bounded, not 50 MB and growing
            assert h.log("call_ended", linkedid=call) is not None
    finally:
        await fake.stop()
