"""The callback figures (漏接电话回拨, docs/kpis.md): of the calls abandoned in the line that
went on the callback list, how many were called back (placed), how many citizens answered
a callback (reached) and how many were reached within N minutes of hanging up.

The facts are the callback list's rows (one per missed call, ``cti/adapters/db/callbacks.py``)
read as :class:`CallbackRequest`; the figures are counted per request, so a request called
back three times before the citizen answered is placed once, reached once, and its three
attempts are in ``attempts``. A report's figures get theirs from
:func:`cti.kpis.callback_report.with_callbacks`. Pure, like the rest of :mod:`cti.kpis`:
no clock, no I/O.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal

__all__ = [
    "CallbackFigures",
    "CallbackRequest",
    "callback_figures",
    "counted",
    "group_callbacks",
    "join_key",
    "keys_of",
    "label",
]

# cti.kpis.definitions.GroupBy, spelled again: definitions imports this module (the
# Figures' callbacks field), so this one cannot import it back
GroupBy = Literal["line", "department", "seat", "hour", "day"]


def _time(name: str, value: float | None) -> None:
    if value is not None and (not math.isfinite(value) or value < 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackRequest:
    """One missed call on the callback list and what became of it (epoch seconds)."""

    call_id: str
    """The missed call (its linkedid; unique per node)."""
    node: str
    line: str
    requested_at: float
    """When the citizen hung up in the line: the call joined the list."""
    attempts: int = 0
    """Callbacks placed for it (each one-click call back)."""
    reached_at: float | None = None
    """When the citizen answered a callback (the callback call's answer); ``None`` while
    nobody reached them."""
    seat: str | None = None
    """The seat that called back last."""

    def __post_init__(self) -> None:
        _time("requested_at", self.requested_at)
        _time("reached_at", self.reached_at)
        if not self.call_id or not self.line:
            raise ValueError("call_id and line must not be empty")
        if self.attempts < 0:
            raise ValueError(f"attempts must be >= 0, got {self.attempts}")
        if self.reached_at is not None:
            if self.attempts < 1:
                raise ValueError("a reached request was called back at least once")
            if self.reached_at < self.requested_at:
                raise ValueError("reached_at is before requested_at")

    @property
    def key(self) -> tuple[str, str]:
        return (self.node, self.call_id)

    @property
    def reached(self) -> bool:
        return self.reached_at is not None

    @property
    def reach_s(self) -> float | None:
        """Seconds from the request to the citizen answering, when reached."""
        return None if self.reached_at is None else self.reached_at - self.requested_at


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackFigures:
    """The callback figures of a set of requests."""

    within_min: float
    """N of "reached within N minutes" (inclusive: reach ≤ N·60 s)."""
    requests: int
    """Missed calls that went on the list."""
    placed: int
    """Requests called back at least once."""
    attempts: int
    """Callbacks placed in all (a request may take several)."""
    reached: int
    """Requests whose citizen answered a callback."""
    reached_within: int
    """Reached within ``within_min`` minutes of the request."""
    reach_rate: float | None
    """reached ÷ requests."""
    reached_within_rate: float | None
    """reached within N min ÷ requests (like N秒接通率, ÷ every request)."""


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def callback_figures(requests: Iterable[CallbackRequest], *, within_min: float) -> CallbackFigures:
    """Count the requests (each once, whatever its attempts)."""
    limit = within_min * 60.0
    n = placed = attempts = reached = within = 0
    for r in requests:
        n += 1
        attempts += r.attempts
        placed += r.attempts > 0
        if (s := r.reach_s) is not None:
            reached += 1
            within += s <= limit  # inclusive, like every "within N" of docs/kpis.md
    return counted(
        within_min, requests=n, placed=placed, attempts=attempts, reached=reached, within=within
    )


def counted(
    within_min: float, *, requests: int, placed: int, attempts: int, reached: int, within: int
) -> CallbackFigures:
    """The figures of counts made elsewhere (SQL: cti/adapters/db/kpi_callbacks.py)."""
    return CallbackFigures(
        within_min=within_min,
        requests=requests,
        placed=placed,
        attempts=attempts,
        reached=reached,
        reached_within=within,
        reach_rate=_ratio(reached, requests),
        reached_within_rate=_ratio(within, requests),
    )


def label(by: GroupBy, line: str, seat: str | None, at: float, tz: tzinfo | None) -> str | None:
    """A request's group for one key (``at`` its request time)."""
    if by == "line":
        return line
    if by == "department":
        return None  # the list does not know the department: one group apart
    if by == "seat":
        return seat
    if tz is None:
        raise ValueError(f"grouping by {by} needs a time zone (tz=)")
    fmt = "%Y-%m-%d %H:00" if by == "hour" else "%Y-%m-%d"
    return datetime.fromtimestamp(at, tz).strftime(fmt)


def _key(by: Sequence[GroupBy], r: CallbackRequest, tz: tzinfo | None) -> str | None:
    return join_key([label(b, r.line, r.seat, r.requested_at, tz) for b in by])


def join_key(parts: Sequence[str | None]) -> str | None:
    """The keys of cti report's groups (kpi_sql._key): one label, or several joined."""
    if len(parts) == 1:
        return parts[0]
    return " ".join("(无)" if p is None else p for p in parts)


def keys_of(by: GroupBy | Sequence[GroupBy] | None) -> list[GroupBy]:
    """`by` as a list of keys (none, one, or several as line and day)."""
    return [] if by is None else [by] if isinstance(by, str) else list(by)


def group_callbacks(
    requests: Iterable[CallbackRequest],
    *,
    by: GroupBy | Sequence[GroupBy],
    within_min: float,
    tz: tzinfo | None = None,
) -> dict[str | None, CallbackFigures]:
    """Figures per line, seat (the last to call back), hour or day (of ``requested_at`` in
    ``tz``); by department every request is in the group ``None``. Each request falls in
    exactly one group, so the groups add up to the whole."""
    keys = keys_of(by)
    parts: dict[str | None, list[CallbackRequest]] = defaultdict(list)
    for r in requests:
        parts[_key(keys, r, tz)].append(r)
    return {k: callback_figures(p, within_min=within_min) for k, p in parts.items()}
