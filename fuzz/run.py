"""The atheris harness for one target of fuzz/targets.py. Run from the repo root::

.venv/bin/python -m fuzz.run fastagi_answer -max_total_time=60 [corpus_dir]

The first argument names the target (a name of ``targets.harnesses``); the rest are libFuzzer's.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Final

import atheris

# only our own code: instrumenting pydantic, structlog and panoramisk too costs ~40 s of
# start-up per harness and finds nothing of ours
with atheris.instrument_imports(include=["cti", "fuzz"]):
    from fuzz import targets

TARGETS: Final = targets.harnesses(asyncio.new_event_loop())


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: python -m fuzz.run {{{','.join(TARGETS)}}} [libFuzzer options]")
    targets.quiet()
    atheris.Setup([argv[0], *argv[2:]], TARGETS[argv[1]])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
