"""The HTTP work-order backend: the city's ticket system over its REST API.

The contract (docs/workorders.md, "The HTTP backend"):

* create: ``POST {base}/tickets`` with ``Idempotency-Key`` and the draft as JSON;
  ``200``/``201`` (or ``409`` for a key already used) with ``{"number": ...}``;
* update: ``PATCH {base}/tickets/{number}`` with ``Idempotency-Key`` and the call's facts;
* find: ``GET {base}/tickets?caller=..&since=<ISO 8601 UTC>&limit=n`` → ``[ticket, ...]``;
* status: ``GET {base}/tickets/{number}`` → ``ticket``, ``404`` → None.

Every failure becomes one of the port's two exceptions, so the outbox can decide: what
may work later (no connection, a timeout, ``408``/``425``/``429``/``5xx``, a redirect, a
malformed answer to a read) is `WorkOrderUnavailable`, with the server's ``Retry-After``;
what will not (another ``4xx``, a malformed answer to a write) is `WorkOrderRejected`.
No httpx error and no `OSError` leaves this module.

A field map renames our JSON fields (`Ticket.to_json()` names) to the backend's on the
way out — request bodies and the ``caller`` query parameter — and back on the way in.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import quote

import httpx
import structlog
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from structlog.typing import FilteringBoundLogger

from cti import __version__
from cti.adapters.redact import redact_credentials
from cti.jsonin import JsonRefused, load_json
from cti.settings import WorkOrdersHttpSettings
from cti.workorders.backend import WorkOrderRejected, WorkOrderUnavailable
from cti.workorders.model import (
    RequestType,
    Ticket,
    TicketCallFacts,
    TicketDraft,
    TicketRating,
    TicketRef,
    TicketTransfer,
)

__all__ = [
    "BODY_EXCERPT",
    "MAX_ANSWER_BYTES",
    "MAX_NUMBER_LENGTH",
    "HttpWorkOrders",
    "retry_after_s",
]

BODY_EXCERPT: Final = 500
"""Characters of a response body kept in an error (and the outbox's `last_error`)."""

MAX_NUMBER_LENGTH: Final = 64
"""The longest ticket number the outbox can store (`outbox.ticket_number` is String(64));
a longer one is rejected here rather than failing the outbox's write over and over."""

MAX_ANSWER_BYTES: Final = 1024 * 1024
"""The largest JSON answer parsed (a `find` of 20 tickets is some 20 KiB)."""

_RETRYABLE: Final = frozenset({408, 425, 429})


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` value (delay-seconds or an HTTP-date),
    or None when there is none or it cannot be read."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class HttpWorkOrders:
    """`WorkOrderBackend` over HTTP (JSON), with one pooled `httpx.AsyncClient`.

    Args:
        settings: the ``workorders.http`` section: base URL, bearer token, timeouts, TLS,
            field map.
        log: a structlog logger (default ``cti.workorders.http``).
        transport: an httpx transport instead of the network (tests, proxies).
        clock: epoch seconds, for ``Retry-After`` dates.

    Raises:
        ValueError: ``ca_file`` cannot be loaded as PEM certificates.

    Close it with `aclose()`.
    """

    def __init__(
        self,
        settings: WorkOrdersHttpSettings,
        *,
        log: FilteringBoundLogger | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._log: FilteringBoundLogger = log or structlog.get_logger("cti.workorders.http")
        self._clock = clock
        self._total = settings.timeout_s
        self._base = settings.base_url + "/"  # so "tickets" lands below its path
        self._out: Mapping[str, str] = dict(settings.field_map)
        self._in: Mapping[str, str] = {theirs: ours for ours, theirs in self._out.items()}
        headers = {"User-Agent": f"hotline-cti/{__version__}", "Accept": "application/json"}
        if settings.token is not None:
            headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=self._base,
            headers=headers,
            timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
            verify=_verify(settings),
            transport=transport,
            # a redirect means a wrong base_url: report it rather than re-send a POST
            follow_redirects=False,
        )
        self._log.info(
            "workorders_http_ready",
            base_url=settings.base_url,
            token=settings.token is not None,
            verify_tls=settings.verify_tls,
            ca_file=settings.ca_file,
            field_map=self._out or None,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    # ------------------------------------------------------------------ the port

    async def create(self, draft: TicketDraft, *, key: str) -> TicketRef:
        resp = await self._send(
            "create", "POST", "tickets", key=key, body=self._rename(draft.to_json())
        )
        if resp.status_code == 409:
            # the key was used before: the body names the ticket it made
            number = self._number(resp)
            if number is None:
                raise WorkOrderRejected(409, _excerpt(resp))
            return TicketRef(number=number)
        if not resp.is_success:
            self._fail("create", resp)
        number = self._number(resp)
        if number is None:
            # the backend took it but did not say which ticket: retrying the same request
            # gets the same answer, so park it (the key makes a requeue safe)
            field = self._out.get("number", "number")
            msg = f"malformed answer, no ticket number {field!r}: {_excerpt(resp)}"
            raise WorkOrderRejected(resp.status_code, msg)
        return TicketRef(number=number)

    async def update(self, number: str, facts: TicketCallFacts, *, key: str) -> None:
        resp = await self._send(
            "update", "PATCH", _ticket_path(number), key=key, body=self._rename(facts.to_json())
        )
        if not resp.is_success:
            self._fail("update", resp)

    async def rate(self, number: str, rating: TicketRating, *, key: str) -> None:
        body = {k: v for k, v in rating.to_json().items() if k != "at"}
        resp = await self._send(
            "rate", "PATCH", _ticket_path(number), key=key, body=self._rename(body)
        )
        if not resp.is_success:
            self._fail("rate", resp)

    async def find_recent_by_caller(
        self, caller: str, *, since: float, limit: int = 20
    ) -> list[Ticket]:
        params = {
            self._out.get("caller", "caller"): caller,
            "since": datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds"),
            "limit": str(limit),
        }
        params["since"] = params["since"].replace("+00:00", "Z")
        resp = await self._send("find", "GET", "tickets", params=params)
        if not resp.is_success:
            self._fail("find", resp)
        data = _json(resp, "find")
        if not isinstance(data, list):
            msg = f"find: malformed answer, not a JSON array: {_excerpt(resp)}"
            raise WorkOrderUnavailable(msg)
        tickets = [self._ticket(item, "find") for item in data]
        # a backend that ignores the filter must not show an agent another citizen's
        # tickets (personal data); since and limit are enforced for the same reason
        mine = [t for t in tickets if t.caller == caller and t.created_at >= since]
        if len(mine) < len(tickets):
            self._log.warning(
                "workorders_http_tickets_dropped",
                dropped=len(tickets) - len(mine),
                reason="not this caller's, or older than since",
            )
        mine.sort(key=lambda t: t.created_at, reverse=True)  # stable: the backend's order
        return mine[:limit]

    async def status(self, number: str) -> Ticket | None:
        resp = await self._send("status", "GET", _ticket_path(number))
        if resp.status_code == 404:
            return None
        if not resp.is_success:
            self._fail("status", resp)
        return self._ticket(_json(resp, "status"), "status")

    # ------------------------------------------------------------------ plumbing

    async def _send(
        self,
        op: str,
        method: str,
        url: str,
        *,
        key: str | None = None,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers: dict[str, str] = {}
        content: bytes | None = None
        if key is not None:
            headers["Idempotency-Key"] = key
        if body is not None:
            try:
                content = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
            except (TypeError, ValueError) as exc:
                # nothing was sent; the same payload can never be sent
                raise WorkOrderRejected(0, f"{op}: cannot encode it as JSON: {exc}") from exc
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        where = f"{method} {self._base}{url}"
        try:
            # httpx's timeouts are per phase; this bounds the whole exchange
            async with asyncio.timeout(self._total):
                resp = await self._client.request(
                    method, url, content=content, params=params, headers=headers
                )
        except TimeoutError as exc:
            msg = f"{op}: {where}: no answer within {self._total:g} s"
            raise WorkOrderUnavailable(msg) from exc
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
            msg = f"{op}: {where}: {type(exc).__name__}: {exc}"[:BODY_EXCERPT]
            raise WorkOrderUnavailable(msg) from exc
        self._log.debug(
            "workorders_http_answer",
            op=op,
            method=method,
            status=resp.status_code,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        return resp

    def _fail(self, op: str, resp: httpx.Response) -> None:
        """Raise the exception of a response that is not a success."""
        status = resp.status_code
        if status in _RETRYABLE or status >= 500 or status < 200:
            wait = retry_after_s(resp.headers.get("Retry-After"), self._clock())
            msg = f"{op}: HTTP {status} {_excerpt(resp)}".rstrip()
            raise WorkOrderUnavailable(msg, retry_after=wait)
        if 300 <= status < 400:
            # not the operation's fault: keep it queued until base_url is fixed
            location = resp.headers.get("Location", "")
            msg = f"{op}: HTTP {status} redirect to {location!r}: check workorders.http.base_url"
            raise WorkOrderUnavailable(msg)
        raise WorkOrderRejected(status, _excerpt(resp))

    def _rename(self, ours: dict[str, Any]) -> dict[str, Any]:
        return {self._out.get(k, k): v for k, v in ours.items()}

    def _number(self, resp: httpx.Response) -> str | None:
        try:
            data = load_json(resp.content, max_bytes=MAX_ANSWER_BYTES)
        except JsonRefused:
            return None
        if not isinstance(data, dict):
            return None
        number = data.get(self._out.get("number", "number"))
        if isinstance(number, bool) or not isinstance(number, str | int):
            return None
        text = str(number)
        if not text or len(text) > MAX_NUMBER_LENGTH or not text.isprintable():
            return None
        return text

    def _ticket(self, item: Any, op: str) -> Ticket:
        if not isinstance(item, dict):
            msg = f"{op}: malformed answer, a ticket is not a JSON object: {str(item)[:200]}"
            raise WorkOrderUnavailable(msg)
        ours: dict[str, Any] = {}
        for name, value in item.items():
            if name in self._in:
                ours[self._in[name]] = value
            elif name not in self._out:  # theirs under one of our renamed names: not ours
                ours[name] = value
        try:
            parsed = _TicketIn.model_validate(ours)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]
            )
            msg = f"{op}: malformed ticket ({problems}): {json.dumps(item, ensure_ascii=False)}"
            raise WorkOrderUnavailable(msg[:BODY_EXCERPT]) from exc
        return parsed.ticket()


def _verify(settings: WorkOrdersHttpSettings) -> ssl.SSLContext | bool:
    if not settings.verify_tls:
        return False
    if settings.ca_file is None:
        return True  # the system's trust store (or $SSL_CERT_FILE)
    try:
        return ssl.create_default_context(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        msg = f"workorders.http.ca_file {settings.ca_file}: cannot load it: {exc}"
        raise ValueError(msg) from exc


def _ticket_path(number: str) -> str:
    return "tickets/" + quote(number, safe="")


def _excerpt(resp: httpx.Response) -> str:
    try:
        text = resp.text
    except (UnicodeDecodeError, LookupError):
        text = resp.content.decode("utf-8", "replace")
    # an error page that echoes our headers must not put the token in the logs
    return redact_credentials(text.strip(), _request_of(resp))[:BODY_EXCERPT]


def _request_of(resp: httpx.Response) -> httpx.Request | None:
    try:
        return resp.request
    except RuntimeError:  # a Response built without a request (tests)
        return None


def _json(resp: httpx.Response, op: str) -> Any:
    # not resp.json(): a bare json.loads, which deep nesting or a long number make raise
    # RecursionError/ValueError out of the outbox and the pop lookup (cti.jsonin)
    try:
        return load_json(resp.content, max_bytes=MAX_ANSWER_BYTES)
    except JsonRefused as exc:
        msg = f"{op}: malformed answer ({exc.message}): {_excerpt(resp)}"
        raise WorkOrderUnavailable(msg[:BODY_EXCERPT]) from exc


def _epoch(value: float | datetime) -> float:
    return value.timestamp() if isinstance(value, datetime) else value


# -------------------------------------------------------------------- parsing answers
# Lenient where it costs nothing (unknown fields are ignored, a missing or null text is
# ""), strict where a wrong value would mislead an agent (times need a UTC offset).

_TEXTS: Final = ("caller", "caller_name", "line", "line_name", "department", "origin", "skill")


class _TransferIn(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    type: str
    by: str
    to: str
    at: float | AwareDatetime


class _TicketIn(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    number: str = Field(min_length=1)
    status: str
    created_at: float | AwareDatetime
    caller: str = ""
    caller_name: str = ""
    line: str = ""
    line_name: str = ""
    department: str = ""
    origin: str = ""
    skill: str = ""
    call_ids: tuple[str, ...] = ()
    request_type: str | None = None
    content: str = ""
    address: str = ""
    urgency: str | None = None
    deadline: float | AwareDatetime | None = None
    satisfaction: str | None = None
    seat: str | None = None
    recording: str | None = None
    wait_s: float | None = None
    talk_s: float | None = None
    outcome: str | None = None
    transfers: tuple[_TransferIn, ...] = ()
    external_ref: str | None = None
    flagged: bool = False

    @field_validator(*_TEXTS, "content", "address", mode="before")
    @classmethod
    def _null_text(cls, value: object) -> object:
        return "" if value is None else value

    @field_validator("call_ids", "transfers", mode="before")
    @classmethod
    def _null_list(cls, value: object) -> object:
        return () if value is None else value

    def ticket(self) -> Ticket:
        kinds = {t.value for t in RequestType}
        return Ticket(
            number=self.number,
            status=self.status,
            caller=self.caller,
            caller_name=self.caller_name,
            created_at=_epoch(self.created_at),
            line=self.line,
            line_name=self.line_name,
            department=self.department,
            origin=self.origin,
            skill=self.skill,
            call_ids=self.call_ids,
            # a word of the backend's own is not one of ours: no type rather than a wrong one
            request_type=RequestType(self.request_type) if self.request_type in kinds else None,
            content=self.content,
            address=self.address,
            urgency=self.urgency,
            deadline=None if self.deadline is None else _epoch(self.deadline),
            satisfaction=self.satisfaction,
            seat=self.seat,
            recording=self.recording,
            wait_s=self.wait_s,
            talk_s=self.talk_s,
            outcome=self.outcome,
            transfers=tuple(
                TicketTransfer(type=t.type, by=t.by, to=t.to, at=_epoch(t.at))
                for t in self.transfers
            ),
            external_ref=self.external_ref,
            flagged=self.flagged,
        )
