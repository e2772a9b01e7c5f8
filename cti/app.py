"""The daemon: configuration in, adapters and core wired, one TaskGroup, clean shutdown.

Every task lives in one `asyncio.TaskGroup` and has a name. Shutdown is an exception:
SIGTERM/SIGINT set an event, the `shutdown` task raises :class:`ShutdownError`, the group
cancels everything else, and each adapter closes its connection on the way out. Adapters
supervise their own connections; only bugs (and a refused first AMI login, which is a
configuration error) escape the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from cti import __version__
from cti.adapters.ami import AmiClient, AmiLoginError, EventQueue, QueueItem
from cti.adapters.mqtt import MqttAdapter
from cti.adapters.store import RecordWriter, Store
from cti.calls.model import CallAnswered, CallEnded, CallSummary
from cti.calls.tracker import CallTracker
from cti.events import AmiConnected, AmiDisconnected, AmiEvent, AmiEventsLost
from cti.settings import Settings

__all__ = ["EXIT_AMI_LOGIN", "EXIT_DATABASE", "EventPump", "ShutdownError", "run"]

EXIT_AMI_LOGIN = 3
EXIT_DATABASE = 4


class ShutdownError(Exception):
    """Raised inside the TaskGroup to stop the daemon."""


async def _raise_shutdown(trigger: Callable[[], Awaitable[object]]) -> None:
    await trigger()
    raise ShutdownError


class EventPump:
    """Drains the one event queue into the core, in order, and acts on what it returns.

    The core (:class:`~cti.calls.tracker.CallTracker`) is synchronous and does no I/O;
    what it decides leaves through the adapters' non-blocking entry points (the record
    writer, the MQTT outbox), so a slow database or broker never holds up the events.
    """

    def __init__(
        self,
        events: EventQueue,
        tracker: CallTracker,
        *,
        records: RecordWriter | None,
        mqtt: MqttAdapter | None,
        log: Any,
        resync: Callable[[str], None] | None = None,
    ) -> None:
        self._events = events
        self._resync = resync
        self._tracker = tracker
        self._records = records
        self._mqtt = mqtt
        self._log = log
        self._gap_since: dict[str, float] = {}
        self._event_seq = 0
        self.handled = 0
        self.calls_ended = 0

    async def run(self) -> None:
        while True:
            item = await self._events.get()
            try:
                self.handle(item)
            except Exception:  # noqa: BLE001 - one bad event must not stop the daemon
                self._log.exception("event_handling_failed", item=type(item).__name__)

    def handle(self, item: QueueItem) -> None:
        self.handled += 1
        if isinstance(item, AmiEvent):
            self._log.debug("ami_event", ami_event=item.name, node=item.node)
        else:
            self._connection_event(item)
        for note in self._tracker.handle(item):
            if isinstance(note, CallEnded):
                self._call_ended(note.summary)
            elif isinstance(note, CallAnswered):
                self._log.info(
                    "call_answered", linkedid=note.call_id, node=note.node, seat=note.answered_by
                )
                self._publish_call(
                    {
                        "type": "answered",
                        "call_id": note.call_id,
                        "node": note.node,
                        "answered_by": note.answered_by,
                        "at": note.at,
                    }
                )

    def _call_ended(self, summary: CallSummary) -> None:
        self.calls_ended += 1
        self._log.info(
            "call_ended",
            linkedid=summary.call_id,
            node=summary.node,
            caller=summary.caller,
            line=summary.line,
            outcome=summary.outcome,
            seat=summary.answered_by,
            wait_s=summary.wait_s,
            talk_s=summary.talk_s,
            hangup_by=summary.hangup_by,
            history_complete=summary.history_complete,
        )
        if self._records is not None:
            self._records.add(summary)
        self._publish_call({"type": "ended", **summary.to_json()})

    def _publish_call(self, body: dict[str, Any]) -> None:
        if self._mqtt is None:
            return
        self._event_seq += 1
        self._mqtt.publish(
            "calls/events",
            {"schema_version": 1, "event_id": f"{body['call_id']}:{body['type']}", **body},
        )

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
            if self._resync is not None:
                self._resync(item.node)


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
    records = RecordWriter(store, log=structlog.get_logger("cti.store"))
    mqtt = MqttAdapter(settings.mqtt, log=structlog.get_logger("cti.mqtt"))
    events = EventQueue(settings.ami.event_queue_size, log=structlog.get_logger("cti.ami"))
    clients = [
        AmiClient(node, events, log=structlog.get_logger("cti.ami")) for node in settings.ami.nodes
    ]
    tracker = CallTracker(logger=structlog.get_logger("cti.calls"))
    by_node = {c.name: c for c in clients}
    pump = EventPump(
        events,
        tracker,
        records=records,
        mqtt=mqtt,
        log=log,
        resync=lambda node: by_node[node].request_resync(),
    )
    log.info(
        "cti_starting",
        version=__version__,
        nodes=[f"{n.name}@{n.host}:{n.port}" for n in settings.ami.nodes],
    )
    started = time.monotonic()
    code = 0
    try:
        async with asyncio.TaskGroup() as tg:
            for client in clients:
                tg.create_task(client.run(), name=f"adapter.ami[{client.name}]")
            tg.create_task(pump.run(), name="core.events")
            tg.create_task(records.run(), name="adapter.store.records")
            tg.create_task(mqtt.run(), name="adapter.mqtt")
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
        await _flush_records(records, log)
        await store.close()
    log.info(
        "cti_stopped",
        uptime_s=round(time.monotonic() - started, 3),
        events=pump.handled,
        calls=pump.calls_ended,
        exit_code=code,
    )
    return code
