"""The browsers' live stream as a plain ASGI response: one stream's frames, batched per write.

Why not sse-starlette's ``EventSourceResponse`` (used until issue 13): profiled with 500
streams (benchmarks/sse.py, py-spy), its per-message work was most of the daemon's time —
each event re-encoded per stream (``ServerSentEvent.encode``: a StringIO and a regex split
of the JSON), each send wrapped in an anyio cancel scope (``move_on_after``, which looks up
the async backend every time), and one socket write per event; plus four tasks per stream
(the events, a 15 s ping each, the shutdown watcher, the disconnect listener). Here the
frames come ready from the hub (:mod:`cti.adapters.http.live`: encoded once per publish),
everything pending goes out in one ``send`` (one write), the hub sends the pings to every
stream from its one task, and a stream has two tasks: its writer and the disconnect
listener. There is no send timeout: a browser that does not read fills its pending frames
and the hub closes it (``web.stream_queue``), cancelling a writer stuck on a full socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Final

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cti.adapters.http.live import LiveStream

__all__ = ["SseResponse"]

_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # nginx in front must not buffer the stream
]
# the end of the response after the hub closed the stream: a client still reading gets a
# clean end; one whose socket is full is not waited for longer than this
_FINISH_S: Final = 1.0


class SseResponse(Response):
    """``text/event-stream`` of one :class:`~cti.adapters.http.live.LiveStream`: *first*
    (the hello), then whatever the hub pushes, until the hub closes the stream or the
    client goes.

    The stream is opened (*opener*) when the response starts, not when the endpoint returns
    it, so *on_close* always pairs with it: a client gone before the first event leaves
    neither a stream nor a count behind. A starlette ``Response`` for FastAPI to pass it
    through, but none of its body machinery (no Content-Length on a stream).
    """

    def __init__(
        self,
        opener: Callable[[], LiveStream],
        first: bytes,
        on_close: Callable[[LiveStream], None],
    ) -> None:
        # no super().__init__(): it would set a Content-Length of the empty body
        self.status_code = 200
        self.media_type = "text/event-stream"
        self.background = None
        self.body = b""
        self.raw_headers = list(_HEADERS)
        self.opener = opener
        self.first = first
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002 - ASGI's signature
        stream = self.opener()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            writer = asyncio.create_task(self._write(stream, send), name="adapter.http.sse.writer")
            stream.writer = writer
            listener = asyncio.create_task(_disconnected(receive), name="adapter.http.sse.gone")
            try:
                done, _ = await asyncio.wait(
                    {writer, listener}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in (writer, listener):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if listener in done:
                return  # the client is gone: nothing to finish
            # the hub ended it (closed or overflowed): end the body cleanly if the socket
            # takes it
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_FINISH_S):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.on_close(stream)

    async def _write(self, stream: LiveStream, send: Send) -> None:
        await send({"type": "http.response.body", "body": self.first, "more_body": True})
        while (chunk := await stream.next_chunk()) is not None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
