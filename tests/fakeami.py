"""An in-process fake Asterisk manager for adapter unit tests (loopback, scripted).

It speaks just enough AMI: greeting, Login, Ping, and whatever the test scripts with
`on_action`. It records every action it received, so a test can prove that nothing was
re-sent after a reconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from cti.adapters.amiwire import AmiWireDecoder

Reply = list[dict[str, str]] | None  # messages to send back; None = never answer


def wire(msg: dict[str, str]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in msg.items()).encode() + b"\r\n"


@dataclass
class FakeAmi:
    secret: str = "s3cret"
    banner: bytes = b"Asterisk Call Manager/11.0.0\r\n"
    answer_pings: bool = True
    handlers: dict[str, Callable[[dict[str, str]], Reply]] = field(default_factory=dict)
    received: list[dict[str, str]] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    logins: int = 0
    server: asyncio.Server | None = None
    port: int = 0

    async def start(self) -> FakeAmi:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.drop_all()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    def drop_all(self) -> None:
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()

    def on_action(self, name: str, fn: Callable[[dict[str, str]], Reply]) -> None:
        self.handlers[name.lower()] = fn

    def push(self, msg: dict[str, str]) -> None:
        for w in self.writers:
            w.write(wire(msg))

    def push_raw(self, data: bytes) -> None:
        for w in self.writers:
            w.write(data)

    def actions(self, name: str) -> list[dict[str, str]]:
        return [a for a in self.received if a.get("Action", "").lower() == name.lower()]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        writer.write(self.banner)
        dec = AmiWireDecoder(expect_banner=False)
        try:
            while data := await reader.read(65536):
                for msg in dec.feed(data):
                    self.received.append(msg)
                    if not self._handle(msg, writer):
                        writer.close()
                        return
        except ConnectionError:
            pass
        finally:
            if writer in self.writers:
                self.writers.remove(writer)

    def _handle(self, msg: dict[str, str], writer: asyncio.StreamWriter) -> bool:
        name = msg.get("Action", "").lower()
        aid = msg.get("ActionID", "")
        if name == "login":
            if msg.get("Secret") != self.secret:
                writer.write(
                    wire({"Response": "Error", "ActionID": aid, "Message": "Authentication failed"})
                )
                return False  # Asterisk closes the connection after a refused login
            self.logins += 1
            writer.write(
                wire({"Response": "Success", "ActionID": aid, "Message": "Authentication accepted"})
            )
            writer.write(
                wire(
                    {
                        "Event": "FullyBooted",
                        "Privilege": "system,all",
                        "Uptime": "5",
                        "LastReload": "5",
                        "Status": "Fully Booted",
                    }
                )
            )
            return True
        if name == "ping":
            if self.answer_pings:
                writer.write(wire({"Response": "Success", "ActionID": aid, "Ping": "Pong"}))
            return True
        if name == "coreshowchannels" and name not in self.handlers:
            writer.write(
                wire(
                    {
                        "Response": "Success",
                        "ActionID": aid,
                        "EventList": "start",
                        "Message": "Channels will follow",
                    }
                )
            )
            writer.write(
                wire(
                    {
                        "Event": "CoreShowChannelsComplete",
                        "ActionID": aid,
                        "EventList": "Complete",
                        "ListItems": "0",
                    }
                )
            )
            return True
        if name == "devicestatelist" and name not in self.handlers:
            writer.write(
                wire(
                    {
                        "Response": "Success",
                        "ActionID": aid,
                        "EventList": "start",
                        "Message": "Device State Changes will follow",
                    }
                )
            )
            writer.write(
                wire(
                    {
                        "Event": "DeviceStateChange",
                        "ActionID": aid,
                        "Device": "PJSIP/1001",
                        "State": "NOT_INUSE",
                    }
                )
            )
            writer.write(
                wire(
                    {
                        "Event": "DeviceStateListComplete",
                        "ActionID": aid,
                        "EventList": "Complete",
                        "ListItems": "1",
                    }
                )
            )
            return True
        fn = self.handlers.get(name)
        if fn is None:
            writer.write(
                wire({"Response": "Error", "ActionID": aid, "Message": "Invalid/unknown command"})
            )
            return True
        for out in fn(msg) or []:
            writer.write(wire({**out, "ActionID": aid} if "ActionID" not in out else out))
        return True
