"""Failover of the active/standby pair on the real testbed, with calls flowing (issue 14).

Usage: python benchmarks/failover.py [--kills 10] [--rate 1] [--talk 2] [--settle 6]

Needs the testbed (scripts/testbed up, its PostgreSQL included). Run it under the testbed's
lock (it serves FastAGI on 4573):

  flock -o /tmp/hotline-cti-realtests.lock .venv/bin/python benchmarks/failover.py

Two `cti run` processes (CTI_HA_NODE_ID cti-a, cti-b) on one configuration and a fresh
PostgreSQL database of the testbed, four Local auto-answer seats, wrap-up 0, embedded
tickets. Calls are originated at --rate per second, each talks --talk s and is hung up.
The leader is then killed --kills times, cycling SIGKILL, SIGSTOP (SIGCONT once the standby
has taken over: the old leader must step down and exit) and pg_terminate_backend of its
lease session; each killed daemon is started again at once, as systemd would, and becomes
the standby. --settle s separate the kills.

Columns:
  takeover     the kill to the other daemon's `ha_took_over` log line, p50 and max
  offered      calls originated
  unanswered   offered calls no seat answered (no `answered` call event, no call record
               with outcome answered)
  routed twice calls answered by two seats (two `answered` events with different seats)
  tkt lost/dup answered calls without a ticket in the database / with more than one
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from sqlalchemy import select

from benchmarks._machine import machine_line
from cti.adapters.db.store import Store
from cti.adapters.db.tables import CALL_RECORDS, TICKETS
from tests.dbs import create_pg_database, drop_pg_database
from tests.real.daemon_harness import Harness, write_config

METHODS = ("SIGKILL", "SIGSTOP", "pg_terminate_backend")
SKILLS = {"general": 5, "market": 3, "env": 1, "health": 1, "hr": 1, "dialect": 1}
SEATS: list[dict[str, Any]] = [
    {"id": f"100{i}", "endpoint": f"Local/100{i}@seats", "skills": SKILLS} for i in range(1, 5)
]
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}


def config(tmp: Path, url: str) -> tuple[Path, str]:
    path, prefix = write_config(tmp, seats=SEATS, queue=QUEUE)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["database"]["url"] = url
    data["ha"] = {"enabled": True}
    data["logging"] = {"level": "info", "format": "json"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


class Pair:
    def __init__(self, path: Path, prefix: str) -> None:
        self.h = {
            n: Harness(path, prefix, env={"CTI_HA_NODE_ID": n}, start=False)
            for n in ("cti-a", "cti-b")
        }
        self.took: dict[str, list[float]] = defaultdict(list)  # node -> monotonic of each

    def leader(self) -> str:
        return max(self.h, key=lambda n: self.took[n][-1] if self.took[n] else -1.0)

    def other(self, node: str) -> str:
        return next(n for n in self.h if n != node)

    async def start(self, node: str) -> None:
        h = self.h[node]
        h.logs.clear()
        await h.start_daemon()

    async def watch(self) -> None:
        """Note when each daemon logs its takeover (the logs arrive as they are written)."""
        seen: Counter[str] = Counter()
        while True:
            for n, h in self.h.items():
                k = len(h.logs_of("ha_took_over"))
                if k > seen[n] or (k < seen[n]):
                    if k > seen[n]:
                        self.took[n].append(time.monotonic())
                    seen[n] = k
            await asyncio.sleep(0.02)


async def terminate_lease_session(url: Any, node: str) -> None:
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            f"cti-lease:{node}",
        )
    finally:
        await conn.close()


async def calls(pair: Pair, rate: float, talk: float, stop: asyncio.Event, out: list[str]) -> None:
    driver = pair.h["cti-a"]
    i = 0
    hangups: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        i += 1
        call = await driver.call("12345", f"138{i:08d}", f"市民{i}", taken=False)
        out.append(call)
        hangups.add(asyncio.create_task(hang_up_later(driver, call, talk + 3.0)))
        await asyncio.sleep(1.0 / rate)
    await asyncio.gather(*hangups)


async def hang_up_later(driver: Harness, call: str, after: float) -> None:
    """The caller hangs up `after` s after dialling (ring, hold and --talk s of talk)."""
    await asyncio.sleep(after)
    await driver.hang_up(call)


async def main(args: argparse.Namespace) -> int:
    print(machine_line())
    url = create_pg_database()
    store = Store(url)
    try:
        with tempfile.TemporaryDirectory() as d:
            path, prefix = config(Path(d), url)
            pair = Pair(path, prefix)
            async with pair.h["cti-a"], pair.h["cti-b"]:
                watcher = asyncio.create_task(pair.watch())
                await pair.start("cti-a")
                await pair.h["cti-a"].wait(lambda: pair.took["cti-a"], 15, "a leads")
                await pair.start("cti-b")
                for s in SEATS:
                    await pair.h["cti-a"].seat(s["id"], {"cmd": "login", "ready": True})
                stop = asyncio.Event()
                offered: list[str] = []
                flow = asyncio.create_task(calls(pair, args.rate, args.talk, stop, offered))
                await asyncio.sleep(args.settle)
                takeovers: list[tuple[str, float]] = []
                for k in range(args.kills):
                    method = METHODS[k % len(METHODS)]
                    old = pair.leader()
                    new = pair.other(old)
                    h = pair.h[old]
                    assert h.proc is not None
                    before = len(pair.took[new])
                    t0 = time.monotonic()
                    if method == "SIGKILL":
                        h.proc.kill()
                    elif method == "SIGSTOP":
                        h.proc.send_signal(signal.SIGSTOP)
                    else:
                        await terminate_lease_session(store.url, old)

                    def grew(n: str = new, b: int = before) -> bool:
                        return len(pair.took[n]) > b

                    await pair.h[new].wait(grew, 15, "takeover")
                    took = pair.took[new][-1] - t0
                    takeovers.append((method, took))
                    print(f"kill {k + 1:2d} {method:21s} {old} -> {new}: takeover {took:.2f} s")
                    if method == "SIGSTOP":
                        h.proc.send_signal(signal.SIGCONT)
                    code = await asyncio.wait_for(h.proc.wait(), 15)
                    if method != "SIGKILL" and code != 5:
                        print(f"  ! {old} exited {code}, not 5 (stepped down)")
                    await pair.start(old)  # systemd: Restart=always; it comes back as standby
                    await asyncio.sleep(args.settle)
                stop.set()
                await flow
                await asyncio.sleep(args.talk + 8.0)  # the last calls answered, hung up, stored
                watcher.cancel()
                msgs = pair.h["cti-a"].messages
        answered: dict[str, set[str]] = defaultdict(set)
        for topic, body in msgs:
            if (
                topic == "calls/events"
                and isinstance(body, dict)
                and body.get("type") == "answered"
            ):
                answered[str(body.get("call_id"))].add(str(body.get("answered_by")))
        async with store.engine.connect() as conn:
            recs = {r.linkedid: r.outcome for r in await conn.execute(select(CALL_RECORDS))}
            keys = [r.create_key for r in await conn.execute(select(TICKETS.c.create_key))]
        tickets = Counter(next((c for c in offered if c in k), "") for k in keys)
        was_answered = [c for c in offered if answered.get(c) or recs.get(c) == "answered"]
        unanswered = len(offered) - len(was_answered)
        twice = sum(1 for c in offered if len(answered.get(c, ())) > 1)
        lost = sum(1 for c in was_answered if tickets[c] == 0)
        dup = sum(1 for c in offered if tickets[c] > 1)
        times = [t for _, t in takeovers]
        print()
        print(
            "| kills | methods | takeover p50 | takeover max | offered | unanswered | "
            "routed twice | tickets lost | tickets duplicated |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        mix = ", ".join(f"{m} x{n}" for m, n in Counter(m for m, _ in takeovers).items())
        print(
            f"| {len(times)} | {mix} | {statistics.median(times):.2f} s | {max(times):.2f} s "
            f"| {len(offered)} | {unanswered} | {twice} | {lost} | {dup} |"
        )
        for m in METHODS:
            ts = [t for mm, t in takeovers if mm == m]
            if ts:
                print(f"  {m}: takeover {', '.join(f'{t:.2f}' for t in ts)} s")
        return 0 if max(times) <= 5.0 and not (unanswered or twice or lost or dup) else 1
    finally:
        await store.close()
        drop_pg_database(url)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--rate", type=float, default=1.0, help="calls per second")
    p.add_argument("--talk", type=float, default=2.0, help="seconds each call talks")
    p.add_argument("--settle", type=float, default=6.0, help="seconds between kills")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
