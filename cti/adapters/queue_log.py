"""Reading an Asterisk node's ``queue_log`` file as it grows (cti/kpis/fallback_log.py).

Asterisk appends one line per queue event and never rewrites the file; logrotate (or
``logger rotate``) renames it and Asterisk opens a new one. So: read from the last
offset; a new inode or a file shorter than the offset is a new file, read from its
start. A read is bounded (``max_read`` bytes a call: a year-old file is taken in steps,
never whole into memory), a line is complete only up to its newline (the rest waits for
the next read), and bytes are decoded leniently (a caller name in GBK costs that line's
text, nothing else). Blocking file I/O: call :meth:`QueueLogFile.read` in a thread.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["QueueLogFile", "QueueLogRead"]


@dataclass(frozen=True, slots=True)
class QueueLogRead:
    """The outcome of one read: the complete lines, and what happened to the file."""

    lines: tuple[str, ...]
    missing: bool = False  # the file is not there (yet): Asterisk writes it at its first event
    reopened: bool = False  # a new file (rotated, truncated) was started from its beginning
    more: bool = False  # max_read was reached: read again at once
    error: str = ""  # not readable (permissions, an I/O error): why, as the OS says


class QueueLogFile:
    """One queue_log, read incrementally (module doc). Not thread-safe: one reader."""

    def __init__(self, path: Path, *, max_read: int = 4 << 20, max_line: int = 64 << 10) -> None:
        self.path = path
        self._max_read = max_read
        self._max_line = max_line  # a partial line longer than this is dropped, not kept
        self._inode: int | None = None
        self._offset = 0
        self._partial = b""

    @property
    def offset(self) -> int:
        return self._offset

    def start_at(self, since: float) -> None:
        """Start the next read near the first line logged at or after `since` (epoch s).

        The file is in time order (Asterisk appends), so a bisection on byte offsets finds
        it in ~30 reads of one line each, however big the file: a daemon that starts does
        not read a year of queue events to find last night's. The start is a line
        boundary up to ``_BISECT_SLACK`` bytes before that line (re-reading a few lines is
        harmless: their calls are known). A file that is not there starts at 0."""
        try:
            with self.path.open("rb") as f:
                st = os.fstat(f.fileno())
                lo, hi = 0, st.st_size
                while hi - lo > _BISECT_SLACK:
                    mid = (lo + hi) // 2
                    f.seek(mid)
                    f.readline()  # the rest of the line `mid` fell into
                    at = _line_epoch(f.readline(_MAX_PROBE))
                    if at is None or at < since:
                        lo = mid  # a line that does not parse: keep it on the read side
                    else:
                        hi = mid
                if lo:
                    f.seek(lo)
                    f.readline()
                self._inode, self._offset, self._partial = st.st_ino, f.tell() if lo else 0, b""
        except OSError:  # missing or unreadable: read() says which
            return

    def read(self) -> QueueLogRead:
        try:
            with self.path.open("rb") as f:
                st = os.fstat(f.fileno())
                reopened = False
                if st.st_ino != self._inode or st.st_size < self._offset:
                    reopened = self._inode is not None
                    self._inode, self._offset, self._partial = st.st_ino, 0, b""
                f.seek(self._offset)
                chunk = f.read(self._max_read)
        except FileNotFoundError:
            return QueueLogRead(lines=(), missing=True)
        except OSError as e:  # e.g. the daemon's user is not in the asterisk group
            return QueueLogRead(lines=(), missing=True, error=f"{type(e).__name__}: {e}")
        self._offset += len(chunk)
        data = self._partial + chunk
        *complete, rest = data.split(b"\n")
        self._partial = rest if len(rest) <= self._max_line else b""
        lines = tuple(b.decode("utf-8", "replace") for b in complete)
        return QueueLogRead(lines=lines, reopened=reopened, more=len(chunk) == self._max_read)


_BISECT_SLACK = 64 << 10
_MAX_PROBE = 4096


def _line_epoch(line: bytes) -> float | None:
    head = line.split(b"|", 1)[0]
    if not head or len(head) > 32:
        return None
    try:
        return float(head)
    except ValueError:
        return None
