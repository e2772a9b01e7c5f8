"""atheris harness: `targets.fastagi_headers` (see fuzz/targets.py). Run from the repo root::

.venv/bin/python -m fuzz.fuzz_fastagi_headers -max_total_time=60 [corpus_dir]
"""

from __future__ import annotations

import asyncio
import sys

import atheris

# only our own code: instrumenting pydantic, structlog and panoramisk too costs ~40 s of
# start-up per harness and finds nothing of ours
with atheris.instrument_imports(include=["cti", "fuzz"]):
    from fuzz import targets

_LOOP = asyncio.new_event_loop()


def test_one_input(data: bytes) -> None:
    targets.fastagi_headers(data, _LOOP)


if __name__ == "__main__":
    targets.quiet()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
