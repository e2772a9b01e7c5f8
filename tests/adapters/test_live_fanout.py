"""The browsers' fan-out (cti/adapters/http/live.py, sse.py): the publish path does no
per-stream work, each publish is encoded once, each stream sees only what its user may,
a burst goes out as one chunk, and a slow stream is bounded and closed alone (issue 13)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from cti.adapters.http.live import PING_FRAME, LiveHub, LiveStream, sse_frame
from cti.adapters.http.sessions import hash_password
from cti.adapters.http.sse import SseResponse
from cti.settings import WebUser

HASH = hash_password("a test password")
AGENT = WebUser(name="a1001", role="agent", seat="1001", password_hash=HASH)
OTHER = WebUser(name="a1002", role="agent", seat="1002", password_hash=HASH)
BOSS = WebUser(name="boss", role="supervisor", lines=("12315",), password_hash=HASH)
ROOT = WebUser(name="root", role="admin", password_hash=HASH)


def events(frames: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in frames:
        head, data = frame.decode().rstrip("\n").split("\n")
        out.append((head.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_publish_does_no_per_stream_work() -> None:
    hub = LiveHub()
    streams = [hub.open(AGENT) for _ in range(50)]
    hub.publish("seats/1001/pop", {"type": "offer", "call": {"line": "12345"}})
    # nothing reached a stream yet: the hub's task does the fan-out, not the publisher
    assert all(len(s) == 0 for s in streams)
    assert hub.delivered == 0
    # but the seat's latest pop is there at once (the page's /console/api/state)
    assert hub.last_pop("1001") == {
        "topic": "seats/1001/pop",
        "type": "offer",
        "call": {"line": "12345"},
    }
    hub.flush()
    assert all(len(s) == 1 for s in streams)
    assert hub.delivered == 50


def test_each_publish_is_encoded_once_for_every_stream() -> None:
    hub = LiveHub()
    a, b, c = hub.open(ROOT), hub.open(ROOT), hub.open(AGENT)
    hub.publish("seats/1001/state", {"status": "ready"})
    hub.flush()
    (fa,), (fb,), (fc,) = a.take(), b.take(), c.take()
    assert fa is fb is fc  # one bytes object, not one encoding per stream
    assert fa == sse_frame("state", '{"topic":"seats/1001/state","status":"ready"}')


def test_each_stream_carries_only_what_its_user_may_see() -> None:
    hub = LiveHub()
    agent, other, boss, root = (hub.open(u) for u in (AGENT, OTHER, BOSS, ROOT))
    hub.publish("seats/1001/pop", {"type": "offer", "call": {"line": "12315"}})
    hub.publish("seats/1002/pop", {"type": "offer", "call": {"line": "12345"}})
    hub.publish("seats/1002/reply", {"ok": True})
    hub.publish("queue/snapshot", {"waiting": 1})
    hub.publish("seats/1001/state", b'{"status":"busy"}')  # bytes: decoded once
    hub.publish("110/feedback/x", {"not": "streamed"})
    hub.flush()

    def seen(s: LiveStream) -> list[tuple[str, str]]:
        return [(e, str(d["topic"])) for e, d in events(s.take())]

    assert seen(agent) == [("pop", "seats/1001/pop"), ("state", "seats/1001/state")]
    assert seen(other) == [("pop", "seats/1002/pop"), ("reply", "seats/1002/reply")]
    # a supervisor: the pops of its lines only; the centre-wide states and queue carry
    # other lines, so it sees them through its own board snapshot (board/{name})
    assert seen(boss) == [("pop", "seats/1001/pop")]
    assert [t for _, t in seen(root)] == [
        "seats/1001/pop",
        "seats/1002/pop",
        "seats/1002/reply",
        "queue/snapshot",
        "seats/1001/state",
    ]


async def test_a_burst_reaches_a_stream_as_one_chunk() -> None:
    hub = LiveHub()
    stream = hub.open(AGENT)
    for i in range(3):
        hub.publish("seats/1001/state", {"n": i})
    hub.flush()
    chunk = await stream.next_chunk()
    assert chunk is not None
    assert [d["n"] for _, d in events([f + b"\n\n" for f in chunk.split(b"\n\n")[:-1]])] == [
        0,
        1,
        2,
    ]
    assert stream.sent == 3


async def test_a_slow_stream_is_bounded_closed_alone_and_counted() -> None:
    hub = LiveHub(queue_size=8)
    slow, fast = hub.open(AGENT), hub.open(AGENT)
    # the slow one's writer is stuck on a full socket: it must be cancelled, not waited for
    stuck = asyncio.get_running_loop().create_future()
    slow.writer = asyncio.ensure_future(stuck)
    for i in range(20):
        hub.publish("seats/1001/state", {"n": i})
        hub.flush()
        fast.take()  # the fast one keeps up
    assert len(slow) <= 8  # bounded: never more than web.stream_queue frames wait
    assert slow.overflowed
    assert slow.closed
    assert await slow.next_chunk() is None
    await asyncio.sleep(0)
    assert slow.writer.cancelled()
    assert not fast.overflowed
    assert len(hub) == 1
    assert hub.overflows == 1
    hub.publish("seats/1001/state", {"n": 99})
    hub.flush()
    assert [d["n"] for _, d in events(fast.take())] == [99]


async def test_the_hub_task_fans_out_and_pings() -> None:
    hub = LiveHub(ping_s=0.05)
    stream = hub.open(AGENT)
    task = asyncio.create_task(hub.run())
    try:
        hub.publish("seats/1001/state", {"n": 1})
        async with asyncio.timeout(2):
            chunk = await stream.next_chunk()
            assert chunk is not None
            assert chunk.startswith(b"event: state\n")
            assert await stream.next_chunk() == PING_FRAME
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert hub.closed
    assert stream.closed  # the daemon stopping ends every stream


async def test_the_response_sends_the_hello_the_frames_and_ends_when_the_hub_closes() -> None:
    hub = LiveHub()
    sent: list[dict[str, Any]] = []
    closed: list[LiveStream] = []
    gone = asyncio.Event()

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        await gone.wait()
        return {"type": "http.disconnect"}

    response = SseResponse(lambda: hub.open(AGENT), b"event: hello\ndata: {}\n\n", closed.append)
    call = asyncio.create_task(response({"type": "http"}, receive, send))
    while len(hub) == 0:
        await asyncio.sleep(0)
    hub.publish("seats/1001/state", {"n": 1})
    hub.flush()
    for _ in range(10):
        await asyncio.sleep(0)
    hub.close()
    await asyncio.wait_for(call, 2)
    assert sent[0]["type"] == "http.response.start"
    assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
    assert [m["body"] for m in sent[1:]] == [
        b"event: hello\ndata: {}\n\n",
        sse_frame("state", '{"topic":"seats/1001/state","n":1}'),
        b"",
    ]
    assert sent[-1]["more_body"] is False
    assert len(closed) == 1


async def test_the_response_stops_when_the_client_goes() -> None:
    hub = LiveHub()
    closed: list[LiveStream] = []

    async def send(message: Any) -> None:
        pass

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    def on_close(stream: LiveStream) -> None:
        hub.close_stream(stream)
        closed.append(stream)

    response = SseResponse(lambda: hub.open(AGENT), b"", on_close)
    await asyncio.wait_for(response({"type": "http"}, receive, send), 2)
    assert len(closed) == 1
    assert len(hub) == 0  # the stream is gone from the hub with its client


async def test_a_burst_within_the_batch_window_is_one_chunk() -> None:
    # web.stream_batch_ms: an offer's pop, a history lookup after its state and queue
    # events, joins them in the one write
    hub = LiveHub(batch_s=0.05)
    stream = hub.open(AGENT)
    task = asyncio.create_task(hub.run())
    try:
        hub.publish("seats/1001/state", {"n": 1})
        await asyncio.sleep(0.01)
        hub.publish("seats/1001/pop", {"type": "offer", "call": {}})
        async with asyncio.timeout(2):
            chunk = await stream.next_chunk()
        assert chunk is not None
        assert chunk.count(b"event: ") == 2
        assert hub.batches == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
