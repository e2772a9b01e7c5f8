"""The fuzz corpus against the running daemon (issue 15): then a normal call still works.

A few hundred garbage inputs of each kind the daemon takes from the network, over the real
sockets: FastAGI connections (garbage, truncated and oversized header blocks, CR/LF, an
unknown script), MQTT payloads on the seat command and 110 push topics, and HTTP requests
with garbage bodies, paths and headers. Garbage AMI cannot be injected into a real
Asterisk; the AMI decoder and parser are fuzzed in process (tests/fuzz/). Afterwards the
daemon is alive, answered every HTTP request below 500, logged no crash caught by a
last-resort fence, and a normal call is routed to the seat, popped and ticketed.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from tests.real.daemon_harness import Harness
from tests.real.test_dispatch110_real import TOKEN_SEATS, api, configure, transfer
from tests.real.test_hostile_json_real import alive, serves_a_call

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

PER_KIND: Final = 300
# what only a catch-all would have caught: a crash the fuzzing must not provoke
FENCES: Final = (
    "mqtt_message_failed",
    "push110_message_failed",
    "http_internal_error",
    "agi_flow_crashed",
    "core_failed",
    "effect_failed",
    "call_tracker_error",
)


def corpus(seed: int, valid: bytes) -> list[bytes]:
    """PER_KIND hostile payloads: random bytes, truncations of a valid input, huge values,
    wrong encodings, CR/LF, deep nesting (deterministic: the seed)."""
    rng = random.Random(seed)
    out: list[bytes] = []
    shapes: list[Callable[[], bytes]] = [
        lambda: rng.randbytes(rng.randint(0, 400)),
        lambda: valid[: rng.randint(0, len(valid) - 1)],
        lambda: valid.replace(b'"', b"", rng.randint(1, 3)),
        lambda: b"[" * rng.randint(30, 3000),
        lambda: b'{"cmd": "' + b"\r\n" * rng.randint(1, 50) + b'"}',
        lambda: b'{"seconds": ' + b"9" * rng.randint(40, 5000) + b"}",
        lambda: valid.decode().encode("utf-16"),
        lambda: "叫车".encode("gb18030") + valid,
        lambda: b'{"k": "\\ud800"}',
        lambda: b"\xef\xbb\xbf" + valid,
    ]
    while len(out) < PER_KIND:
        out.append(shapes[len(out) % len(shapes)]())
    return out


def agi_corpus() -> list[bytes]:
    rng = random.Random(4573)
    valid = b"agi_network: yes\nagi_network_script: ivr\nagi_request: agi://x/ivr\n"
    out: list[bytes] = []
    shapes: list[Callable[[], bytes]] = [
        lambda: rng.randbytes(rng.randint(0, 600)),
        lambda: valid[: rng.randint(0, len(valid))],  # truncated, then the peer closes
        lambda: b"agi_network_script: nope\n\n",  # no such route
        lambda: b"agi_request: " + b"A" * rng.randint(17_000, 40_000) + b"\n\n",  # oversized
        lambda: valid.replace(b"\n", b"\r\n") + b"\r\n",  # CR/LF framing
        lambda: b"\n\n",
        lambda: "agi_callerid: 张三\n".encode("gb18030") + b"agi_network_script: \xff\n\n",
    ]
    while len(out) < PER_KIND:
        out.append(shapes[len(out) % len(shapes)]())
    return out


async def send_agi(host: str, port: int, data: bytes) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        # the daemon closes on its own (garbage, no route) within the header deadline
        async with asyncio.timeout(10):
            await reader.read()
    except (ConnectionError, OSError):
        pass  # the daemon dropping a garbage peer mid-send is fine
    finally:
        writer.close()


async def test_fuzz_corpus_then_a_normal_call_is_routed_popped_and_ticketed(
    tmp_path: Path,
) -> None:
    async with Harness(*configure(tmp_path)) as h, await api(h) as c:
        assert h._mqtt is not None
        await h.seat("1001", {"cmd": "login", "ready": True})
        up = await h.wait(lambda: h.log("agi_listening"), 10, "the FastAGI server")

        # FastAGI: 300 garbage connections, 20 at a time
        agi = agi_corpus()
        for i in range(0, len(agi), 20):
            await asyncio.gather(*(send_agi("127.0.0.1", up["port"], d) for d in agi[i : i + 20]))
        alive(h)

        # MQTT: 300 on a seat's command topic (another seat: 1001 must stay ready), 300 pushes
        cmd = json.dumps({"cmd": "wrapup_extend", "seconds": 30, "request_id": "r"}).encode()
        push = json.dumps(transfer("J0000000001", "13800000001", mode="data")).encode()
        for payload in corpus(1, cmd):
            await h._mqtt.publish(f"{h.prefix}/seats/1002/cmd", payload, qos=1)
        for payload in corpus(110, push):
            await h._mqtt.publish(f"{h.prefix}/110/transfers", payload, qos=1)
        # every push gets an answer (a refusal): the loop read them all
        await h.wait(
            lambda: len(h.published("110/transfers/reply")) >= PER_KIND,
            60,
            f"{PER_KIND} replies on 110/transfers/reply",
        )
        alive(h)

        # HTTP: 300 garbage requests across the API
        statuses: dict[int, int] = {}
        rng = random.Random(8080)
        paths = [
            "/api/v1/transfers/110",
            "/api/v1/seats/1002/commands",
            "/api/v1/calls",
            "/api/v1/seats/%ff%fe/commands",
            "/api/v1/transfers/110/" + "9" * 300,
            "/api/v1/" + "a/" * 200,
        ]
        bodies = corpus(8080, push)
        for i, body in enumerate(bodies):
            method = "POST" if i % 3 else rng.choice(["GET", "PUT", "DELETE", "PATCH"])
            headers = {
                "Content-Type": rng.choice(["application/json", "text/plain", "application/x"]),
                "Authorization": rng.choice(
                    [f"Bearer {TOKEN_SEATS}", "Bearer " + "x" * 500, "Basic Og==", ""]
                ),
            }
            resp = await c.request(method, paths[i % len(paths)], content=body, headers=headers)
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        assert all(s < 500 for s in statuses), statuses
        alive(h)

        fenced = [r for r in h.logs if r.get("event") in FENCES]
        assert not fenced, fenced[:3]
        await serves_a_call(h, "13800000866")
