"""The daemon: configuration in, adapters and core wired, one TaskGroup, clean shutdown.

Every task lives in one `asyncio.TaskGroup` and has a name. Shutdown is an exception:
SIGTERM/SIGINT set an event, the `shutdown` task raises :class:`ShutdownError`, the group
cancels everything else, and each adapter closes its connection on the way out. Adapters
supervise their own connections; only bugs (and a refused first AMI login, which is a
configuration error) escape the group.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from cti import __version__
from cti.adapters.ami import AmiClient, AmiLoginError, EventQueue, QueueItem
from cti.events import AmiConnected, AmiDisconnected, AmiEvent, AmiEventsLost
from cti.settings import Settings

__all__ = ["EXIT_AMI_LOGIN", "ShutdownError", "run"]

EXIT_AMI_LOGIN = 3


class ShutdownError(Exception):
    """Raised inside the TaskGroup to stop the daemon."""


async def _raise_shutdown(trigger: Callable[[], Awaitable[object]]) -> None:
    await trigger()
    raise ShutdownError


class EventPump:
    """Drains the one event queue into the core, in order.

    Until the call-tracking core is wired in, it keeps what an operator needs to see:
    connection gaps per node (logged with their length) and counts.
    """

    def __init__(self, events: EventQueue, *, log: Any) -> None:
        self._events = events
        self._log = log
        self._gap_since: dict[str, float] = {}
        self.handled = 0

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
        elif isinstance(item, AmiConnected):
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
            self._log.error("ami_events_lost", node=item.node, count=item.count)


async def run(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
) -> int:
    """Run the daemon until SIGTERM/SIGINT (or `shutdown_trigger` returns).

    Returns the process exit code: 0 after a clean shutdown, 3 when an Asterisk node
    refused the first login (wrong username/secret: a configuration error).
    """
    log = structlog.get_logger("cti")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    if shutdown_trigger is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        shutdown_trigger = stop.wait

    events = EventQueue(settings.ami.event_queue_size, log=structlog.get_logger("cti.ami"))
    clients = [
        AmiClient(node, events, log=structlog.get_logger("cti.ami")) for node in settings.ami.nodes
    ]
    pump = EventPump(events, log=log)
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
            tg.create_task(_raise_shutdown(shutdown_trigger), name="shutdown")
    except* ShutdownError:
        log.info("cti_stopping", reason="signal")
    except* AmiLoginError as group:
        for exc in group.exceptions:
            log.error(
                "cti_fatal",
                error=str(exc),
                hint="check ami.nodes[].username and the "
                "secret (CTI_AMI_SECRET / CTI_AMI_SECRET_<NODE>) against manager.conf",
            )
        code = EXIT_AMI_LOGIN
    finally:
        if shutdown_trigger is stop.wait:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    log.info(
        "cti_stopped",
        uptime_s=round(time.monotonic() - started, 3),
        events=pump.handled,
        exit_code=code,
    )
    return code
