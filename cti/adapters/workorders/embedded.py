"""The embedded work-order backend: tickets in the CTI's own database (the default).

So the product works out of the box: tickets live in two tables of the Store's database
(`tickets`, `ticket_days` in `cti.adapters.db.tables`, created by `Store.open()`) and are
reached through the Store's engine, SQLite or PostgreSQL alike.

Numbers are ``<prefix>-<YYYYMMDD>-<seq>`` with a per-day sequence (``12345-20261127-000042``);
the day is the call's arrival day in the hotline's time zone (China has no DST: UTC+8).
Idempotency: each ticket keeps the key it was created with (unique), so a second create
with the same key returns the first ticket; an update overwrites one call's facts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Final

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from cti.adapters.db.dialect import insert
from cti.adapters.db.store import Store
from cti.adapters.db.tables import TICKET_DAYS, TICKETS
from cti.workorders.backend import WorkOrderRejected, WorkOrderUnavailable
from cti.workorders.model import (
    RequestType,
    Ticket,
    TicketCallFacts,
    TicketDraft,
    TicketRating,
    TicketRef,
    TicketStatus,
    TicketTransfer,
)

__all__ = ["CHINA", "EmbeddedWorkOrders"]

CHINA: Final = timezone(timedelta(hours=8), "CST")

_AMENDABLE: Final = frozenset(
    {"status", "request_type", "content", "address", "urgency", "deadline", "satisfaction"}
)


# the statements of every call's create and update, built once and executed with their
# values (see cti/adapters/db/store.py: no statement building per ticket, issue 12)
_NUMBER_OF_KEY: Final = select(TICKETS.c.number).where(TICKETS.c.create_key == bindparam("key"))
_INSERT_TICKET: Final = TICKETS.insert()
_FACTS_FOR_UPDATE: Final = (
    select(TICKETS.c.call_ids, TICKETS.c.call_facts)
    .where(TICKETS.c.number == bindparam("number"))
    .with_for_update()
)
# the SET clause is the execute's keys; the ticket's number is bound under another name
_UPDATE_TICKET: Final = TICKETS.update().where(TICKETS.c.number == bindparam("b_number"))


def _day_counter(dialect: str) -> Any:
    """The day's counter, incremented: INSERT (day, 1) .. ON CONFLICT(day) DO UPDATE SET
    last = last + 1 RETURNING last."""
    upsert = insert(dialect, TICKET_DAYS).values(day=bindparam("day"), last=1)
    return upsert.on_conflict_do_update(
        index_elements=["day"], set_={"last": TICKET_DAYS.c.last + 1}
    ).returning(TICKET_DAYS.c.last)


class EmbeddedWorkOrders:
    """`WorkOrderBackend` on the Store's database.

    Args:
        store: the opened Store (its engine; `Store.open()` created the ticket tables).
        prefix: the first part of a ticket number (the hotline's number).
        tz: the time zone of the day in the number.
        clock: epoch seconds, for `updated_at`.
    """

    def __init__(
        self,
        store: Store,
        *,
        prefix: str = "12345",
        tz: tzinfo = CHINA,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = store.engine
        self._counter = _day_counter(store.engine.dialect.name)
        self._prefix = prefix
        self._tz = tz
        self._clock = clock

    async def aclose(self) -> None:
        """Nothing to close: the Store owns the engine (the same call as the HTTP backend's,
        so the daemon closes either)."""

    async def create(self, draft: TicketDraft, *, key: str) -> TicketRef:
        try:
            try:
                return await self._insert_ticket(draft, key)
            except IntegrityError:
                # a concurrent create with the same key won the race: return its ticket
                existing = await self._number_of(key)
                if existing is None:
                    raise
                return TicketRef(number=existing)
        except SQLAlchemyError as exc:
            raise WorkOrderUnavailable(f"tickets database: {exc}"[:500]) from exc
        except OSError as exc:
            raise WorkOrderUnavailable(f"tickets database: {exc}") from exc

    async def update(self, number: str, facts: TicketCallFacts, *, key: str) -> None:  # noqa: ARG002 - an update is an overwrite, idempotent without its key
        try:
            async with self._engine.begin() as conn:
                row = (await conn.execute(_FACTS_FOR_UPDATE, {"number": number})).first()
                if row is None:
                    raise WorkOrderRejected(404, f"no ticket {number}")
                call_ids = list(row.call_ids)
                if facts.call_id not in call_ids:
                    call_ids.append(facts.call_id)
                call_facts = dict(row.call_facts)
                call_facts[facts.call_id] = facts.to_json()
                values: dict[str, Any] = {
                    "call_ids": call_ids,
                    "call_facts": call_facts,
                    "updated_at": self._clock(),
                }
                if facts.seat is not None:
                    values["seat"] = facts.seat
                if facts.recording is not None:
                    values["recording"] = facts.recording
                if facts.external_ref is not None:
                    values["external_ref"] = facts.external_ref
                await conn.execute(_UPDATE_TICKET, {"b_number": number, **values})
        except (SQLAlchemyError, OSError) as exc:
            raise WorkOrderUnavailable(f"tickets database: {exc}"[:500]) from exc

    async def rate(self, number: str, rating: TicketRating, *, key: str) -> None:  # noqa: ARG002 - an overwrite, idempotent without its key
        try:
            async with self._engine.begin() as conn:
                res = await conn.execute(
                    TICKETS.update()
                    .where(TICKETS.c.number == number)
                    .values(
                        satisfaction=rating.label,
                        flagged=rating.unsatisfied,
                        updated_at=self._clock(),
                    )
                )
                if res.rowcount == 0:
                    raise WorkOrderRejected(404, f"no ticket {number}")
        except (SQLAlchemyError, OSError) as exc:
            raise WorkOrderUnavailable(f"tickets database: {exc}"[:500]) from exc

    async def find_recent_by_caller(
        self, caller: str, *, since: float, limit: int = 20
    ) -> list[Ticket]:
        q = (
            select(TICKETS)
            .where(TICKETS.c.caller == caller, TICKETS.c.created_at >= since)
            .order_by(TICKETS.c.created_at.desc(), TICKETS.c.id.desc())
            .limit(limit)
        )
        try:
            async with self._engine.connect() as conn:
                return [_ticket(r._mapping) for r in await conn.execute(q)]  # noqa: SLF001 - SQLAlchemy's public row API
        except (SQLAlchemyError, OSError) as exc:
            raise WorkOrderUnavailable(f"tickets database: {exc}"[:500]) from exc

    async def status(self, number: str) -> Ticket | None:
        try:
            async with self._engine.connect() as conn:
                row = (
                    await conn.execute(select(TICKETS).where(TICKETS.c.number == number))
                ).first()
        except (SQLAlchemyError, OSError) as exc:
            raise WorkOrderUnavailable(f"tickets database: {exc}"[:500]) from exc
        return None if row is None else _ticket(row._mapping)  # noqa: SLF001 - SQLAlchemy's public row API

    async def amend(self, number: str, **fields: Any) -> None:
        """The agent's side (not part of the port): set `status`, `request_type`,
        `content`, `address`, `urgency`, `deadline` or `satisfaction`.

        Raises:
            ValueError: an unknown field, or a request type that is not a `RequestType`.
            WorkOrderRejected: no such ticket (404).
        """
        unknown = set(fields) - _AMENDABLE
        if unknown:
            raise ValueError(f"not an amendable ticket field: {sorted(unknown)}")
        if fields.get("request_type") is not None:
            fields["request_type"] = RequestType(fields["request_type"]).value
        async with self._engine.begin() as conn:
            res = await conn.execute(
                TICKETS.update()
                .where(TICKETS.c.number == number)
                .values(**fields, updated_at=self._clock())
            )
            if res.rowcount == 0:
                raise WorkOrderRejected(404, f"no ticket {number}")

    async def _number_of(self, key: str) -> str | None:
        async with self._engine.connect() as conn:
            number: str | None = await conn.scalar(_NUMBER_OF_KEY, {"key": key})
            return number

    async def _insert_ticket(self, draft: TicketDraft, key: str) -> TicketRef:
        day = datetime.fromtimestamp(draft.created_at, UTC).astimezone(self._tz).strftime("%Y%m%d")
        async with self._engine.begin() as conn:
            # the day's counter: an upsert holds the row (or SQLite's write lock) until
            # commit, so two creates never get the same number; a failed create rolls it
            # back, so numbers have no gaps
            seq = await conn.scalar(self._counter, {"day": day})
            # the key checked after the counter's write, not before it: this transaction
            # holds the write lock now, so the answer cannot change under it (a SELECT first
            # would make SQLite upgrade a read transaction, which fails at once instead of
            # waiting); a create already done rolls the counter back: no gap
            existing: str | None = await conn.scalar(_NUMBER_OF_KEY, {"key": key})
            if existing is not None:
                await conn.rollback()
                return TicketRef(number=existing)
            number = f"{self._prefix}-{day}-{seq:06d}"
            await conn.execute(
                _INSERT_TICKET,
                {
                    "number": number,
                    "create_key": key,
                    "created_at": draft.created_at,
                    "updated_at": self._clock(),
                    "status": TicketStatus.INTAKE.value,
                    "caller": draft.caller,
                    "caller_name": draft.caller_name,
                    "line": draft.line,
                    "line_name": draft.line_name,
                    "department": draft.department,
                    "origin": draft.origin,
                    "skill": draft.skill,
                    "call_ids": [draft.call_id],
                    "call_facts": {},
                    "seat": draft.seat,
                    "recording": draft.recording,
                    "content": draft.content,
                    "address": draft.address,
                    "external_ref": draft.external_ref,
                    "flagged": False,
                },
            )
        return TicketRef(number=number)


def _ticket(row: Any) -> Ticket:
    call_ids = tuple(row["call_ids"])
    facts = [
        TicketCallFacts.from_json(row["call_facts"][c]) for c in call_ids if c in row["call_facts"]
    ]
    last = facts[-1] if facts else None
    transfers: tuple[TicketTransfer, ...] = tuple(t for f in facts for t in f.transfers)
    return Ticket(
        number=row["number"],
        status=row["status"],
        caller=row["caller"],
        caller_name=row["caller_name"],
        created_at=row["created_at"],
        line=row["line"],
        line_name=row["line_name"],
        department=row["department"],
        origin=row["origin"],
        skill=row["skill"],
        call_ids=call_ids,
        request_type=None if row["request_type"] is None else RequestType(row["request_type"]),
        content=row["content"],
        address=row["address"],
        urgency=row["urgency"],
        deadline=row["deadline"],
        satisfaction=row["satisfaction"],
        seat=row["seat"],
        recording=row["recording"],
        wait_s=None if last is None else last.wait_s,
        talk_s=None if last is None else last.talk_s,
        outcome=None if last is None else last.outcome,
        transfers=transfers,
        external_ref=row["external_ref"],
        flagged=bool(row["flagged"]),
    )
