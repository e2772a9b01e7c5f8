"""The database's disk full, with calls flowing, against the real testbed (issue 15).

The daemon's SQLite lives on a small tmpfs of its own; the test fills it to the last byte
(ENOSPC, a real full filesystem, not a simulated error), places calls while it is full,
then frees the space. While full: every call is answered and popped, /readyz says
``degraded`` with SQLite's reason, the rows wait in memory. After: /readyz is ready again
and every call record, queue entry, seat event and ticket is stored exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.real.daemon_harness import Harness, write_config
from tests.real.daemon_harness import poll as until

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

GENERAL = {"general": 5, "market": 3, "env": 1, "health": 1, "hr": 1, "dialect": 1}
SEAT_IDS = ["1001", "1002", "1003"]
SEATS: list[dict[str, Any]] = [
    {"id": s, "endpoint": f"Local/{s}@seats", "skills": GENERAL} for s in SEAT_IDS
]
QUEUE = {"ring_timeout_s": 5, "wrapup_s": 1.0, "overflow": [], "sticky_window_s": 0}
CALLERS = [f"1390000{i:04d}" for i in range(6)]  # distinct: no ticket is merged


@contextlib.contextmanager
def small_disk(where: Path, size: str = "16m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (the test runs as root, as the testbed)."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the filesystem says ENOSPC; the file, to free it again."""
    filler = disk / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        return conn.execute(sql).fetchall()


def tickets_by_call(db: Path) -> Counter[str]:
    return Counter(
        c for (ids,) in query(db, "select call_ids from tickets") for c in json.loads(ids)
    )


async def test_disk_full_calls_are_served_and_every_row_lands_once(tmp_path: Path) -> None:
    config, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    with small_disk(tmp_path / "disk") as disk:
        db = disk / "cti.db"
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["database"]["url"] = f"sqlite+aiosqlite:///{db}"
        data["http"] = {"enabled": True, "host": "127.0.0.1", "port": 0, "tokens": []}
        config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        async with Harness(config, prefix) as h:
            up = await h.wait(lambda: h.log("http_listening"), 10, "the HTTP API listening")
            async with httpx.AsyncClient(
                base_url=f"http://{up['host']}:{up['port']}", timeout=10
            ) as c:
                for seat in SEAT_IDS:
                    await h.seat(seat, {"cmd": "login", "ready": True})
                assert (await c.get("/readyz")).status_code == 200
                before = query(db, "select count(*) from call_records")[0][0]
                filler = fill(disk)
                full_at = time.monotonic()
                # the heartbeat (every 2 s) and the seat events fail: degraded, with the reason
                r = await until_status(c, 503, 30)
                detail = r.json()["parts"]["database"]["detail"]
                assert r.json()["not_ready"] == ["database"]
                assert detail.startswith("degraded"), detail
                assert "disk is full" in detail, detail
                degraded_after = time.monotonic() - full_at
                calls = []
                for i, caller in enumerate(CALLERS):
                    calls.append(await serve_one(h, caller, f"市民{i}"))
                # nothing of them could be stored: the rows wait in memory
                assert query(db, "select count(*) from call_records")[0][0] == before
                r = await c.get("/readyz")
                assert r.status_code == 503
                pending = int(r.json()["parts"]["database"]["detail"].split("; ")[1].split()[0])
                assert pending >= len(CALLERS), r.json()
                metrics = (await c.get("/metrics")).text
                assert "cti_call_records_dropped_total 0" in metrics
                assert h.proc is not None
                assert h.proc.returncode is None  # the daemon kept serving
                # the disk recovers
                filler.unlink()
                freed_at = time.monotonic()
                await until_status(c, 200, 30)
                recovered_s = time.monotonic() - freed_at
                ids = [f"main:{x}" for x in calls]
                got = await until(
                    lambda: (t := tickets_by_call(db)) and all(t[i] for i in ids) and t,
                    30,
                    "a ticket for every call",
                )
                assert all(got[i] == 1 for i in ids), got
                recs = Counter(r[0] for r in query(db, "select call_id from call_records"))
                assert all(recs[i] == 1 for i in ids), recs
                entries = Counter(r[0] for r in query(db, "select call_id from queue_entries"))
                assert all(entries[i] == 1 for i in ids), entries
                keys = query(
                    db, "select key, count(*) from outbox group by key having count(*) > 1"
                )
                assert keys == []
                dup_seats = query(
                    db,
                    "select seat, at, status, count(*) from seat_events "
                    "group by seat, at, status, previous, cause, call_id having count(*) > 1",
                )
                assert dup_seats == []
                talking = {
                    r[0]
                    for r in query(db, "select call_id from seat_events where status = 'talking'")
                }
                assert set(calls) <= talking  # the seat events of the full spell landed too
                metrics = (await c.get("/metrics")).text
                assert "cti_call_records_pending 0" in metrics
                assert 'cti_call_records_poisoned_total{kind="call"} 0' in metrics
                assert h.logs_of("call_records_write_recovered")
                print(  # the figures for docs/reliability.md (pytest -s)
                    f"disk-full: degraded after {degraded_after:.1f} s, "
                    f"{pending} rows pending, ready again {recovered_s:.1f} s after the free"
                )


async def serve_one(h: Harness, caller: str, name: str) -> str:
    """A call answered by a seat, its answer pop published, hung up and ended."""
    call = await h.call("12345", caller, name)
    seat = await h.wait(lambda: h.answered_by(call), 15, f"{call} answered")

    def answer_pop() -> list[Any]:
        pops = h.published(f"seats/{seat}/pop", type="answer")
        return [p for p in pops if p["call"]["call_id"] == call]

    await h.wait(answer_pop, 10, f"the answer pop of {call}")
    await h.hang_up(call)
    await h.wait(lambda: h.log("call_ended", linkedid=call), 10, f"{call} ended")
    return call


async def until_status(c: httpx.AsyncClient, status: int, timeout: float) -> httpx.Response:
    t0 = time.monotonic()
    while (r := await c.get("/readyz")).status_code != status:
        assert time.monotonic() - t0 < timeout, f"/readyz never {status}: {r.text}"
        await asyncio.sleep(0.3)
    return r
