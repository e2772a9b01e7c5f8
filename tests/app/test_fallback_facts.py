"""The fallback's calls from queue_log into the database (cti/app/fallback_facts.py), on a
real database (SQLite; PostgreSQL too with CTI_TEST_DB)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import select

from cti.adapters.db.records import summary_row
from cti.adapters.db.store import Store
from cti.adapters.db.tables import QUEUE_ENTRIES
from cti.app import fallback_facts
from cti.app.fallback_facts import FallbackFacts
from cti.kpis import QueueEntry
from tests.adapters.test_store import summary
from tests.kpis.test_fallback_log import T, marker, q, sample_plan


class Clock:
    def __init__(self) -> None:
        self.now = float(T)

    def __call__(self) -> float:
        return self.now


def answered(uid: str, call: str, at: float) -> list[str]:
    return [
        marker(at, uid, call, entered=at - 8),
        q(at + 2, uid, "CONNECT", "2", "x", "1", agent="1001"),
        q(at + 30, uid, "COMPLETECALLER", "2", "28", "1", agent="1001"),
    ]


def make(
    path: Path, store: Store, clock: Clock, *, live: set[str] | None = None, acting: bool = True
) -> tuple[FallbackFacts, list[QueueEntry], dict[str, Any]]:
    seen: list[QueueEntry] = []
    state: dict[str, Any] = {"acting": acting}
    facts = FallbackFacts(
        files={"main": path},
        plan=sample_plan(),
        store=store,
        is_live=lambda node, call: call in (live or set()),
        acting=lambda: bool(state["acting"]),
        scan_s=1,
        settle_s=60,
        lookback_s=7 * 86_400,
        log=structlog.get_logger("test"),
        on_stored=seen.extend,
        clock=clock,
    )
    return facts, seen, state


async def entries(store: Store) -> list[tuple[str, str, float]]:
    async with store.engine.connect() as conn:
        res = await conn.execute(
            select(QUEUE_ENTRIES.c.call_id, QUEUE_ENTRIES.c.outcome, QUEUE_ENTRIES.c.wait_s)
        )
        return sorted((r[0], r[1], r[2]) for r in res)


def write(path: Path, lines: list[str]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


async def test_stored_once_after_settling_never_twice_across_restarts(
    tmp_path: Path, store: Store
) -> None:
    path, clock = tmp_path / "queue_log", Clock()
    write(path, answered("u1", "C1", T - 100))
    facts, seen, _ = make(path, store, clock)
    clock.now = T - 100 + 30 + 59  # left 59 s ago: the daemon may still write it
    await facts.scan()
    assert await entries(store) == []
    clock.now += 2
    await facts.scan()
    assert await entries(store) == [("main:C1", "fallback", 10.0)]
    assert [e.call_id for e in seen] == ["C1"]
    assert facts.stored["answered"] == 1
    # a restart reads the file again: nothing twice
    again, seen2, _ = make(path, store, clock)
    await again.scan()
    assert await entries(store) == [("main:C1", "fallback", 10.0)]
    assert seen2 == []
    assert again.stored.total() == 0


async def test_a_call_the_daemon_recorded_or_tracks_gets_no_fallback_entry(
    tmp_path: Path, store: Store
) -> None:
    path, clock = tmp_path / "queue_log", Clock()
    write(path, answered("u1", "REC", T - 500) + answered("u2", "LIVE", T - 400))
    await store.upsert_calls([summary_row(summary(1, call_id="REC"), T)])
    facts, _, _ = make(path, store, clock, live={"LIVE"})
    await facts.scan()
    assert [c for c, _, _ in await entries(store)] == []
    assert facts.dropped["daemon_tracks"] == 1


async def test_a_standby_stores_nothing_and_the_database_down_loses_nothing(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, clock = tmp_path / "queue_log", Clock()
    write(path, [line for i in range(7) for line in answered(f"u{i}", f"C{i}", T - 1000 + i)])
    facts, _, state = make(path, store, clock, acting=False)
    await facts.scan()
    assert await entries(store) == []
    state["acting"] = True
    monkeypatch.setattr(fallback_facts, "WRITE_BATCH", 3)
    real = store.add_fallback_entries
    calls = 0

    async def flaky(rows: list[dict[str, Any]]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("disk I/O error")
        return await real(rows)

    monkeypatch.setattr(store, "add_fallback_entries", flaky)
    with pytest.raises(OSError, match="disk"):
        await facts.scan()
    assert len(await entries(store)) == 3  # the first batch; the rest waits
    await facts.scan()
    assert [c for c, _, _ in await entries(store)] == [f"main:C{i}" for i in range(7)]
    assert facts.stored["answered"] == 7


async def test_a_backlog_is_read_in_steps_and_not_expired_before_its_end(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls of a long outage: the reads stop at MAX_READS_PER_SCAN, and a call whose end is
    further in the file is not finished by the wall clock meanwhile."""
    path, clock = tmp_path / "queue_log", Clock()
    old = T - 86_400
    write(path, [marker(old, "u0", "C0"), q(old + 1, "u0", "CONNECT", "1", "x", "1")])
    write(path, [q(old + 10 + i, "z", "ENTERQUEUE") for i in range(2000)])  # others' lines
    write(path, [q(old + 5000, "u0", "COMPLETEAGENT", "1", "4999", "1", agent="1001")])
    monkeypatch.setattr(fallback_facts, "MAX_READS_PER_SCAN", 1)
    facts, _, _ = make(path, store, clock)
    facts._nodes[0].file._max_read = 4096
    while not await entries(store):
        await facts.scan()
    [(call_id, outcome, wait_s)] = await entries(store)
    assert (call_id, outcome, wait_s) == ("main:C0", "fallback", 1.0)
    async with store.engine.connect() as conn:
        left = (await conn.execute(select(QUEUE_ENTRIES.c.left_at))).scalar_one()
    assert left == old + 5000  # its real end, not the stale cut
