"""Hostile configuration files: how long the loader takes to refuse each one.

Usage: python benchmarks/config_limits.py [--repeat 20]

The unit tests (tests/test_config_limits.py) prove the refusals and count the loader's
work; this measures the time, in process (no Python start-up): median and max of
`--repeat` runs of `read_yaml` per file ("loaded" = the YAML reader let it through; the
schema may still refuse it, as it does the quoted 5,000-digit port), and, for scale, a
sane 5,000-entry blacklist. It used to be an assertion in the unit test (< 1.5 s with the
start-up), which failed on a loaded shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._machine import machine_line
from cti.settings import ConfigError
from cti.settings.yamlfile import read_yaml
from tests.test_config_limits import HOSTILE


def _sane() -> str:
    numbers = "\n".join(f"    - {{number: '1380013{i:04d}'}}" for i in range(5000))
    return f"numberplan:\n  blacklist:\n{numbers}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    files = {**{case: text for case, (text, _) in HOSTILE.items()}, "sane_blacklist_5000": _sane()}
    print(machine_line())
    print(f"{'file':34} {'bytes':>8} {'result':>8} {'p50 ms':>8} {'max ms':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cti.yaml"
        for case, text in files.items():
            path.write_text(text, encoding="utf-8")
            times, result = [], "loaded"
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                try:
                    read_yaml(path)
                except ConfigError:
                    result = "refused"
                times.append((time.perf_counter() - t0) * 1000)
            print(
                f"{case:34} {len(text.encode()):>8} {result:>8} "
                f"{statistics.median(times):>8.2f} {max(times):>8.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
