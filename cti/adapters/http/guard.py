"""Slow and greedy HTTP clients: a connection cap and a header deadline for uvicorn.

Why this exists (issue 16): 3,000 connections each sending one header byte every 10 s
stayed open for ever; under ``ulimit -n 1024`` they took the file descriptors the daemon
needs for AMI (the reconnect failed with ``Too many open files``) and FastAGI (``accept()
out of system resource``): the centre lost its pops to a few idle sockets.

What uvicorn (0.30 to 0.55) offers, and why it is not enough on its own:

* ``timeout_keep_alive`` closes a connection idle *between* requests, but its timer is
  cancelled by the first byte of the next request and never armed on a new connection:
  a client that trickles its headers is never timed out.
* ``limit_concurrency`` answers 503 once a *request* arrives with too many connections
  open; a slow client never completes a request, so it never meets the limit, and every
  accepted socket holds its descriptor meanwhile.
* ``h11_max_incomplete_event_size`` bounds the size of the headers (used: 400 past it).

So :func:`guarded_protocol` subclasses uvicorn's h11 protocol: past ``max_connections``
a new connection gets a canned 503 and is closed at once (its descriptor is back within
the same loop iteration), and the request line and headers must arrive within
``header_timeout_s`` of the connection or of the previous response (408, then closed).
The body's deadline is the app's (``cti.adapters.http.edge``), where a 408 can be answered
properly. The HTTP side can then hold at most ``max_connections`` descriptors, which
:mod:`cti.adapters.fdlimit` checks against RLIMIT_NOFILE at start.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import ClassVar, Final

import h11
from structlog.typing import FilteringBoundLogger
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardStats", "guarded_protocol", "refusing_slots"]

# the refusals are logged at warning, at most once per this many seconds
_LOG_EVERY_S: Final = 10.0
# A refused connection is half-closed after its 503 and kept up to this long to drain
# what the client already sent: closing a socket with unread input sends a RST, and a RST
# can make the client's kernel drop the 503 before the client read it.
_LINGER_S: Final = 1.0


def refusing_slots(max_connections: int) -> int:
    """How many refused connections may linger (above) at once; past it they are closed
    at once, 503 or not. Part of the descriptor budget (cti/adapters/fdlimit.py)."""
    return min(64, max(4, max_connections // 4))


def _canned(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps(
        {"ok": False, "request_id": None, "error": {"code": code, "message": message, "fields": []}}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n"
    )
    if status == 503:
        head += "retry-after: 1\r\n"
    return head.encode() + b"\r\n" + body


_BUSY: Final = _canned(503, "Service Unavailable", "busy", "too many HTTP connections open")
_SLOW: Final = _canned(
    408, "Request Timeout", "request_timeout", "the request headers came too slowly"
)


@dataclass(slots=True)
class GuardStats:
    """What the guard did, for /metrics and the tests."""

    refused: int = 0  # connections past max_connections
    lingering: int = 0  # refused connections draining now (see _LINGER_S)
    header_timeouts: int = 0  # connections closed for slow headers (or idle past them)
    open: int = 0  # connections open now (admitted ones)
    _logged_at: float = float("-inf")
    _unlogged: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Limits:
    max_connections: int
    header_timeout_s: float
    refusing: int


def guarded_protocol(
    *, max_connections: int, header_timeout_s: float, stats: GuardStats, log: FilteringBoundLogger
) -> type[asyncio.Protocol]:
    """A uvicorn h11 protocol class (``uvicorn.Config(http=...)``) with the limits above.

    One class per server: the limits and the counters live on it, shared by its
    connections.
    """

    class _Guarded(_GuardedH11):
        limits = _Limits(
            max_connections=max_connections,
            header_timeout_s=header_timeout_s,
            refusing=refusing_slots(max_connections),
        )
        guard_stats = stats
        guard_log = log

    return _Guarded


class _GuardedH11(H11Protocol):
    limits: ClassVar[_Limits]
    guard_stats: ClassVar[GuardStats]
    guard_log: ClassVar[FilteringBoundLogger]

    _refused: bool = False
    _lingering: bool = False
    _header_timer: asyncio.TimerHandle | None = None
    _got_bytes: bool = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        stats = self.guard_stats
        if stats.open >= self.limits.max_connections:
            self._refused = True
            self.transport = transport
            stats.refused += 1
            self._log_refusal(transport)
            transport.write(_BUSY)
            if stats.lingering < self.limits.refusing:
                stats.lingering += 1
                self._lingering = True
                transport.write_eof()  # FIN after the 503; the client's EOF closes it
                self._header_timer = self.loop.call_later(_LINGER_S, transport.close)
            else:
                transport.close()
            return
        stats.open += 1
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            if self._lingering:
                self.guard_stats.lingering -= 1
                self._disarm_header_deadline()
            return  # uvicorn never saw it
        self.guard_stats.open -= 1
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # drained and dropped
        if self.conn.their_state is h11.IDLE:
            self._got_bytes = True
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self._header_timer is not None and self.conn.their_state is not h11.IDLE:
            # the request line and headers are in (h11 moved on to the body or done)
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        # armed before uvicorn starts the next cycle: a pipelined request already in the
        # buffer is parsed in there, and its headers being complete disarms it again
        if not self.transport.is_closing():
            self._arm_header_deadline()
        super().on_response_complete()

    # ---------------------------------------------------------------- the deadline

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._got_bytes = False
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout_s, self._header_deadline
        )

    def _disarm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        self.guard_stats.header_timeouts += 1
        if self._got_bytes:
            # a request had started: say why (an idle keep-alive is just closed)
            self.transport.write(_SLOW)
            self.guard_log.debug("http_header_timeout", client=_peer(self.transport))
        self.transport.close()

    def _log_refusal(self, transport: asyncio.Transport) -> None:
        stats = self.guard_stats
        stats._unlogged += 1  # noqa: SLF001 - the guard's own bookkeeping
        now = self.loop.time()
        if now - stats._logged_at < _LOG_EVERY_S:  # noqa: SLF001
            return
        self.guard_log.warning(
            "http_connections_full",
            max_connections=self.limits.max_connections,
            refused=stats._unlogged,  # noqa: SLF001
            client=_peer(transport),
            hint="many slow or idle HTTP clients; see http.max_connections",
        )
        stats._logged_at, stats._unlogged = now, 0  # noqa: SLF001


def _peer(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else None
