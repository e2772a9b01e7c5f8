"""The MQTT adapter against real Mosquitto brokers (the testbed's, and a private one that
the test stops and starts to prove nothing is lost across a broker outage)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from cti.adapters.mqtt import Incoming, MqttAdapter
from cti.settings import MqttSettings
from tests.conftest import DAEMON_MQTT_LOGIN, MQTT_HOST, MQTT_LOGIN, MQTT_PORT, unique

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]


async def messages(client: aiomqtt.Client, n: int, timeout: float = 5.0) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    try:
        async with asyncio.timeout(timeout):
            async for m in client.messages:
                got.append(m)
                if len(got) == n:
                    return got
    except TimeoutError:
        seen = [(m.topic.value, m.payload) for m in got]
        msg = f"{len(got)} of {n} messages within {timeout} s: {seen}"
        raise AssertionError(msg) from None
    return got


@pytest.fixture
async def adapter() -> AsyncIterator[tuple[MqttAdapter, list[Incoming], str]]:
    prefix = f"test/{unique()}"
    inbox: list[Incoming] = []
    settings = MqttSettings.model_validate(
        {"host": MQTT_HOST, "port": MQTT_PORT, "prefix": prefix, "client_id": unique("cti")}
        | DAEMON_MQTT_LOGIN
    )
    a = MqttAdapter(settings, subscriptions=["seats/+/cmd"], on_message=inbox.append)
    task = asyncio.create_task(a.run())
    async with asyncio.timeout(5):
        await a.wait_connected()
    yield a, inbox, prefix
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_publishes_state_retained_and_pops_in_order(
    adapter: tuple[MqttAdapter, list[Incoming], str],
) -> None:
    a, _, prefix = adapter
    async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=unique("sub"), **MQTT_LOGIN) as sub:
        await sub.subscribe(f"{prefix}/#", qos=1)
        a.publish("seats/1001/state", {"state": "ready", "label": "示闲"}, retain=True)
        for i in range(3):
            a.publish("seats/1001/pop", {"pop_id": i, "caller_name": "张三"})
        got = await messages(sub, 5)  # status (retained) + state + 3 pops
    by_topic: dict[str, list[Any]] = {}
    for m in got:
        assert isinstance(m.payload, bytes)
        by_topic.setdefault(m.topic.value, []).append(json.loads(m.payload))
    assert by_topic[f"{prefix}/status"] == [{"online": True}]
    assert by_topic[f"{prefix}/seats/1001/state"] == [{"state": "ready", "label": "示闲"}]
    assert by_topic[f"{prefix}/seats/1001/pop"] == [
        {"pop_id": i, "caller_name": "张三"} for i in range(3)
    ]


async def test_commands_arrive_relative_to_the_prefix(
    adapter: tuple[MqttAdapter, list[Incoming], str],
) -> None:
    a, inbox, prefix = adapter
    async with aiomqtt.Client(
        MQTT_HOST, MQTT_PORT, identifier=unique("agent"), **MQTT_LOGIN
    ) as agent:
        await agent.publish(f"{prefix}/seats/1001/cmd", b'{"cmd":"ready"}', qos=1)
        await agent.publish(f"{prefix}/seats/1001/other", b"ignored", qos=1)
        await agent.publish(f"{prefix}/seats/1002/cmd", b"\xff not json", qos=1)
    async with asyncio.timeout(5):
        while len(inbox) < 2:
            await asyncio.sleep(0.02)
    assert [(m.topic, m.payload) for m in inbox] == [
        ("seats/1001/cmd", b'{"cmd":"ready"}'),
        ("seats/1002/cmd", b"\xff not json"),  # validation is the command layer's job
    ]
    assert a.received == 2


# ---------------------------------------------------------------- broker outage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A private mosquitto with persistence, so sessions survive its restart."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(
            # `user root`: the tests run as root and pytest's tmp dirs are private (0700),
            # so mosquitto must not drop to its own user or it cannot write its db
            f"user root\nlistener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {tmp}/\nlog_dest none\n",
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)])
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            subprocess.run(["sleep", "0.05"], check=True)
        msg = "private mosquitto did not start"
        raise RuntimeError(msg)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # mosquitto saves its persistence file on SIGTERM
            self.proc.wait(5)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


async def test_nothing_lost_across_a_broker_outage(broker: Broker) -> None:
    prefix = f"test/{unique()}"
    # an agent's screen with a persistent session: it gets what was published while it
    # (or the broker) was away, as soon as both are back
    screen_id = unique("screen")

    def screen() -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1", broker.port, identifier=screen_id, clean_session=False)

    async with screen() as s:
        await s.subscribe(f"{prefix}/seats/1001/#", qos=1)
    settings = MqttSettings(
        host="127.0.0.1", port=broker.port, prefix=prefix, client_id=unique("cti")
    )
    a = MqttAdapter(settings, reconnect_min=0.2, reconnect_max=0.5)
    task = asyncio.create_task(a.run())
    try:
        async with asyncio.timeout(5):
            await a.wait_connected()
        broker.stop()
        async with asyncio.timeout(5):
            while a.connected:
                await asyncio.sleep(0.02)
        for i in range(3):
            a.publish("seats/1001/pop", {"pop_id": i})
        a.publish("seats/1001/state", {"state": "ringing"}, retain=True)
        a.publish("seats/1001/state", {"state": "talking"}, retain=True)  # coalesced
        assert a.backlog == 4
        broker.start()
        async with asyncio.timeout(10):
            await a.wait_connected()
            while a.backlog:
                await asyncio.sleep(0.02)
        async with screen() as s:
            await s.subscribe(f"{prefix}/seats/1001/#", qos=1)
            got = await messages(s, 4)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    payloads = [
        (m.topic.value.rsplit("/", 1)[1], json.loads(m.payload))
        for m in got
        if isinstance(m.payload, bytes)
    ]
    assert [p for t, p in payloads if t == "pop"] == [{"pop_id": i} for i in range(3)]
    assert [p for t, p in payloads if t == "state"] == [{"state": "talking"}]
