"""Pure routing policy: which ready seat for a waiting call, which waiting call for a seat.

No I/O, no clock: *now* is an argument. The functions only *choose*; the dispatcher
reserves what they chose (the seat leaves the ready set, the call leaves the line), which
is what guarantees a seat never gets two calls and a call never rings two seats.

Eligibility of a seat for a call (:func:`match`), first rule that holds wins:

1. ``base``: the seat has every skill the call requires at ``min_level`` or above;
2. an overflow step whose window ``after_s <= waited < after_s + timeout_s`` is open and
   whose target (any of its skills at its level, and/or its teams) takes the seat.

With ``language_required`` a call with a language only goes to seats that speak it;
otherwise such seats are preferred.

Choosing a seat (:func:`pick_seat`), among eligible ready seats:
sticky agent (the seat that last talked to this caller, within ``sticky_window_s``) >
speaks the caller's language > longest idle (earliest ``ready_since``) > seat id.

Choosing a call (:func:`pick_call`): the first eligible call in the line's service order
(priority class, aging, FIFO, RONA calls at the head of their class).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final

from cti.queue.model import WaitingCall
from cti.routing.rules import RoutingRules, SeatCandidate, SeatProfile

__all__ = ["BASE", "Decision", "match", "pick_call", "pick_seat"]

BASE: Final = "base"
"""Step name of a match on the call's own requirement (no overflow)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What the router chose and why (for logs and supervisors).

    ``call`` and ``seat`` are both set when something was chosen, else both ``None``.
    """

    call: WaitingCall | None = None
    seat: SeatCandidate | None = None
    step: str | None = None
    reason: str
    sticky: bool = False
    language_match: bool = False
    examined: int = 0

    @property
    def matched(self) -> bool:
        return self.call is not None and self.seat is not None


def _base(call: WaitingCall, seat: SeatProfile) -> bool:
    levels = seat.skills
    level = call.min_level
    return all(levels.get(skill, 0) >= level for skill in call.skills)


def match(call: WaitingCall, seat: SeatProfile, rules: RoutingRules, now: float) -> str | None:
    """The rule by which *seat* may take *call* at *now* (``"base"`` or a step name)."""
    if (
        rules.language_required
        and call.language is not None
        and call.language not in seat.languages
    ):
        return None
    if _base(call, seat):
        return BASE
    if rules.overflow:
        waited = call.waited(now)
        for rule in rules.overflow:
            if rule.applies(call.skills, waited) and rule.takes(seat):
                return rule.name
    return None


def _why(call: WaitingCall, step: str, rules: RoutingRules, now: float) -> str:
    if step == BASE:
        need = ",".join(sorted(call.skills)) or "-"
        return f"skills {need} at level >= {call.min_level}"
    rule = next(r for r in rules.overflow if r.name == step)
    return f"overflow {step}: waited {call.waited(now):.1f}s >= {rule.after_s:g}s"


def _sticky_ok(call: WaitingCall, rules: RoutingRules, now: float) -> bool:
    return (
        call.last_seat is not None
        and call.last_seen_at is not None
        and rules.sticky_window_s > 0
        and now - call.last_seen_at <= rules.sticky_window_s
    )


def pick_seat(
    call: WaitingCall,
    seats: Iterable[SeatCandidate],
    rules: RoutingRules,
    now: float,
    *,
    ready_by_id: Mapping[str, SeatCandidate] | None = None,
) -> Decision:
    """The ready seat for *call*, or a decision with no seat.

    Args:
        call: the waiting call.
        seats: ready seats, **longest idle first** (the dispatcher keeps them so); the scan
            stops at the first eligible seat unless a sticky or language preference needs
            a better one.
        rules: compiled routing rules.
        now: current time, seconds.
        ready_by_id: the same seats by id, when the caller has one: the sticky seat is then
            looked up directly instead of scanning every ready seat for it.
    """
    sticky_seat = call.last_seat if _sticky_ok(call, rules, now) else None
    if sticky_seat is not None and ready_by_id is not None:
        found = ready_by_id.get(sticky_seat)
        step = match(call, found.profile, rules, now) if found is not None else None
        if found is not None and step is not None:
            speaks = call.language is not None and call.language in found.profile.languages
            return Decision(
                call=call,
                seat=found,
                step=step,
                reason=f"sticky agent; {_why(call, step, rules, now)}",
                sticky=True,
                language_match=speaks,
                examined=1,
            )
        sticky_seat = None  # not ready or not eligible: no need to look for it below
    language = call.language
    first: tuple[SeatCandidate, str] | None = None
    first_lang: tuple[SeatCandidate, str] | None = None
    examined = 0
    for seat in seats:
        examined += 1
        step = match(call, seat.profile, rules, now)
        if step is None:
            continue
        speaks = language is not None and language in seat.profile.languages
        if seat.profile.seat_id == sticky_seat:
            return Decision(
                call=call,
                seat=seat,
                step=step,
                reason=f"sticky agent; {_why(call, step, rules, now)}",
                sticky=True,
                language_match=speaks,
                examined=examined,
            )
        if first is None:
            first = (seat, step)
        if speaks and first_lang is None:
            first_lang = (seat, step)
        if sticky_seat is None and (language is None or first_lang is not None):
            break
    chosen = first_lang or first
    if chosen is None:
        return Decision(reason="no eligible ready seat", examined=examined)
    seat, step = chosen
    idle = now - seat.ready_since
    lang = f"; speaks {language}" if chosen is first_lang else ""
    return Decision(
        call=call,
        seat=seat,
        step=step,
        reason=f"longest idle eligible ({idle:.1f}s){lang}; {_why(call, step, rules, now)}",
        language_match=chosen is first_lang,
        examined=examined,
    )


def pick_call(
    seat: SeatCandidate, calls: Iterable[WaitingCall], rules: RoutingRules, now: float
) -> Decision:
    """The waiting call a freed (ready) *seat* should take, or a decision with no call.

    Args:
        seat: the seat that became ready.
        calls: waiting calls **in service order** (``WaitingLine`` iterates so).
        rules: compiled routing rules.
        now: current time, seconds.
    """
    profile = seat.profile
    # Only the overflow steps whose target takes this seat can matter: check them once.
    useful = tuple(r for r in rules.overflow if r.takes(profile))
    narrowed = rules if len(useful) == len(rules.overflow) else replace(rules, overflow=useful)
    examined = 0
    for call in calls:
        examined += 1
        step = match(call, profile, narrowed, now)
        if step is not None:
            return Decision(
                call=call,
                seat=seat,
                step=step,
                reason=f"first eligible in line (#{examined}); {_why(call, step, rules, now)}",
                sticky=call.last_seat == profile.seat_id,
                language_match=call.language is not None and call.language in profile.languages,
                examined=examined,
            )
    return Decision(reason="no eligible waiting call", examined=examined)
