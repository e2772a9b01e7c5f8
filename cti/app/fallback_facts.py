"""The calls Asterisk's fallback took while the daemon was down, into the KPI facts.

Each node with ``ami.nodes[].queue_log`` set has its file read every
``kpis.fallback_scan_s`` (cti/adapters/queue_log.py) and fed to a
:class:`~cti.kpis.fallback_log.FallbackLog`; a marked call whose queue part ended is
stored as a queue entry with outcome ``fallback`` when all of these hold:

* it ended ``kpis.fallback_settle_s`` ago: a call the daemon adopted or took back is
  written by the daemon itself when it ends, through the write-behind record writer;
* the daemon's call tracker does not know it (a call taken back from the fallback
  ``Queue()`` logs an end there — app_queue sees the Redirect as the caller leaving —
  and is the daemon's call from then on);
* the database has no call record and no entry for it (``Store.add_fallback_entries``):
  the daemon saw it after all, or an earlier run stored it (the file is read from its
  start at every start, so a restart costs a re-read, never a second entry);
* this daemon acts (active/standby: the leader writes, a standby keeps reading).

At start each file is read from ``kpis.fallback_lookback_s`` back (found by bisection,
not by reading the file from its start). The calls are written ``WRITE_BATCH`` to a
transaction. A failed write keeps the calls and retries at the next scan; while more
than ``MAX_PENDING`` calls wait, the file is not read further (it keeps them: nothing is
dropped, the reading resumes where it stopped). A call with no end logged is finished
``stale_s`` after its last event, by the wall clock only once the file is read to its
end (while a backlog is read, its end may be in the next chunk). Nothing here can stop
the daemon: each scan's failure is logged and counted.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from cti.adapters.db.rows import queue_entry_row
from cti.adapters.db.store import Store
from cti.adapters.http.metrics import Metric
from cti.adapters.queue_log import QueueLogFile
from cti.kpis.facts import QueueEntry
from cti.kpis.fallback_log import FallbackCall, FallbackLog
from cti.numberplan import NumberPlan

__all__ = ["FallbackFacts"]

MAX_PENDING = 10_000  # calls ended but not stored (settling, or the database down): read no further
MAX_READS_PER_SCAN = 16  # x 4 MiB: a scan of a huge backlog yields to the loop between reads
WRITE_BATCH = 500  # entries per transaction


@dataclass(slots=True)
class _Node:
    name: str
    file: QueueLogFile
    log: FallbackLog
    missing_logged: bool = False
    started: bool = False


class FallbackFacts:
    """The fallback's calls of every node with a queue_log (module doc)."""

    def __init__(
        self,
        *,
        files: Mapping[str, Path],
        plan: NumberPlan,
        store: Store,
        is_live: Callable[[str, str], bool],
        acting: Callable[[], bool],
        scan_s: float,
        settle_s: float,
        lookback_s: float,
        log: FilteringBoundLogger,
        on_stored: Callable[[list[QueueEntry]], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._nodes = [
            _Node(name=n, file=QueueLogFile(p), log=FallbackLog(node=n, plan=plan))
            for n, p in files.items()
        ]
        self._store = store
        self._is_live = is_live
        self._acting = acting
        self._scan_s = scan_s
        self._settle_s = settle_s
        self._lookback_s = lookback_s
        self._log = log
        self._on_stored = on_stored  # the live figures (cti/stats/live) count them too
        self._clock = clock
        self._pending: list[tuple[FallbackCall, QueueEntry]] = []
        self.stored: Counter[str] = Counter()  # by fate
        self.dropped: Counter[str] = Counter()  # daemon_tracks: the daemon has its own entry
        self.scan_failures = 0

    @property
    def enabled(self) -> bool:
        return bool(self._nodes)

    def replan(self, plan: NumberPlan) -> None:
        """A reloaded number plan: entries built from now on take its lines."""
        for n in self._nodes:
            n.log.plan = plan

    async def run(self) -> None:
        while True:
            try:
                await self.scan()
            except Exception:  # noqa: BLE001 - a failed scan costs this scan only
                self.scan_failures += 1
                self._log.exception("fallback_scan_failed")
            await asyncio.sleep(self._scan_s)

    async def scan(self) -> None:
        """Read what each file gained, then store the calls that are due."""
        now = self._clock()
        for node in self._nodes:
            if len(self._pending) < MAX_PENDING and await self._read(node, now):
                node.log.expire(now)  # read to its end: the wall clock is the log's
            self._pending.extend(node.log.take())
        await self._store_due(now)

    async def _read(self, node: _Node, now: float) -> bool:
        """Feed what the file gained; True once it is read to its end."""
        if not node.started:
            await asyncio.to_thread(node.file.start_at, now - self._lookback_s)
            node.started = True
        for _ in range(MAX_READS_PER_SCAN):
            got = await asyncio.to_thread(node.file.read)
            if got.missing:
                if not node.missing_logged:
                    # Asterisk writes the file at its first queue event: normal on a new node
                    self._log.warning(
                        "queue_log_unreadable" if got.error else "queue_log_missing",
                        node=node.name,
                        path=str(node.file.path),
                        error=got.error or None,
                    )
                    node.missing_logged = True
                return True
            node.missing_logged = False
            if got.reopened:
                self._log.info("queue_log_reopened", node=node.name, path=str(node.file.path))
            for line in got.lines:
                node.log.feed(line)
            if not got.more:
                return True
        return False

    async def _store_due(self, now: float) -> None:
        due = [p for p in self._pending if (p[1].left_at or 0.0) <= now - self._settle_s]
        if not due or not self._acting():
            return
        keep = [p for p in self._pending if (p[1].left_at or 0.0) > now - self._settle_s]
        mine: list[tuple[FallbackCall, QueueEntry]] = []
        for call, entry in due:
            if self._is_live(entry.node, entry.call_id):
                self.dropped["daemon_tracks"] += 1  # taken back or adopted: its own entry
            else:
                mine.append((call, entry))
        written: set[str] = set()
        for i in range(0, len(mine), WRITE_BATCH):
            batch = mine[i : i + WRITE_BATCH]
            try:
                rows = [queue_entry_row(e) for _, e in batch]
                written.update(await self._store.add_fallback_entries(rows))
            except Exception:
                self._pending = keep + mine[i:]  # again at the next scan
                self._stored(mine[:i], written)
                raise
        self._pending = keep
        self._stored(mine, written)

    def _stored(self, tried: list[tuple[FallbackCall, QueueEntry]], written: set[str]) -> None:
        # the ones not written: the daemon recorded them, or an earlier run stored them
        new = [(c, e) for c, e in tried if f"{e.node}:{e.call_id}" in written]
        if new:
            self._on_stored([e for _, e in new])
        for call, entry in new:
            self.stored[call.fate] += 1
            self._log.info(
                "fallback_call_recorded",
                linkedid=entry.call_id,
                node=entry.node,
                line=entry.line,
                fate=call.fate,
                seat=call.seat,
                wait_s=round(entry.wait_s, 1),
            )

    def metrics(self) -> list[Metric]:
        skipped: Counter[str] = Counter()
        for n in self._nodes:
            skipped.update(n.log.skipped)
        return [
            Metric(
                name="cti_fallback_calls_recorded_total",
                kind="counter",
                help="Calls Asterisk's fallback queue took while the daemon was down, stored "
                "as KPI entries (outcome fallback), by what app_queue says became of them.",
                samples=tuple(
                    ({"fate": f}, float(self.stored[f]))
                    for f in ("answered", "abandoned", "left", "unknown")
                ),
            ),
            Metric(
                name="cti_fallback_calls_pending",
                kind="gauge",
                help="Fallback calls in the queues or waiting to be stored.",
                samples=(({}, float(len(self._pending) + sum(n.log.open for n in self._nodes))),),
            ),
            Metric(
                name="cti_queue_log_lines_skipped_total",
                kind="counter",
                help="queue_log lines not used, by reason (malformed, too_long, bad_marker, "
                "overflow).",
                samples=tuple(({"reason": r}, float(v)) for r, v in sorted(skipped.items())),
            ),
        ]
