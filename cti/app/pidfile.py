"""The pidfile of ``cti run`` and what ``cti reload`` reads next to it.

``cti run --pidfile FILE`` (the systemd unit: ``/run/hotline-cti/cti.pid``, its
``RuntimeDirectory``) writes its pid there; ``cti reload`` sends that pid SIGHUP and waits
for the outcome the daemon writes to ``<FILE>`` with the suffix ``.reload.json``
(:func:`status_path`). Both files are written whole (a temporary file renamed), so a
reader never sees half of one. The pidfile is removed at exit only while it still holds
this process's pid (a newer daemon may have taken it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

__all__ = [
    "DEFAULT_PIDFILE",
    "PidfileError",
    "read_pid",
    "read_status",
    "remove_pidfile",
    "status_path",
    "write_pidfile",
    "write_status",
]

DEFAULT_PIDFILE: Final = Path("/run/hotline-cti/cti.pid")
"""Used by ``cti reload`` when neither ``--pidfile`` nor ``$CTI_PIDFILE`` names one."""

_MAX_PID_BYTES: Final = 32
_MAX_STATUS_BYTES: Final = 1 << 20


class PidfileError(Exception):
    """The pidfile is missing, unreadable or names no running ``cti`` daemon."""


def status_path(pidfile: Path) -> Path:
    """``/run/hotline-cti/cti.pid`` -> ``/run/hotline-cti/cti.reload.json``."""
    return pidfile.with_suffix(".reload.json")


def _write_whole(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_pidfile(path: Path) -> None:
    """Write this process's pid to *path* (whole)."""
    _write_whole(path, f"{os.getpid()}\n")


def remove_pidfile(path: Path) -> None:
    """Remove *path* if it still holds this process's pid."""
    try:
        if path.read_text(encoding="utf-8").strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass  # gone already, or never written: nothing to clean up


def read_pid(path: Path) -> int:
    """The pid of the running daemon in *path*.

    Raises:
        PidfileError: no such file, not a pid, or no ``cti`` process has that pid (a stale
            file: the pid may belong to another program now, which must not get SIGHUP).
    """
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_PID_BYTES + 1)
    except OSError as exc:
        msg = f"cannot read the pidfile {path}: {exc.strerror or exc}"
        raise PidfileError(msg) from exc
    text = raw.decode("ascii", "replace").strip()
    if len(raw) > _MAX_PID_BYTES or not text.isdigit() or int(text) <= 1:
        msg = f"{path} holds no pid"
        raise PidfileError(msg)
    pid = int(text)
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError as exc:
        msg = f"no process {pid} (from {path}): the daemon is not running"
        raise PidfileError(msg) from exc
    # `cti run` (a console script: python /…/bin/cti run) or `python -m cti run`
    if not any(a == b"cti" or a.endswith(b"/cti") for a in args):
        msg = f"process {pid} (from {path}) is not a cti daemon: a stale pidfile"
        raise PidfileError(msg)
    return pid


def write_status(path: Path, outcome: dict[str, Any]) -> None:
    """Write a reload's outcome (JSON) for ``cti reload``."""
    _write_whole(path, json.dumps(outcome, ensure_ascii=False) + "\n")


def read_status(path: Path) -> dict[str, Any] | None:
    """The last reload's outcome, or ``None`` (none yet, or unreadable)."""
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_STATUS_BYTES)
        data = json.loads(raw)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
