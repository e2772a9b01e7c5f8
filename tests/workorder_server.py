"""A work-order system for tests: the HTTP contract of docs/workorders.md on a real
loopback server (FastAPI served by uvicorn inside the test's event loop).

    srv = WorkOrderServer()
    await srv.start()            # port 0 at first: srv.port, srv.url, srv.settings()
    ...
    await srv.stop()             # connections refused from now on
    await srv.start()            # the same port again; tickets and keys kept in memory

Test knobs: `fail_next(n, status, ...)` makes the next N requests fail; `delay_s` holds
every answer back; `hold_create` (an `asyncio.Event`) makes a create wait, after the
ticket is stored, until it is set (`create_stored` is set at that point), so a test can
kill the client between "the backend has it" and "the client knows". `requests` records
each request, `counts` counts them by operation. `field_names` makes the server speak
another dialect (our name -> its name), as a city system with its own names would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from cti.settings import WorkOrdersHttpSettings
from cti.workorders import (
    RequestType,
    Ticket,
    TicketCallFacts,
    TicketDraft,
    TicketStatus,
)

__all__ = ["Recorded", "WorkOrderServer"]


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as the server saw it (headers with lower-case names)."""

    op: str  # create | update | find | status
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # the JSON body, or None


@dataclass(slots=True)
class _Failure:
    status: int
    body: str
    headers: dict[str, str]


@dataclass(slots=True)
class _Stored:
    draft: TicketDraft
    number: str
    facts: dict[str, TicketCallFacts] = field(default_factory=dict)  # call_id -> facts
    request_type: RequestType | None = None
    content: str = ""


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the test's event loop is not ours to rule."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:
        return


class WorkOrderServer:
    """The contract's server. Args:
    token: the bearer token it wants (None: any request is accepted).
    field_names: our field name -> the name this server uses (bodies, `caller` query).
    conflict_on_repeat: answer a create with a known key `409` instead of `200`.
    host: where to listen.
    ssl_files: (certfile, keyfile) to serve https.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        field_names: Mapping[str, str] | None = None,
        conflict_on_repeat: bool = False,
        host: str = "127.0.0.1",
        ssl_files: tuple[str, str] | None = None,
    ) -> None:
        self.token = token
        self.names = dict(field_names or {})
        self.conflict_on_repeat = conflict_on_repeat
        self.host = host
        self.ssl_files = ssl_files
        self.port = 0
        self.tickets: dict[str, _Stored] = {}  # number -> ticket, in creation order
        self.keys: dict[str, str] = {}  # Idempotency-Key of a create -> number
        self.requests: list[Recorded] = []
        self.counts: Counter[str] = Counter()
        self.extra: dict[str, Any] = {}  # fields of its own added to every ticket it sends
        self.delay_s = 0.0
        self.hold_create: asyncio.Event | None = None
        self.create_stored = asyncio.Event()
        self._failures: list[_Failure] = []
        self._stopping = asyncio.Event()
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.app = self._build()

    # ------------------------------------------------------------------ control

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_files else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def settings(self, **kw: Any) -> WorkOrdersHttpSettings:
        """Client settings for this server: short timeouts, its token and field names."""
        values: dict[str, Any] = {
            "base_url": self.url,
            "timeout_s": 5.0,
            "connect_timeout_s": 1.0,
            "read_timeout_s": 2.0,
            "token": self.token,
            "field_map": self.names,
        }
        values.update(kw)
        return WorkOrdersHttpSettings.model_validate(values)

    def fail_next(
        self,
        n: int,
        status: int,
        *,
        body: str = '{"error": "injected failure"}',
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next *n* requests (any operation) get *status* with *body*."""
        self._failures.extend(_Failure(status, body, dict(headers or {})) for _ in range(n))

    def numbers_by_call(self) -> dict[str, list[str]]:
        """call id -> the numbers of the tickets created for it (one, if all went well)."""
        out: dict[str, list[str]] = {}
        for number, stored in self.tickets.items():
            out.setdefault(stored.draft.call_id, []).append(number)
        return out

    def ticket(self, number: str) -> Ticket:
        """A stored ticket, as the server would send it (in our names)."""
        return self._ticket(self.tickets[number])

    async def start(self) -> None:
        """Listen (on port 0 the first time, then on the same port again)."""
        if self._task is not None:
            msg = "the work-order server is already running"
            raise RuntimeError(msg)
        sock = socket.create_server((self.host, self.port))  # SO_REUSEADDR on POSIX
        self.port = sock.getsockname()[1]
        ssl_kw: dict[str, Any] = {}
        if self.ssl_files is not None:
            ssl_kw = {"ssl_certfile": self.ssl_files[0], "ssl_keyfile": self.ssl_files[1]}
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            **ssl_kw,
        )
        self._stopping = asyncio.Event()
        self._server = _Server(config)
        self._task = asyncio.create_task(
            self._serve(self._server, sock), name=f"workorder-server:{self.port}"
        )
        async with asyncio.timeout(5):
            while not self._server.started:
                if self._task.done():
                    await self._task  # it failed: raise its error
                    msg = "the work-order server stopped while starting"
                    raise RuntimeError(msg)
                await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Stop listening and close every connection; waiting handlers are released."""
        if self._task is None or self._server is None:
            return
        self._stopping.set()
        if self.hold_create is not None:
            self.hold_create.set()
        self._server.should_exit = True
        try:
            async with asyncio.timeout(5):
                await self._task
        finally:
            self._task = None
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @staticmethod
    async def _serve(server: _Server, sock: socket.socket) -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            sock.close()

    # ------------------------------------------------------------------ the contract

    def _build(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.post("/tickets")
        async def create(request: Request) -> Response:
            return await self._handle(request, "create", self._create)

        @app.patch("/tickets/{number}")
        async def update(request: Request, number: str) -> Response:
            return await self._handle(request, "update", lambda rec: self._update(rec, number))

        @app.get("/tickets")
        async def find(request: Request) -> Response:
            return await self._handle(request, "find", self._find)

        @app.get("/tickets/{number}")
        async def status(request: Request, number: str) -> Response:
            return await self._handle(request, "status", lambda _: self._status(number))

        return app

    async def _handle(
        self, request: Request, op: str, answer: Callable[[Recorded], Awaitable[Response]]
    ) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = Recorded(
            op=op,
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        self.requests.append(rec)
        self.counts[op] += 1
        if self.delay_s:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.delay_s):
                    await self._stopping.wait()
        if self._failures:
            f = self._failures.pop(0)
            return Response(f.body, f.status, headers=f.headers, media_type="application/json")
        if self.token is not None and rec.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "unauthorized"}, 401)
        return await answer(rec)

    async def _create(self, rec: Recorded) -> Response:
        key = rec.headers.get("idempotency-key")
        if not key:
            return JSONResponse({"error": "Idempotency-Key missing"}, 400)
        number_field = self.names.get("number", "number")
        if key in self.keys:
            number = self.keys[key]
            return JSONResponse({number_field: number}, 409 if self.conflict_on_repeat else 200)
        try:
            draft = TicketDraft.from_json(self._ours(rec.body))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return JSONResponse({"error": f"bad ticket: {exc!r}"}, 422)
        number = f"WO-{len(self.tickets) + 1:06d}"
        self.keys[key] = number
        self.tickets[number] = _Stored(draft=draft, number=number)
        self.create_stored.set()
        if self.hold_create is not None:
            await self.hold_create.wait()
        return JSONResponse({number_field: number}, 201)

    async def _update(self, rec: Recorded, number: str) -> Response:
        if not rec.headers.get("idempotency-key"):
            return JSONResponse({"error": "Idempotency-Key missing"}, 400)
        stored = self.tickets.get(number)
        if stored is None:
            return JSONResponse({"error": f"no ticket {number}"}, 404)
        try:
            facts = TicketCallFacts.from_json(self._ours(rec.body))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return JSONResponse({"error": f"bad facts: {exc!r}"}, 422)
        stored.facts[facts.call_id] = facts  # an overwrite: idempotent
        return Response(status_code=204)

    async def _find(self, rec: Recorded) -> Response:
        caller = rec.query.get(self.names.get("caller", "caller"))
        try:
            since = datetime.fromisoformat(rec.query["since"]).timestamp()
            limit = int(rec.query.get("limit", "20"))
        except (KeyError, ValueError) as exc:
            return JSONResponse({"error": f"bad query: {exc!r}"}, 400)
        if caller is None:
            return JSONResponse({"error": "caller missing"}, 400)
        found = [
            s
            for s in reversed(self.tickets.values())  # newest created last
            if s.draft.caller == caller and s.draft.created_at >= since
        ]
        found.sort(key=lambda s: s.draft.created_at, reverse=True)
        return JSONResponse([self._theirs(self._ticket(s)) for s in found[:limit]])

    async def _status(self, number: str) -> Response:
        stored = self.tickets.get(number)
        if stored is None:
            return JSONResponse({"error": f"no ticket {number}"}, 404)
        return JSONResponse(self._theirs(self._ticket(stored)))

    # ------------------------------------------------------------------ its dialect

    def _ours(self, body: Any) -> dict[str, Any]:
        back = {theirs: ours for ours, theirs in self.names.items()}
        return {back.get(k, k): v for k, v in body.items()}

    def _theirs(self, ticket: Ticket) -> dict[str, Any]:
        out = {self.names.get(k, k): v for k, v in ticket.to_json().items()}
        out.update(self.extra)
        return out

    @staticmethod
    def _ticket(s: _Stored) -> Ticket:
        d = s.draft
        facts = list(s.facts.values())
        last = facts[-1] if facts else None
        return Ticket(
            number=s.number,
            status=TicketStatus.INTAKE.value,
            caller=d.caller,
            caller_name=d.caller_name,
            created_at=d.created_at,
            line=d.line,
            line_name=d.line_name,
            department=d.department,
            origin=d.origin,
            skill=d.skill,
            call_ids=(d.call_id, *(c for c in s.facts if c != d.call_id)),
            request_type=s.request_type,
            content=s.content,
            seat=last.seat if last is not None and last.seat is not None else d.seat,
            recording=last.recording if last is not None else d.recording,
            wait_s=None if last is None else last.wait_s,
            talk_s=None if last is None else last.talk_s,
            outcome=None if last is None else last.outcome,
            transfers=tuple(t for f in facts for t in f.transfers),
        )
