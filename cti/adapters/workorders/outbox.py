"""The ticket outbox: durable, ordered, at-least-once delivery of ticket operations.

Every ticket operation is first a row of the `outbox` table, written in the same
transaction as the call record it belongs to (`Store.upsert_calls(..., outbox_rows=)`,
or `write_ops(conn, ops)` inside any transaction; both in `cti.adapters.db.rows`, the table
in `cti.adapters.db.tables`), so a call is never stored without its
ticket operations nor the other way round. The `OutboxDeliverer` sends the rows to the
backend in `id` order and marks each one delivered, with the ticket number, in its own
transaction. The backend deduplicates by the row's idempotency key (``<call_id>:create``
/ ``<call_id>:update``): at-least-once delivery + idempotent operations = each ticket
operation takes effect exactly once, across backend outages and daemon restarts
(everything the deliverer knows is in the table).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import Any, Final

import structlog
from sqlalchemy import Text, bindparam, func, select, type_coerce
from sqlalchemy.exc import SQLAlchemyError
from structlog.typing import FilteringBoundLogger

from cti.adapters.backoff import backoff_delay
from cti.adapters.db.store import Store
from cti.adapters.db.tables import OUTBOX
from cti.logs import mask_text
from cti.workorders.backend import WorkOrderBackend, WorkOrderRejected, WorkOrderUnavailable
from cti.workorders.model import TicketCallFacts, TicketDraft, TicketRating, op_key

__all__ = [
    "DeliveredCallback",
    "InvalidPayloadError",
    "OutboxDeliverer",
    "decode_payload",
    "parked_count",
    "parked_rows",
    "pending_count",
    "requeue_parked",
]

# The payload as the text the database holds, decoded by us (`decode_payload`), never by
# SQLAlchemy's JSON type: a row whose text is not JSON (a hand edit, a restored dump, a
# bug of another version) would raise out of the fetch itself, for the whole batch, and
# every ticket behind it would wait forever (issue 15: the outbox's poison row).
_PAYLOAD_TEXT: Final = type_coerce(OUTBOX.c.payload, Text).label("payload")
_COLUMNS: Final = [c for c in OUTBOX.c if c.name != "payload"]

# one statement for the marks of a pass, built once (executemany with a list of dicts)
_MARK_DELIVERED: Final = (
    OUTBOX.update()
    .where(OUTBOX.c.id == bindparam("row_id"))
    .values(
        delivered_at=bindparam("now"),
        ticket_number=bindparam("number"),
        attempts=bindparam("attempts"),
        last_error=None,
        next_attempt_at=None,
    )
)

# a pass's head query and an update's lookup of its create, built once (issue 12)
_CREATE_OF: Final = select(OUTBOX.c.ticket_number, OUTBOX.c.parked, OUTBOX.c.delivered_at).where(
    OUTBOX.c.key == bindparam("key")
)


def _head_query(batch: int) -> Any:
    """The next `batch` rows to deliver, oldest first."""
    return (
        select(*_COLUMNS, _PAYLOAD_TEXT)
        .where(OUTBOX.c.delivered_at.is_(None), OUTBOX.c.parked.is_(False))
        .order_by(OUTBOX.c.id)
        .limit(batch)
    )


DeliveredCallback = Callable[[str, str, str], None]
"""`on_delivered(call_id, kind, ticket_number)`, called after the row is marked."""


class OutboxDeliverer:
    """The task that drains the outbox into the backend, in `id` order.

    * `create` → `backend.create(draft, key=...)`; the row is marked delivered with the
      ticket number.
    * `update` → needs its call's ticket number, so it waits for the call's `create`
      (earlier in the table, hence delivered first). If that create was parked, or there
      is none, the update is parked too.
    * `WorkOrderUnavailable` (or any unexpected error): the row stays at the head; the
      deliverer waits (capped exponential backoff, full jitter, from the row's `attempts`;
      at least the exception's `retry_after`, up to the cap) and retries the same row, so
      the order is kept.
    * `WorkOrderRejected`: the row is parked (`parked`, `last_error`), logged at error
      level, and the next rows flow.
    * a payload that is not the operation it says it is (not JSON, not an object, a field
      missing or of the wrong type): parked the same way before the backend is asked —
      retrying cannot fix it, and as the head row it would hold every ticket back.

    It wakes on `notify()` (new rows) and every `poll_s` seconds (rows written by another
    process, a backend that came back).
    """

    def __init__(
        self,
        store: Store,
        backend: WorkOrderBackend,
        *,
        on_delivered: DeliveredCallback | None = None,
        log: FilteringBoundLogger | None = None,
        poll_s: float = 5.0,
        batch: int = 100,
        backoff_low: float = 0.5,
        backoff_high: float = 60.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        linger_s: float = 0.05,
        acting: Callable[[], bool] = lambda: True,
    ) -> None:
        # active/standby: only the leader delivers; asked before each row (a leader whose
        # lease ran out stops at once; its marks are refused by the database's fence too)
        self._acting = acting
        self._engine = store.engine
        self._backend = backend
        self._on_delivered = on_delivered
        self._log: FilteringBoundLogger = log or structlog.get_logger("cti.outbox")
        self._poll_s = poll_s
        self._batch = batch
        self._head_q = _head_query(batch)
        self._low = backoff_low
        self._high = backoff_high
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311  # nosec B311  # jitter, not crypto
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._numbers: dict[str, str] = {}  # call_id -> ticket number (creates delivered)
        self._marks: list[tuple[Any, str]] = []  # delivered in this pass, not yet marked
        self._linger = linger_s
        self.delivered = 0
        self.parked = 0  # rows this process parked since start
        self.parked_invalid = 0  # ... of them for an invalid payload
        # parked rows in the table (any process's), counted at the start, after each park
        # and at each idle poll (`cti outbox requeue` runs in another process); None until
        # the first count
        self.parked_now: int | None = None
        self.failures = 0

    def notify(self) -> None:
        """New rows were committed: look now rather than at the next poll."""
        self._idle.clear()
        self._wake.set()

    async def drained(self) -> None:
        """Wait until no deliverable row is left (tests, shutdown)."""
        await self._idle.wait()

    async def run(self) -> None:
        while True:
            # cleared before the pass, not after: a notify() that comes while the pass runs
            # (rows committed behind the ones read) must start the next pass at once
            self._wake.clear()
            try:
                wait = await self._pass()
            except (SQLAlchemyError, OSError) as exc:
                self.failures += 1
                wait = backoff_delay(min(self.failures, 8), self._low, self._high, self._rng)
                self._log.error(
                    "outbox_database_failed", error=str(exc)[:300], retry_in_s=round(wait, 2)
                )
                await asyncio.sleep(wait)
                continue
            if wait is None:
                # nothing deliverable: sleep until new rows or the poll timer
                if self.parked_now is None:
                    await self._count_parked()
                if not self._wake.is_set():
                    self._idle.set()
                try:
                    async with asyncio.timeout(self._poll_s):
                        await self._wake.wait()
                except TimeoutError:
                    # a quiet moment: recount (an operator may have requeued rows); not
                    # on every notify(), which comes once per tick under load
                    await self._count_parked()
                if self._linger > 0:
                    # let the rows of a tick gather: one head query and one transaction of
                    # marks for several calls instead of one each (issue 12)
                    await asyncio.sleep(self._linger)
            else:
                # the head row is backing off; new rows queue behind it, so notify()
                # must not cut the wait short
                await asyncio.sleep(wait)

    async def _pass(self) -> float | None:
        """Deliver rows until the table has none left (None) or the head row must wait
        (the seconds to wait)."""
        while True:
            if not self._acting():
                return None  # the standby looks again at the next poll / notify
            rows = await self._head()
            if not rows:
                return None
            try:
                for row in rows:
                    if not self._acting():
                        return None
                    now = self._clock()
                    if row.next_attempt_at is not None and row.next_attempt_at > now:
                        return float(row.next_attempt_at) - now
                    if not await self._deliver(row):
                        await self._flush_marks()
                        return max(0.0, (await self._due(row.id)) - self._clock())
            finally:
                await self._flush_marks()
            if len(rows) < self._batch:
                # the table had no more: rows committed since then have called notify()
                return None

    async def _count_parked(self) -> None:
        try:
            self.parked_now = await parked_count(self._engine)
        except (SQLAlchemyError, OSError) as exc:  # a health figure: the next poll retries
            self._log.warning("outbox_parked_count_failed", error=str(exc)[:300])

    async def _head(self) -> list[Any]:
        async with self._engine.connect() as conn:
            return list(await conn.execute(self._head_q))

    async def _due(self, row_id: int) -> float:
        async with self._engine.connect() as conn:
            due: float | None = await conn.scalar(
                select(OUTBOX.c.next_attempt_at).where(OUTBOX.c.id == row_id)
            )
        return self._clock() if due is None else due

    async def _deliver(self, row: Any) -> bool:
        """One row. True: done with it (delivered or parked); False: retry it later."""
        try:
            op = decode_payload(row.kind, row.payload)
        except InvalidPayloadError as exc:
            self.parked_invalid += 1
            await self._park(row, f"invalid payload: {exc}")
            return True
        try:
            if isinstance(op, TicketDraft):
                ref = await self._backend.create(op, key=row.key)
                number = ref.number
            else:
                found = await self._create_number(row.call_id)
                if isinstance(found, _Missing):
                    await self._park(row, found.reason)
                    return True
                number = found
                if isinstance(op, TicketCallFacts):
                    await self._backend.update(number, op, key=row.key)
                else:
                    await self._backend.rate(number, op, key=row.key)
        except WorkOrderRejected as exc:
            await self._park(row, f"rejected: {exc.status} {exc.body[:500]}")
            return True
        except WorkOrderUnavailable as exc:
            await self._retry_later(row, str(exc), retry_after=exc.retry_after)
            return False
        except (SQLAlchemyError, OSError):
            raise  # our own database: the run loop backs off
        except Exception as exc:  # noqa: BLE001 - a backend bug must not lose the row
            self._log.exception("ticket_backend_error", key=row.key)
            await self._retry_later(row, f"{type(exc).__name__}: {exc}")
            return False
        await self._mark_delivered(row, number)
        return True

    async def _create_number(self, call_id: str) -> str | _Missing:
        if call_id in self._numbers:
            return self._numbers[call_id]
        async with self._engine.connect() as conn:
            create = (await conn.execute(_CREATE_OF, {"key": op_key(call_id, "create")})).first()
        if create is None:
            return _Missing("no create operation for this call")
        if create.delivered_at is not None and create.ticket_number:
            return str(create.ticket_number)
        if create.parked:
            return _Missing("its create operation is parked")
        # an undelivered create after this update (written later): nothing to update yet
        return _Missing("its create operation was written after it")

    async def _mark_delivered(self, row: Any, number: str) -> None:
        """Remember the row as delivered; :meth:`_flush_marks` writes the marks of a pass in
        one transaction (executemany) and then tells `on_delivered`. A crash before that
        commit re-delivers those rows after the restart: the backend deduplicates by key,
        exactly as for a crash between the backend's answer and a per-row mark."""
        if row.kind == "create":
            # known now, not at the flush: an update later in this pass needs it
            if len(self._numbers) >= 10_000:  # a cache: the table has them all; the
                # oldest goes (never one of this pass's, whose marks are not written yet)
                del self._numbers[next(iter(self._numbers))]
            self._numbers[row.call_id] = number
        self._marks.append((row, number))

    async def _flush_marks(self) -> None:
        if not self._marks:
            return
        marks, now = self._marks, self._clock()
        params = [
            {"row_id": row.id, "number": number, "attempts": row.attempts + 1, "now": now}
            for row, number in marks
        ]
        async with self._engine.begin() as conn:
            await conn.execute(_MARK_DELIVERED, params)
        self._marks = []
        for row, number in marks:
            self._delivered(row, number)

    def _delivered(self, row: Any, number: str) -> None:
        self.delivered += 1
        self._log.info(
            "ticket_op_delivered",
            call_id=row.call_id,
            kind=row.kind,
            ticket=number,
            attempts=row.attempts + 1,
        )
        if self._on_delivered is not None:
            try:
                self._on_delivered(row.call_id, row.kind, number)
            except Exception:  # noqa: BLE001 - the row is delivered whatever the callback does
                self._log.exception("outbox_callback_failed", key=row.key)

    async def _retry_later(self, row: Any, error: str, *, retry_after: float | None = None) -> None:
        attempts = row.attempts + 1
        delay = backoff_delay(attempts - 1, self._low, self._high, self._rng)
        if retry_after is not None:
            # the backend said when (HTTP Retry-After): not sooner, but never beyond the
            # backoff cap, so a wrong header cannot hold every ticket back for hours
            delay = max(delay, min(retry_after, self._high))
        self.failures += 1
        async with self._engine.begin() as conn:
            await conn.execute(
                OUTBOX.update()
                .where(OUTBOX.c.id == row.id)
                .values(
                    attempts=attempts,
                    next_attempt_at=self._clock() + delay,
                    last_error=error[:1000],
                )
            )
        self._log.warning(
            "ticket_backend_unavailable",
            key=row.key,
            attempts=attempts,
            retry_in_s=round(delay, 2),
            error=error[:300],
        )

    async def _park(self, row: Any, error: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                OUTBOX.update()
                .where(OUTBOX.c.id == row.id)
                .values(parked=True, attempts=row.attempts + 1, last_error=error[:1000])
            )
        self.parked += 1
        self.parked_now = (self.parked_now or 0) + 1
        self._log.error(
            "ticket_op_parked",
            key=row.key,
            call_id=row.call_id,
            kind=row.kind,
            # the reasons name fields and types, never a payload's values; masked anyway
            # (a backend's refusal body may quote the caller's number)
            error=mask_text(error[:300]),
            hint="not retried, the rows behind it go on; `cti outbox list` shows it; fix "
            "the cause, then `cti outbox requeue KEY`",
        )


class InvalidPayloadError(ValueError):
    """An outbox row's payload is not the operation its `kind` names. The message names
    what is wrong (a field, a type, a JSON position), never a value from the payload: it
    goes into logs and `last_error`, and payloads hold callers' numbers."""


TicketOp = TicketDraft | TicketCallFacts | TicketRating

_DECODERS: Final[dict[str, Callable[[dict[str, Any]], TicketOp]]] = {
    "create": TicketDraft.from_json,
    "update": TicketCallFacts.from_json,
    "rate": TicketRating.from_json,
}


def decode_payload(kind: str, text: str | bytes | dict[str, Any] | None) -> TicketOp:
    """The ticket operation of an outbox row (its `kind` and its payload as stored).

    Raises:
        InvalidPayloadError: unknown kind, not JSON, not an object, a field missing or of
            a type the operation cannot take.
    """
    decoder = _DECODERS.get(kind)
    if decoder is None:
        msg = f"unknown operation kind {kind[:16]!r}"
        raise InvalidPayloadError(msg)
    if isinstance(text, str | bytes):
        try:
            data = json.loads(text)
        except ValueError as exc:
            pos = exc.pos if isinstance(exc, json.JSONDecodeError) else "?"
            msg = f"not JSON (at character {pos})"
            raise InvalidPayloadError(msg) from None
    else:
        data = text
    if not isinstance(data, dict):
        msg = f"a JSON {type(data).__name__}, not an object"
        raise InvalidPayloadError(msg)
    try:
        return decoder(data)
    except KeyError as exc:
        msg = f"field {str(exc.args[0])[:40]!r} missing for a {kind}"
        raise InvalidPayloadError(msg) from None
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        # float("13800138000x") says the value: only the kind of error goes out
        msg = f"a field of the wrong type for a {kind} ({type(exc).__name__})"
        raise InvalidPayloadError(msg) from None


class _Missing:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


async def pending_count(store: Store) -> int:
    """Rows not yet delivered and not parked (a health metric)."""
    async with store.engine.connect() as conn:
        n: int | None = await conn.scalar(
            select(func.count())
            .select_from(OUTBOX)
            .where(OUTBOX.c.delivered_at.is_(None), OUTBOX.c.parked.is_(False))
        )
    return n or 0


async def parked_count(engine: Any) -> int:
    """Parked rows in the table (a health metric; the pending index covers it)."""
    async with engine.connect() as conn:
        n: int | None = await conn.scalar(
            select(func.count())
            .select_from(OUTBOX)
            .where(OUTBOX.c.delivered_at.is_(None), OUTBOX.c.parked.is_(True))
        )
    return n or 0


async def parked_rows(store: Store) -> list[dict[str, Any]]:
    """The parked rows, oldest first (for an operator); `payload` as the stored text, so a
    row that is not JSON is listed too."""
    q = select(*_COLUMNS, _PAYLOAD_TEXT).where(OUTBOX.c.parked.is_(True)).order_by(OUTBOX.c.id)
    async with store.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(q)]  # noqa: SLF001 - SQLAlchemy's public row API


async def requeue_parked(store: Store, key: str) -> bool:
    """Give a parked row another chance (after fixing what the backend rejected). It keeps
    its place by id, so it is delivered next. Call `OutboxDeliverer.notify()` after."""
    async with store.engine.begin() as conn:
        res = await conn.execute(
            OUTBOX.update()
            .where(OUTBOX.c.key == key, OUTBOX.c.parked.is_(True))
            .values(parked=False, next_attempt_at=None)
        )
    return res.rowcount > 0
