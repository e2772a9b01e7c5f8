"""The log scan (issue 15): no unmasked caller number and no secret in a test run's logs.

``python -m tests.logscan DIR`` (``scripts/scan-logs``, run by ``scripts/dev test`` after
pytest) reads every ``*.log`` the real daemons of the run wrote (:mod:`tests.real.logcapture`)
and fails (exit 1, each finding on stderr) when a line holds

* a phone number the masking rule of :mod:`cti.logs` would have masked: the line is run
  through :func:`cti.logs.mask_phone_numbers` again and must come out unchanged (a JSON
  line key by key, as the daemon masks it; any other line as text);
* one of the phone numbers the tests use (the 11-digit mobile numbers written in tests/),
  verbatim, in any key, exempt ones included;
* a secret the daemon was configured with (``<log>.secrets``: AMI secrets, MQTT
  passwords, HTTP and work-order tokens; 8 characters or more), or one a test noted later
  (``noted-<n>.secrets``: a reloaded file's tokens), anywhere in the line.

An empty DIR is a failure too: a scan of nothing would prove nothing. Asterisk's own logs
are not scanned (they are Asterisk's, not ours).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cti.logs import mask_phone_numbers, mask_text

__all__ = ["Finding", "main", "numbers_in_tests", "scan_dir", "scan_line"]

TESTS: Final = Path(__file__).resolve().parent
_MOBILE: Final = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
_MIN_SECRET: Final = 8


@dataclass(frozen=True, slots=True)
class Finding:
    file: str
    line: int
    what: str  # "unmasked number", "test number 138…", "secret"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.what}"


def numbers_in_tests(root: Path = TESTS) -> frozenset[str]:
    """The 11-digit mobile numbers written anywhere in the tests' sources."""
    found: set[str] = set()
    for path in root.rglob("*.py"):
        found.update(_MOBILE.findall(path.read_text(encoding="utf-8", errors="replace")))
    return frozenset(found)


def _hint(secret: str) -> str:
    return secret[:2] + "…" if len(secret) > 4 else "…"


def scan_line(text: str, numbers: frozenset[str], secrets: Iterable[str]) -> list[str]:
    """What is wrong with one log line (empty: nothing)."""
    problems: list[str] = []
    try:
        record: Any = json.loads(text)
    except ValueError:
        record = None
    if isinstance(record, dict):
        if mask_phone_numbers(None, "", dict(record)) != record:
            problems.append("unmasked number (cti.logs masking rule)")
    elif mask_text(text) != text:
        problems.append("unmasked number in a non-JSON line (cti.logs masking rule)")
    problems.extend(f"test number {n[:3]}…{n[-2:]} verbatim" for n in sorted(numbers) if n in text)
    problems.extend(
        f"secret {_hint(s)} ({len(s)} chars)"
        for s in sorted(set(secrets))
        if len(s) >= _MIN_SECRET and s in text
    )
    return problems


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            yield number, line.rstrip("\n")


def _secrets_in(file: Path) -> list[str]:
    got = json.loads(file.read_text(encoding="utf-8"))
    return [s for s in got if isinstance(s, str)]


def scan_dir(directory: Path, numbers: frozenset[str] | None = None) -> tuple[int, list[Finding]]:
    """(lines scanned, findings) over every ``*.log`` in *directory*."""
    numbers = numbers_in_tests() if numbers is None else numbers
    logs = sorted(directory.glob("*.log"))
    # a secret of any daemon of the run must not appear in any log of the run: each
    # daemon's at its start (<log>.secrets) and those noted later (noted-<n>.secrets: a
    # reloaded file's, tests.real.logcapture.note_secrets)
    secrets = {s for file in sorted(directory.glob("*.secrets")) for s in _secrets_in(file)}
    scanned = 0
    findings: list[Finding] = []
    for log in logs:
        for number, text in _lines(log):
            scanned += 1
            findings.extend(
                Finding(log.name, number, what) for what in scan_line(text, numbers, secrets)
            )
    return scanned, findings


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m tests.logscan DIR", file=sys.stderr)
        return 2
    directory = Path(args[0])
    files = sorted(directory.glob("*.log")) if directory.is_dir() else []
    if not files:
        print(f"log scan: no daemon log in {directory}: nothing was captured", file=sys.stderr)
        return 1
    scanned, findings = scan_dir(directory)
    for finding in findings[:200]:
        print(f"log scan: {finding}", file=sys.stderr)
    if findings:
        print(
            f"log scan: FAILED: {len(findings)} finding(s) in {scanned} lines of "
            f"{len(files)} daemon logs",
            file=sys.stderr,
        )
        return 1
    print(f"log scan: OK: {scanned} lines of {len(files)} daemon logs, no number, no secret")
    return 0


if __name__ == "__main__":
    sys.exit(main())
