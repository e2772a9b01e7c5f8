"""AMI adapter: one supervised connection per Asterisk node, typed events in wire order.

Built on panoramisk 1.4's protocol class, with the parts that lose data or hang replaced
(each is a known panoramisk 1.4 problem, see docs/panoramisk.md):

* framing and decoding: :mod:`cti.adapters.amiwire` (split UTF-8 characters, empty
  last-line values, GBK trunks);
* event delivery: one synchronous sink putting typed events on one bounded queue in wire
  order (panoramisk starts coroutine callbacks unordered with ``ensure_future``); an
  overflow is counted, logged as an error and reported to the core as
  :class:`~cti.events.AmiEventsLost` so it resyncs;
* actions: every action has a deadline; single replies resolve on their ``Response``
  (``QueueAdd`` never resolved in panoramisk), lists on their ``...Complete`` event, async
  ``Originate`` on its ``OriginateResponse``; an action in flight when the connection
  drops fails with :class:`AmiConnectionLostError` and is **never** re-sent (panoramisk
  replays unanswered actions after a reconnect: a second Redirect or Originate);
* the connection: ``connect()`` in panoramisk returns before login and retries a wrong
  secret forever in silence. Here login is awaited; a refused login raises
  :class:`AmiLoginError` (fatal on the first connection, logged at error level and retried
  with backoff after the node was once up); pings have a deadline so a half-open socket is
  detected; reconnects use capped exponential backoff with full jitter.

Resync: right after login the client sends ``CoreShowChannels`` and ``DeviceStateList``
and streams their items (``CoreShowChannel`` ... ``CoreShowChannelsComplete``,
``DeviceStateChange`` ... ``DeviceStateListComplete``) into the event queue *in wire
order*, so the core's view after a reconnect is consistent with every event around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import socket
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

import structlog
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from cti.adapters.amiwire import AmiWireDecoder, encode_action
from cti.adapters.backoff import backoff_delay
from cti.events import (
    AmiConnected,
    AmiDisconnected,
    AmiEvent,
    AmiEventsLost,
    ConnectionEvent,
    parse_event,
)
from cti.settings import AmiNode

__all__ = [
    "AmiActionError",
    "AmiActionTimeoutError",
    "AmiClient",
    "AmiConnectError",
    "AmiConnectionLostError",
    "AmiError",
    "AmiLoginError",
    "AmiNotConnectedError",
    "AmiReply",
    "EventQueue",
    "QueueItem",
]

QueueItem = AmiEvent | ConnectionEvent
ActionHeaders = Mapping[str, str | Sequence[str]]

# Sent after every login, their lists streamed into the event queue in wire order: what
# exists (channels), and the current state of every device (a seat's phone may have gone
# unavailable while we were away: the seat board reconciles from these). Their replies are
# lists ending in "<Name>Complete" even where an Asterisk forgets `EventList: start`.
_RESYNC_ACTIONS: Final = ("CoreShowChannels", "DeviceStateList")


# --------------------------------------------------------------------------- errors


class AmiError(Exception):
    """Base of every AMI adapter error; `node` names the Asterisk node."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(f"[{node}] {message}")
        self.node = node


class AmiConnectError(AmiError):
    """The TCP connection or the AMI greeting failed."""


class AmiLoginError(AmiConnectError):
    """Asterisk refused the login (wrong username/secret, or ACL `permit`/`deny`)."""

    def __init__(self, node: str, username: str, reason: str) -> None:
        super().__init__(node, f"AMI login as {username!r} refused: {reason}")
        self.username = username
        self.reason = reason


class AmiNotConnectedError(AmiError):
    """An action was asked for while the node is not logged in; nothing was sent."""


class AmiConnectionLostError(AmiError):
    """The connection dropped while the action was in flight. It is not re-sent: the
    caller decides (Asterisk may or may not have executed it)."""

    def __init__(self, node: str, action: str) -> None:
        super().__init__(node, f"connection lost while {action} was in flight (not re-sent)")
        self.action = action


class AmiActionTimeoutError(AmiError):
    def __init__(self, node: str, action: str, timeout: float) -> None:
        super().__init__(node, f"no complete reply to {action} within {timeout:g} s")
        self.action = action
        self.timeout = timeout


class AmiActionError(AmiError):
    """Asterisk answered `Response: Error` (or `Failure` for an Originate)."""

    def __init__(self, node: str, action: str, reply: AmiReply) -> None:
        super().__init__(
            node, f"{action} failed: {reply.message or reply.response.get('Response')}"
        )
        self.action = action
        self.reply = reply


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class AmiReply:
    """The reply to one action.

    Attributes:
        response: the `Response` message (a panoramisk `Message`: case-insensitive keys).
        items: for list actions the typed list events (without the final `...Complete`);
            for an async Originate, its `OriginateResponse`.
    """

    response: Message
    items: tuple[AmiEvent, ...] = ()

    @property
    def ok(self) -> bool:
        return str(self.response.get("Response", "")).lower() in {"success", "follows", "goodbye"}

    @property
    def message(self) -> str:
        return str(self.response.get("Message", ""))


@dataclass(slots=True)
class _Pending:
    action: str
    future: asyncio.Future[AmiReply]
    kind: Literal["single", "list", "originate"]
    stream: bool
    response: Message | None = None
    items: list[AmiEvent] = field(default_factory=list)


# --------------------------------------------------------------------------- event queue


class EventQueue:
    """The one bounded, ordered queue between every AMI connection and the core.

    `put` is synchronous (called from protocol callbacks). When the queue is full the
    event is dropped, counted per node and logged at error level once per overflow; as
    soon as there is room again an :class:`AmiEventsLost` goes in first, so the core
    knows its view is stale and resyncs.
    """

    def __init__(self, maxsize: int, *, log: Any = None) -> None:
        self._q: asyncio.Queue[QueueItem] = asyncio.Queue(maxsize)
        self._lost: dict[str, int] = {}
        self.dropped_total = 0
        self._log = log or structlog.get_logger("cti.ami")
        self.maxsize = maxsize

    def qsize(self) -> int:
        return self._q.qsize()

    def put(self, item: QueueItem) -> None:
        if self._lost:
            self._flush_lost(reserve=1)
        if self._q.full() or (self._lost and item.node in self._lost):
            # keep dropping a node's events until its marker is in: the core must see the
            # marker before anything that came after the gap
            count = self._lost.get(item.node, 0)
            if count == 0:
                self._log.error(
                    "ami_event_queue_overflow",
                    node=item.node,
                    maxsize=self.maxsize,
                    hint="the core is too slow or stalled; events are dropped and a resync follows",
                )
            self._lost[item.node] = count + 1
            self.dropped_total += 1
            return
        self._q.put_nowait(item)

    def _flush_lost(self, reserve: int) -> None:
        for node in list(self._lost):
            if self._q.maxsize - self._q.qsize() <= reserve:
                return
            count = self._lost.pop(node)
            self._log.error("ami_events_lost", node=node, count=count)
            self._q.put_nowait(AmiEventsLost(node=node, time=time.time(), count=count))

    async def get(self) -> QueueItem:
        item = await self._q.get()
        if self._lost:
            self._flush_lost(reserve=0)
        return item

    def get_nowait(self) -> QueueItem:
        item = self._q.get_nowait()
        if self._lost:
            self._flush_lost(reserve=0)
        return item


# --------------------------------------------------------------------------- protocol


class _AmiProtocol(AMIProtocol):  # type: ignore[misc]  # panoramisk is untyped
    """panoramisk's AMI protocol with its parser and response matching replaced.

    Every callback hands the bytes to the client; an exception in here would make
    asyncio close the transport, so the client's handlers never raise.
    """

    def __init__(self, client: AmiClient) -> None:
        self._client = client
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._client._on_connection_made(transport)  # noqa: SLF001

    def data_received(self, data: bytes) -> None:
        self._client._on_data(data)  # noqa: SLF001

    def eof_received(self) -> bool:
        return False  # let the transport close; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._client._on_connection_lost(exc)  # noqa: SLF001


# --------------------------------------------------------------------------- client


# Asterisk 22's manager (AMI 11) has the advanced event filters (MatchCriteria); before
# them, a Filter's value is a regex over the whole event, and ours would let nothing through.
_SERVER_FILTER_MIN_AMI: Final = 11
_VARIABLE_NAME = re.compile(r"[A-Za-z0-9_]+")


def server_filters(
    keep_events: Collection[str], keep_variables: Collection[str] | None
) -> list[dict[str, str]]:
    """The ``Filter`` actions that make Asterisk send this session only the events in
    ``keep_events`` (and of the VarSets, only those of ``keep_variables``, inheritance
    underscores allowed): include filters, so everything else is excluded on the server —
    no bytes on the socket, no frame to split. Events that answer an action (a list's items,
    written to the session directly) are not filtered by Asterisk; OriginateResponse is an
    ordinary event with an ActionID, so it is named (the executor waits for it)."""
    names = sorted({*keep_events, "OriginateResponse"})
    out: list[dict[str, str]] = []
    for name in names:
        if name == "VarSet" and keep_variables is not None:
            variables = sorted(keep_variables)
            if all(_VARIABLE_NAME.fullmatch(v) for v in variables):
                out.append(
                    {
                        "Action": "Filter",
                        "Operation": "Add",
                        "MatchCriteria": (
                            "action(include),name(VarSet),header(Variable),method(regex)"
                        ),
                        "Filter": "^_*(" + "|".join(variables) + ")$",
                    }
                )
                continue
        out.append(
            {
                "Action": "Filter",
                "Operation": "Add",
                "MatchCriteria": f"action(include),name({name})",
            }
        )
    return out


def _ami_major(version: str) -> int:
    head = version.partition(".")[0]
    return int(head) if head.isdigit() and len(head) < 4 else 0


class AmiClient:
    """A supervised AMI connection to one Asterisk node.

    `run()` connects, logs in, serves and reconnects forever; only bugs and a refused
    first login escape it. Events go to the shared :class:`EventQueue` in wire order,
    framed by :class:`~cti.events.AmiConnected` / :class:`~cti.events.AmiDisconnected`.
    """

    def __init__(
        self,
        node: AmiNode,
        events: EventQueue,
        *,
        log: Any = None,
        clock: Callable[[], float] = time.time,
        resync_actions: Sequence[str] = _RESYNC_ACTIONS,
        rng: random.Random | None = None,
        keep_events: Collection[str] | None = None,
        keep_variables: Collection[str] | None = None,
        filter_on_server: bool = False,
    ) -> None:
        self.node = node
        # with keep_events: ask Asterisk to send only those (server_filters), where it can
        self._filter_on_server = filter_on_server
        self.server_filtered = False
        """True while this session's events are filtered by Asterisk (server_filters)."""
        self.name = node.name
        # the events the consumer reads (None: all); see AmiWireDecoder
        self._keep_events = keep_events
        self._keep_variables = keep_variables
        self._events = events
        self._log = (log or structlog.get_logger("cti.ami")).bind(node=node.name)
        self._clock = clock
        self._resync_actions = tuple(resync_actions)
        self._rng = rng or random.Random()  # noqa: S311  # nosec B311  # jitter, not crypto
        self._ids = itertools.count(1)
        self._id_prefix = f"cti-{node.name}-{id(self):x}-"
        self._pending: dict[str, _Pending] = {}
        # list actions that timed out: their late items must not leak into the stream
        self._abandoned: deque[str] = deque(maxlen=64)
        self._transport: asyncio.Transport | None = None
        self._decoder = AmiWireDecoder(
            fallback_encoding=node.encoding_fallback,
            keep_events=keep_events,
            keep_variables=keep_variables,
        )
        self._banner: asyncio.Future[str] | None = None
        self._lost: asyncio.Future[str] | None = None
        self._login_id: str | None = None
        self._connected = asyncio.Event()
        self._resync_wanted = asyncio.Event()
        self._ever_logged_in = False
        self.version = ""
        self.state: Literal["idle", "connecting", "connected", "backoff", "stopped"] = "idle"
        self.reconnects = 0
        self.last_error = ""
        self.events_received = 0
        self.parse_errors = 0

    # ------------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def wire_stats(self) -> Any:
        return self._decoder.stats

    def request_resync(self) -> None:
        """Ask for a resync (the `CoreShowChannels` list, streamed into the event queue)
        as soon as possible: after events were lost. Coalesces repeated requests; a
        request while disconnected is served by the resync that follows the next login."""
        self._resync_wanted.set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def action(
        self,
        headers: ActionHeaders,
        *,
        timeout: float | None = None,
        check: bool = True,
        stream_items: bool = False,
    ) -> AmiReply:
        """Send one action and wait for its complete reply.

        Args:
            headers: the action's headers (`Action` required; `ActionID` is added).
            timeout: seconds for the complete reply (default: the node's action_timeout).
            check: raise :class:`AmiActionError` on `Response: Error` / a failed Originate.
            stream_items: put a list action's items into the event queue (wire order)
                instead of returning them.

        Raises:
            AmiNotConnectedError: not logged in; nothing was sent.
            AmiActionTimeoutError: no complete reply in time (the action may have run).
            AmiConnectionLostError: the connection dropped first; the action is not re-sent.
            AmiActionError: Asterisk said no (only with check=True).
            ValueError: a header contains a line break (AMI header injection).
        """
        if not self._connected.is_set() or self._transport is None:
            raise AmiNotConnectedError(
                self.name, f"not connected; {headers.get('Action')} not sent"
            )
        return await self._send(headers, timeout=timeout, check=check, stream_items=stream_items)

    async def run(self) -> None:
        """Connect and serve forever, reconnecting with backoff."""
        attempt = 0
        try:
            while True:
                self.state = "connecting"
                was_up = False
                try:
                    was_up = await self._session()
                except AmiLoginError as exc:
                    self.last_error = str(exc)
                    if not self._ever_logged_in:
                        raise
                    self._log.error("ami_login_refused", reason=exc.reason, username=exc.username)
                except (OSError, AmiError, TimeoutError) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._log.warning("ami_connect_failed", error=self.last_error, attempt=attempt)
                if was_up:
                    attempt = 0
                self.state = "backoff"
                delay = backoff_delay(
                    attempt, self.node.reconnect_min, self.node.reconnect_max, self._rng
                )
                attempt += 1
                self.reconnects += 1
                self._log.info("ami_reconnect_in", delay_s=round(delay, 2), attempt=attempt)
                await asyncio.sleep(delay)
        finally:
            self.state = "stopped"

    # ------------------------------------------------------------------ session

    async def _session(self) -> bool:
        """One connection's life. Returns True if it got logged in before it ended."""
        loop = asyncio.get_running_loop()
        self._decoder = AmiWireDecoder(
            fallback_encoding=self.node.encoding_fallback,
            keep_events=self._keep_events,
            keep_variables=self._keep_variables,
        )
        self._banner = loop.create_future()
        self._lost = loop.create_future()
        self._log.debug("ami_connecting", host=self.node.host, port=self.node.port)
        transport: asyncio.BaseTransport | None = None
        logged_in = False
        try:
            async with asyncio.timeout(self.node.connect_timeout):
                transport, _ = await loop.create_connection(
                    lambda: _AmiProtocol(self), self.node.host, self.node.port
                )
                banner = await asyncio.wait(
                    [self._banner, self._lost], return_when=asyncio.FIRST_COMPLETED
                )
                if self._lost.done():
                    raise AmiConnectError(
                        self.name, f"closed before greeting: {self._lost.result()}"
                    )
                del banner
                if not self._banner.result():
                    raise AmiConnectError(
                        self.name, "peer is not an Asterisk manager (no greeting)"
                    )
                self.version = self._banner.result().partition("/")[2]
                await self._login()
            logged_in = True
            self._log.info("ami_connected", version=self.version, reconnect=self.reconnects > 0)
            self.server_filtered = False
            if self._filter_on_server:
                await self._add_server_filters()
            async with asyncio.TaskGroup() as tg:
                self._resync_wanted.clear()  # the login's own resync serves earlier requests
                helpers = [
                    tg.create_task(self._ping_loop(), name=f"ami[{self.name}].ping"),
                    tg.create_task(self._resync_on_request(), name=f"ami[{self.name}].resync"),
                ]
                for act in self._resync_actions:
                    tg.create_task(self._resync(act), name=f"ami[{self.name}].resync")
                reason = await self._lost
                for task in helpers:
                    task.cancel()
            self._log.warning("ami_disconnected", reason=reason)
        finally:
            self._teardown(transport)
        return logged_in

    async def _login(self) -> None:
        secret = self.node.secret.get_secret_value()
        headers = {
            "Action": "Login",
            "Username": self.node.username,
            "Secret": secret,
            "Events": "on",
        }
        action_id = self._next_id()
        self._login_id = action_id
        try:
            reply = await self._send(
                headers, timeout=self.node.connect_timeout, check=False, action_id=action_id
            )
        except AmiConnectionLostError as exc:
            # Asterisk closes the socket right after a refusal; a close without any reply
            # usually means the manager ACL (permit/deny) rejected us.
            raise AmiLoginError(
                self.name, self.node.username, "connection closed during login"
            ) from exc
        if not reply.ok:
            raise AmiLoginError(self.name, self.node.username, reply.message or "refused")

    async def _add_server_filters(self) -> None:
        """The session's event filters (filters die with the session: every login adds
        them). Refused (the user lacks the `system` write permission) or an older Asterisk:
        logged, and the decoder's own dropping goes on doing the same, in Python."""
        if self._keep_events is None:
            return  # the session reads every event: nothing to filter
        if _ami_major(self.version) < _SERVER_FILTER_MIN_AMI:
            self._log.info("ami_server_filter_skipped", reason="needs Asterisk 22 (AMI 11)")
            return
        actions = server_filters(self._keep_events, self._keep_variables)
        replies = await asyncio.gather(
            *(self._send(a, timeout=self.node.action_timeout, check=False) for a in actions),
            return_exceptions=True,
        )
        refused = [r for r in replies if isinstance(r, BaseException) or not r.ok]
        if refused:
            first = refused[0]
            self._log.warning(
                "ami_server_filter_refused",
                refused=len(refused),
                filters=len(actions),
                reason=str(first) if isinstance(first, BaseException) else first.message,
            )
        else:
            self.server_filtered = True
            self._log.info("ami_server_filter_added", filters=len(actions))

    async def _resync(self, action: str) -> None:
        try:
            await self._send(
                {"Action": action}, timeout=self.node.action_timeout, stream_items=True
            )
        except AmiError as exc:
            # a failed resync leaves the core with a stale view: log loudly, reconnecting
            # would not help more than the next event; the core copes with unknown channels
            self._log.error("ami_resync_failed", action=action, error=str(exc))

    async def _resync_on_request(self) -> None:
        while True:
            await self._resync_wanted.wait()
            self._resync_wanted.clear()
            self._log.warning("ami_resync_requested", actions=list(self._resync_actions))
            for act in self._resync_actions:
                await self._resync(act)

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.node.ping_interval)
            try:
                await self._send({"Action": "Ping"}, timeout=self.node.ping_timeout)
            except AmiActionTimeoutError:
                self._log.warning(
                    "ami_ping_timeout",
                    timeout_s=self.node.ping_timeout,
                    hint="half-open connection or stalled Asterisk; reconnecting",
                )
                if self._transport is not None:
                    self._transport.abort()
                return
            except AmiError:
                return

    def _teardown(self, transport: asyncio.BaseTransport | None) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        # duck-typed like _on_connection_made: uvloop's transport is no asyncio.Transport
        abort = getattr(transport, "abort", None)
        if callable(abort):
            abort()
        self._transport = None
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(AmiConnectionLostError(self.name, p.action))
                # nobody may await it any more (timed out meanwhile): don't warn about it
                p.future.exception()
        if was_connected:
            self._events.put(
                AmiDisconnected(
                    node=self.name, time=self._clock(), reason=self.last_error or "closed"
                )
            )

    # ------------------------------------------------------------------ sending

    def _next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids)}"

    async def _send(
        self,
        headers: ActionHeaders,
        *,
        timeout: float | None,
        check: bool = True,
        stream_items: bool = False,
        action_id: str | None = None,
    ) -> AmiReply:
        name = str(headers.get("Action", ""))
        if not name:
            raise ValueError("an AMI action needs an 'Action' header")
        out: dict[str, str | list[str]] = {"Action": name}
        for k, v in headers.items():
            if k.lower() in {"action", "actionid"}:
                continue
            out[k] = v if isinstance(v, str) else list(v)
        aid = action_id or self._next_id()
        out["ActionID"] = aid
        data = encode_action(out)  # raises ValueError on header injection: nothing sent
        transport = self._transport
        if transport is None or transport.is_closing():
            raise AmiNotConnectedError(self.name, f"not connected; {name} not sent")
        is_async = str(headers.get("Async", "")).lower() in {"true", "yes", "1"}
        kind: Literal["single", "list", "originate"] = "single"
        if name.lower() == "originate" and is_async:
            kind = "originate"
        elif name in _RESYNC_ACTIONS:
            kind = "list"
        fut: asyncio.Future[AmiReply] = asyncio.get_running_loop().create_future()
        self._pending[aid] = _Pending(action=name, future=fut, kind=kind, stream=stream_items)
        transport.write(data)
        wait = self.node.action_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(wait):
                reply = await fut
        except TimeoutError:
            raise AmiActionTimeoutError(self.name, name, wait) from None
        finally:
            # timed out or cancelled: forget it; a late reply is dropped as an orphan, and
            # the late items of a list must not leak into the event stream
            p = self._pending.pop(aid, None)
            if p is not None and p.kind == "list":
                self._abandoned.append(aid)
        if check and not reply.ok:
            raise AmiActionError(self.name, name, reply)
        return reply

    # ------------------------------------------------------------------ receiving

    def _on_connection_made(self, transport: asyncio.BaseTransport) -> None:
        # duck-typed: uvloop's TCPTransport writes like asyncio's but is no subclass of
        # asyncio.Transport (an isinstance check refused every uvloop connection)
        if not callable(getattr(transport, "write", None)):
            msg = f"unexpected transport {transport!r}"
            raise TypeError(msg)
        self._transport = cast("asyncio.Transport", transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def _on_connection_lost(self, exc: Exception | None) -> None:
        reason = f"{type(exc).__name__}: {exc}" if exc else "closed by peer"
        if self._banner is not None and not self._banner.done():
            self._banner.set_result("")
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)
        if not self.last_error or self.connected:
            self.last_error = reason
        # fail in-flight actions now, not at teardown: a waiting login must see it
        for aid, p in list(self._pending.items()):
            if not p.future.done():
                p.future.set_exception(AmiConnectionLostError(self.name, p.action))
                p.future.exception()
            del self._pending[aid]

    def _on_data(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except Exception:  # noqa: BLE001 - a decoder bug must not kill the connection
            self._log.exception("ami_decode_failed")
            return
        if (
            self._banner is not None
            and not self._banner.done()
            and self._decoder.banner is not None
        ):
            self._banner.set_result(self._decoder.banner)
        for msg in messages:
            try:
                self._on_message(msg)
            except Exception:  # noqa: BLE001 - one bad message must not cost the others
                self.parse_errors += 1
                self._log.exception("ami_message_failed", message_event=msg.get("Event"))

    def _on_message(self, msg: dict[str, str]) -> None:
        aid = msg.get("ActionID", "")
        if "Response" in msg and "Event" not in msg:
            self._on_response(aid, msg)
            return
        if "Event" not in msg:
            self._log.debug("ami_unframed_message", keys=sorted(msg)[:8])
            return
        now = self._clock()
        if aid:
            p = self._pending.get(aid)
            if p is not None and self._on_action_event(aid, p, msg, now):
                return
            if aid in self._abandoned:
                return
        self.events_received += 1
        self._events.put(parse_event(self.name, msg, now))

    def _on_response(self, aid: str, msg: dict[str, str]) -> None:
        p = self._pending.get(aid)
        if p is None:
            self._log.debug("ami_orphan_response", action_id=aid, response=msg.get("Response"))
            return
        resp = Message(msg)
        ok = msg.get("Response", "").lower() in {"success", "follows", "goodbye"}
        if aid == self._login_id and ok:
            # synchronously, so AmiConnected precedes the FullyBooted that follows the reply
            self._login_id = None
            self._mark_connected()
        if ok and (msg.get("EventList", "").lower() == "start" or p.kind != "single"):
            p.response = resp
            if p.kind == "single":
                p.kind = "list"
            return
        self._resolve(aid, p, AmiReply(resp))

    def _on_action_event(self, aid: str, p: _Pending, msg: dict[str, str], now: float) -> bool:
        """An event that answers a pending action. True when it was consumed."""
        name = msg.get("Event", "")
        if p.kind == "originate" and name == "OriginateResponse":
            ev = parse_event(self.name, msg, now)
            ok = msg.get("Response", "").lower() == "success"
            reply_msg = Message(dict(msg, Response="Success" if ok else "Error"))
            self._resolve(aid, p, AmiReply(reply_msg, (ev,)))
            self._events.put(ev)  # the core sees it too (callbacks, outbound calls)
            return True
        if p.kind != "list":
            return False
        ev = parse_event(self.name, msg, now)
        if p.stream:
            self._events.put(ev)
        if msg.get("EventList", "").lower() == "complete" or name.endswith("Complete"):
            self._resolve(aid, p, AmiReply(p.response or Message(msg), tuple(p.items)))
        elif not p.stream:
            p.items.append(ev)
        return True

    def _resolve(self, aid: str, p: _Pending, reply: AmiReply) -> None:
        self._pending.pop(aid, None)
        if not p.future.done():
            p.future.set_result(reply)

    def _mark_connected(self) -> None:
        first = not self._ever_logged_in
        self._ever_logged_in = True
        self.state = "connected"
        self.last_error = ""
        self._connected.set()
        self._events.put(
            AmiConnected(
                node=self.name, time=self._clock(), version=self.version, reconnect=not first
            )
        )
