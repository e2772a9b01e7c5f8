"""Replay throughput of the call tracker on a synthetic trace of many real calls.

The trace is a recorded fixture (tests/fixtures/ami/transfer/blind.jsonl by default:
answered, blind-transferred, answered again, caller hangs up) templated N times with
fresh Uniqueids/Linkedids/channel names/bridge ids; CONCURRENT calls are interleaved
event by event so the tracker holds that many live calls at once.

    .venv/bin/python benchmarks/replay.py [--calls 10000] [--concurrent 50] [--fixture F]

Prints one table: events/s and µs/event for the core alone (pre-parsed events) and for
the whole input path (AMI wire bytes -> AmiWireDecoder -> parse_event -> core), and the
peak Python memory (tracemalloc) of each, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from cti.adapters.amiwire import AmiWireDecoder
from cti.calls import CallEnded, CallTracker
from cti.events import parse_event

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURE = ROOT / "tests" / "fixtures" / "ami" / "transfer" / "blind.jsonl"
_CHAN_SEQ = re.compile(r"(-[0-9a-f]{8})(;[12])")


def load_call(path: Path) -> list[dict[str, str]]:
    """The AMI events of one call of a fixture (no markers, responses or resync)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = json.loads(line)
        if "Event" in m and m["Event"] not in {"FullyBooted", "CoreShowChannelsComplete"}:
            out.append({k: v for k, v in m.items() if not k.startswith("_")})
    return out


def template(call: list[dict[str, str]], n: int) -> Iterator[list[dict[str, str]]]:
    ids = {
        v
        for m in call
        for k, v in m.items()
        if k.endswith(("Uniqueid", "Linkedid")) and v and v != "<unknown>"
    }
    text = json.dumps(call, ensure_ascii=False)
    pattern = re.compile("|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True)))
    for i in range(n):
        t = pattern.sub(lambda m, i=i: f"{m.group(0)}~{i}", text)  # type: ignore[misc]
        t = _CHAN_SEQ.sub(lambda m, i=i: f"{m.group(1)}~{i}{m.group(2)}", t)  # type: ignore[misc]
        yield json.loads(t)


def interleave(calls: list[list[dict[str, str]]], k: int) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for g in range(0, len(calls), k):
        group = calls[g : g + k]
        for step in range(max(len(c) for c in group)):
            out.extend(c[step] for c in group if step < len(c))
    return out


def wire(msgs: list[dict[str, str]]) -> bytes:
    parts = ["Asterisk Call Manager/11.0.0\r\n"]
    parts += ["".join(f"{k}: {v}\r\n" for k, v in m.items()) + "\r\n" for m in msgs]
    return "".join(parts).encode("utf-8")


def quiet() -> Any:
    return structlog.wrap_logger(None, wrapper_class=structlog.make_filtering_bound_logger(50))


def batches(one: list[dict[str, str]], calls: int, k: int) -> Iterator[list[dict[str, str]]]:
    """The interleaved messages, k calls at a time (bounded memory for any N)."""
    it = template(one, calls)
    while group := [c for _, c in zip(range(k), it, strict=False)]:
        yield interleave(group, k)


def run(
    one: list[dict[str, str]], calls: int, k: int, *, full: bool, mem: bool
) -> tuple[float, int, int, int]:
    """Replay N calls; return (seconds in the measured path, events, calls ended, peak bytes).

    Input is built per batch outside the timed region. With `mem`, tracemalloc measures
    the memory the measured path allocates on top of its input (tracker state included).
    """
    tracker = CallTracker(logger=quiet())
    dec = AmiWireDecoder()
    spent, n, ended, top = 0.0, 0, 0, 0
    now = time.time()
    if mem:
        tracemalloc.start()
    for msgs in batches(one, calls, k):
        n += len(msgs)
        if full:
            data = wire(msgs)
            if mem:
                base = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
            t0 = time.perf_counter()
            for off in range(0, len(data), 65536):
                for msg in dec.feed(data[off : off + 65536]):
                    if "Event" in msg:
                        for note in tracker.handle(parse_event("main", msg, now)):
                            if type(note) is CallEnded:
                                ended += 1
            spent += time.perf_counter() - t0
        else:
            events = [parse_event("main", m, now) for m in msgs]
            if mem:
                base = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
            t0 = time.perf_counter()
            for ev in events:
                for note in tracker.handle(ev):
                    if type(note) is CallEnded:
                        ended += 1
            spent += time.perf_counter() - t0
        if mem:
            top = max(top, tracemalloc.get_traced_memory()[1] - base)
    if mem:
        tracemalloc.stop()
    return spent, n, ended, top


def rss_mb() -> float:
    """This process's resident memory now (VmRSS), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def hold(one: list[dict[str, str]], calls: int) -> tuple[int, float, float, int]:
    """`calls` calls live in the tracker at once: each call's events up to its first
    Hangup (answered, transferred, answered again, still talking), all the calls before any
    ends. Returns (live calls, tracemalloc MiB held by the tracker, process RSS MB, events)."""
    cut = next((i for i, m in enumerate(one) if m.get("Event") == "Hangup"), len(one))
    # room for every leg: the default bound (DEFAULT_MAX_CHANNELS per node) is the
    # production guard, this row measures what the calls themselves cost
    tracker = CallTracker(logger=quiet(), max_channels=8 * calls)
    now = time.time()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    held = events = 0
    for msgs in template(one[:cut], calls):
        # parsed and fed one call at a time: what stays allocated is the tracker's state
        for m in msgs:
            tracker.handle(parse_event("main", m, now))
        events += len(msgs)
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    live = len(tracker.active_calls())
    return live, held / 2**20, rss_mb(), events


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=10_000)
    p.add_argument("--concurrent", type=int, default=50)
    p.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE)
    p.add_argument("--repeat", type=int, default=3, help="best of N timing runs")
    p.add_argument(
        "--hold", type=int, default=10_000, help="calls held live at once for the memory row"
    )
    args = p.parse_args()

    one = load_call(args.fixture)
    k = args.concurrent
    core = [run(one, args.calls, k, full=False, mem=False) for _ in range(args.repeat)]
    full = [run(one, args.calls, k, full=True, mem=False) for _ in range(args.repeat)]
    assert all(r[2] == args.calls for r in core + full), "every call must end exactly once"
    t_core, n = min(r[0] for r in core), core[0][1]
    t_full = min(r[0] for r in full)
    mem_core = run(one, min(args.calls, 2000), k, full=False, mem=True)[3]
    mem_full = run(one, min(args.calls, 2000), k, full=True, mem=True)[3]
    wire_mb = len(wire(one)) * args.calls / 1e6

    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(
        f"trace: {args.calls} calls x {len(one)} events ({args.fixture.name}) = {n} events, "
        f"{wire_mb:.0f} MB of AMI wire, {k} calls interleaved; best of {args.repeat}"
    )
    print()
    print(
        f"| {'path':<42} | {'events/s':>10} | {'µs/event':>8} | {'calls/s':>8} | {'peak MiB':>8} |"
    )
    print(f"|{'-' * 44}|{'-' * 12}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    for label, t, mem in (
        ("core alone (CallTracker.handle)", t_core, mem_core),
        ("amiwire + parse_event + core", t_full, mem_full),
    ):
        print(
            f"| {label:<42} | {n / t:>10,.0f} | {t / n * 1e6:>8.2f} | {args.calls / t:>8,.0f} "
            f"| {mem / 2**20:>8.1f} |"
        )
    print()
    print(
        "peak MiB: tracemalloc peak allocated by the measured path on top of its input "
        f"batch ({k} calls), over a run of {min(args.calls, 2000)} calls"
    )
    live, held_mib, rss, events = hold(one, args.hold)
    print()
    print(
        f"held at once: {live:,} live calls ({events:,} events, each call up to its first "
        f"Hangup): the tracker holds {held_mib:.1f} MiB (tracemalloc), process RSS "
        f"{rss:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
