"""MQTT adapter: screen-pops and state out, agent commands in, over one supervised client.

The core never awaits the broker: :meth:`MqttAdapter.publish` is synchronous and puts the
message in an in-memory outbox that a sender task drains. While the broker is away the
outbox keeps what it can:

* **retained** messages (seat state, queue snapshot) are coalesced per topic: only the
  newest state of a topic matters, so a long outage costs one slot per topic;
* other messages (pops, call events) queue in order up to ``max_outbox``; beyond that the
  oldest is dropped, counted and logged at error level.

A message whose publish failed with the connection goes back to the head of the outbox
and is sent again after the reconnect (QoS 1 is "at least once" anyway: every payload
the daemon publishes carries an id so receivers de-duplicate).

The client announces itself on ``<prefix>/status`` (retained ``{"online": true}``), with
a last will of ``{"online": false}``, so seats and supervisors see a dead daemon.
Reconnects use capped exponential backoff with full jitter (aiomqtt 2.x pattern: the
``async with client`` inside ``while True … except MqttError``).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiomqtt
import structlog

from cti.adapters.backoff import backoff_delay
from cti.settings import MqttSettings

__all__ = ["Incoming", "MqttAdapter", "Outbox", "Outgoing"]

PUBLISH_TIMEOUT: Final = 10.0
SEND_WINDOW: Final = 64  # messages in flight at once (paho queues beyond its own window)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """A message to publish; `topic` is relative to the configured prefix."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    # called once the broker took it (QoS 1: its PUBACK): the pop-latency histogram
    on_sent: Callable[[], None] | None = None
    # sent even when the gate is shut (a standby's own status, docs/high-availability.md)
    always: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Incoming:
    """A message received on a subscribed topic; `topic` is relative to the prefix."""

    topic: str
    payload: bytes
    received: float


class Outbox:
    """Bounded outbox: retained messages coalesced by topic, the rest FIFO."""

    def __init__(self, max_items: int, *, log: Any) -> None:
        self._retained: OrderedDict[str, Outgoing] = OrderedDict()
        self._fifo: deque[Outgoing] = deque()
        self._max = max_items
        self._log = log
        self._ready = asyncio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._retained) + len(self._fifo)

    def put(self, msg: Outgoing) -> None:
        if msg.retain:
            self._retained.pop(msg.topic, None)
            self._retained[msg.topic] = msg
        else:
            if len(self._fifo) >= self._max:
                old = self._fifo.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    self._log.error(
                        "mqtt_outbox_full",
                        dropped=self.dropped,
                        topic=old.topic,
                        max_items=self._max,
                    )
            self._fifo.append(msg)
        self._ready.set()

    def put_front(self, msg: Outgoing) -> None:
        """Give back a message whose publish failed, so it goes first after a reconnect."""
        if msg.retain:
            if msg.topic not in self._retained:  # a newer state of the topic wins
                self._retained[msg.topic] = msg
                self._retained.move_to_end(msg.topic, last=False)
        else:
            self._fifo.appendleft(msg)
        self._ready.set()

    async def get(self) -> Outgoing:
        while not (self._retained or self._fifo):
            self._ready.clear()
            await self._ready.wait()
        return self._pop()

    def take(self, n: int) -> list[Outgoing]:
        """Up to `n` more messages that are ready now, in the order :meth:`get` gives them."""
        out: list[Outgoing] = []
        while len(out) < n and (self._retained or self._fifo):
            out.append(self._pop())
        return out

    def _pop(self) -> Outgoing:
        # state first: a seat's screen must show the right state before the next pop
        if self._retained:
            return self._retained.popitem(last=False)[1]
        return self._fifo.popleft()


class MqttAdapter:
    """One supervised MQTT connection for the whole daemon."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        subscriptions: Sequence[str] = (),
        on_message: Callable[[Incoming], None] | None = None,
        log: Any = None,
        max_outbox: int = 10_000,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        clock: Callable[[], float] = time.time,
        gate: Callable[[], bool] = lambda: True,
        status_topic: str = "status",
        status: Callable[[], Mapping[str, Any]] = lambda: {"online": True},
    ) -> None:
        # gate: asked for each message as it is sent; shut (a standby, a leader whose lease
        # ran out), every message but `always` ones is dropped and counted
        self._gate = gate
        # status_topic: where this client says it is online (retained; its last will says
        # offline); each daemon of a pair has its own (status/<node>)
        self._status_topic = status_topic
        self._status = status
        self.not_leader = 0
        self._s = settings
        self._subs = tuple(subscriptions)
        self._on_message = on_message
        self._brokers = settings.brokers()
        self._index = 0  # the broker in use (or tried next): sticky, see run()
        self._base_log = log or structlog.get_logger("cti.mqtt")
        self._log = self._base_log.bind(broker=self.broker)
        self._outbox = Outbox(max_outbox, log=self._log)
        self._reconnect = (reconnect_min, reconnect_max)
        self._clock = clock
        self._rng = random.Random()  # noqa: S311  # nosec B311  # jitter, not crypto
        self._connected = asyncio.Event()
        self.published = 0
        self.received = 0
        self.bad_messages = 0
        self.failovers = 0
        # who else sees every publish (the browsers' live hub, cti/adapters/http/live.py):
        # called in publish(), before the broker, so a broker outage does not hide it
        self.taps: list[Callable[[str, Mapping[str, Any] | bytes], None]] = []

    # ------------------------------------------------------------------ API

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def backlog(self) -> int:
        return len(self._outbox)

    @property
    def broker(self) -> str:
        """host:port of the broker in use, or tried next while disconnected."""
        host, port = self._brokers[self._index]
        return f"{host}:{port}"

    def topic(self, relative: str) -> str:
        return f"{self._s.prefix}/{relative}"

    async def wait_connected(self) -> None:
        await self._connected.wait()

    def publish(
        self,
        topic: str,
        payload: Mapping[str, Any] | bytes,
        *,
        retain: bool = False,
        qos: int = 1,
        on_sent: Callable[[], None] | None = None,
        always: bool = False,
    ) -> None:
        """Queue a message (never blocks). `payload` dicts are sent as UTF-8 JSON;
        `on_sent` is called once the publish completed (never for a message dropped);
        `always`: sent even while the gate is shut (a daemon's own status)."""
        for tap in self.taps:
            try:
                tap(topic, payload)
            except Exception:  # noqa: BLE001 - a tap's bug must not cost the MQTT publish
                self._log.exception("mqtt_tap_failed", topic=topic)
        data = (
            payload
            if isinstance(payload, bytes)
            else json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        )
        self._outbox.put(
            Outgoing(
                topic=topic, payload=data, qos=qos, retain=retain, on_sent=on_sent, always=always
            )
        )

    async def run(self) -> None:
        """Connect, serve and reconnect forever.

        With several brokers (`mqtt.failover`) a lost or refused connection moves on to the
        next one at once; only a whole round of the list without a connection backs off.
        The client stays on the broker that works instead of going back to the first: a
        flapping primary would otherwise move every seat's traffic back and forth, and the
        bridge between the brokers carries the topics either way."""
        attempt = 0  # rounds of the list without a connection
        tried = 0  # brokers tried in this round
        while True:
            was_up = False
            self._log = self._base_log.bind(broker=self.broker)
            try:
                await self._session()
            except* aiomqtt.MqttError as group:
                # the session's TaskGroup wraps the error of whichever loop saw it first
                self._log.warning(
                    "mqtt_disconnected",
                    error=str(group.exceptions[0]),
                    attempt=attempt,
                    backlog=len(self._outbox),
                )
            finally:
                was_up = self._connected.is_set()
                self._connected.clear()
            if was_up:
                attempt, tried = 0, 0
            tried += 1
            if len(self._brokers) > 1:
                self._index = (self._index + 1) % len(self._brokers)
                self.failovers += 1
                self._log.info("mqtt_failover", next_broker=self.broker)
            if tried < len(self._brokers):
                continue  # another broker of this round is waiting: no backoff
            tried = 0
            delay = backoff_delay(attempt, *self._reconnect, self._rng)
            attempt += 1
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------ session

    async def _session(self) -> None:
        """One connection's life; it only ever ends with an MqttError (or cancellation)."""
        s = self._s
        host, port = self._brokers[self._index]
        status = self.topic(self._status_topic)
        offline = json.dumps({**self._status(), "online": False}, separators=(",", ":"))
        will = aiomqtt.Will(status, offline.encode(), qos=1, retain=True)
        async with aiomqtt.Client(
            host,
            port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            identifier=s.client_id,
            keepalive=s.keepalive,
            will=will,
            timeout=PUBLISH_TIMEOUT,
            # mqtt.tls: the context checked when the configuration was loaded
            tls_context=s.tls.client_context() if s.tls is not None else None,
        ) as client:
            online = json.dumps({**self._status(), "online": True}, separators=(",", ":"))
            await client.publish(status, online.encode(), qos=1, retain=True)
            for sub in self._subs:
                await client.subscribe(self.topic(sub), qos=1)
            self._connected.set()
            self._log.info(
                "mqtt_connected",
                subscriptions=list(self._subs),
                backlog=len(self._outbox),
                tls=s.tls is not None,
            )
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._send_loop(client), name="adapter.mqtt.send")
                tg.create_task(self._receive_loop(client), name="adapter.mqtt.receive")

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        """Publish what is ready as one window: every message of it is written to the socket
        in order (each publish hands its packet to paho before its first await, and gather
        starts them in order), then the PUBACKs are awaited together. One at a time, each
        message waited a broker round trip through a busy loop before the next was even
        written, and at 40-50 calls/s the pops queued behind that (issue 12)."""
        while True:
            window = [await self._outbox.get(), *self._outbox.take(SEND_WINDOW - 1)]
            if not self._gate():
                kept = [m for m in window if m.always]
                self.not_leader += len(window) - len(kept)
                window = kept
                if not window:
                    continue
            try:
                results = await asyncio.gather(
                    *(
                        client.publish(
                            self.topic(msg.topic),
                            msg.payload,
                            qos=msg.qos,
                            retain=msg.retain,
                            timeout=PUBLISH_TIMEOUT,
                        )
                        for msg in window
                    ),
                    return_exceptions=True,
                )
            except asyncio.CancelledError:
                self._give_back(window)  # at least once: receivers de-duplicate by id
                raise
            failed = [m for m, r in zip(window, results, strict=True) if r is not None]
            self.published += len(window) - len(failed)
            for msg, r in zip(window, results, strict=True):
                if r is None and msg.on_sent is not None:
                    msg.on_sent()
            if failed:
                self._give_back(failed)
                error = next(r for r in results if r is not None)
                raise error

    def _give_back(self, msgs: list[Outgoing]) -> None:
        for msg in reversed(msgs):  # put_front each, last first: the order is kept
            self._outbox.put_front(msg)

    async def _receive_loop(self, client: aiomqtt.Client) -> None:
        prefix = self._s.prefix + "/"
        async for message in client.messages:
            self.received += 1
            topic = message.topic.value
            rel = topic.removeprefix(prefix)
            if self._on_message is None:
                continue
            try:
                self._on_message(
                    Incoming(topic=rel, payload=bytes(message.payload), received=self._clock())
                )
            except Exception:  # noqa: BLE001 - one bad message must not drop the connection
                self.bad_messages += 1
                self._log.exception("mqtt_message_failed", topic=topic)
