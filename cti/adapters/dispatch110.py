"""The 110 system's faces: the push contract (HTTP and MQTT), the transfers' durable state,
and the feedback webhook. The matching and the feedback decisions are the core's
(`cti.dispatch110`); this module validates, stores and delivers; the HTTP routes are in
`cti.adapters.http.transfers110`. docs/dispatch110.md.

Durability: a push is answered only after the transfer (and, for a `data` transfer, its
ticket operation in the outbox) is committed, so "accepted" means it survives a crash.
Feedback events are stored with the transfer's new status in one transaction; the webhook
rows are delivered in order, retried with backoff while 110 is unreachable, with the
event id as idempotency key.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

import httpx
import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from structlog.typing import FilteringBoundLogger

from cti import __version__
from cti.adapters.backoff import backoff_delay
from cti.adapters.db.dialect import insert
from cti.adapters.db.rows import write_ops
from cti.adapters.db.store import Store
from cti.adapters.db.tables import FEEDBACK110, TRANSFERS110
from cti.adapters.http.errors import error_envelope
from cti.adapters.redact import redact_credentials
from cti.core.messages import Reply110, Report110
from cti.dispatch110 import Transfer110, TransferMode
from cti.jsonin import JsonRefused, load_json
from cti.settings import Dispatch110FeedbackSettings
from cti.workorders.model import OutboxOp

__all__ = [
    "MAX_PUSH_BYTES",
    "TRANSFER_ID_PATTERN",
    "Dispatch110Store",
    "FeedbackDeliverer",
    "TransferPush",
    "parse_push",
    "reply_json",
]

# ------------------------------------------------------------------ the push contract

TRANSFER_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)


class TransferPush(BaseModel):
    """One transfer pushed by 110 (POST /api/v1/transfers/110, MQTT cti/110/transfers)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    transfer_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=TRANSFER_ID_PATTERN,
        description="110's incident number (接警单号).",
    )
    mode: Literal["voice", "data"] = Field(
        description="voice: the caller is coming over the 110 line; data: a ticket only."
    )
    caller: str = Field(
        pattern=r"^\+?[0-9][0-9 -]{2,31}$", description="The citizen's number (digits)."
    )
    caller_name: str = Field(default="", max_length=64)
    category: str = Field(default="", max_length=32, description="110's category (警情类别).")
    summary: str = Field(min_length=1, max_length=2000, description="What the citizen wants.")
    address: str = Field(default="", max_length=256)
    location: Location | None = None
    called_at: AwareDatetime = Field(description="When the citizen called 110 (ISO 8601 + offset).")
    operator_id: str = Field(min_length=1, max_length=32, description="The 110 operator (警号).")
    # MQTT only: echoed in the reply on cti/110/transfers/reply
    request_id: str | None = Field(default=None, max_length=64)

    def transfer(self) -> Transfer110:
        return Transfer110(
            transfer_id=self.transfer_id,
            mode=TransferMode(self.mode),
            caller=self.caller,
            caller_name=self.caller_name,
            category=self.category,
            summary=self.summary,
            address=self.address,
            location=None if self.location is None else (self.location.lat, self.location.lon),
            called_at=self.called_at.timestamp(),
            operator_id=self.operator_id,
        )


def parse_push(payload: bytes) -> TransferPush | dict[str, Any]:
    """A push from MQTT, or the error reply (same codes and `fields` as the HTTP 422)."""
    try:
        data = load_json(payload, max_bytes=MAX_PUSH_BYTES)
    except JsonRefused as exc:
        return error_envelope(exc.code, exc.message)
    request_id = data.get("request_id") if isinstance(data, dict) else None
    try:
        return TransferPush.model_validate(data)
    except ValidationError as exc:
        fields = [
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        ]
        rid = request_id if isinstance(request_id, str) else None
        return error_envelope("invalid_request", "; ".join(fields), fields, request_id=rid)


MAX_PUSH_BYTES: Final = 16 * 1024


def reply_json(reply: Reply110) -> tuple[int, dict[str, Any]]:
    """HTTP status and body of a push's reply (MQTT carries the same body)."""
    if reply.result == "conflict":
        return 409, {
            **error_envelope(
                "conflict",
                f"transfer {reply.transfer_id!r} was already pushed with other content; "
                "a transfer id is pushed once (repeat it unchanged, or use a new id)",
                request_id=reply.request_id,
            ),
            "transfer": reply.status,
        }
    body = {
        "ok": True,
        "request_id": reply.request_id,
        "duplicate": reply.result == "duplicate",
        "transfer": reply.status,
    }
    return (200 if reply.result == "duplicate" else 202), body


# ------------------------------------------------------------------ durable state


class Dispatch110Store:
    """The transfers' state and the feedback outbox, in the daemon's database."""

    def __init__(
        self, store: Store, *, webhook: bool, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._webhook = webhook
        self._clock = clock

    async def save(self, reports: Sequence[Report110], ticket_ops: Sequence[OutboxOp]) -> None:
        """Each report's status (upsert) and, with a webhook, its event; the ticket
        operations into the outbox — one transaction."""
        now = self._clock()
        async with self._store.engine.begin() as conn:
            name = conn.dialect.name
            for r in reports:
                status = r.status
                stmt = insert(name, TRANSFERS110).values(
                    transfer_id=r.feedback.transfer_id,
                    received_at=float(status.get("received_at", now)),
                    updated_at=now,
                    status=status,
                )
                await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["transfer_id"],
                        set_={"status": status, "updated_at": now},
                    )
                )
                if self._webhook:
                    await conn.execute(
                        insert(name, FEEDBACK110)
                        .values(
                            event_id=r.feedback.event_id,
                            transfer_id=r.feedback.transfer_id,
                            payload=r.feedback.to_json(),
                            created_at=now,
                            attempts=0,
                            parked=False,
                        )
                        .on_conflict_do_nothing(index_elements=["event_id"])
                    )
            if ticket_ops:
                await write_ops(conn, ticket_ops, now=now)

    async def save_notification(self, event_id: str, url: str, payload: dict[str, Any]) -> None:
        """An escalation's data for the receiving side, queued for the webhook deliverer."""
        async with self._store.engine.begin() as conn:
            await conn.execute(
                insert(conn, FEEDBACK110)
                .values(
                    event_id=event_id[:100],
                    transfer_id=str(payload.get("transfer110") or "")[:64],
                    payload=payload,
                    created_at=self._clock(),
                    attempts=0,
                    parked=False,
                    url=url,
                )
                .on_conflict_do_nothing(index_elements=["event_id"])
            )

    async def status(self, transfer_id: str) -> dict[str, Any] | None:
        q = select(TRANSFERS110.c.status).where(TRANSFERS110.c.transfer_id == transfer_id)
        async with self._store.engine.connect() as conn:
            got = await conn.scalar(q)
        return dict(got) if got is not None else None

    async def load(self, since: float) -> list[dict[str, Any]]:
        """Transfers received since `since` (restart: de-duplication and feedback go on)."""
        q = (
            select(TRANSFERS110.c.status)
            .where(TRANSFERS110.c.received_at >= since)
            .order_by(TRANSFERS110.c.received_at)
        )
        async with self._store.engine.connect() as conn:
            return [dict(r.status) for r in await conn.execute(q)]


# ------------------------------------------------------------------ the webhook


class FeedbackDeliverer:
    """POSTs the feedback rows to the 110 side's URL, in id order, until each is taken.

    2xx: delivered. A connect error, a timeout, 408/425/429/5xx: the same row again after
    a capped, jittered backoff (rows behind it wait: 110 gets its events in order). Any
    other 4xx: parked (logged at error level), the rest flows.
    """

    def __init__(
        self,
        store: Store,
        settings: Dispatch110FeedbackSettings | None,
        *,
        log: FilteringBoundLogger | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        poll_s: float = 5.0,
    ) -> None:
        self._store = store
        self._url = settings.url if settings is not None else None
        self._token = settings.token if settings is not None else None
        self._retry_max_s = settings.retry_max_s if settings is not None else 60.0
        self._log: FilteringBoundLogger = log or structlog.get_logger("cti.dispatch110")
        headers = {"User-Agent": f"hotline-cti/{__version__}", "Content-Type": "application/json"}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=settings.timeout_s if settings is not None else 5.0,
            transport=transport,
            follow_redirects=False,
        )
        self._wake = asyncio.Event()
        self._poll_s = poll_s
        self._rng = random.Random()  # noqa: S311  # nosec B311  # backoff jitter, not cryptography
        self.failures = 0
        self.delivered = 0

    def notify(self) -> None:
        self._wake.set()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                sent = await self._drain()
            except (SQLAlchemyError, OSError) as exc:
                self._log.warning("feedback110_db_error", error=repr(exc))
                sent = False
            if not sent and self.failures:
                delay = backoff_delay(min(self.failures, 8), 0.5, self._retry_max_s, self._rng)
                await asyncio.sleep(delay)
                continue
            try:
                async with asyncio.timeout(self._poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _drain(self) -> bool:
        """Deliver rows until none is left (True) or one failed (False)."""
        q = (
            select(FEEDBACK110)
            .where(FEEDBACK110.c.delivered_at.is_(None), FEEDBACK110.c.parked.is_(False))
            .order_by(FEEDBACK110.c.id)
            .limit(50)
        )
        while True:
            async with self._store.engine.connect() as conn:
                rows = list(await conn.execute(q))
            if not rows:
                self.failures = 0
                return True
            for row in rows:
                outcome, error = await self._post(row.event_id, row.payload, row.url)
                values: dict[str, Any] = {"attempts": row.attempts + 1, "last_error": error}
                if outcome == "delivered":
                    values["delivered_at"] = time.time()
                elif outcome == "parked":
                    values["parked"] = True
                    self._log.error(
                        "feedback110_parked",
                        transfer_id=row.transfer_id,
                        event_id=row.event_id,
                        error=error,
                    )
                async with self._store.engine.begin() as conn:
                    await conn.execute(
                        update(FEEDBACK110).where(FEEDBACK110.c.id == row.id).values(**values)
                    )
                if outcome == "retry":
                    self.failures += 1
                    self._log.warning(
                        "feedback110_retry",
                        transfer_id=row.transfer_id,
                        event_id=row.event_id,
                        attempt=row.attempts + 1,
                        error=error,
                    )
                    return False
                self.failures = 0
                if outcome == "delivered":
                    self.delivered += 1

    async def _post(self, event_id: str, payload: Any, url: str | None) -> tuple[str, str | None]:
        target = url or self._url
        if target is None:
            return "parked", "no URL: dispatch110.feedback.url is not configured"
        headers = {"Idempotency-Key": event_id}
        if url is None and self._token is not None:  # 110's token goes to 110's URL only
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        try:
            resp = await self._client.post(target, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            return "retry", f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= resp.status_code < 300:
            return "delivered", None
        # an error page that echoes our headers must not put 110's token in the logs
        error = f"HTTP {resp.status_code}: {redact_credentials(resp.text, resp.request)[:300]}"
        if resp.status_code in (408, 425, 429) or resp.status_code >= 500:
            return "retry", error
        if 300 <= resp.status_code < 400:
            return "retry", error + " (redirects are not followed: check the url)"
        return "parked", error
