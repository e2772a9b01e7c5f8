"""Run the real daemon (a `cti run` process) against the testbed, with a test's own seats,
MQTT prefix and database; drive calls over AMI and watch what the daemon publishes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Self

import aiomqtt
import yaml

from cti.adapters.ami import AmiClient, EventQueue
from cti.events import AmiEvent
from tests.conftest import AMI_SECRET, MQTT_HOST, MQTT_LOGIN, MQTT_PORT, PROJECT, bed_node, unique


def write_config(
    tmp: Path,
    *,
    seats: list[dict[str, Any]],
    queue: dict[str, Any],
    workorders: dict[str, Any] | None = None,
) -> tuple[Path, str]:
    """config/cti.yaml with the test's seats, queue settings, MQTT prefix and database
    (and its `workorders` section, if given)."""
    data = yaml.safe_load((PROJECT / "config" / "cti.yaml").read_text(encoding="utf-8"))
    prefix = f"test/{unique()}"
    data["ami"]["nodes"][0].pop("secret", None)
    # the testbed's queue_log has every test's fallback calls: only a test of them reads it
    data["ami"]["nodes"][0].pop("queue_log", None)
    data["mqtt"].update(prefix=prefix, client_id=unique("cti"))
    data["database"]["url"] = f"sqlite+aiosqlite:///{tmp}/cti.db"
    data["logging"] = {"level": "info", "format": "json"}
    # any free port: several daemons (tests, a benchmark) may run on this host at once
    data.setdefault("http", {})["port"] = 0
    data["numberplan"]["seats"] = seats
    data["numberplan"]["queue"].update(queue)
    if workorders is not None:
        data["workorders"] = workorders
    path = tmp / "cti.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


async def spawn_daemon(
    config: Path,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    *,
    source: Path | None = None,
) -> asyncio.subprocess.Process:
    """`cti run -c config [args]` with the testbed's AMI secret (and `env`, e.g. the
    CTI_HA_NODE_ID of one daemon of a pair); JSON logs on its stderr pipe.
    With `source` (a source tree, e.g. an older revision's `git archive`) the daemon runs that
    tree's `cti` package instead of the installed one: `python -m` puts its working directory
    first on `sys.path`, so the tree is both the working directory and `PYTHONPATH`."""
    env = {**os.environ, "CTI_AMI_SECRET": AMI_SECRET, **(env or {})}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cti",
        "run",
        "-c",
        str(config),
        *args,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=source,
    )


async def stop_daemon_process(proc: asyncio.subprocess.Process) -> int:
    """SIGTERM, and SIGKILL if it is not gone within 10 s: never leave a daemon behind (an
    orphan would take the next tests' calls). Returns its exit code."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode


class Harness:
    def __init__(
        self,
        config: Path,
        prefix: str,
        *,
        start: bool = True,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self._env = env  # more environment for the daemon (CTI_HA_NODE_ID)
        self._start = start
        self._args = tuple(args)  # more `cti run` arguments (--pidfile)
        self.config = config
        self.prefix = prefix
        self.proc: asyncio.subprocess.Process | None = None
        self.logs: list[dict[str, Any]] = []
        self.messages: list[tuple[str, Any]] = []
        self.ami_events = EventQueue(100_000)
        self.driver = AmiClient(bed_node(name="driver"), self.ami_events)
        self._tasks: list[asyncio.Task[Any]] = []
        self._mqtt: aiomqtt.Client | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._mqtt = aiomqtt.Client(
            MQTT_HOST, MQTT_PORT, identifier=unique("harness"), **MQTT_LOGIN
        )
        await self._mqtt.__aenter__()
        await self._mqtt.subscribe(f"{self.prefix}/#", qos=1)
        self._tasks.append(asyncio.create_task(self._read_mqtt()))
        self._tasks.append(asyncio.create_task(self.driver.run()))
        await self.driver.wait_connected(10)
        if self._start:
            await self.start_daemon()
        return self

    async def stop_daemon(self) -> None:
        assert self.proc is not None
        assert await stop_daemon_process(self.proc) == 0
        self.logs.clear()

    async def kill_daemon(self) -> None:
        """SIGKILL: no shutdown, no flush — what a power cut or the OOM killer does."""
        assert self.proc is not None
        self.proc.kill()
        assert await self.proc.wait() == -signal.SIGKILL
        self.logs.clear()

    async def start_daemon(self) -> None:
        self.proc = await spawn_daemon(self.config, self._args, self._env)
        self._tasks.append(asyncio.create_task(self._read_logs()))
        await self.wait(lambda: self.log("ami_node_up"), 20, "daemon up")
        # agent commands published before the daemon subscribed would be lost
        await self.wait(lambda: self.log("mqtt_connected"), 20, "daemon's MQTT up")

    async def __aexit__(self, *exc: object) -> None:
        # never leave a daemon behind: an orphan would take the next tests' calls
        try:
            with contextlib.suppress(Exception):
                await self.driver_action(
                    {"Action": "Hangup", "Channel": "/^Local\\/.*@cti-inbound-/"}
                )
        finally:
            if self.proc is not None:
                await stop_daemon_process(self.proc)
            for t in self._tasks:
                t.cancel()
            if self._mqtt is not None:
                with contextlib.suppress(Exception):
                    await self._mqtt.__aexit__(None, None, None)

    async def driver_action(self, action: dict[str, str]) -> None:
        await self.driver.action(action, check=False)

    async def _read_mqtt(self) -> None:
        assert self._mqtt is not None
        async for m in self._mqtt.messages:
            topic = m.topic.value.removeprefix(self.prefix + "/")
            payload = m.payload if isinstance(m.payload, bytes) else b""
            try:
                body = json.loads(payload) if payload else None
            except (ValueError, RecursionError):  # a test's own hostile payload (tests/real)
                body = payload
            self.messages.append((topic, body))
            self._changed.set()

    async def _read_logs(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            try:
                self.logs.append(json.loads(line))
            except ValueError:
                self.logs.append({"event": "unparsed", "line": line.decode(errors="replace")})
            self._changed.set()

    # ------------------------------------------------------------------ looking

    def log(self, event: str, **match: Any) -> dict[str, Any] | None:
        for rec in self.logs:
            if rec.get("event") == event and all(rec.get(k) == v for k, v in match.items()):
                return rec
        return None

    def logs_of(self, event: str) -> list[dict[str, Any]]:
        """Every daemon log record of `event`, in order."""
        return [rec for rec in self.logs if rec.get("event") == event]

    def published(self, topic: str, **match: Any) -> list[Any]:
        return [
            b
            for t, b in self.messages
            if t == topic and isinstance(b, dict) and all(b.get(k) == v for k, v in match.items())
        ]

    async def wait(self, cond: Callable[[], Any], timeout: float, what: str) -> Any:
        try:
            async with asyncio.timeout(timeout):
                while not (result := cond()):
                    self._changed.clear()
                    await self._changed.wait()
                return result
        except TimeoutError:
            tail = [
                str(r.get("event") if r.get("event") != "unparsed" else r.get("line"))
                + (f" ({r['error']})" if r.get("error") else "")
                for r in self.logs[-15:]
            ]
            msg = f"timed out after {timeout} s waiting for {what}; last daemon logs: {tail}"
            raise AssertionError(msg) from None

    # ------------------------------------------------------------------ doing

    async def call(
        self,
        number: str,
        caller: str,
        name: str = "",
        *,
        taken: bool = True,
        variables: dict[str, str] | None = None,
        context: str = "customer",
        exten: str = "s",
    ) -> str:
        """A citizen calls `number`; returns the call id (the Linkedid). With `taken`,
        waits until the daemon has taken it. `variables` are set on the calling channel
        (e.g. CTI_TRANSFER_ID, as the 110 trunk's X-Transfer-Id header would)."""
        a, b = unique("a"), unique("b")
        cid = f'"{name}" <{caller}>' if name else f"<{caller}>"
        extra = {}
        if variables:
            extra["Variable"] = ",".join(f"{k}={v}" for k, v in variables.items())
        await self.driver.action(
            {
                **extra,
                "Action": "Originate",
                "Channel": f"Local/{number}@cti-inbound",
                "Context": context,  # where the citizen's side runs (DTMF senders)
                "Exten": exten,
                "Priority": "1",
                "Async": "true",
                "ChannelId": a,
                "OtherChannelId": b,
                "CallerID": cid,
            }
        )
        if taken:
            await self.wait(lambda: self.log("call_taken", linkedid=a), 10, f"call {a} taken")
        return a

    async def channels(self) -> dict[str, dict[str, str]]:
        """Asterisk's channels now (CoreShowChannels), by Uniqueid."""
        res = await self.driver.action({"Action": "CoreShowChannels"})
        return {
            e.headers.get("Uniqueid", ""): dict(e.headers)
            for e in res.items
            if isinstance(e, AmiEvent)
        }

    async def hang_up(self, call_id: str) -> None:
        """The citizen hangs up: the customer half of the originated pair."""
        # the customer half (;1) of the originated pair has Uniqueid == call id
        res = await self.driver.action({"Action": "CoreShowChannels"})
        for ev in res.items:
            if isinstance(ev, AmiEvent) and ev.headers.get("Uniqueid") == call_id:
                await self.driver_action({"Action": "Hangup", "Channel": ev.headers["Channel"]})

    async def seat(self, seat: str, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self._mqtt is not None
        rid = unique("r")
        await self._mqtt.publish(
            f"{self.prefix}/seats/{seat}/cmd", json.dumps({**cmd, "request_id": rid}), qos=1
        )
        replies = await self.wait(
            lambda: self.published(f"seats/{seat}/reply", request_id=rid), 10, f"reply {rid}"
        )
        return dict(replies[0])

    def answered_by(self, call_id: str) -> str | None:
        got = self.published("calls/events", call_id=call_id, type="answered")
        return str(got[0]["answered_by"]) if got else None

    def seat_states(self, seat: str) -> list[tuple[str, str | None]]:
        return [(b["status"], b["reason"]) for b in self.published(f"seats/{seat}/state")]


async def poll(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Wait for `cond()` to be true by polling it: for what changes without the daemon
    saying so (the database, a webhook receiver). Returns its value."""
    try:
        async with asyncio.timeout(timeout):
            while not (got := cond()):
                await asyncio.sleep(0.05)
            return got
    except TimeoutError:
        msg = f"timed out after {timeout} s waiting for {what}"
        raise AssertionError(msg) from None


async def poll_async(probe: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """`poll` for a condition that must be asked for (Asterisk's channels over AMI)."""
    last: Any = None
    try:
        async with asyncio.timeout(timeout):
            while not (last := await probe()):
                await asyncio.sleep(0.2)
            return last
    except TimeoutError:
        msg = f"timed out after {timeout} s waiting for {what}; last seen: {last!r}"
        raise AssertionError(msg) from None


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)
