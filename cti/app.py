"""The daemon: configuration in, adapters and core wired, one TaskGroup, clean shutdown.

Every task lives in one `asyncio.TaskGroup` and has a name. Shutdown is an exception:
SIGTERM/SIGINT set an event, the `shutdown` task raises :class:`ShutdownError`, the group
cancels everything else, and each adapter closes its connection on the way out. Adapters
supervise their own connections; only bugs (and a refused first AMI login, which is a
configuration error) escape the group.

The core (:class:`~cti.core.Core`) is synchronous and does no I/O. Its inputs — AMI events
(drained in order from the one event queue), agent commands (MQTT) and ticks (the timer
task) — are all handled on this one event loop, one at a time, so the core needs no locks.
Its effects leave through non-blocking entry points: the MQTT outbox, the record writer,
and one AMI action queue per node (:class:`AmiExecutor`), so a slow database, broker or
Asterisk never holds up the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import structlog

from cti import __version__
from cti.adapters.ami import AmiClient, AmiError, AmiLoginError, EventQueue, QueueItem
from cti.adapters.mqtt import Incoming, MqttAdapter
from cti.adapters.store import RecordWriter, Store
from cti.core import (
    Core,
    Effect,
    MarkTaken,
    Publish,
    RedirectToSeat,
    RenewLease,
    ReturnToHold,
    SeatCommandReceived,
    StoreCall,
    StoreSeatState,
    Tick,
)
from cti.dialplan import CONTEXT_CONNECT, CONTEXT_HOLD, LEASE_VARIABLE, TAKEN_VARIABLE
from cti.events import AmiConnected, AmiDisconnected, AmiEvent, AmiEventsLost
from cti.seats.commands import parse_seat_command
from cti.settings import Settings

__all__ = ["EXIT_AMI_LOGIN", "EXIT_DATABASE", "AmiExecutor", "Daemon", "ShutdownError", "run"]

EXIT_AMI_LOGIN = 3
EXIT_DATABASE = 4
AmiEffect = MarkTaken | RedirectToSeat | ReturnToHold | RenewLease


class ShutdownError(Exception):
    """Raised inside the TaskGroup to stop the daemon."""


async def _raise_shutdown(trigger: Callable[[], Awaitable[object]]) -> None:
    await trigger()
    raise ShutdownError


class AmiExecutor:
    """Carries out the core's AMI effects, in order, one queue per Asterisk node.

    A failed action (the caller hung up meanwhile, the node is down) is logged with the
    call id and dropped: the core learns what really happened from the events, and an
    action is never re-sent blindly.
    """

    def __init__(self, clients: dict[str, AmiClient], *, log: Any) -> None:
        self._clients = clients
        self._log = log
        self._queues: dict[str, asyncio.Queue[AmiEffect]] = {n: asyncio.Queue() for n in clients}
        self.failed = 0

    def submit(self, effect: AmiEffect) -> None:
        q = self._queues.get(effect.node)
        if q is None:
            self._log.error(
                "ami_effect_unknown_node", node=effect.node, effect=type(effect).__name__
            )
            return
        q.put_nowait(effect)

    async def run(self, node: str) -> None:
        q = self._queues[node]
        client = self._clients[node]
        while True:
            effect = await q.get()
            try:
                for action in _actions(effect):
                    await client.action(action)
            except AmiError as exc:
                self.failed += 1
                self._log.warning(
                    "ami_effect_failed",
                    effect=type(effect).__name__,
                    node=node,
                    linkedid=getattr(effect, "call_id", None),
                    error=str(exc),
                )


def _actions(effect: AmiEffect) -> list[dict[str, str]]:
    """The AMI actions of one effect (Redirect carries no variables: Setvar first)."""
    if isinstance(effect, RenewLease):
        # no Channel: a global variable, read by every holding loop as GLOBAL(...)
        return [{"Action": "Setvar", "Variable": LEASE_VARIABLE, "Value": str(int(effect.until))}]
    if isinstance(effect, MarkTaken):
        return [
            {
                "Action": "Setvar",
                "Channel": effect.channel,
                "Variable": TAKEN_VARIABLE,
                "Value": "1",
            }
        ]
    if isinstance(effect, RedirectToSeat):
        # the daemon's plan is authoritative: the endpoint goes along, so a seat added to
        # cti.yaml works before the generated dialplan is reloaded
        return [
            {
                "Action": "Setvar",
                "Channel": effect.channel,
                "Variable": "CTI_SEAT_ENDPOINT",
                "Value": effect.endpoint,
            },
            {
                "Action": "Setvar",
                "Channel": effect.channel,
                "Variable": "CTI_RING_TIMEOUT",
                "Value": str(round(effect.ring_timeout_s)),
            },
            {
                "Action": "Redirect",
                "Channel": effect.channel,
                "Context": CONTEXT_CONNECT,
                "Exten": effect.seat_id,
                "Priority": "1",
            },
        ]
    return [
        {
            "Action": "Redirect",
            "Channel": effect.channel,
            "Context": CONTEXT_HOLD,
            "Exten": "s",
            "Priority": "1",
        }
    ]


class Daemon:
    """The running parts, wired. Every input goes through :meth:`feed`."""

    def __init__(self, settings: Settings, store: Store, *, log: Any) -> None:
        self._log = log
        self.records = RecordWriter(store, log=structlog.get_logger("cti.store"))
        self.mqtt = MqttAdapter(
            settings.mqtt,
            subscriptions=["seats/+/cmd"],
            on_message=self._on_mqtt,
            log=structlog.get_logger("cti.mqtt"),
        )
        self.events = EventQueue(settings.ami.event_queue_size, log=structlog.get_logger("cti.ami"))
        self.clients = {
            node.name: AmiClient(node, self.events, log=structlog.get_logger("cti.ami"))
            for node in settings.ami.nodes
        }
        self.ami = AmiExecutor(self.clients, log=structlog.get_logger("cti.ami"))
        self.core = Core(settings.numberplan, log=structlog.get_logger("cti.core"))
        self._gap_since: dict[str, float] = {}
        self._wake = asyncio.Event()
        self.handled = 0
        self.calls_ended = 0

    def tasks(self) -> Iterable[tuple[Coroutine[Any, Any, None], str]]:
        for name, client in self.clients.items():
            yield client.run(), f"adapter.ami[{name}]"
            yield self.ami.run(name), f"adapter.ami[{name}].actions"
        yield self.mqtt.run(), "adapter.mqtt"
        yield self.records.run(), "adapter.store.records"
        yield self._pump(), "core.events"
        yield self._ticker(), "core.timers"

    # ------------------------------------------------------------------ inputs

    async def _pump(self) -> None:
        while True:
            item = await self.events.get()
            if not isinstance(item, AmiEvent):
                self._connection_event(item)
            self.feed(item)

    async def _ticker(self) -> None:
        """Tick the core at its next deadline (at most every second, at least every 50 ms)."""
        while True:
            delay = min(1.0, max(0.05, self.core.next_deadline() - time.time()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self.feed(Tick(at=time.time()))

    def _on_mqtt(self, msg: Incoming) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 3 or parts[0] != "seats" or parts[2] != "cmd":
            return
        cmd = parse_seat_command(msg.payload)
        self.feed(SeatCommandReceived(seat=parts[1], command=cmd, at=msg.received))

    def feed(self, item: QueueItem | Tick | SeatCommandReceived) -> None:
        """Hand one input to the core and carry out its effects. Never raises."""
        self.handled += 1
        if isinstance(item, AmiEvent):
            self._log.debug("ami_event", ami_event=item.name, node=item.node)
        try:
            effects = self.core.handle(item)
        except Exception:  # noqa: BLE001 - one bad input must not stop the daemon
            self._log.exception("core_failed", item=type(item).__name__)
            return
        for effect in effects:
            self._effect(effect)
        if effects:
            self._wake.set()  # a new timer may be due sooner than the ticker thinks

    # ------------------------------------------------------------------ effects

    def _effect(self, effect: Effect) -> None:
        if isinstance(effect, Publish):
            self.mqtt.publish(effect.topic, effect.payload, retain=effect.retain)
        elif isinstance(effect, StoreCall):
            s = effect.summary
            self.calls_ended += 1
            self._log.info(
                "call_ended",
                linkedid=s.call_id,
                node=s.node,
                caller=s.caller,
                line=s.line,
                outcome=s.outcome,
                seat=s.answered_by,
                wait_s=s.wait_s,
                talk_s=s.talk_s,
                hangup_by=s.hangup_by,
                history_complete=s.history_complete,
            )
            self.records.add(s)
        elif isinstance(effect, StoreSeatState):
            self._log.info(
                "seat_state",
                seat=effect.seat_id,
                status=effect.status,
                reason=effect.reason,
                cause=effect.cause,
                linkedid=effect.call_id,
            )
            self.records.add_seat_event(
                {
                    "seat": effect.seat_id,
                    "at": effect.at,
                    "status": effect.status,
                    "reason": effect.reason,
                    "previous": effect.previous,
                    "cause": effect.cause,
                    "call_id": effect.call_id,
                }
            )
        else:
            self.ami.submit(effect)

    def _connection_event(self, item: QueueItem) -> None:
        if isinstance(item, AmiConnected):
            since = self._gap_since.pop(item.node, None)
            gap = round(item.time - since, 3) if since is not None else None
            self._log.info(
                "ami_node_up",
                node=item.node,
                version=item.version,
                reconnect=item.reconnect,
                gap_s=gap,
                resync="CoreShowChannels",
            )
        elif isinstance(item, AmiDisconnected):
            self._gap_since.setdefault(item.node, item.time)
            self._log.warning("ami_node_down", node=item.node, reason=item.reason)
        elif isinstance(item, AmiEventsLost):
            self._log.error("ami_events_lost", node=item.node, count=item.count, resync=True)
            client = self.clients.get(item.node)
            if client is not None:
                client.request_resync()


async def _flush_records(records: RecordWriter, log: Any) -> None:
    """Store the call records still in memory before exiting (bounded wait)."""
    if not records.pending:
        return
    writer = asyncio.create_task(records.run(), name="adapter.store.flush")
    try:
        async with asyncio.timeout(5):
            await records.flushed()
    except TimeoutError:
        log.error("call_records_not_flushed", pending=records.pending)
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


async def run(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
) -> int:
    """Run the daemon until SIGTERM/SIGINT (or `shutdown_trigger` returns).

    Returns the process exit code: 0 after a clean shutdown, 3 when an Asterisk node
    refused the first login (wrong username/secret: a configuration error), 4 when the
    database cannot be opened.
    """
    log = structlog.get_logger("cti")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    if shutdown_trigger is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        shutdown_trigger = stop.wait

    store = Store(settings.database.url)
    try:
        await store.open()
    except Exception as exc:  # noqa: BLE001 - any driver error: report it, exit clearly
        log.error(
            "cti_fatal",
            error=f"cannot open the database: {exc}",
            hint="check database.url (CTI_DATABASE_URL) and the directory's permissions",
        )
        await store.close()
        return EXIT_DATABASE
    daemon = Daemon(settings, store, log=log)
    log.info(
        "cti_starting",
        version=__version__,
        nodes=[f"{n.name}@{n.host}:{n.port}" for n in settings.ami.nodes],
        seats=len(settings.numberplan.seats),
        lines=len(settings.numberplan.lines),
    )
    started = time.monotonic()
    code = 0
    try:
        async with asyncio.TaskGroup() as tg:
            for coro, name in daemon.tasks():
                tg.create_task(coro, name=name)
            tg.create_task(_raise_shutdown(shutdown_trigger), name="shutdown")
    except* ShutdownError:
        log.info("cti_stopping", reason="signal")
    except* AmiLoginError as group:
        for err in group.exceptions:
            log.error(
                "cti_fatal",
                error=str(err),
                hint="check ami.nodes[].username and the "
                "secret (CTI_AMI_SECRET / CTI_AMI_SECRET_<NODE>) against manager.conf",
            )
        code = EXIT_AMI_LOGIN
    finally:
        if shutdown_trigger is stop.wait:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        await _flush_records(daemon.records, log)
        await store.close()
    log.info(
        "cti_stopped",
        uptime_s=round(time.monotonic() - started, 3),
        events=daemon.handled,
        calls=daemon.calls_ended,
        exit_code=code,
    )
    return code
