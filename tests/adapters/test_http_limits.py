"""Slow and greedy HTTP clients against `serve_http` over real loopback sockets (issue 16
item 3): the connection cap, the header and body deadlines, and /docs without a CDN."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from cti.adapters.http import GuardStats, build_api, serve_http
from cti.settings import HttpSettings
from tests.adapters.test_http import FakeFacade


async def _serve(**limits: Any) -> AsyncIterator[tuple[str, int, GuardStats]]:
    settings = HttpSettings.model_validate({"port": 0, **limits})
    stats = GuardStats()
    bound: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve_http(build_api(FakeFacade(), settings), settings, bound=bound, stats=stats)
    )
    host, port = await asyncio.wait_for(bound, 5)
    try:
        yield host, port, stats
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


@pytest.fixture
async def small() -> AsyncIterator[tuple[str, int, GuardStats]]:
    async for s in _serve(max_connections=20, header_timeout_s=0.5, body_timeout_s=0.5):
        yield s


async def _read_all(reader: asyncio.StreamReader, timeout: float = 5) -> bytes:
    async with asyncio.timeout(timeout):
        return await reader.read()  # up to EOF: the server closed


async def test_slow_headers_get_408_and_the_connection_closed(
    small: tuple[str, int, GuardStats],
) -> None:
    host, port, stats = small
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ...and the rest never comes
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await _read_all(reader)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"request_timeout"' in answer
    assert 0.4 < loop.time() - started < 3
    assert stats.header_timeouts == 1
    writer.close()


async def test_an_idle_connection_is_closed_silently(small: tuple[str, int, GuardStats]) -> None:
    host, port, stats = small
    reader, writer = await asyncio.open_connection(host, port)
    assert await _read_all(reader) == b""  # no request ever started: just closed
    assert stats.header_timeouts == 1
    writer.close()


async def test_keep_alive_then_trickled_headers_are_timed_out_too(
    small: tuple[str, int, GuardStats],
) -> None:
    host, port, _stats = small
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
    await reader.readexactly(length)
    # the next request on the same connection trickles: one byte every 0.1 s, then stalls
    for b in b"GET":
        writer.write(bytes([b]))
        await asyncio.sleep(0.1)
    assert (await _read_all(reader)).startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_slow_body_gets_408(small: tuple[str, int, GuardStats]) -> None:
    host, port, _stats = small
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /api/v1/seats/1001/commands HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    answer = await _read_all(reader)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"request_timeout"' in answer
    writer.close()


async def test_past_the_cap_new_connections_get_503_and_normal_ones_work_again(
    small: tuple[str, int, GuardStats],
) -> None:
    host, port, stats = small
    hogs = [await asyncio.open_connection(host, port) for _ in range(20)]
    await asyncio.sleep(0.05)
    assert stats.open == 20
    reader, writer = await asyncio.open_connection(host, port)
    # it already sent its request: the 503 must still reach it (no RST before it is read)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await _read_all(reader)
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    assert b"retry-after: 1" in answer
    assert stats.refused == 1
    writer.close()
    await asyncio.sleep(0.05)
    assert stats.lingering == 0  # our side closed once the client did
    # the hogs are timed out by the header deadline; then a normal request is served
    for r, _w in hogs:
        assert await _read_all(r) == b""
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as c:
        assert (await c.get("/healthz")).status_code == 200
    assert stats.open <= 1
    for _r, w in hogs:
        w.close()


async def test_docs_page_needs_no_outside_host() -> None:
    async for host, port, _stats in _serve():
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as c:
            page = await c.get("/docs")
            assert page.status_code == 200
            refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', page.text)
            urls = re.findall(r'(?:url|Url)\s*:\s*["\']([^"\']+)', page.text)
            assert refs, page.text
            for ref in refs + urls:
                assert not re.match(r"(?i)^(https?:)?//", ref), ref
                got = await c.get(ref)
                assert got.status_code == 200, ref
            assert "cdn" not in page.text.lower()
            assert "https://" not in page.text
            assert "http://" not in page.text
            redoc = await c.get("/redoc")
            assert redoc.status_code == 200
            assert "https://" not in redoc.text
            assert "http://" not in redoc.text
