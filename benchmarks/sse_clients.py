"""The simulated browsers (or the MQTT desktop) of benchmarks/sse.py, in a process of their own.

Why a process of its own: on this 2-vCPU machine the 500 clients' event loop, sharing one
process with the harness (its MQTT subscriber to ``{prefix}/#``, the daemon's log reader),
was itself a source of latency — a pop that reached the socket waited for the client's
loop to get round to reading it, and the benchmark charged that to the daemon. Here each
worker process holds some of the streams, stamps each chunk with ``time.time()`` the moment
``data_received`` gets it (the cheapest place there is: no parsing before the stamp, the
pops are parsed after the run), and watches its own loop's lag (a 10 ms ticker) so the
report can say how late the clients themselves were.

Protocol with the parent (benchmarks/sse.py): argv says what to open; the worker prints
``ready`` on stdout once every stream got its ``hello`` (or the MQTT subscription is in),
then runs until a line (or EOF) on stdin, then prints one JSON object: ``pops``
(pop_id -> list of latencies, one per stream that got it), ``lag`` (the ticker's lateness
samples, s) and ``closed`` (streams the daemon closed early).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TICK_S = 0.01


class SseStream(asyncio.Protocol):
    """One browser: GET /events over HTTP/1.0 (close-delimited), raw chunks kept with their
    receipt time; lines are cut only to see the ``hello``."""

    def __init__(self, request: bytes, hello: asyncio.Event) -> None:
        self.request = request
        self.hello = hello
        self.chunks: list[tuple[float, bytes]] = []
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they write
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.chunks.append((time.time(), data))
        if not self.hello.is_set() and b"event: hello" in b"".join(c for _, c in self.chunks):
            self.hello.set()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - any end
        self.closed.set()

    def pops(self, events: dict[str, int]) -> dict[str, float]:
        """pop_id -> latency, from the chunks: a line's receipt is the chunk it ended in;
        every event counted by name into *events*."""
        out: dict[str, float] = {}
        buf = b""
        event = ""
        for at, data in self.chunks:
            buf += data
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.rstrip(b"\r")
                if line.startswith(b"event:"):
                    event = line[6:].strip().decode()
                    events[event] = events.get(event, 0) + 1
                elif line.startswith(b"data:") and event == "pop":
                    body = json.loads(line[5:])
                    out[str(body["pop_id"])] = at - float(body["at"])
                elif not line:
                    event = ""
        return out


async def lag_ticker(samples: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + TICK_S
        await asyncio.sleep(TICK_S)
        samples.append(max(0.0, loop.time() - due))


async def wait_stop() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)


async def run_sse(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    cookies = args.cookies.split(",")
    streams: list[SseStream] = []
    for i in range(args.clients):
        request = (
            f"GET /events HTTP/1.0\r\nHost: {args.host}:{args.port}\r\n"
            f"Cookie: cti_session={cookies[i % len(cookies)]}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        hello = asyncio.Event()
        _, proto = await loop.create_connection(
            lambda r=request, h=hello: SseStream(r, h),  # type: ignore[misc]
            args.host,
            args.port,
        )
        streams.append(proto)
    async with asyncio.timeout(60):
        await asyncio.gather(*(s.hello.wait() for s in streams))
    lag: list[float] = []
    ticker = asyncio.create_task(lag_ticker(lag))
    print("ready", flush=True)
    await wait_stop()
    ticker.cancel()
    pops: dict[str, list[float]] = {}
    events: dict[str, int] = {}
    for s in streams:
        for pid, lat in s.pops(events).items():
            pops.setdefault(pid, []).append(lat)
    # chunks: what the socket reads returned, an upper bound of the daemon's writes
    chunks = sum(len(s.chunks) for s in streams)
    return {
        "pops": pops,
        "lag": lag,
        "closed": sum(s.closed.is_set() for s in streams),
        "events": events,
        "chunks": chunks,
    }


async def run_mqtt(args: argparse.Namespace) -> dict[str, object]:
    import aiomqtt  # noqa: PLC0415 - only this mode needs it

    from tests.conftest import MQTT_HOST, MQTT_LOGIN, MQTT_PORT, unique  # noqa: PLC0415

    pops: dict[str, list[float]] = {}
    raw: list[tuple[float, bytes]] = []
    lag: list[float] = []
    async with aiomqtt.Client(
        MQTT_HOST, MQTT_PORT, identifier=unique("ssebench"), **MQTT_LOGIN
    ) as m:
        await m.subscribe(f"{args.prefix}/seats/+/pop", qos=1)

        async def read() -> None:
            async for msg in m.messages:
                if isinstance(msg.payload, bytes):
                    raw.append((time.time(), msg.payload))  # noqa: PERF401 - stamped each

        reader = asyncio.create_task(read())
        ticker = asyncio.create_task(lag_ticker(lag))
        print("ready", flush=True)
        await wait_stop()
        reader.cancel()
        ticker.cancel()
    for at, payload in raw:
        body = json.loads(payload)
        pops.setdefault(str(body["pop_id"]), []).append(at - float(body["at"]))
    return {"pops": pops, "lag": lag, "closed": 0, "events": {}, "chunks": 0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("sse", "mqtt"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cookies", default="")
    p.add_argument("--clients", type=int, default=0)
    p.add_argument("--prefix", default="")
    args = p.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415 - the cheapest loop for the clients, when installed

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    result = asyncio.run(run_sse(args) if args.mode == "sse" else run_mqtt(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
