"""A tiny asyncio AMI client for scenario drivers and live tests.

Independent of the daemon's adapter on purpose: the fixtures it records are the input of
the replay tests, so they must not depend on the code under test. It records every
message in the trace format of DESIGN.md (flat header dict, ``_t``, ``_node``) and writes
the connection markers the daemon's recorder writes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from cti.adapters.amiwire import AmiWireDecoder, encode_action

AMI_HOST = "127.0.0.1"
AMI_PORT = 5038
AMI_USER = "cti"
AMI_SECRET = "ctisecret"  # the testbed's documented test credential (asterisk-sample)


class AmiError(Exception):
    def __init__(self, action: str, reply: dict[str, str]) -> None:
        super().__init__(f"{action} failed: {reply}")
        self.reply = reply


class TestAmiClient:
    """Login, send actions, and keep every received message (and markers) in `trace`."""

    __test__ = False  # not a pytest test class

    def __init__(self, node: str = "main") -> None:
        self.node = node
        self.trace: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[list[dict[str, str]]]] = {}
        self._lists: dict[str, list[dict[str, str]]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.event_arrived = asyncio.Event()
        self.connected = False

    async def connect(self, timeout: float = 5.0) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(AMI_HOST, AMI_PORT), timeout
            )
        except (OSError, TimeoutError) as exc:
            msg = (
                f"the Asterisk testbed does not answer on {AMI_HOST}:{AMI_PORT} ({exc!r}); "
                "start it with `scripts/testbed up`"
            )
            raise RuntimeError(msg) from exc
        self._reader, self._writer = reader, writer
        decoder = AmiWireDecoder()
        self._task = asyncio.create_task(self._read(reader, decoder))
        reply = await self.action({"Action": "Login", "Username": AMI_USER, "Secret": AMI_SECRET})
        self.connected = True
        self.trace.append(
            {
                "_cti": "connected",
                "_t": time.time(),
                "_node": self.node,
                "version": decoder.banner or "",
                "login": reply[0].get("Message", ""),
            }
        )

    async def resync(self) -> list[dict[str, str]]:
        """What the daemon does after every login: CoreShowChannels (events go to trace)."""
        return await self.action(
            {"Action": "CoreShowChannels"}, complete="CoreShowChannelsComplete"
        )

    async def _read(self, reader: asyncio.StreamReader, decoder: AmiWireDecoder) -> None:
        try:
            while data := await reader.read(65536):
                now = time.time()
                for msg in decoder.feed(data):
                    self._dispatch(msg, now)
        except OSError:
            pass
        finally:
            if self.connected:
                self.trace.append(
                    {"_cti": "disconnected", "_t": time.time(), "_node": self.node, "reason": "eof"}
                )
            self.connected = False
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("AMI connection lost"))
            self._pending.clear()

    def _dispatch(self, msg: dict[str, str], now: float) -> None:
        rec: dict[str, Any] = dict(msg)
        rec["_t"] = round(now, 6)
        rec["_node"] = self.node
        self.trace.append(rec)
        self.event_arrived.set()
        aid = msg.get("ActionID", "")
        fut = self._pending.get(aid)
        if fut is None or fut.done():
            return
        items = self._lists.setdefault(aid, [])
        items.append(msg)
        complete = getattr(fut, "complete_event", None)
        if complete is None or msg.get("Event") == complete:
            fut.set_result(items)
            del self._pending[aid]
            del self._lists[aid]
        elif msg.get("Response") == "Error":
            fut.set_exception(AmiError(msg.get("Message", ""), msg))
            del self._pending[aid]

    async def action(
        self, headers: dict[str, str], *, complete: str | None = None, timeout: float = 10.0
    ) -> list[dict[str, str]]:
        """Send an action; return its response (plus list items up to `complete`)."""
        assert self._writer is not None
        aid = f"t{next(self._ids)}"
        fut: asyncio.Future[list[dict[str, str]]] = asyncio.get_running_loop().create_future()
        fut.complete_event = complete  # type: ignore[attr-defined]
        self._pending[aid] = fut
        self._writer.write(encode_action({**headers, "ActionID": aid}))
        await self._writer.drain()
        reply = await asyncio.wait_for(fut, timeout)
        if reply[0].get("Response") == "Error":
            raise AmiError(headers.get("Action", ""), reply[0])
        return reply

    async def wait_for(
        self, pred: Any, timeout: float = 10.0, what: str = "an event"
    ) -> dict[str, Any]:
        """Wait until a received message satisfies pred(msg); search the whole trace."""
        deadline = asyncio.get_running_loop().time() + timeout
        seen = 0
        while True:
            for msg in self.trace[seen:]:
                if "_cti" not in msg and pred(msg):
                    return msg
            seen = len(self.trace)
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                err = f"timed out after {timeout}s waiting for {what}"
                raise TimeoutError(err)
            self.event_arrived.clear()
            try:
                await asyncio.wait_for(self.event_arrived.wait(), left)
            except TimeoutError:
                pass

    async def drop(self) -> None:
        """Lose the connection without logging off (what a network failure looks like)."""
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=5)

    async def close(self) -> None:
        if self._writer is not None:
            try:
                await asyncio.wait_for(self.action({"Action": "Logoff"}), 2)
            except (TimeoutError, ConnectionError, AmiError, OSError):
                pass
            self.connected = False
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
