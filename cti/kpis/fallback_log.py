"""Queue entries of the calls Asterisk's fallback took while the daemon was down.

A call the daemon never saw (it arrived, waited and ended while the daemon was down, or
while its AMI link was) leaves no call record and no queue entry: the KPI ``fallback``
outcome would always be 0 and 人工请求量 too low by exactly the calls the centre answered
worst. Asterisk itself keeps them: ``app_queue`` writes every queue event to its
``queue_log`` file (``epoch|uniqueid|queue|agent|event|data...``), and the fallback
dialplan (``[cti-fallback]``, cti/dialplan/generate.py) first writes one line of its own
with the call's facts, because a queue_log line only knows the channel's uniqueid::

    1796366325|1796366310.42|cti-fallback|NONE|CTIFALLBACK|<call id>|<line>|<entered>

This module is the pure part: :class:`FallbackLog` is fed the file's lines in order and
gives, for each marked call whose queue part has ended, one :class:`QueueEntry` with
outcome ``fallback``. The file reading (offsets, rotation) and the store (a call the
daemon did record is never given a second entry) are the caller's (cti/app/fallback_facts.py).

What a fallback entry holds follows the daemon's own entries (cti/core/entries.py): the
line, its department, origin and priority class from the number plan; ``entered_at`` from
the dialplan's ``CTI_ENTERED`` (when the call joined the line, the hold before the
fallback included); ``wait_s`` to the seat's answer (``CONNECT``) or to leaving; ``offers``
and ``ring_s`` from ``RINGNOANSWER``. Asterisk stamps queue_log lines in whole seconds
(``time(NULL)``), so a wait that ends on a queue_log line is up to 1 s short; ``CTI_ENTERED``
has milliseconds. ``seat``, ``connected_at`` and ``talk_s`` stay empty
as for every entry that is not ``answered``: ``fallback`` is its own outcome in the KPI
definitions (offered, never answered: docs/kpis.md), and a seat's figures count only the
calls the daemon gave it. What Asterisk says became of the call is in :attr:`FallbackCall.fate`.

Every line is outside input (a channel variable can carry a caller's bytes): a line that
does not parse is skipped and counted, never raised; values are bounded.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, Literal

from cti.dialplan.contract import FALLBACK_MARKER
from cti.kpis.facts import Outcome, QueueEntry, line_facts
from cti.numberplan import NumberPlan

__all__ = ["MARKER", "FallbackCall", "FallbackLog", "Fate"]

MARKER: Final = FALLBACK_MARKER
"""The event name the fallback dialplan writes with ``QueueLog()``."""

MAX_LINE: Final = 4096  # an app_queue line is ~100 bytes; anything longer is not one
_SAFE: Final = re.compile(r"^[\w.+:@-]{1,64}$")  # call ids, line numbers, seat names, uniqueids
# a timestamp or a duration nobody's call has: 2001-09-09 .. 2286, or 30 days
_EPOCH_MIN, _EPOCH_MAX = 1e9, 1e10
_DURATION_MAX: Final = 30 * 86_400.0

Fate = Literal["answered", "abandoned", "left", "unknown"]
"""What app_queue says happened: a seat answered (``CONNECT``), the caller hung up while
waiting (``ABANDON``), left the queue otherwise (exit with timeout / empty / key, the call
ended between two ``Queue()``), or no end was logged before ``stale_s``."""

# events that end the call's stay in the queues (the dialplan loops Queue() after a
# timeout, so EXITWITHTIMEOUT / EXITEMPTY are not an end: see `_LEFT_FOR_NOW`)
_ENDS: Final = frozenset(
    {"COMPLETECALLER", "COMPLETEAGENT", "ABANDON", "BLINDTRANSFER", "ATTENDEDTRANSFER"}
)
_LEFT_FOR_NOW: Final = frozenset({"EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY"})


@dataclass(slots=True)
class FallbackCall:
    """One marked call while its queue events come in."""

    call_id: str
    uniqueid: str
    line: str
    entered_at: float
    last_at: float
    connected_at: float | None = None
    seat: str | None = None
    offers: int = 0
    ring_s: float = 0.0
    left_at: float | None = None
    fate: Fate = "unknown"


@dataclass(slots=True)
class FallbackLog:
    """The fallback calls of one node's queue_log, fed line by line (module doc)."""

    node: str
    plan: NumberPlan
    stale_s: float = 4 * 3600.0
    """A marked call with no event for this long is finished at its last event (its
    hang-up fell between two ``Queue()`` runs, or the log was rotated under it)."""
    max_open: int = 10_000
    """At most this many marked calls in progress (memory bound); the oldest goes first."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Lines not used, by reason (``malformed``, ``too_long``, ``bad_marker``, ``overflow``)."""
    _open: dict[str, FallbackCall] = field(default_factory=dict)  # uniqueid -> call
    _done: list[FallbackCall] = field(default_factory=list)

    def feed(self, raw: str) -> None:
        """One line of the file (its newline stripped or not)."""
        if len(raw) > MAX_LINE:
            self.skipped["too_long"] += 1
            return
        parts = raw.rstrip("\r\n").split("|")
        if len(parts) < 5:
            if raw.strip():
                self.skipped["malformed"] += 1
            return
        at = _epoch(parts[0])
        uniqueid, event = parts[1], parts[4]
        if at is None or not _SAFE.match(uniqueid):
            self.skipped["malformed"] += 1
            return
        if event == MARKER:
            self._marker(uniqueid, at, parts[5:])
            return
        call = self._open.get(uniqueid)
        if call is not None:  # else a queue line of a call the daemon handled
            self._event(call, at, parts[3], event, parts[5:])

    def _event(
        self, call: FallbackCall, at: float, agent: str, event: str, data: list[str]
    ) -> None:
        call.last_at = max(call.last_at, at)
        if event == "CONNECT":
            call.connected_at = at
            call.seat = agent if _SAFE.match(agent) else None
            call.fate = "answered"
        elif event == "RINGNOANSWER":
            call.offers += 1
            call.ring_s += (_duration(data[0] if data else "") or 0.0) / 1000.0
        elif event in _ENDS:
            call.left_at = at
            if call.fate != "answered":
                call.fate = "abandoned" if event == "ABANDON" else "left"
            self._finish(call)
        elif event in _LEFT_FOR_NOW and call.fate == "unknown":
            call.fate = "left"  # until it enters the next Queue()

    def expire(self, now: float) -> None:
        """Finish the marked calls with no event since `now - stale_s`."""
        for call in [c for c in self._open.values() if c.last_at < now - self.stale_s]:
            call.left_at = call.last_at
            self._finish(call)

    def take(self) -> list[tuple[FallbackCall, QueueEntry]]:
        """The calls finished since the last take, in the file's order, each with its
        entry (the call's queue_log facts are for the log and the metrics)."""
        done, self._done = self._done, []
        return [(c, self._entry(c)) for c in done]

    @property
    def open(self) -> int:
        """Marked calls still in the queues (or not yet known to be out)."""
        return len(self._open)

    # ------------------------------------------------------------------ inside

    def _marker(self, uniqueid: str, at: float, data: list[str]) -> None:
        call_id, line = [*data, "", ""][:2]
        entered = _epoch(data[2]) if len(data) > 2 else None
        if not _SAFE.match(call_id):
            self.skipped["bad_marker"] += 1
            return
        if not _SAFE.match(line):
            line = "unknown"  # a call without a dialled number: the dialplan's `s`
        if uniqueid in self._open:
            return  # the fallback entered again (a take-back bounced): same stay
        if len(self._open) >= self.max_open:
            oldest = next(iter(self._open.values()))
            self.skipped["overflow"] += 1
            oldest.left_at = oldest.last_at
            self._finish(oldest)
        start = entered if entered is not None and entered <= at else at
        self._open[uniqueid] = FallbackCall(
            call_id=call_id, uniqueid=uniqueid, line=line, entered_at=start, last_at=at
        )

    def _finish(self, call: FallbackCall) -> None:
        self._open.pop(call.uniqueid, None)
        self._done.append(call)

    def _entry(self, c: FallbackCall) -> QueueEntry:
        department, origin, priority = line_facts(self.plan.line(c.line))
        left = c.left_at if c.left_at is not None else c.last_at
        left = max(left, c.entered_at)
        waited_to = c.connected_at if c.connected_at is not None else left
        return QueueEntry(
            call_id=c.call_id,
            node=self.node,
            line=c.line,
            department=department,
            origin=origin,
            priority=priority,
            entered_at=c.entered_at,
            left_at=left,
            outcome=Outcome.FALLBACK,
            wait_s=max(0.0, min(waited_to, left) - c.entered_at),
            ring_s=min(c.ring_s, _DURATION_MAX),
            offers=c.offers,
        )


def _epoch(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or not _EPOCH_MIN <= value <= _EPOCH_MAX:
        return None
    return value


def _duration(text: str) -> float | None:
    if not text.isdigit() or len(text) > 12:
        return None
    return min(float(text), _DURATION_MAX * 1000.0)
