"""Write-behind for call records: the core never awaits the database.

:meth:`RecordWriter.add` is synchronous and a writer task stores records in batches, one
transaction per batch (:meth:`~cti.adapters.db.store.Store.upsert_calls`; after an idle spell it
waits `linger_s` so the rows of one tick share a transaction), so a slow disk
or a locked database never stalls call handling. A batch that fails is retried with
backoff; records are kept in memory meanwhile (bounded, overflow logged at error level)
and writes are idempotent (upsert on ``call_id``), so a retry never doubles a record.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from structlog.typing import FilteringBoundLogger

from cti.adapters.backoff import backoff_delay
from cti.adapters.db.rows import queue_entry_row
from cti.adapters.db.store import Store
from cti.calls.model import CallSummary
from cti.kpis.facts import QueueEntry

__all__ = ["RecordWriter", "summary_row"]

# the rows that follow a call record in the queue and go in its transaction
_WITH_THE_RECORD = frozenset({"outbox", "callback", "entry"})


def summary_row(summary: CallSummary, stored_at: float) -> dict[str, Any]:
    data = summary.to_json()
    return {
        "satisfaction": None,  # set by the survey (RecordWriter.add, Store.rate_call)
        "call_id": f"{summary.node}:{summary.call_id}",
        "node": summary.node,
        "linkedid": summary.call_id,
        "caller": data["caller"],
        "caller_name": data["caller_name"],
        "dialed": data["dialed"],
        "line": data["line"],
        "started_at": data["started_at"],
        "answered_at": data["answered_at"],
        "ended_at": data["ended_at"],
        "answered_by": data["answered_by"],
        "rang": data["rang"],
        "outcome": data["outcome"],
        "hangup_by": data["hangup_by"],
        "cause": data["cause"],
        "transfers": data["transfers"],
        "wait_s": data["wait_s"],
        "talk_s": data["talk_s"],
        "history_complete": data["history_complete"],
        "stored_at": stored_at,
    }


class RecordWriter:
    """Write-behind for call records: `add` never blocks, a task stores batches."""

    def __init__(
        self,
        store: Store,
        *,
        log: FilteringBoundLogger | None = None,
        batch: int = 500,
        max_pending: int = 200_000,
        clock: Any = time.time,
        on_commit: Callable[[], None] | None = None,
        linger_s: float = 0.05,
    ) -> None:
        self._store = store
        # after the first row of an idle spell, wait this long before writing, so the rows of
        # one tick (a call's record, its seat changes, the next call's draft ticket) share a
        # transaction: at 20 calls/s that is ~1 commit per call instead of ~5 (issue 12).
        # Bounded delay; the rows are in memory meanwhile, as they are during any write.
        self._linger = linger_s
        self._on_commit = on_commit
        self._log: FilteringBoundLogger = log or structlog.get_logger("cti.store")
        self._batch = batch
        self._max = max_pending
        self._clock = clock
        # ("call", row) / ("seat", row) / ("outbox", row), in the order they happened; a
        # call's ticket operations follow its record and are never split from it
        self._pending: deque[tuple[str, dict[str, Any]]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.failing = 0  # failed batches in a row (0 after a success): /readyz

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(
        self,
        summary: CallSummary,
        outbox_rows: Sequence[dict[str, Any]] = (),
        *,
        satisfaction: str | None = None,
        callback: dict[str, Any] | None = None,
        entries: Sequence[QueueEntry] = (),
    ) -> None:
        """A finished call (stored by upsert on its call_id), with its ticket operations
        (outbox rows), which are stored in the same transaction; `satisfaction`: the
        caller's survey rating, when it came before the call ended; `callback`: its entry
        on the missed-call list (cti/adapters/db/rows.py), same transaction; `entries`: its
        queue-entry facts (KPIs), same transaction."""
        if len(self._pending) >= self._max:
            self._pending.popleft()
            self.dropped += 1
            self._log.error(
                "call_record_dropped",
                dropped=self.dropped,
                max_pending=self._max,
                hint="the database has been failing for a long time",
            )
        row = summary_row(summary, self._clock())
        row["satisfaction"] = satisfaction
        self._pending.append(("call", row))
        if callback is not None:
            self._pending.append(("callback", callback))
        self._pending.extend(("entry", queue_entry_row(e)) for e in entries)
        self._pending.extend(("outbox", r) for r in outbox_rows)
        self._idle.clear()
        self._wake.set()

    def add_outbox(self, rows: Sequence[dict[str, Any]]) -> None:
        """Ticket operations on their own (the draft when a call is taken)."""
        self._pending.extend(("outbox", r) for r in rows)
        self._idle.clear()
        self._wake.set()

    def add_seat_event(self, row: dict[str, Any]) -> None:
        """A seat state change: seat, at, status, reason, previous, cause, call_id."""
        self._pending.append(("seat", row))
        self._idle.clear()
        self._wake.set()

    async def flushed(self) -> None:
        """Wait until everything added so far is stored (tests, shutdown)."""
        await self._idle.wait()

    async def run(self) -> None:
        attempt = 0
        rng = random.Random()  # noqa: S311  # nosec B311  # jitter, not crypto
        while True:
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                if self._linger > 0 and len(self._pending) < self._batch:
                    await asyncio.sleep(self._linger)
                continue
            n = min(self._batch, len(self._pending))
            while n < len(self._pending) and self._pending[n][0] in _WITH_THE_RECORD:
                n += 1  # a call's rows go in its record's transaction
            rows = [self._pending.popleft() for _ in range(n)]
            try:
                await self._store.upsert_calls(
                    [r for kind, r in rows if kind == "call"],
                    [r for kind, r in rows if kind == "seat"],
                    [r for kind, r in rows if kind == "outbox"],
                    [r for kind, r in rows if kind == "callback"],
                    [r for kind, r in rows if kind == "entry"],
                )
            except asyncio.CancelledError:
                # shutdown mid-batch: keep the rows for the final flush (the upsert is
                # idempotent if the transaction did commit)
                self._give_back(rows)
                raise
            except (SQLAlchemyError, OSError) as exc:
                self._give_back(rows)
                self.failures += 1
                self.failing += 1
                delay = backoff_delay(attempt, 0.2, 10.0, rng)
                attempt += 1
                self._log.error(
                    "call_records_write_failed",
                    error=str(exc)[:300],
                    pending=len(self._pending),
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.failing = 0
            self.written += len(rows)
            if self._on_commit is not None:
                self._on_commit()

    def _give_back(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        """Put a failed batch back in front, oldest first; trim the oldest past the bound."""
        self._pending.extendleft(reversed(rows))
        while len(self._pending) > self._max:
            self._pending.popleft()
            self.dropped += 1
