"""`cti replay`: feed a recorded AMI trace through the call tracker, print the calls.

Input (auto-detected from the first non-blank character):

* ``{`` -> the trace format of DESIGN.md: JSON Lines, one AMI message per line as a flat
  object of header names to string values, optional ``"_t"`` (receive time, float
  seconds) and ``"_node"``; connection markers ``{"_cti": "connected", ...}`` /
  ``{"_cti": "disconnected", ...}`` replay as :class:`AmiConnected` /
  :class:`AmiDisconnected`.
* anything else -> the plain AMI wire format (``Key: Value`` lines, a blank line after
  each message, optional banner), e.g. a tcpdump/ngrep capture. Bare ``\\n`` line ends
  are accepted.

Output: one JSON object per finished call (ensure_ascii=False), in the order the calls
ended. Calls still open at the end of the trace are *not* invented an end: they are
listed on stderr. Bad lines are reported on stderr with their line number and skipped.
Exit status: 0 all input used, 1 some lines were bad, 2 the file could not be read.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import structlog

from cti.adapters.amiwire import AmiWireDecoder
from cti.calls import CallEnded, CallTracker
from cti.events import (
    AmiConnected,
    AmiDisconnected,
    AmiEvent,
    AmiEventsLost,
    ConnectionEvent,
    parse_event,
)

__all__ = ["iter_events", "main_replay", "replay_file"]

ErrorSink = Callable[[int, str], None]


def _ignore(_line: int, _msg: str) -> None:
    return None


def _from_json(obj: dict[str, Any], node: str) -> AmiEvent | ConnectionEvent | None:
    t = obj.get("_t", 0.0)
    t = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else 0.0
    node = str(obj.get("_node") or node)
    marker = obj.get("_cti")
    if marker == "connected":
        return AmiConnected(
            node=node,
            time=t,
            version=str(obj.get("version", "")),
            reconnect=bool(obj.get("reconnect")),
        )
    if marker == "disconnected":
        return AmiDisconnected(node=node, time=t, reason=str(obj.get("reason", "")))
    if marker == "events_lost":
        count = obj.get("count", 0)
        return AmiEventsLost(node=node, time=t, count=count if isinstance(count, int) else 0)
    if marker is not None:
        return None
    if "Event" not in obj:
        return None  # an action response: nothing for the tracker
    headers = {k: v for k, v in obj.items() if not k.startswith("_")}
    bad = [k for k, v in headers.items() if not isinstance(v, str)]
    if bad:
        msg = f"header values must be strings: {', '.join(bad)}"
        raise ValueError(msg)
    return parse_event(node, headers, t)


def _parse_line(line: str, node: str) -> AmiEvent | ConnectionEvent | None:
    obj = json.loads(line)
    if not isinstance(obj, dict):
        msg = "not a JSON object"
        raise TypeError(msg)
    return _from_json(obj, node)


def _iter_jsonl(
    lines: Iterator[str], node: str, on_error: ErrorSink
) -> Iterator[AmiEvent | ConnectionEvent]:
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            ev = _parse_line(line, node)
        except (ValueError, TypeError) as exc:
            on_error(no, str(exc))
            continue
        if ev is not None:
            yield ev


def _iter_wire(text: str, node: str, on_error: ErrorSink) -> Iterator[AmiEvent]:
    data = text.replace("\r\n", "\n").replace("\n", "\r\n")
    if not data.endswith("\r\n\r\n"):
        data += "\r\n\r\n"
    decoder = AmiWireDecoder(expect_banner=True)
    for msg in decoder.feed(data.encode("utf-8")):
        if "Event" in msg:
            yield parse_event(node, msg, 0.0)
    if decoder.stats.lines_without_colon or decoder.stats.garbage_blocks:
        on_error(
            0,
            f"wire format: {decoder.stats.lines_without_colon} lines without a colon skipped",
        )


def iter_events(
    path: Path, *, node: str = "main", on_error: ErrorSink = _ignore
) -> Iterator[AmiEvent | ConnectionEvent]:
    """The typed events of a trace file (JSONL or wire format), in order."""
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        head = ""
        while (ch := f.read(1)) and ch.isspace():
            head += ch
        f.seek(0)
        if ch == "{":
            yield from _iter_jsonl(iter(f), node, on_error)
        else:
            yield from _iter_wire(f.read(), node, on_error)


def _quiet_logger() -> Any:
    return structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(40),  # errors only
    )


def replay_file(
    path: Path,
    *,
    node: str = "main",
    tracker: CallTracker | None = None,
    on_error: ErrorSink = _ignore,
) -> Iterator[dict[str, Any]]:
    """Replay a trace; yield the JSON object of every call as it ends."""
    tracker = tracker if tracker is not None else CallTracker(logger=_quiet_logger())
    for ev in iter_events(path, node=node, on_error=on_error):
        for note in tracker.handle(ev):
            if isinstance(note, CallEnded):
                yield note.summary.to_json()


def main_replay(path: Path, out: TextIO) -> int:
    """`cti replay TRACE`: print one JSON object per finished call to `out`."""
    bad = 0

    def report(line: int, msg: str) -> None:
        nonlocal bad
        bad += 1
        sys.stderr.write(f"{path}:{line}: skipped: {msg}\n")

    tracker = CallTracker(logger=_quiet_logger())
    try:
        out.writelines(
            json.dumps(summary, ensure_ascii=False) + "\n"
            for summary in replay_file(path, tracker=tracker, on_error=report)
        )
    except OSError as exc:
        sys.stderr.write(f"{path}: cannot read: {exc}\n")
        return 2
    open_calls = tracker.active_calls()
    if open_calls:
        ids = ", ".join(f"{c.node}/{c.call_id}" for c in open_calls)
        sys.stderr.write(f"{path}: {len(open_calls)} call(s) still open at the end: {ids}\n")
    return 1 if bad else 0
