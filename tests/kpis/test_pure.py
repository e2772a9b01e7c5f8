"""cti.kpis stays pure: no I/O, no asyncio, nothing of the daemon's settings or adapters.

tests/test_architecture.py pins the I/O libraries for every core package; this pins what
is particular to the calculator. (asyncio itself is loaded by structlog, which cti.seats
uses, so the check on asyncio is on the package's own imports.)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cti.kpis

FORBIDDEN = ("asyncio", "cti.settings", "cti.adapters", "cti.app", "cti.core", "time")


def test_own_modules_import_nothing_forbidden() -> None:
    for path in Path(cti.kpis.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not any(name == f or name.startswith(f"{f}.") for f in FORBIDDEN), (
                    f"{path.name} imports {name}"
                )


def test_importing_it_loads_no_part_of_the_daemon() -> None:
    code = (
        "import sys, cti.kpis\n"
        "print(','.join(m for m in sys.modules if m.startswith(('cti.settings', 'cti.adapters',"
        " 'cti.app'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
