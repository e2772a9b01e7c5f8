"""The live events of the browser pages: what the daemon publishes on MQTT, per user, as SSE.

The daemon hands every MQTT publish (its topic relative to the prefix, its payload) to
:meth:`LiveHub.publish` too — pops, seat states, command replies, the queue snapshot, call
events — so a browser sees exactly what an MQTT desktop sees, and never talks to the broker.
Each stream carries only what its user may see (:func:`visible`): an agent its own seat's
topics, a supervisor the seats, queue and calls (the wallboard), an admin everything.

A slow browser costs only its own stream: every stream has a bounded queue
(``web.stream_queue``); one that is full is closed (the browser's EventSource reconnects
and the page refetches its state), and the daemon never waits on a browser. The payload is
encoded to JSON once per publish, whatever the number of streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from structlog.typing import FilteringBoundLogger

from cti.settings import WebUser

__all__ = ["LiveHub", "LiveStream", "event_name", "visible"]

# topic kind (after seats/{seat}/) -> SSE event name
_SEAT_EVENTS: Final = {"pop": "pop", "state": "state", "reply": "reply"}
_BOARD_EVENTS: Final = {
    "queue/snapshot": "queue",
    "calls/events": "call",
    "stats/live": "stats",
    "stats/alarms": "alarms",
}
_CLOSE: Final = object()


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


@dataclass(eq=False)
class LiveStream:
    """One browser's stream: a bounded queue of ``(event, data)``."""

    user: WebUser
    queue: asyncio.Queue[Any]
    opened: float
    overflowed: bool = False
    sent: int = 0

    async def events(self) -> AsyncIterator[dict[str, str]]:
        """The SSE events of this stream until it is closed (hub closing, or overflowed)."""
        while True:
            item = await self.queue.get()
            if item is _CLOSE:
                return
            event, data = item
            self.sent += 1
            yield {"event": event, "data": data}


@dataclass
class LiveHub:
    """Every open stream, and the fan-out of the daemon's publishes to them."""

    queue_size: int = 256
    log: FilteringBoundLogger = field(default_factory=lambda: structlog.get_logger("cti.web"))
    clock: Callable[[], float] = time.monotonic
    _streams: set[LiveStream] = field(default_factory=set)
    delivered: int = 0
    overflows: int = 0
    closed: bool = False
    # each seat's latest pop (until its `end`): a page that (re)loads shows the call
    _pops: dict[str, dict[str, Any]] = field(default_factory=dict)

    def last_pop(self, seat: str) -> dict[str, Any] | None:
        return self._pops.get(seat)

    def open(self, user: WebUser) -> LiveStream:
        stream = LiveStream(
            user=user, queue=asyncio.Queue(maxsize=self.queue_size), opened=self.clock()
        )
        if self.closed:
            stream.queue.put_nowait(_CLOSE)
        else:
            self._streams.add(stream)
        return stream

    def close_stream(self, stream: LiveStream) -> None:
        self._streams.discard(stream)

    def __len__(self) -> int:
        return len(self._streams)

    def publish(self, topic: str, payload: Mapping[str, Any] | bytes) -> None:
        """One daemon publish, to every stream allowed to see it. Never blocks, never
        raises for a browser's sake."""
        event = event_name(topic)
        if event is None:
            return
        if event == "pop" and isinstance(payload, Mapping):
            self._remember_pop(topic.split("/")[1], payload)
        if not self._streams:
            return
        body = _decoded(payload) if isinstance(payload, bytes) else payload
        if body is None:
            return
        data: str | None = None
        for stream in list(self._streams):
            if not visible(stream.user, topic, body):
                continue
            if data is None:  # once per publish, only if someone sees it
                data = json.dumps(
                    {"topic": topic, **body}, ensure_ascii=False, separators=(",", ":")
                )
            try:
                stream.queue.put_nowait((event, data))
                self.delivered += 1
            except asyncio.QueueFull:
                self._overflow(stream)

    def _remember_pop(self, seat: str, payload: Mapping[str, Any]) -> None:
        if len(self._pops) >= 100_000 and seat not in self._pops:
            return  # seats come from the number plan; a bound against a bug, not a policy
        self._pops[seat] = {"topic": f"seats/{seat}/pop", **payload}

    def _overflow(self, stream: LiveStream) -> None:
        """A browser that fell ``queue_size`` events behind: its stream ends (it reconnects
        and refetches), the rest go on."""
        self.overflows += 1
        stream.overflowed = True
        self._streams.discard(stream)
        # make room for the close mark: what it had not read is lost anyway
        with contextlib.suppress(asyncio.QueueEmpty):
            stream.queue.get_nowait()
        stream.queue.put_nowait(_CLOSE)
        self.log.warning(
            "web_stream_overflow", user=stream.user.name, queued=self.queue_size, sent=stream.sent
        )

    def close(self) -> None:
        """End every stream (the daemon stops): the server's shutdown need not wait for
        them."""
        self.closed = True
        for stream in list(self._streams):
            with contextlib.suppress(asyncio.QueueEmpty):
                if stream.queue.full():
                    stream.queue.get_nowait()
            stream.queue.put_nowait(_CLOSE)
        self._streams.clear()

    async def run(self) -> None:
        """A task of the daemon's TaskGroup that only closes the streams when cancelled."""
        try:
            await asyncio.Event().wait()
        finally:
            self.close()
