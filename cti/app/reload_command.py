"""``cti reload``: SIGHUP to the daemon of the pidfile, then print what it did.

The daemon validates the file itself, in its own environment (the secrets of the systemd
unit's ``EnvironmentFile`` are not in an admin's shell), and writes the outcome beside the
pidfile (cti/app/reload.py); this command waits for that outcome and prints it the way
``cti check-config`` prints problems.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TextIO

from cti.app.pidfile import DEFAULT_PIDFILE, PidfileError, read_pid, read_status, status_path
from cti.app.reload import REGENERATE_HINT

__all__ = ["reload_daemon"]

_OK: Final = 0
_NO_ANSWER: Final = 1
_REFUSED: Final = 2
_POLL_S: Final = 0.1


def reload_daemon(
    pidfile: Path | None,
    *,
    timeout: float,
    out: TextIO,
    err: TextIO,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Signal the daemon, wait up to `timeout` s for its outcome; the exit code."""
    path = pidfile if pidfile is not None else DEFAULT_PIDFILE
    try:
        pid = read_pid(path)
    except PidfileError as exc:
        print(f"error: {exc}", file=err)
        print(
            "hint: `systemctl reload hotline-cti` on a systemd host; else the daemon's "
            "--pidfile here (--pidfile FILE or $CTI_PIDFILE)",
            file=err,
        )
        return _NO_ANSWER
    status = status_path(path)
    before = _mark(read_status(status))
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:  # EPERM: another user's daemon; ESRCH: gone just now
        print(f"error: cannot signal the daemon (pid {pid}): {exc.strerror or exc}", file=err)
        return _NO_ANSWER
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = read_status(status)
        if outcome is not None and _mark(outcome) != before:
            return _print(outcome, out, err)
        sleep(_POLL_S)
    print(
        f"error: signalled the daemon (pid {pid}) but it wrote no outcome to {status} "
        f"within {timeout:g} s; see its log (config_reloaded / config_reload_refused)",
        file=err,
    )
    return _NO_ANSWER


def _mark(outcome: dict[str, Any] | None) -> tuple[object, object] | None:
    return None if outcome is None else (outcome.get("seq"), outcome.get("at"))


def _names(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _print(outcome: dict[str, Any], out: TextIO, err: TextIO) -> int:
    if outcome.get("result") != "applied":
        for problem in _names(outcome.get("errors")):
            print(f"config error: {problem}", file=err)
        print("refused: the daemon runs on with its configuration as before", file=err)
        return _REFUSED
    applied = _names(outcome.get("applied"))
    print("reloaded: " + (", ".join(applied) if applied else "nothing changed"), file=out)
    for name in _names(outcome.get("needs_restart")):
        print(f"needs restart: {name} (the old value stays until a restart)", file=out)
    if outcome.get("dialplan_stale"):
        print(f"dialplan: the number plan generates another dialplan: {REGENERATE_HINT}", file=out)
    return _OK
