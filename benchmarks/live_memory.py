"""Memory of the live KPI windows per queue entry, this tree against a git revision's.

Usage: python benchmarks/live_memory.py [--entries 50000] [--rev HEAD]

The live figures (cti/kpis/running.py) keep every entry of the rolling 24 h, so their
memory per entry times a day's calls is what a node needs for them (docs/performance.md,
the 30-minute run). Feeds --entries finished entries (90 % answered, three lines, 50
seats, 20 a second) in batches of 10 to a fresh RunningWindows, and prints the Python memory
it holds per entry (tracemalloc; the entries themselves are allocated before and not
counted), for this tree's module and for ``git show REV:cti/kpis/running.py`` loaded
beside it, in the same run, with the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._machine import machine_line
from cti.kpis import Outcome, QueueEntry, Thresholds
from cti.kpis import running as current

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_767_225_600.0  # 2026-01-01T00:00Z


def entries(n: int) -> list[QueueEntry]:
    rng = random.Random(1)
    out = []
    for i in range(n):
        at = T0 + i * 0.05
        answered = rng.random() < 0.9
        wait = rng.random() * 30
        out.append(
            QueueEntry(
                call_id=f"c{i}",
                node="main",
                line=rng.choice(["12345", "12315", "110"]),
                entered_at=at,
                connected_at=at + wait if answered else None,
                left_at=at + wait + 60,
                outcome=Outcome.ANSWERED if answered else Outcome.ABANDONED,
                seat=f"s{rng.randrange(50)}" if answered else None,
                wait_s=wait,
                talk_s=60.0 if answered else 0.0,
            )
        )
    return out


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


def per_entry(module: Any, es: list[QueueEntry]) -> float:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    windows = module.RunningWindows(Thresholds())
    windows.advance(es[-1].entered_at, T0 - 3600)
    for i in range(0, len(es), 10):
        windows.add(es[i : i + 10])
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(windows) == len(es)
    return used / len(es)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--entries", type=int, default=50_000)
    p.add_argument("--rev", default="HEAD")
    args = p.parse_args(argv)
    es = entries(args.entries)
    with tempfile.TemporaryDirectory() as tmp:
        old = revision(args.rev, Path(tmp))
        rows = [(f"rev={args.rev}", per_entry(old, es)), ("this tree", per_entry(current, es))]
    print(machine_line())
    print(f"{args.entries:,} finished entries held by RunningWindows (both windows)")
    print(f"{'code':<14}{'B/entry':>9}{'a day at 20/s':>15}{'ratio':>7}")
    for name, b in rows:
        print(f"{name:<14}{b:>9.0f}{b * 20 * 86_400 / 2**30:>12.2f} GiB{b / rows[0][1]:>7.2f}")


if __name__ == "__main__":
    main()
