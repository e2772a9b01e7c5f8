"""`cti record`: write live AMI traffic as a trace (JSON Lines), for replay and fixtures.

Trace format (the contract in docs/trace-format.md): one AMI message per line, a flat
JSON object of the header names and string values exactly as Asterisk sent them (a
repeated header joined with a newline), plus:

* ``"_t"``: float seconds (Asterisk's `Timestamp` when it sends one, else receive time);
* ``"_node"``: the configured node name;
* connection markers ``{"_cti": "connected" | "disconnected" | "events_lost", ...}`` so
  a replay sees the same gaps and resyncs the daemon saw.

The client used is the daemon's own (:class:`~cti.adapters.ami.AmiClient`), so the
resync list (`CoreShowChannels`) after each (re)connect is in the trace too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import IO, Any

import structlog

from cti.adapters.ami import AmiClient, AmiLoginError, EventQueue, QueueItem
from cti.events import AmiConnected, AmiDisconnected, AmiEvent, AmiEventsLost
from cti.settings import Settings

__all__ = ["record", "trace_line"]


class _DoneError(Exception):
    """Ends the recording TaskGroup (not an error)."""


def trace_line(item: QueueItem) -> dict[str, Any]:
    """The trace object of one queue item."""
    if isinstance(item, AmiEvent):
        return {"_t": item.time, "_node": item.node, **item.headers}
    base: dict[str, Any] = {"_t": item.time, "_node": item.node}
    if isinstance(item, AmiConnected):
        return {"_cti": "connected", **base, "version": item.version, "reconnect": item.reconnect}
    if isinstance(item, AmiDisconnected):
        return {"_cti": "disconnected", **base, "reason": item.reason}
    if isinstance(item, AmiEventsLost):
        return {"_cti": "events_lost", **base, "count": item.count}
    return {"_cti": type(item).__name__, **base}


async def _write_loop(events: EventQueue, out: IO[str], counts: dict[str, int]) -> None:
    while True:
        item = await events.get()
        out.write(json.dumps(trace_line(item), ensure_ascii=False) + "\n")
        counts["lines"] += 1
        if events.qsize() == 0:
            out.flush()


async def record(  # noqa: C901 - setup, run and cleanup read best in one place
    settings: Settings,
    out_path: Path | str,
    *,
    node: str | None = None,
    duration: float | None = None,
) -> int:
    """Record until SIGINT/SIGTERM or `duration` seconds. Returns an exit code."""
    log = structlog.get_logger("cti.record")
    nodes = [n for n in settings.ami.nodes if node is None or n.name == node]
    if not nodes:
        known = ", ".join(n.name for n in settings.ami.nodes)
        print(f"no Asterisk node named {node!r} (configured: {known})", file=sys.stderr)  # noqa: T201
        return 2
    events = EventQueue(settings.ami.event_queue_size)
    clients = [AmiClient(n, events) for n in nodes]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    counts = {"lines": 0}
    to_stdout = str(out_path) == "-"
    # opening a local file for appending does not block in any way that matters here
    out: IO[str] = sys.stdout if to_stdout else Path(out_path).open("a", encoding="utf-8")  # noqa: SIM115, ASYNC230
    code = 0

    async def stop_when_done() -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                await stop.wait()
        while events.qsize():  # noqa: ASYNC110 - let the writer write what is queued
            await asyncio.sleep(0.01)
        raise _DoneError

    try:
        async with asyncio.TaskGroup() as tg:
            for c in clients:
                tg.create_task(c.run(), name=f"record.ami[{c.name}]")
            tg.create_task(_write_loop(events, out, counts), name="record.write")
            tg.create_task(stop_when_done(), name="record.stop")
    except* _DoneError:
        pass
    except* AmiLoginError as group:
        for exc in group.exceptions:
            log.error("record_failed", error=str(exc))
        code = 3
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        out.flush()
        if not to_stdout:
            out.close()
    log.info("record_done", lines=counts["lines"], out=str(out_path))
    return code
