"""Several brokers (issue 14): `mqtt.failover` in the daemon and `cti seat-console`, and a
Mosquitto bridge between two brokers, against the real testbed.

The second broker is a private mosquitto bridged to the testbed's (docs/mqtt.md "Several
brokers"): the same logins and ACL files, `topic test/# both 1`. Clients start on it; it is
killed (SIGKILL: no goodbye, as a crashed machine) and they must carry on on the testbed's
broker, which the harness watches anyway — so every pop seen before the kill crossed the
bridge, and every one after it came over the failover connection."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from cti.adapters.mqtt import MqttAdapter
from cti.settings import MqttSettings
from tests.conftest import (
    DAEMON_MQTT_LOGIN,
    MQTT_HOST,
    MQTT_LOGIN,
    MQTT_PORT,
    SEAT_PASSWORD,
    unique,
)
from tests.real.daemon_harness import Harness, write_config
from tests.real.test_dispatch110_real import QUEUE, SEATS
from tests.real.test_hostile_json_real import serves_a_call

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

TESTBED_MQ = Path(os.environ.get("CTI_TESTBED", "/var/tmp/hotline-cti-testbed")) / "mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BridgedBroker:
    """A second mosquitto, bridged to the testbed's for the tests' topics."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / "bridge.log"
        self.conf = tmp / "bridge.conf"
        self.conf.write_text(
            # `user root`: pytest's tmp dirs are private (0700), mosquitto must not drop to
            # its own user; the logins and ACL are the testbed broker's own files
            f"user root\nlistener {self.port} 127.0.0.1\nallow_anonymous false\n"
            f"password_file {TESTBED_MQ}/passwords\nacl_file {TESTBED_MQ}/acl\n"
            "persistence false\n"
            f"log_dest file {self.log}\nlog_type all\n"
            "connection city\n"
            f"address {MQTT_HOST}:{MQTT_PORT}\n"
            f"remote_username {MQTT_LOGIN['username']}\n"
            f"remote_password {MQTT_LOGIN['password']}\n"
            f"remote_clientid {unique('bridge')}\n"
            "topic test/# both 1\n"
            "cleansession true\nrestart_timeout 1\n",
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
            time.sleep(0.05)
        msg = f"bridged mosquitto did not start: {self.log.read_text(errors='replace')}"
        raise RuntimeError(msg)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
            self.proc = None

    async def bridged(self) -> None:
        """Wait until a message published here arrives at the testbed's broker: the bridge is
        up (it connects a moment after the listener opens)."""
        topic = f"test/{unique()}/probe"
        async with (
            aiomqtt.Client(MQTT_HOST, MQTT_PORT, **MQTT_LOGIN) as city,
            aiomqtt.Client("127.0.0.1", self.port, **MQTT_LOGIN) as here,
        ):
            await city.subscribe(topic, qos=1)
            async with asyncio.timeout(15):
                while True:
                    await here.publish(topic, b"probe", qos=1)
                    try:
                        async with asyncio.timeout(0.5):
                            async for _msg in city.messages:
                                return
                    except TimeoutError:
                        continue


@pytest.fixture
def bridged_broker(tmp_path: Path) -> Iterator[BridgedBroker]:
    b = BridgedBroker(tmp_path)
    b.start()
    yield b
    b.kill()


def failover_config(path: Path, first_port: int) -> None:
    """mqtt.port = the bridged broker, mqtt.failover = the testbed's."""
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["mqtt"].update(port=first_port, failover=[{"host": MQTT_HOST, "port": MQTT_PORT}])
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


async def test_the_adapter_skips_a_dead_broker_at_once() -> None:
    dead = free_port()  # nothing listens there
    settings = MqttSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": dead,
            "failover": [{"host": MQTT_HOST, "port": MQTT_PORT}],
            "prefix": f"test/{unique()}",
            "client_id": unique("cti"),
        }
        | DAEMON_MQTT_LOGIN
    )
    # a long backoff: connecting within 2 s proves the next broker is tried without it
    a = MqttAdapter(settings, reconnect_min=10.0, reconnect_max=30.0)
    task = asyncio.create_task(a.run())
    try:
        async with asyncio.timeout(2):
            await a.wait_connected()
        assert a.broker == f"{MQTT_HOST}:{MQTT_PORT}"
        assert a.failovers == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_the_daemon_fails_over_to_the_next_broker_and_pops_keep_coming(
    tmp_path: Path, bridged_broker: BridgedBroker
) -> None:
    await bridged_broker.bridged()
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    failover_config(path, bridged_broker.port)
    async with Harness(path, prefix) as h:
        up = h.log("mqtt_connected")
        assert up is not None
        assert up["broker"] == f"127.0.0.1:{bridged_broker.port}", up
        # the seat's command is published on the testbed's broker and reaches the daemon
        # over the bridge; the pops come back the same way
        await h.seat("1001", {"cmd": "login", "ready": True})
        await serves_a_call(h, "13800000891")

        bridged_broker.kill()
        await h.wait(
            lambda: [
                r
                for r in h.logs
                if r.get("event") == "mqtt_connected" and r["broker"] == f"{MQTT_HOST}:{MQTT_PORT}"
            ],
            15,
            "the daemon on the failover broker",
        )
        switched = h.log("mqtt_failover")
        assert switched is not None
        assert switched["next_broker"] == f"{MQTT_HOST}:{MQTT_PORT}"
        # the seat is still ready (its state lives in the daemon, not on a broker) and the
        # next call is answered and popped over the new connection
        await serves_a_call(h, "13800000892")


async def test_the_seat_console_fails_over_to_the_next_broker(
    tmp_path: Path, bridged_broker: BridgedBroker
) -> None:
    await bridged_broker.bridged()
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    console_cfg = tmp_path / "console.yaml"
    console_cfg.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    failover_config(console_cfg, bridged_broker.port)
    async with Harness(path, prefix) as h:  # the daemon on the testbed's broker only
        console = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cti",
            "seat-console",
            "1001",
            "-c",
            str(console_cfg),
            env={**os.environ, "CTI_SEAT_PASSWORD": SEAT_PASSWORD},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert console.stdin is not None
        lines: list[str] = []

        async def read_until(fragment: str) -> None:
            assert console.stdout is not None
            try:
                async with asyncio.timeout(15):
                    while not any(fragment in x for x in lines):
                        line = await console.stdout.readline()
                        assert line, f"the console exited before {fragment!r}: {lines}"
                        lines.append(line.decode())
            except TimeoutError:
                msg = f"no {fragment!r} from the console within 15 s: {lines}"
                raise AssertionError(msg) from None

        await read_until(f"seat 1001 on 127.0.0.1:{bridged_broker.port}")
        console.stdin.write(b"login ready\n")
        await read_until("[state] ready")
        first = await h.call("12345", "13800000893", "钱七")
        await read_until("[pop offer] 钱七 13800000893")
        await h.hang_up(first)
        await read_until("[pop end]")

        bridged_broker.kill()
        await read_until(f"[broker] on {MQTT_HOST}:{MQTT_PORT}")
        assert any("went away" in x for x in lines), lines
        # commands and pops on the failover broker
        console.stdin.write(b"notready meal\n")
        await read_until("[state] not_ready (meal)")
        console.stdin.write(b"ready\n")
        lines.clear()
        await read_until("[state] ready")
        second = await h.call("12345", "13800000894", "孙八")
        await read_until("[pop offer] 孙八 13800000894")
        await h.hang_up(second)
        await read_until("[pop end]")
        console.stdin.write(b"quit\n")
        async with asyncio.timeout(10):
            assert await console.wait() == 0
