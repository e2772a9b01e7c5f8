"""AMI ingest: bytes -> typed events -> queue, ours vs bare panoramisk 1.4, same bytes.

Usage: python benchmarks/ami_ingest.py [--calls N] [--chunk BYTES] [--repeat K]

The byte stream is a real call recorded from the testbed (benchmarks/data/
call_template.jsonl: originate with a Chinese caller name, hold with music, redirect to a
seat, answer, hang up; ~80 events) repeated N times with fresh ids, serialized in AMI's
wire format and fed in fixed-size chunks, the way a socket delivers it.

Rows:
  panoramisk       AMIProtocol.data_received + Manager.dispatch to one '*' callback
                   putting each Message on a list (what a bare panoramisk client does)
  wire             our framing + per-message UTF-8 decode (cti.adapters.amiwire)
  wire+typed       ... + cti.events.parse_event (frozen dataclasses)
  adapter          AmiClient's receive path as it runs live: wire + typed + EventQueue
It also counts the caller names each one delivered intact: panoramisk decodes every
chunk alone and drops the bytes of a character cut by a chunk boundary.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol

from benchmarks._machine import machine_line, version_of
from cti.adapters.ami import AmiClient, EventQueue
from cti.adapters.amiwire import AmiWireDecoder
from cti.events import parse_event
from cti.settings import AmiNode

TEMPLATE = Path(__file__).parent / "data" / "call_template.jsonl"
NAME = "张三"


def build_stream(calls: int) -> tuple[bytes, int, int]:
    """The wire bytes, the number of events, and how many carry CallerIDName: 张三."""
    rows = [json.loads(line) for line in TEMPLATE.read_text(encoding="utf-8").splitlines()]
    with_name = sum(1 for r in rows if r.get("CallerIDName") == NAME) * calls
    ids = sorted(
        {
            v
            for r in rows
            for k, v in r.items()
            if k in {"Uniqueid", "Linkedid", "DestUniqueid", "DestLinkedid"}
        }
    )
    parts = [b"Asterisk Call Manager/11.0.0\r\n"]
    n = 0
    for i in range(calls):
        remap = {old: f"{old}-{i}" for old in ids}
        for r in rows:
            msg = "".join(
                f"{k}: {remap.get(v, v)}\r\n" for k, v in r.items() if not k.startswith("_")
            )
            parts.append(msg.encode() + b"\r\n")
            n += 1
    return b"".join(parts), n, with_name


def chunks_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def run_panoramisk(chunks: list[bytes]) -> tuple[int, int]:
    logging.getLogger("panoramisk").setLevel(logging.ERROR)
    got: list[Any] = []
    manager = Manager(loop=asyncio.new_event_loop())
    manager.register_event("*", lambda _m, msg: got.append(msg))
    proto = AMIProtocol()
    proto.connection_made(mock.MagicMock())
    proto.factory = manager
    proto.encoding = "utf8"
    proto.log = logging.getLogger("panoramisk.bench")
    for c in chunks:
        proto.data_received(c)
    names = sum(1 for m in got if m.get("CallerIDName") == NAME)
    return len(got), names


def run_wire(chunks: list[bytes]) -> tuple[int, int]:
    dec = AmiWireDecoder()
    n = names = 0
    for c in chunks:
        for m in dec.feed(c):
            n += 1
            names += m.get("CallerIDName") == NAME
    return n, names


def run_wire_typed(chunks: list[bytes]) -> tuple[int, int]:
    dec = AmiWireDecoder()
    n = names = 0
    now = time.time()
    for c in chunks:
        for m in dec.feed(c):
            ev = parse_event("main", m, now)
            n += 1
            names += ev.headers.get("CallerIDName") == NAME
    return n, names


def run_adapter(chunks: list[bytes]) -> tuple[int, int]:
    async def go() -> tuple[int, int]:
        node = AmiNode.model_validate({"name": "main", "username": "cti", "secret": "x"})
        q = EventQueue(1_000_000, log=mock.MagicMock())
        client = AmiClient(node, q, log=mock.MagicMock())
        n = names = 0
        for c in chunks:
            client._on_data(c)  # noqa: SLF001 - the live receive path, minus the socket
            while q.qsize():
                ev = q.get_nowait()
                n += 1
                names += getattr(ev, "headers", {}).get("CallerIDName") == NAME
        return n, names

    return asyncio.run(go())


def timed(
    fn: Callable[[list[bytes]], tuple[int, int]], chunks: list[bytes], repeat: int
) -> tuple[float, int, int]:
    times = []
    result = (0, 0)
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn(chunks)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), *result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    data, n_msgs, expected_names = build_stream(args.calls)
    chunks = chunks_of(data, args.chunk)
    print(machine_line())
    print(
        f"panoramisk {version_of('panoramisk')}; stream: {args.calls} calls, {n_msgs} events, "
        f"{len(data) / 1e6:.1f} MB in {len(chunks)} chunks of {args.chunk} B; "
        f"median of {args.repeat} runs"
    )
    print()
    rows = [
        ("panoramisk", run_panoramisk),
        ("wire", run_wire),
        ("wire+typed", run_wire_typed),
        ("adapter", run_adapter),
    ]
    results = {name: timed(fn, chunks, args.repeat) for name, fn in rows}
    base = results["panoramisk"][0]
    print(
        f"{'path':<12} {'events':>8} {'seconds':>8} {'events/s':>10} {'us/event':>9} "
        f"{'vs panoramisk':>14} {'names intact':>13}"
    )
    for name, (secs, n, names) in results.items():
        print(
            f"{name:<12} {n:>8} {secs:>8.3f} {n / secs:>10,.0f} {secs / n * 1e6:>9.2f} "
            f"{base / secs:>13.2f}x {names:>6}/{expected_names}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
