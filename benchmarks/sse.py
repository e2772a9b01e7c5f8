"""Screen-pops to many browsers: the daemon's SSE fan-out beside its MQTT delivery, one run.

Usage: python benchmarks/sse.py [--clients 500] [--calls 20] [--rate 2] [--talk 2]

Needs the testbed (scripts/testbed up) and no other daemon serving FastAGI. A fresh
`cti run` (config/cti.yaml's seats, wrap-up 0) with web users ``bench0..`` (admin: every
stream sees every pop; 100 streams each); --clients simulated browsers, each one HTTP/1.0
connection to /events (close-delimited, so a line is a line) with a logged-in session
cookie, reading Server-Sent Events; one MQTT subscriber on the pops. --calls calls are
originated at --rate per second into 12345 and hung up --talk s after the seat answers;
each makes pops (offer, answer, update with the ticket, end).

Columns: the latency of each pop from its `at` (the daemon stamps it as it hands the pop to
MQTT and to the browsers' hub) to its receipt, per SSE client and for MQTT, p50/p99/max; the
pops received of those expected (pops times clients); the daemon's CPU% (100 = one core) and
peak RSS over the load window, and this benchmark's own CPU% (the clients share the
machine). Every figure is one clock, this machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiomqtt
import httpx
import yaml

from benchmarks._machine import machine_line
from benchmarks.e2e import ProcSampler, other_daemons, pct
from cti.adapters.http.sessions import hash_password
from tests.conftest import MQTT_HOST, MQTT_LOGIN, MQTT_PORT, PROJECT, unique
from tests.real.daemon_harness import Harness, write_config

PASSWORD = "bench-only-password"
PER_USER = 100


def configure(tmp: Path, clients: int) -> tuple[Path, str, int]:
    seats = yaml.safe_load((PROJECT / "config" / "cti.yaml").read_text(encoding="utf-8"))[
        "numberplan"
    ]["seats"]
    path, prefix = write_config(tmp, seats=seats, queue={"wrapup_s": 0, "sticky_window_s": 0})
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    users = (clients + PER_USER - 1) // PER_USER
    pw_hash = hash_password(PASSWORD)
    data["http"]["max_connections"] = clients + 64
    data["web"] = {
        "max_streams_per_user": PER_USER,
        "stream_queue": 1024,
        "users": [
            {"name": f"bench{i}", "role": "admin", "password_hash": pw_hash, "test_only": True}
            for i in range(users)
        ],
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix, users


async def session_cookie(base: str, user: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        form = await c.get("/login")
        token = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        resp = await c.post("/login", data={"username": user, "password": PASSWORD, "csrf": token})
        assert resp.status_code == 303, resp.text
        return str(c.cookies["cti_session"])


class Client:
    """One simulated browser: GET /events over HTTP/1.0, every pop's latency noted."""

    def __init__(self, host: str, port: int, cookie: str) -> None:
        self.host, self.port, self.cookie = host, port, cookie
        self.hello = asyncio.Event()
        self.latencies: dict[str, float] = {}  # pop_id -> seconds

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(
            f"GET /events HTTP/1.0\r\nHost: {self.host}:{self.port}\r\n"
            f"Cookie: cti_session={self.cookie}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        event = ""
        try:
            while line := await reader.readline():
                if line.startswith(b"event:"):
                    event = line[6:].strip().decode()
                elif line.startswith(b"data:"):
                    if event == "hello":
                        self.hello.set()
                    elif event == "pop":
                        now = time.time()
                        body = json.loads(line[5:])
                        self.latencies[body["pop_id"]] = now - float(body["at"])
        finally:
            writer.close()


async def mqtt_pops(prefix: str, out: dict[str, float], ready: asyncio.Event) -> None:
    async with aiomqtt.Client(
        MQTT_HOST, MQTT_PORT, identifier=unique("ssebench"), **MQTT_LOGIN
    ) as m:
        await m.subscribe(f"{prefix}/seats/+/pop", qos=1)
        ready.set()
        async for msg in m.messages:
            now = time.time()
            body = json.loads(msg.payload) if isinstance(msg.payload, bytes) else {}
            out[str(body["pop_id"])] = now - float(body["at"])


def row(name: str, values: list[float], got: int, expected: int) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.1f}"

    top = max(values) if values else None
    return (
        f"{name:<6} {ms(pct(values, 50)):>8} {ms(pct(values, 99)):>8} {ms(top):>8} "
        f"{got:>9}/{expected:<9}"
    )


async def main(args: argparse.Namespace) -> int:
    print(machine_line())
    if others := other_daemons():
        print(f"abort: other `cti run` processes are running: {others}")
        return 2
    with tempfile.TemporaryDirectory(prefix="cti-ssebench-") as tmp:
        config, prefix, users = configure(Path(tmp), args.clients)
        async with Harness(config, prefix) as h:
            up = await h.wait(lambda: h.log("http_listening"), 10, "http")
            host, port = str(up["host"]), int(up["port"])
            base = f"http://{host}:{port}"
            cookies = [await session_cookie(base, f"bench{i}") for i in range(users)]
            print(f"logged in {users} user(s); opening {args.clients} streams", file=sys.stderr)
            clients = [Client(host, port, cookies[i // PER_USER]) for i in range(args.clients)]
            tasks = [asyncio.create_task(c.run()) for c in clients]
            async with asyncio.timeout(60):
                await asyncio.gather(*(c.hello.wait() for c in clients))
            print("streams open; seats ready, then the calls", file=sys.stderr)
            mqtt: dict[str, float] = {}
            mqtt_ready = asyncio.Event()
            tasks.append(asyncio.create_task(mqtt_pops(prefix, mqtt, mqtt_ready)))
            await mqtt_ready.wait()
            seats = yaml.safe_load(config.read_text(encoding="utf-8"))["numberplan"]["seats"]
            for seat in seats:
                await h.seat(str(seat["id"]), {"cmd": "login", "ready": True})
            assert h.proc is not None
            sampler = ProcSampler({"daemon": h.proc.pid, "bench": os.getpid()})
            sampler.start()
            calls: list[str] = []
            for _ in range(args.calls):
                calls.append(await h.call("12345", f"1380000{len(calls):04d}", taken=False))
                await asyncio.sleep(1 / args.rate)
            with contextlib.suppress(AssertionError):
                await h.wait(lambda: all(h.answered_by(c) for c in calls), 30, "answered")
            answered = sum(1 for c in calls if h.answered_by(c))
            print(f"{answered}/{len(calls)} calls answered", file=sys.stderr)
            await asyncio.sleep(args.talk)
            for call in calls:
                await h.hang_up(call)
            await asyncio.sleep(3)  # the end and ticket pops
            sampler.stop()
            pops = set(mqtt)
            sse = [lat for c in clients for pid, lat in c.latencies.items() if pid in pops]
            got = sum(len(pops & c.latencies.keys()) for c in clients)
            for t in tasks:
                t.cancel()
        print(
            f"{args.clients} SSE clients, {args.calls} calls at {args.rate}/s, "
            f"{len(pops)} pops (machine shared: compare the rows, not other runs)"
        )
        print(f"{'path':<6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'received':>19}")
        print(row("sse", sse, got, len(pops) * args.clients))
        print(row("mqtt", list(mqtt.values()), len(pops), len(pops)))
        cpu, rss = sampler.cpu_pct, sampler.rss_peak_kb
        print(
            f"daemon CPU {cpu.get('daemon', 0):.0f}%, peak RSS {rss['daemon'] / 1024:.0f} MB; "
            f"bench (the clients) CPU {cpu.get('bench', 0):.0f}%"
        )
        p99 = pct(sse, 99)
        ok = p99 is not None and p99 < 0.1 and got == len(pops) * args.clients
        print("target p99 < 100 ms, every pop to every client:", "met" if ok else "NOT met")
        return 0 if ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=500)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--rate", type=float, default=2.0)
    p.add_argument("--talk", type=float, default=2.0)
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
