"""The live events of the browser pages: what the daemon publishes on MQTT, per user, as SSE.

The daemon hands every MQTT publish (its topic relative to the prefix, its payload) to
:meth:`LiveHub.publish` too — pops, seat states, command replies, the queue snapshot, call
events — so a browser sees exactly what an MQTT desktop sees, and never talks to the broker.
Each stream carries only what its user may see (:func:`visible`): an agent its own seat's
topics, a supervisor the seats, queue and calls (the wallboard), an admin everything.

The publish path does no per-browser work (issue 13): :meth:`LiveHub.publish` runs inside
the MQTT adapter's ``publish`` (its tap), so a fan-out there to 500 browsers delayed the MQTT
desktops' pops by as much (p99 0.6-1.5 s measured). It only remembers a seat's latest pop
and appends the publish to the hub's inbox; the hub's own task (:meth:`LiveHub.run`) then
encodes each publish once into a ready SSE frame (``event: …\ndata: …\n\n``, bytes),
decides visibility once per user rather than per stream, and appends the frame to each
stream's pending list. A stream's writer (:mod:`cti.adapters.http.sse`) sends everything
pending in one write: a burst of publishes (a pop, the seat's state, the queue snapshot
and the call event of one core step) costs each socket one write, not four; the hub
gathers publishes for ``web.stream_batch_ms`` (10 ms) first, so an offer pop that follows
its step's events by a history lookup still shares their write (benchmarks/sse.py: half
the writes, p99 under 100 ms with 500 streams, docs/console.md). Payloads are
the core's snapshots (never mutated after publish), so encoding them a moment later is safe.

A slow browser costs only its own stream: what waits for one stream is bounded
(``web.stream_queue`` frames); one that is full is closed (the browser's EventSource
reconnects and the page refetches its state) and counted (``overflows``, /metrics
``cti_web_stream_overflows_total``); its writer, if stuck on a full socket, is cancelled.
Dropping the oldest instead would lose a pop silently; a reconnect shows the current state.
The daemon never waits on a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from structlog.typing import FilteringBoundLogger

from cti.settings import WebUser

__all__ = ["PING_FRAME", "LiveHub", "LiveStream", "event_name", "sse_frame", "visible"]

# topic kind (after seats/{seat}/) -> SSE event name
_SEAT_EVENTS: Final = {"pop": "pop", "state": "state", "reply": "reply"}
_BOARD_EVENTS: Final = {
    "queue/snapshot": "queue",
    "calls/events": "call",
    "stats/live": "stats",
    "stats/alarms": "alarms",
}


def event_name(topic: str) -> str | None:
    """The SSE event name of an MQTT topic (relative to the prefix); ``None``: not streamed
    (the 110 replies and feedback, cti/status)."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "seats":
        return _SEAT_EVENTS.get(parts[2])
    if len(parts) == 2 and parts[0] == "board":
        return "board"  # one board user's own snapshot (cti/app/board.py), never on MQTT
    return _BOARD_EVENTS.get(topic)


def visible(user: WebUser, topic: str, payload: Mapping[str, Any]) -> bool:
    """May *user* see this publish? An agent: its own seat's topics only. A supervisor: its
    own board snapshot (``board/{name}``: the seats, queue, figures and audit of its lines
    only, built per user by cti/app/board.py) and the pops of its lines; not the centre-wide
    seat states, queue, stats and call events, which carry other lines. An admin:
    everything streamed, and its own board snapshot."""
    parts = topic.split("/")
    if parts[0] == "board":
        return len(parts) == 2 and parts[1] == user.name and user.role != "agent"
    if user.role == "admin":
        return True
    if user.role == "agent":
        return len(parts) == 3 and parts[0] == "seats" and parts[1] == user.seat
    # supervisor
    if len(parts) == 3 and parts[0] == "seats" and parts[2] == "pop":
        call = payload.get("call")
        return isinstance(call, Mapping) and call.get("line") in user.lines
    return False


def _decoded(payload: bytes) -> Mapping[str, Any] | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, Mapping) else None


def sse_frame(event: str, data: str) -> bytes:
    """One SSE event, ready for the socket. *data* is one line (compact JSON never holds a
    raw newline: json.dumps escapes them)."""
    return f"event: {event}\ndata: {data}\n\n".encode()


PING_FRAME: Final = b": ping\n\n"  # a comment line: proxies and the browser see it alive
# publishes waiting for the hub's task at most: it drains them every loop iteration, so
# this is a bound against a bug, not a policy
_INBOX_MAX: Final = 100_000


@dataclass(eq=False)
class LiveStream:
    """One browser's stream: the frames waiting for its writer (at most ``limit``)."""

    user: WebUser
    limit: int
    opened: float
    overflowed: bool = False
    closed: bool = False
    sent: int = 0  # frames handed to the writer
    _frames: list[bytes] = field(default_factory=list)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    # the writer's task, cancelled when the stream overflows (it may be stuck on a full
    # socket, where it would never see the close)
    writer: asyncio.Task[Any] | None = None

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: bytes) -> bool:
        """Queue *frame*; ``False``: the stream is full (the hub closes it)."""
        if len(self._frames) >= self.limit:
            return False
        self._frames.append(frame)
        self._ready.set()
        return True

    def close(self, *, abort: bool = False) -> None:
        self.closed = True
        self._ready.set()
        if abort and self.writer is not None:
            self.writer.cancel()

    async def next_chunk(self) -> bytes | None:
        """Every frame pending, as one chunk, once there is one; ``None``: the stream is
        closed (what had not been sent is dropped: the browser refetches)."""
        while not self._frames and not self.closed:
            self._ready.clear()
            await self._ready.wait()
        if self.closed:
            return None
        chunk = b"".join(self._frames)
        self.sent += len(self._frames)
        self._frames.clear()
        return chunk

    def take(self) -> list[bytes]:
        """The pending frames, taken (tests; the writer uses :meth:`next_chunk`)."""
        frames, self._frames = self._frames, []
        return frames


@dataclass
class LiveHub:
    """Every open stream, and the fan-out of the daemon's publishes to them."""

    queue_size: int = 256
    log: FilteringBoundLogger = field(default_factory=lambda: structlog.get_logger("cti.web"))
    clock: Callable[[], float] = time.monotonic
    ping_s: float = 15.0
    batch_s: float = 0.0  # web.stream_batch_ms (the daemon's default 10 ms)
    _streams: set[LiveStream] = field(default_factory=set)
    delivered: int = 0  # frames queued to streams
    overflows: int = 0  # streams closed for falling queue_size frames behind
    inbox_dropped: int = 0  # publishes lost past _INBOX_MAX (a bug: never expected)
    batches: int = 0  # fan-out passes (each one wakes every stream it gave a frame once)
    closed: bool = False
    # each seat's latest pop (until its `end`): a page that (re)loads shows the call
    _pops: dict[str, dict[str, Any]] = field(default_factory=dict)
    _inbox: deque[tuple[str, str, Mapping[str, Any] | bytes]] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def last_pop(self, seat: str) -> dict[str, Any] | None:
        return self._pops.get(seat)

    def open(self, user: WebUser) -> LiveStream:
        stream = LiveStream(user=user, limit=self.queue_size, opened=self.clock())
        if self.closed:
            stream.close()
        else:
            self._streams.add(stream)
        return stream

    def close_stream(self, stream: LiveStream) -> None:
        self._streams.discard(stream)

    def __len__(self) -> int:
        return len(self._streams)

    def publish(self, topic: str, payload: Mapping[str, Any] | bytes) -> None:
        """One daemon publish (the MQTT adapter's tap): O(1) whatever the number of
        streams — the fan-out is :meth:`run`'s. Never blocks, never raises for a browser's
        sake."""
        event = event_name(topic)
        if event is None:
            return
        if event == "pop" and isinstance(payload, Mapping):
            self._remember_pop(topic.split("/")[1], payload)
        if not self._streams:
            return
        if len(self._inbox) >= _INBOX_MAX:
            self._inbox.popleft()
            self.inbox_dropped += 1
        self._inbox.append((topic, event, payload))
        self._wake.set()

    def flush(self) -> None:
        """The fan-out of every publish waiting: each encoded once, visibility decided
        once per user, the frame appended to each stream that may see it. Streams wake
        after the whole pass, so a burst reaches each one as one chunk."""
        self.batches += 1
        while self._inbox:
            topic, event, payload = self._inbox.popleft()
            body = _decoded(payload) if isinstance(payload, bytes) else payload
            if body is None:
                continue
            frame: bytes | None = None
            seen: dict[str, bool] = {}  # user name -> may see this publish
            for stream in list(self._streams):
                user = stream.user
                ok = seen.get(user.name)
                if ok is None:
                    ok = seen[user.name] = visible(user, topic, body)
                if not ok:
                    continue
                if frame is None:  # once per publish, only if someone sees it
                    data = json.dumps(
                        {"topic": topic, **body}, ensure_ascii=False, separators=(",", ":")
                    )
                    frame = sse_frame(event, data)
                if stream.push(frame):
                    self.delivered += 1
                else:
                    self._overflow(stream)

    def ping(self) -> None:
        """A comment frame to every stream (one shared bytes object)."""
        for stream in list(self._streams):
            if not stream.push(PING_FRAME):
                self._overflow(stream)

    def _remember_pop(self, seat: str, payload: Mapping[str, Any]) -> None:
        if len(self._pops) >= 100_000 and seat not in self._pops:
            return  # seats come from the number plan; a bound against a bug, not a policy
        self._pops[seat] = {"topic": f"seats/{seat}/pop", **payload}

    def _overflow(self, stream: LiveStream) -> None:
        """A browser that fell ``queue_size`` frames behind: its stream ends (it reconnects
        and refetches), the rest go on."""
        self.overflows += 1
        stream.overflowed = True
        self._streams.discard(stream)
        stream.close(abort=True)
        self.log.warning(
            "web_stream_overflow", user=stream.user.name, queued=self.queue_size, sent=stream.sent
        )

    def end_streams(self, keep: Callable[[WebUser], bool]) -> int:
        """End the streams of users `keep` refuses (a reload removed, disabled or changed
        them): their browsers reconnect, find no session and go to the login page.
        Returns how many ended."""
        ended = [s for s in self._streams if not keep(s.user)]
        for stream in ended:
            self._streams.discard(stream)
            stream.close()
        return len(ended)

    def close(self) -> None:
        """End every stream (the daemon stops): the server's shutdown need not wait for
        them."""
        self.closed = True
        for stream in list(self._streams):
            stream.close()
        self._streams.clear()
        self._inbox.clear()

    async def run(self) -> None:
        """The hub's task in the daemon's TaskGroup: the fan-out of what was published
        since it last ran, and the pings; closes the streams when cancelled."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.ping_s
        try:
            while True:
                if not self._inbox:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(next_ping):
                            await self._wake.wait()
                self._wake.clear()
                if self._inbox and self.batch_s > 0:
                    # the rest of a burst (an offer's pop a lookup after its state, queue
                    # and call events) joins it: one write per stream instead of two
                    await asyncio.sleep(self.batch_s)
                if self._inbox:
                    self.flush()
                if loop.time() >= next_ping:
                    self.ping()
                    next_ping = loop.time() + self.ping_s
        finally:
            self.close()
