"""Write-behind for call records: the core never awaits the database.

:meth:`RecordWriter.add` is synchronous and a writer task stores records in batches, one
transaction per batch (:meth:`~cti.adapters.db.store.Store.upsert_calls`; after an idle spell it
waits `linger_s` so the rows of one tick share a transaction), so a slow disk
or a locked database never stalls call handling. Writes are idempotent (upsert on
``call_id``, outbox rows once per key), so a retry never doubles a record.

A failed batch is one of two kinds (:func:`write_unavailable`, issue 15 / issue 12):

* the database cannot be written now (disk full, I/O error, locked, server gone): the rows
  are kept in memory, in order, and the batch is retried with backoff until the database
  takes it; ``failing`` (and ``last_error``) make /readyz say ``degraded`` meanwhile.
* the rows themselves (a constraint, a value a column or the driver refuses): the batch is
  retried row by row, each in its own transaction, so the good rows land; a row that fails
  alone is *poison*: logged at error level (numbers masked), counted (``poisoned``), and
  left out of the retry loop so it never blocks the rows after it.

Memory is bounded by ``max_pending`` rows (``database.max_pending_rows``). At the cap the
oldest rows are dropped, oldest first, counted per kind and logged at error level, except
ticket operations (outbox rows): they are set aside and kept while any other row can be
dropped instead; only when the memory holds nothing but ticket operations is the oldest of
them dropped, each one logged at error level with its key (``tickets_dropped``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    ProgrammingError,
    SQLAlchemyError,
    StatementError,
)
from structlog.typing import FilteringBoundLogger

from cti.adapters.backoff import backoff_delay
from cti.adapters.db.leader import is_fenced
from cti.adapters.db.rows import queue_entry_row
from cti.adapters.db.store import Store
from cti.calls.model import CallSummary
from cti.kpis.facts import QueueEntry
from cti.logs import mask_text

__all__ = ["RecordWriter", "summary_row", "write_unavailable"]

# the rows that follow a call record in the queue and go in its transaction
_WITH_THE_RECORD = frozenset({"outbox", "callback", "entry"})
_KINDS = ("call", "seat", "outbox", "callback", "entry")
_Row = tuple[str, dict[str, Any]]
# a failed batch is retried at most this long after (with jitter): a retry against a full
# disk costs one failed transaction, and the time to recover after the space is freed is
# this retry (benchmarks/faults.py disk-full: 10 s here made it 6-8 s, over the 5 s target)
_RETRY_MAX_S = 2.0


def write_unavailable(exc: BaseException) -> bool:
    """True when a failed write means the database cannot be written now (SQLite's
    ``database or disk is full``, ``disk I/O error``, ``database is locked``, a server gone):
    keep the rows and retry. False when the rows are the problem (a constraint, a value
    a column or the driver refuses): only a row-by-row retry finds which. Anything not
    known to be about the rows counts as unavailable: a guess must never lose a row."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        # sqlite3 reports an unbindable value as ProgrammingError/InterfaceError;
        # OperationalError (full, I/O, locked) and the rest are about the database
        return not isinstance(exc, IntegrityError | DataError | ProgrammingError | InterfaceError)
    # a value SQLAlchemy itself could not turn into a parameter (a JSON column fed an
    # object json cannot encode) fails before the driver: the row's fault
    return not isinstance(exc, StatementError)


def _reason(exc: BaseException) -> str:
    """The driver's own message (``database or disk is full``), numbers masked: short
    enough for /readyz, without the statement and its parameters."""
    orig = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    return mask_text(str(orig)[:200]) or type(exc).__name__


def _masked(row: dict[str, Any]) -> dict[str, str]:
    """A poison row as it goes into the log: each value cut short, numbers masked."""
    return {
        k: mask_text(str(v)[:200], phone_field=k in {"caller", "dialed"}) for k, v in row.items()
    }


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
        max_pending: int = 200_000,  # database.max_pending_rows
        clock: Any = time.time,
        on_commit: Callable[[], None] | None = None,
        linger_s: float = 0.05,
        on_fenced: Callable[[], None] | None = None,
    ) -> None:
        # active/standby: the database refused a batch of a stale epoch (another daemon
        # leads now and owns these facts; it adopts the calls): the batch is dropped, never
        # retried, and `on_fenced` tells the daemon to step down
        self._on_fenced = on_fenced
        self.fenced = 0
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
        self._pending: deque[_Row] = deque()
        # ticket operations set aside at the cap (see the module doc): older than every row
        # in _pending, so they are written first, in their order
        self._held: deque[_Row] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.written = 0
        self.dropped_by_kind: Counter[str] = Counter()  # at the cap
        self.poisoned: Counter[str] = Counter()  # rows the database refused on their own
        self.failures = 0
        self.failing = 0  # failed batches in a row (0 after a success): /readyz
        self.last_error = ""  # of the last failed batch, while failing

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._held)

    @property
    def max_pending(self) -> int:
        return self._max

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_kind.values())

    @property
    def tickets_dropped(self) -> int:
        return self.dropped_by_kind["outbox"]

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
        row = summary_row(summary, self._clock())
        row["satisfaction"] = satisfaction
        self._pending.append(("call", row))
        if callback is not None:
            self._pending.append(("callback", callback))
        self._pending.extend(("entry", queue_entry_row(e)) for e in entries)
        self._pending.extend(("outbox", r) for r in outbox_rows)
        self._added()

    def add_outbox(self, rows: Sequence[dict[str, Any]]) -> None:
        """Ticket operations on their own (the draft when a call is taken)."""
        self._pending.extend(("outbox", r) for r in rows)
        self._added()

    def add_seat_event(self, row: dict[str, Any]) -> None:
        """A seat state change: seat, at, status, reason, previous, cause, call_id."""
        self._pending.append(("seat", row))
        self._added()

    def _added(self) -> None:
        if len(self._pending) + len(self._held) > self._max:
            self._trim()
        self._idle.clear()
        self._wake.set()

    def _trim(self) -> None:
        """Back under the cap: drop the oldest rows, ticket operations last (module doc).
        Each row is set aside at most once, so this is O(1) per row added."""
        while len(self._pending) + len(self._held) > self._max:
            if self._pending:
                kind, row = self._pending.popleft()
                if kind == "outbox":
                    self._held.append((kind, row))
                    continue
            else:
                kind, row = self._held.popleft()
            self.dropped_by_kind[kind] += 1
            if kind == "outbox":  # a ticket operation is never dropped silently
                self._log.error(
                    "ticket_op_dropped",
                    key=row.get("key"),
                    call_id=row.get("call_id"),
                    op=row.get("kind"),
                    tickets_dropped=self.dropped_by_kind["outbox"],
                    max_pending=self._max,
                    hint="the database has been failing for a long time; "
                    "memory holds nothing but ticket operations",
                )
            elif self.dropped == 1 or self.dropped % 1000 == 0:
                self._log.error(
                    "call_record_dropped",
                    kind=kind,
                    dropped=dict(self.dropped_by_kind),
                    max_pending=self._max,
                    hint="the database has been failing for a long time",
                )

    async def flushed(self) -> None:
        """Wait until everything added so far is stored (tests, shutdown)."""
        await self._idle.wait()

    async def run(self) -> None:
        attempt = 0
        rng = random.Random()  # noqa: S311  # nosec B311  # jitter, not crypto
        while True:
            if not self._pending and not self._held:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                if self._linger > 0 and len(self._pending) < self._batch:
                    await asyncio.sleep(self._linger)
                continue
            source, rows = self._take()
            try:
                await self._write(rows)
            except asyncio.CancelledError:
                # shutdown mid-batch: keep the rows for the final flush (the upsert is
                # idempotent if the transaction did commit)
                self._give_back(source, rows)
                raise
            except (SQLAlchemyError, OSError) as exc:
                self.failures += 1
                if is_fenced(exc):
                    self._refused(rows)
                    continue
                if write_unavailable(exc):
                    self._give_back(source, rows)
                else:
                    # the rows are at fault, not the database: find the poison row(s)
                    rest = await self._row_by_row(rows)
                    if not rest:
                        attempt = 0
                        continue
                    self._give_back(source, rest)  # the database went away meanwhile
                self.failing += 1
                self.last_error = _reason(exc)
                delay = backoff_delay(attempt, 0.2, _RETRY_MAX_S, rng)
                attempt += 1
                self._log.error(
                    "call_records_write_failed",
                    error=mask_text(str(exc)[:300]),
                    pending=self.pending,
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self._stored(len(rows))

    def _refused(self, rows: list[_Row]) -> None:
        self.fenced += len(rows)
        self._log.error(
            "ha_write_refused",
            rows=len(rows),
            kinds=dict(Counter(kind for kind, _ in rows)),
            fenced=self.fenced,
            hint="the database refused this daemon's epoch: another daemon leads and "
            "adopts the calls; this one steps down",
        )
        if self._on_fenced is not None:
            self._on_fenced()

    def _take(self) -> tuple[deque[_Row], list[_Row]]:
        """The next batch, and the deque it came from (to give it back there)."""
        if self._held:
            n = min(self._batch, len(self._held))
            return self._held, [self._held.popleft() for _ in range(n)]
        n = min(self._batch, len(self._pending))
        while n < len(self._pending) and self._pending[n][0] in _WITH_THE_RECORD:
            n += 1  # a call's rows go in its record's transaction
        return self._pending, [self._pending.popleft() for _ in range(n)]

    async def _write(self, rows: Sequence[_Row]) -> None:
        by_kind: dict[str, list[dict[str, Any]]] = {k: [] for k in _KINDS}
        for kind, r in rows:
            by_kind[kind].append(r)
        await self._store.upsert_calls(*(by_kind[k] for k in _KINDS))

    def _stored(self, n: int) -> None:
        if self.failing:
            self._log.warning("call_records_write_recovered", failed_batches=self.failing)
        self.failing = 0
        self.last_error = ""
        self.written += n
        if self._on_commit is not None:
            self._on_commit()

    async def _row_by_row(self, rows: list[_Row]) -> list[_Row]:
        """A batch the database refused for its rows: each row in its own transaction, so
        the good ones land and a poison row is counted, logged and left out (issue 12).
        Returns the rows not tried because the database became unavailable meanwhile."""
        for i, (kind, row) in enumerate(rows):
            try:
                await self._write([(kind, row)])
            except (SQLAlchemyError, OSError) as exc:
                if write_unavailable(exc):
                    return rows[i:]
                self.poisoned[kind] += 1
                self._log.error(
                    "call_record_poisoned",
                    kind=kind,
                    error=_reason(exc),
                    row=_masked(row),
                    poisoned=sum(self.poisoned.values()),
                    hint="the database refused this row on its own: it is left out, "
                    "the rows after it are stored",
                )
            else:
                self._stored(1)
        return []

    def _give_back(self, source: deque[_Row], rows: list[_Row]) -> None:
        """Put a failed batch back in front of the deque it came from, oldest first; then
        back under the cap (ticket operations last)."""
        source.extendleft(reversed(rows))
        if len(self._pending) + len(self._held) > self._max:
            self._trim()
