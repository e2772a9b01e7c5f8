"""What the database remembers for a restart, and the daemon's heartbeat in it.

* :class:`Heartbeat` writes `heartbeats(node, at)` every `database.heartbeat_s` for each
  Asterisk node the daemon serves: after a crash (SIGKILL, power cut) the restarted daemon
  knows when it was last alive, which bounds when the calls it lost sight of ended. The same
  writes are the database's health check: `database.degraded_after_failures` failed writes in
  a row (a locked or failing database) make `/readyz` report it degraded.
* :func:`load_restart` reads what the core needs at start (cti/core/recovery.py): the calls taken
  but never finished (an outbox `create` without its `update` nor a call record), the seats
  that were on a call, and the last sign of life per node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Text, and_, exists, func, select, type_coerce
from sqlalchemy.exc import SQLAlchemyError
from structlog.typing import FilteringBoundLogger

from cti.adapters.db.dialect import insert
from cti.adapters.db.store import Store
from cti.adapters.db.tables import CALL_RECORDS, HEARTBEATS, OUTBOX, SEAT_EVENTS
from cti.adapters.workorders.outbox import InvalidPayloadError, decode_payload
from cti.core.messages import SeatMark, TakenCall
from cti.seats.model import Pending, PendingKind, Reason
from cti.workorders.model import TicketDraft

__all__ = ["Heartbeat", "RestartState", "load_restart"]

LOOK_BACK_S: Final = 86_400.0  # a call still unfinished after a day is not looked for
_BUSY: Final = ("reserved", "ringing", "talking", "wrap_up")
_PENDING_CAUSES: Final = ("pending_not_ready", "pending_logout", "pending_cleared")
_CHUNK: Final = 500  # ids per IN (...) list

BusySeats = dict[str, tuple[str, str | None, float, str, Pending | None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartState:
    taken: list[TakenCall]
    busy: BusySeats  # seat -> (status, reason, since, call_id, pending)
    last_alive: dict[str, float]  # node -> epoch s


class Heartbeat:
    """The liveness row per node, and the database's write health (see the module doc)."""

    def __init__(
        self,
        store: Store,
        nodes: Sequence[str],
        *,
        interval_s: float,
        degraded_after: int,
        log: FilteringBoundLogger,
        acting: Callable[[], bool] = lambda: True,
    ) -> None:
        # active/standby: the liveness of the leader only (a standby's write is fenced)
        self._acting = acting
        self._store = store
        self._nodes = list(nodes)
        self._interval = interval_s
        self._degraded_after = degraded_after
        self._log = log
        self.failing = 0  # failed writes in a row
        self.last_error = ""
        self.last_ok: float | None = None

    @property
    def healthy(self) -> bool:
        return self.failing < self._degraded_after

    async def beat(self) -> None:
        now = time.time()
        async with self._store.engine.begin() as conn:
            stmt = insert(conn, HEARTBEATS)
            stmt = stmt.on_conflict_do_update(
                index_elements=["node"], set_={"at": stmt.excluded.at}
            )
            await conn.execute(stmt, [{"node": n, "at": now} for n in self._nodes])
        self.last_ok = now

    async def run(self) -> None:
        while True:
            if not self._acting():
                await asyncio.sleep(self._interval)
                continue
            try:
                await self.beat()
            except (SQLAlchemyError, OSError) as exc:
                self.failing += 1
                self.last_error = str(exc)[:200]
                if self.failing == self._degraded_after:  # once, when it becomes degraded
                    self._log.error(
                        "database_degraded", failed_writes=self.failing, error=self.last_error
                    )
            else:
                if not self.healthy:
                    self._log.warning("database_recovered", failed_writes=self.failing)
                self.failing = 0
                self.last_error = ""
            await asyncio.sleep(self._interval)


async def load_restart(store: Store, nodes: Iterable[str], now: float) -> RestartState:
    """What the core needs at start (see the module docstring)."""
    nodes = list(nodes)
    async with store.engine.connect() as conn:
        alive = {r.node: r.at for r in await conn.execute(select(HEARTBEATS))}
        updates = OUTBOX.alias("u")
        # the payload as text, decoded per row: one row that is not JSON must not stop
        # the daemon's start (issue 15, the outbox's poison row)
        q = select(OUTBOX.c.call_id, type_coerce(OUTBOX.c.payload, Text).label("payload")).where(
            OUTBOX.c.kind == "create",
            OUTBOX.c.created_at >= now - LOOK_BACK_S,
            ~exists().where(
                and_(updates.c.call_id == OUTBOX.c.call_id, updates.c.kind == "update")
            ),
            ~exists().where(CALL_RECORDS.c.call_id == OUTBOX.c.call_id),
        )
        drafts: list[TicketDraft] = []
        for row in await conn.execute(q):
            try:
                draft = decode_payload("create", row.payload)
            except InvalidPayloadError:
                continue  # not a draft this version can read: parked by the deliverer
            if not isinstance(draft, TicketDraft):  # what "create" decodes to; for mypy
                continue
            # a taken call's draft: not a 110 data transfer, not an after-hours message
            # (those carry their recording or content and never get an update)
            if draft.node in nodes and draft.recording is None and not draft.content:
                drafts.append(draft)
        marks: dict[str, list[SeatMark]] = {}
        ids = [d.call_id.partition(":")[2] for d in drafts]
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            rows = await conn.execute(
                select(SEAT_EVENTS.c.seat, SEAT_EVENTS.c.status, SEAT_EVENTS.c.at)
                .add_columns(SEAT_EVENTS.c.call_id)
                .where(SEAT_EVENTS.c.call_id.in_(chunk))
                .order_by(SEAT_EVENTS.c.id)
            )
            for r in rows:
                marks.setdefault(r.call_id, []).append(
                    SeatMark(seat_id=r.seat, status=r.status, at=r.at)
                )
        busy = await _busy_seats(conn)
        if not alive:  # no heartbeat yet (first start of this version): the last stored event
            last = await conn.scalar(select(func.max(SEAT_EVENTS.c.at)))
            alive = dict.fromkeys(nodes, float(last)) if last is not None else {}
    taken = [
        TakenCall(draft=d, marks=tuple(marks.get(d.call_id.partition(":")[2], ()))) for d in drafts
    ]
    return RestartState(taken=taken, busy=busy, last_alive=alive)


async def _busy_seats(conn: Any) -> BusySeats:
    last = (
        select(SEAT_EVENTS.c.seat, func.max(SEAT_EVENTS.c.id).label("id"))
        .group_by(SEAT_EVENTS.c.seat)
        .subquery()
    )
    q = select(SEAT_EVENTS).join(last, SEAT_EVENTS.c.id == last.c.id)
    out: BusySeats = {}
    for r in await conn.execute(q):
        if r.status not in _BUSY or not r.call_id:
            continue
        pend = await conn.execute(
            select(SEAT_EVENTS.c.cause, SEAT_EVENTS.c.reason)
            .where(
                SEAT_EVENTS.c.seat == r.seat,
                SEAT_EVENTS.c.call_id == r.call_id,
                SEAT_EVENTS.c.cause.in_(_PENDING_CAUSES),
            )
            .order_by(SEAT_EVENTS.c.id.desc())
            .limit(1)
        )
        row = pend.first()
        out[r.seat] = (r.status, r.reason, r.at, r.call_id, _pending(row))
    return out


def _pending(row: Any) -> Pending | None:
    if row is None or row.cause == "pending_cleared":
        return None
    if row.cause == "pending_logout":
        return Pending(kind=PendingKind.LOGOUT)
    try:
        reason = Reason(row.reason) if row.reason else Reason.OTHER
    except ValueError:
        reason = Reason.OTHER
    return Pending(kind=PendingKind.NOT_READY, reason=reason)
