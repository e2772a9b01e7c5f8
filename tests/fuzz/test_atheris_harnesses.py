"""Each atheris harness under fuzz/ run for a bounded time (issue 15), in CI.

Coverage-guided fuzzing of the AMI decoder, the AMI client, the event parser and call
tracker, the FastAGI request reader and answers, and the MQTT payloads. A harness that
finds a crash exits non-zero and leaves the input in the test's tmp dir (the failure
message names it); reproduce with ``python -m fuzz.run <target> <that file>``.
``CTI_FUZZ_SECONDS`` (default 4 per harness: all six stay under ~45 s with their
start-up) sets the time for a deeper run by hand.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from fuzz import targets

ROOT: Final = Path(__file__).resolve().parents[2]
_names_only = asyncio.new_event_loop()  # harnesses() wants one; only its names are read here
HARNESSES: Final = sorted(targets.harnesses(_names_only))
_names_only.close()
SECONDS: Final = int(os.environ.get("CTI_FUZZ_SECONDS", "4"))


def test_one_harness_per_target() -> None:
    assert HARNESSES == [
        "ami_client",
        "ami_events",
        "amiwire",
        "fastagi_answer",
        "fastagi_headers",
        "mqtt_payloads",
    ]


@pytest.mark.timeout(SECONDS + 60)
@pytest.mark.parametrize("harness", HARNESSES)
def test_harness_runs_clean(harness: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fuzz.run",
            harness,
            f"-max_total_time={SECONDS}",
            "-max_len=4096",
            "-rss_limit_mb=1024",
            "-timeout=5",  # one input taking 5 s is a hang: a finding
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS + 50,
        check=False,
    )
    tail = "\n".join(proc.stderr.splitlines()[-30:])
    assert proc.returncode == 0, f"{harness} found a crash ({sorted(tmp_path.iterdir())}):\n{tail}"
    done = re.search(r"Done (\d+) runs", proc.stderr)
    assert done is not None, tail
    assert int(done.group(1)) > 1000, f"{harness} hardly ran: {done.group(0)}"
