"""The one waiting line: priority classes, FIFO within a class, aging, position.

Order. A call's effective priority at time *t* is ``priority + aging_per_s * (t - enqueued_at)``
and calls are served in descending effective priority, first come first served among equals.
Because every call ages at the same rate, the *order* of two calls never changes with time:
comparing ``p1 + a(t - t1)`` with ``p2 + a(t - t2)`` is comparing ``t1 - p1/a`` with
``t2 - p2/a``. So each call gets a fixed sort key when it joins (its "virtual arrival",
``enqueued_at - priority / aging_per_s``) and the line is one sorted list; with
``aging_per_s == 0`` the key is ``-priority`` (strict classes) and arrival breaks ties.

Data structures, chosen for 1,000+ waiting calls: a Python list of key tuples kept sorted
with :mod:`bisect` (``insort``/``del`` are O(log n) compares plus a C ``memmove``: ~1 µs at
n = 1,000), one such list per skill and per class, and a dict from call id to entry. That
gives O(log n) positions (a heap would need O(n)), O(log n + n/memmove) removal of any call
(abandonment), and in-order iteration for routing. ``benchmarks/routing.py`` measures it.

Ring-no-answer: :meth:`WaitingLine.requeue_at_head` puts the call back in front of every
other call of its class, keeping its original ``enqueued_at`` (its wait keeps counting).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TypeAlias

from structlog.typing import FilteringBoundLogger

from cti.queue.model import Abandonment, Position, WaitingCall

__all__ = ["WaitingLine"]

# (virtual arrival or -priority, 0 = requeued at head / 1 = normal, enqueued_at, seq, call_id)
_Key: TypeAlias = tuple[float, int, float, int, str]


@dataclass(slots=True)
class _Entry:
    call: WaitingCall
    key: _Key


class WaitingLine:
    """The waiting calls, in service order. Mutable; owned by the core's single thread.

    Args:
        aging_per_s: priority points a call gains per second waited (0 = strict classes).
        log: structlog logger; duplicate or unknown call ids are logged and counted
            in :attr:`anomalies`, never raised.
    """

    def __init__(self, *, aging_per_s: float, log: FilteringBoundLogger) -> None:
        if aging_per_s < 0:
            msg = f"aging_per_s must be >= 0, got {aging_per_s}"
            raise ValueError(msg)
        self._aging = aging_per_s
        self._log = log
        self._order: list[_Key] = []
        self._by_skill: dict[str, list[_Key]] = {}
        self._by_class: dict[str, list[_Key]] = {}
        self._entries: dict[str, _Entry] = {}
        self._seq = 0
        self.anomalies: dict[str, int] = {}

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._entries

    def __iter__(self) -> Iterator[WaitingCall]:
        """Waiting calls in service order (do not add or remove while iterating)."""
        entries = self._entries
        return (entries[key[4]].call for key in self._order)

    def get(self, call_id: str) -> WaitingCall | None:
        entry = self._entries.get(call_id)
        return entry.call if entry is not None else None

    def in_skill(self, skill: str) -> Iterator[WaitingCall]:
        """Calls needing *skill*, in service order."""
        entries = self._entries
        return (entries[key[4]].call for key in self._by_skill.get(skill, ()))

    def head(self) -> WaitingCall | None:
        return self._entries[self._order[0][4]].call if self._order else None

    def position(self, call_id: str) -> Position | None:
        """1-based position overall and among the calls needing each of its skills."""
        entry = self._entries.get(call_id)
        if entry is None:
            return None
        key = entry.key
        return Position(
            overall=bisect.bisect_left(self._order, key) + 1,
            by_skill={
                skill: bisect.bisect_left(self._by_skill[skill], key) + 1
                for skill in entry.call.skills
            },
        )

    def effective_priority(self, call: WaitingCall, now: float) -> float:
        """``priority + aging_per_s * waited`` (for supervisors; the order never needs it)."""
        return call.priority + self._aging * call.waited(now)

    def count_by_class(self) -> dict[str, int]:
        return {name: len(keys) for name, keys in self._by_class.items() if keys}

    def count_by_skill(self) -> dict[str, int]:
        return {name: len(keys) for name, keys in self._by_skill.items() if keys}

    def oldest_enqueued_at(self) -> float | None:
        """Earliest ``enqueued_at`` of all waiting calls (O(n); for snapshots)."""
        return min((e.call.enqueued_at for e in self._entries.values()), default=None)

    # ------------------------------------------------------------------ changing

    def add(self, call: WaitingCall) -> bool:
        """Append *call* at its place in the order. ``False`` (logged) if already waiting."""
        if call.call_id in self._entries:
            self._anomaly("duplicate_call", call_id=call.call_id)
            return False
        self._insert(call, self._base_key(call), head=False)
        return True

    def requeue_at_head(self, call: WaitingCall) -> WaitingCall:
        """Put back a call whose offer failed (RONA): first of its class, original
        ``enqueued_at`` kept, ``offers`` incremented. Returns the call as queued."""
        if call.call_id in self._entries:
            self._anomaly("duplicate_call", call_id=call.call_id)
            return self._entries[call.call_id].call
        call = replace(call, offers=call.offers + 1)
        primary = self._base_key(call)
        same_class = self._by_class.get(call.priority_class)
        if same_class:
            primary = min(primary, same_class[0][0])
        self._insert(call, primary, head=True)
        return call

    def remove(self, call_id: str) -> WaitingCall | None:
        """Take a call out (it is being offered to a seat). ``None`` if not waiting."""
        entry = self._entries.pop(call_id, None)
        if entry is None:
            return None
        key = entry.key
        _discard(self._order, key)
        for skill in entry.call.skills:
            _discard(self._by_skill[skill], key)
        _discard(self._by_class[entry.call.priority_class], key)
        return entry.call

    def abandon(self, call_id: str, now: float) -> Abandonment | None:
        """The caller hung up while waiting: remove and return the outcome with its wait."""
        entry = self._entries.get(call_id)
        if entry is None:
            self._anomaly("abandon_unknown_call", call_id=call_id)
            return None
        position = bisect.bisect_left(self._order, entry.key) + 1
        call = entry.call
        self.remove(call_id)
        return Abandonment(
            call_id=call.call_id,
            line=call.line,
            caller=call.caller,
            priority_class=call.priority_class,
            enqueued_at=call.enqueued_at,
            abandoned_at=now,
            waited_s=call.waited(now),
            position=position,
        )

    # ------------------------------------------------------------------ internals

    def _base_key(self, call: WaitingCall) -> float:
        if self._aging > 0:
            return call.enqueued_at - call.priority / self._aging
        return float(-call.priority)

    def _insert(self, call: WaitingCall, primary: float, *, head: bool) -> None:
        self._seq += 1
        key: _Key = (primary, 0 if head else 1, call.enqueued_at, self._seq, call.call_id)
        self._entries[call.call_id] = _Entry(call, key)
        bisect.insort(self._order, key)
        for skill in call.skills:
            bisect.insort(self._by_skill.setdefault(skill, []), key)
        bisect.insort(self._by_class.setdefault(call.priority_class, []), key)

    def _anomaly(self, what: str, **facts: object) -> None:
        self.anomalies[what] = self.anomalies.get(what, 0) + 1
        self._log.warning("queue_" + what, **facts)


def _discard(keys: list[_Key], key: _Key) -> None:
    index = bisect.bisect_left(keys, key)
    if index < len(keys) and keys[index] == key:
        del keys[index]
