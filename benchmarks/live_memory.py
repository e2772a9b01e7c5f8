"""Memory held by the live KPI windows as a day goes on, this tree against a git revision's.

Usage: python benchmarks/live_memory.py [--rate 20] [--minutes 10,30,120] [--rev HEAD]

The live figures (cti/kpis/running.py) are fed the way the daemon feeds them: one call's
entries at its end (``--rate`` calls a second, 90 % answered, 5 % transferred on to a
department line, three lines, 120 seats, ended 90 s after they entered) and one clock step
a second. At each checkpoint (simulated minutes) the table shows the Python memory the
windows hold (tracemalloc, the entries they keep included: they are made inside the traced
run), for this tree's module and for ``git show REV:cti/kpis/running.py`` loaded beside
it, in the same run, with the machine. An O(calls of a day) window grows with the minutes;
a bounded one stops growing once its kept calls are sealed.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._machine import machine_line
from cti.kpis import Outcome, QueueEntry, Thresholds
from cti.kpis import running as current

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_767_225_600.0  # 2026-01-01T00:00Z


def calls(rate: int, seconds: int, start: float) -> Iterator[tuple[float, list[list[QueueEntry]]]]:
    """(second, the entries of each call ending in it), one second at a time."""
    rng = random.Random(1)
    n = 0
    for s in range(seconds):
        now = start + s
        ended: list[list[QueueEntry]] = []
        for _ in range(rate):
            n += 1
            at = now - 90.0 + rng.random()
            answered = rng.random() < 0.9
            wait = rng.random() * 30
            first = QueueEntry(
                call_id=f"c{n}",
                node="main",
                line=rng.choice(["12345", "12315", "110"]),
                entered_at=at,
                connected_at=at + wait if answered else None,
                left_at=at + wait + 40,
                outcome=Outcome.ANSWERED if answered else Outcome.ABANDONED,
                seat=f"s{rng.randrange(120)}" if answered else None,
                wait_s=wait,
                talk_s=40.0 if answered else 0.0,
            )
            call = [first]
            if answered and rng.random() < 0.05:
                call[0] = replace(first, transferred_to="dept")
                at2 = at + wait + 40
                call.append(
                    replace(
                        first,
                        entry_seq=2,
                        line="dept",
                        entered_at=at2,
                        connected_at=at2 + 5,
                        left_at=at2 + 20,
                        seat=f"s{rng.randrange(120)}",
                        wait_s=5.0,
                        talk_s=15.0,
                    )
                )
            ended.append(call)
        yield now, ended


def revision(rev: str, tmp: Path) -> ModuleType:
    src = subprocess.run(
        ["git", "show", f"{rev}:cti/kpis/running.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = tmp / "running_rev.py"
    path.write_text(src, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("running_rev", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


def held(module: Any, rate: int, checkpoints: list[int]) -> list[tuple[int, float]]:
    """(calls given, MiB held) at each checkpoint (minutes)."""
    start = T0 + 8 * 3600.0
    out: list[tuple[int, float]] = []
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    windows = module.RunningWindows(Thresholds())
    given = 0
    marks = {m * 60 - 1 for m in checkpoints}
    for s, (now, ended) in enumerate(calls(rate, max(checkpoints) * 60, start)):
        windows.advance(now, T0)
        for call in ended:
            windows.add(call)
            given += 1
        if s in marks:
            out.append((given, (tracemalloc.get_traced_memory()[0] - base) / 2**20))
    tracemalloc.stop()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=int, default=20)
    p.add_argument("--minutes", default="10,30,120")
    p.add_argument("--rev", default="HEAD")
    args = p.parse_args(argv)
    checkpoints = sorted(int(m) for m in args.minutes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        old = held(revision(args.rev, Path(tmp)), args.rate, checkpoints)
    new = held(current, args.rate, checkpoints)
    print(machine_line())
    print(f"RunningWindows fed {args.rate} calls/s, one step a second; MiB held (tracemalloc)")
    print(f"{'minutes':>8}{'calls':>10}{'rev=' + args.rev:>14}{'this tree':>12}{'ratio':>7}")
    for m, (calls_, a), (_, b) in zip(checkpoints, old, new, strict=True):
        print(f"{m:>8}{calls_:>10,}{a:>14.1f}{b:>12.1f}{b / a:>7.2f}")


if __name__ == "__main__":
    main()
