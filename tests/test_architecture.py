"""The core stays sans-IO (DESIGN.md): importing it loads no I/O library."""

from __future__ import annotations

import subprocess
import sys

CORE = (
    "cti.core",
    "cti.calls",
    "cti.queue",
    "cti.routing",
    "cti.seats",
    "cti.numberplan",
    "cti.dispatch110",
    "cti.kpis",
)
IO_LIBRARIES = (
    "panoramisk",
    "aiomqtt",
    "paho",
    "sqlalchemy",
    "aiosqlite",
    "fastapi",
    "uvicorn",
    "starlette",
    "httpx",
)


def test_the_core_imports_no_io_library() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + f"print(','.join(m for m in {IO_LIBRARIES!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"the core pulls in: {out}"
