"""Screen-pops to many browsers: the daemon's SSE fan-out beside its MQTT delivery, one run.

Usage: python benchmarks/sse.py [--clients 500] [--calls 20] [--rate 2] [--talk 2]
                                [--procs 2] [--profile FILE]

Needs the testbed (scripts/testbed up) and no other daemon serving FastAGI. A fresh
`cti run` (config/cti.yaml's seats, wrap-up 0) with web users ``bench0..`` (admin: every
stream sees every publish — pops, states, queue, calls, stats; 100 streams each);
--clients simulated browsers, each one HTTP/1.0 connection to /events (close-delimited, so
a line is a line) with a logged-in session cookie, spread over --procs client processes
(benchmarks/sse_clients.py), and one MQTT subscriber on the pops in a process of its own.
--calls calls are originated at --rate per second into 12345, each hung up --talk s after
a seat answered it; each makes pops (offer, answer, update with the ticket, end).

Measuring the daemon, not the clients: on 2 vCPUs, 500 clients in the harness's own event
loop delayed their own reads (and the MQTT subscriber's); now each client process stamps a
chunk in ``data_received`` before any parsing and reports how late its loop ran (a 10 ms
ticker): "their loops late" says how much of a latency may be the clients'.

Columns: the latency of each pop from its `at` to its receipt, per SSE client and for MQTT,
p50/p99/max, for all pops and per type. `at` is stamped as the daemon builds the pop: an
`offer`'s includes its caller-history lookup (up to 200 ms, `pop_history_incomplete` past
it). The pops received of those expected (pops times clients); the daemon's CPU% (100 =
one core) and peak RSS over the load window, the client processes' CPU%; events per stream
and socket reads per stream (an upper bound of the daemon's writes: batching shows there).
--profile records the daemon with py-spy (raw collapsed stacks) over the load window.
Every figure is one clock, this machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import yaml

from benchmarks._machine import machine_line
from benchmarks.e2e import ProcSampler, other_daemons, pct
from cti.adapters.http.sessions import hash_password
from tests.conftest import PROJECT
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


def row(name: str, values: list[float], got: int, expected: int) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.1f}"

    top = max(values) if values else None
    return (
        f"{name:<6} {ms(pct(values, 50)):>8} {ms(pct(values, 99)):>8} {ms(top):>8} "
        f"{got:>9}/{expected:<9}"
    )


class Worker:
    """One process of clients (benchmarks/sse_clients.py): ``ready`` when its streams are
    open, its results when told to stop."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc: asyncio.subprocess.Process | None = None
        self.result: dict[str, Any] = {}

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).with_name("sse_clients.py")),
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(90):
            line = await self.proc.stdout.readline()
        if line.strip() != b"ready":
            msg = f"client worker {self.argv[0]} did not start: {line!r}"
            raise RuntimeError(msg)

    async def stop(self) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(b"stop\n")
        await self.proc.stdin.drain()
        self.result = json.loads(await self.proc.stdout.readline())
        await self.proc.wait()


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def one_call(h: Harness, caller: str, talk: float) -> bool:
    """A citizen calls 12345 and hangs up `talk` s after a seat answered (or after 30 s
    unanswered): calls queue for the five seats instead of all waiting for the last."""
    call = await h.call("12345", caller, taken=False)
    answered = True
    try:
        await h.wait(lambda: h.answered_by(call), 30, f"{call} answered")
        await asyncio.sleep(talk)
    except AssertionError:
        answered = False
    await h.hang_up(call)
    return answered


def by_type(lat: dict[str, list[float]], kind: str | None) -> list[float]:
    return [v for pid, vs in lat.items() if kind is None or pid.endswith(":" + kind) for v in vs]


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
            print(
                f"logged in {users} user(s); opening {args.clients} streams in "
                f"{args.procs} client process(es)",
                file=sys.stderr,
            )
            workers = [Worker(["mqtt", "--prefix", prefix])]
            # stream i is user i // PER_USER's: no user has more than PER_USER streams
            first = 0
            for n in split(args.clients, args.procs):
                per = ",".join(cookies[i // PER_USER] for i in range(first, first + n))
                first += n
                workers.append(
                    Worker(["sse", "--host", host, "--port", str(port), "--clients", str(n),
                            "--cookies", per])
                )  # fmt: skip
            await asyncio.gather(*(w.start() for w in workers))
            print("streams open; seats ready, then the calls", file=sys.stderr)
            seats = yaml.safe_load(config.read_text(encoding="utf-8"))["numberplan"]["seats"]
            for seat in seats:
                await h.seat(str(seat["id"]), {"cmd": "login", "ready": True})
            assert h.proc is not None
            pids = {"daemon": h.proc.pid, "bench": os.getpid()}
            pids |= {f"w{i}": w.proc.pid for i, w in enumerate(workers) if w.proc is not None}
            sampler = ProcSampler(pids)
            sampler.start()
            spy = None
            if args.profile:
                spy = await asyncio.create_subprocess_exec(
                    str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                    str(h.proc.pid), "-r", "250", "-f", "raw", "-o", args.profile,
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
            calls: list[asyncio.Task[bool]] = []
            for i in range(args.calls):
                calls.append(asyncio.create_task(one_call(h, f"1380000{i:04d}", args.talk)))
                await asyncio.sleep(1 / args.rate)
            answered = sum(await asyncio.gather(*calls))
            print(f"{answered}/{len(calls)} calls answered", file=sys.stderr)
            await asyncio.sleep(3)  # the end and ticket pops
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                await spy.wait()
            sampler.stop()
            await asyncio.gather(*(w.stop() for w in workers))
            overflows = len(h.logs_of("web_stream_overflow"))
            incomplete = len(h.logs_of("pop_history_incomplete"))
        mqtt: dict[str, list[float]] = workers[0].result["pops"]
        sse: dict[str, list[float]] = {}
        for w in workers[1:]:
            for pid, vs in w.result["pops"].items():
                if pid in mqtt:
                    sse.setdefault(pid, []).extend(vs)
        pops = len(mqtt)
        got = sum(len(vs) for vs in sse.values())
        print(
            f"{args.clients} SSE clients in {args.procs} process(es), {args.calls} calls at "
            f"{args.rate}/s, {answered} answered, {pops} pops "
            "(machine shared: compare the rows, not other runs)"
        )
        print(f"{'path':<13} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'received':>19}")
        for kind in (None, "offer", "answer", "update", "end"):
            n = sum(1 for p in mqtt if kind is None or p.endswith(":" + kind))
            name = kind or "all"
            s_lat, m_lat = by_type(sse, kind), by_type(mqtt, kind)
            print(row(f"sse {name}", s_lat, len(s_lat), n * args.clients))
            print(row(f"mqtt {name}", m_lat, len(m_lat), n))
        cpu, rss = sampler.cpu_pct, sampler.rss_peak_kb
        clients_cpu = sum(v for k, v in cpu.items() if k.startswith("w"))
        lags = [x for w in workers for x in w.result["lag"]]
        print(
            f"daemon CPU {cpu.get('daemon', 0):.0f}%, peak RSS {rss['daemon'] / 1024:.0f} MB; "
            f"client processes CPU {clients_cpu:.0f}% (their loops late p99 "
            f"{1000 * (pct(lags, 99) or 0):.1f} ms, max {1000 * max(lags, default=0):.1f} ms); "
            f"harness CPU {cpu.get('bench', 0):.0f}%"
        )
        events: dict[str, int] = {}
        for w in workers[1:]:
            for name, n in w.result["events"].items():
                events[name] = events.get(name, 0) + n
        chunks = sum(int(w.result["chunks"]) for w in workers[1:])
        print(
            f"per stream: {sum(events.values()) / args.clients:.0f} events "
            f"({', '.join(f'{k} {v / args.clients:.0f}' for k, v in sorted(events.items()))}) "
            f"in {chunks / args.clients:.0f} socket reads"
        )
        closed = sum(int(w.result["closed"]) for w in workers[1:])
        print(
            f"streams closed by the daemon: {closed} ({overflows} web_stream_overflow); "
            f"pop_history_incomplete: {incomplete}; load {os.getloadavg()[0]:.2f}"
        )
        p99 = pct(by_type(sse, None), 99)
        ok = p99 is not None and p99 < 0.1 and got == pops * args.clients
        print("target p99 < 100 ms, every pop to every client:", "met" if ok else "NOT met")
        return 0 if ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=500)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--rate", type=float, default=2.0)
    p.add_argument("--talk", type=float, default=2.0)
    p.add_argument("--procs", type=int, default=2, help="client processes (SSE)")
    p.add_argument("--profile", default="", help="py-spy raw profile of the daemon to FILE")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
