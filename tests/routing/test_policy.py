"""cti.routing.policy: skills and levels, longest idle, sticky agent, language, overflow."""

from __future__ import annotations

from dataclasses import replace

from cti.queue import WaitingCall
from cti.routing import (
    BASE,
    OverflowRule,
    RoutingRules,
    SeatCandidate,
    SeatProfile,
    match,
    pick_call,
    pick_seat,
)


def seat(
    sid: str, since: float, team: str = "centre", langs: tuple[str, ...] = ("zh",), **skills: int
) -> SeatCandidate:
    return SeatCandidate(
        profile=SeatProfile(
            seat_id=sid,
            endpoint=f"Local/{sid}@seats",
            skills=skills or {"general": 5},
            team=team,
            languages=frozenset(langs),
        ),
        ready_since=since,
    )


def call(cid: str = "c1", skill: str = "general", at: float = 0.0, **kw: object) -> WaitingCall:
    base = WaitingCall(
        call_id=cid,
        line="12345",
        skills=frozenset({skill}),
        priority_class="normal",
        enqueued_at=at,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


RULES = RoutingRules(
    overflow=(
        OverflowRule(
            name="any-general", after_s=30, until_s=float("inf"), skills=frozenset({"general"})
        ),
        OverflowRule(name="county", after_s=90, until_s=150, teams=frozenset({"county-a"})),
    ),
    sticky_window_s=3600,
)


def test_longest_idle_first() -> None:
    seats = [seat("a", 5.0), seat("b", 9.0)]
    d = pick_seat(call(), seats, RULES, 10.0)
    assert d.matched
    assert d.seat is not None
    assert d.seat.seat_id == "a"
    assert d.step == BASE
    assert "longest idle" in d.reason
    assert d.examined == 1  # stops at the first eligible


def test_required_skill_and_min_level() -> None:
    seats = [
        seat("gen", 1.0),
        seat("mkt-low", 2.0, general=3, market=1),
        seat("mkt", 3.0, market=4),
    ]
    d = pick_seat(call(skill="market", min_level=2), seats, RULES, 5.0)
    assert d.seat is not None
    assert d.seat.seat_id == "mkt"
    assert pick_seat(call(skill="hr"), seats, RULES, 5.0).matched is False


def test_overflow_steps_widen_with_wait() -> None:
    seats = [seat("county", 0.5, team="county-a", other=1), seat("gen", 1.0)]  # idle order
    market = call(skill="market", at=0.0)
    assert not pick_seat(market, seats, RULES, 29.9).matched
    at30 = pick_seat(market, seats, RULES, 30.0)
    assert at30.seat is not None
    assert (at30.seat.seat_id, at30.step) == ("gen", "any-general")
    assert "waited 30.0s >= 30s" in at30.reason
    # 90 s: the county seat (idle longer) may take it too; the step window closes at 150 s
    at90 = pick_seat(market, seats, RULES, 95.0)
    assert at90.seat is not None
    assert (at90.seat.seat_id, at90.step) == ("county", "county")
    at200 = pick_seat(market, seats, RULES, 200.0)
    assert at200.seat is not None
    assert at200.seat.seat_id == "gen"
    assert match(market, seats[0].profile, RULES, 200.0) is None


def test_overflow_for_skills_filter() -> None:
    rules = RoutingRules(
        overflow=(
            OverflowRule(
                name="hr-to-general",
                after_s=10,
                until_s=float("inf"),
                skills=frozenset({"general"}),
                for_skills=frozenset({"hr"}),
            ),
        )
    )
    gen = seat("gen", 0.0).profile
    assert match(call(skill="hr"), gen, rules, 11.0) == "hr-to-general"
    assert match(call(skill="market"), gen, rules, 11.0) is None


def test_sticky_agent_when_ready_and_recent() -> None:
    seats = [seat("a", 1.0), seat("b", 2.0), seat("c", 3.0)]
    c = call(last_seat="c", last_seen_at=100.0)
    d = pick_seat(c, seats, RULES, 200.0)
    assert d.seat is not None
    assert (d.seat.seat_id, d.sticky) == ("c", True)
    assert "sticky" in d.reason
    # too long ago: longest idle wins
    old = pick_seat(c, seats, RULES, 100.0 + 3601)
    assert old.seat is not None
    assert (old.seat.seat_id, old.sticky) == ("a", False)
    # sticky seat not ready (not in the list): longest idle
    busy = pick_seat(c, seats[:2], RULES, 200.0)
    assert busy.seat is not None
    assert busy.seat.seat_id == "a"


def test_sticky_seat_must_still_be_eligible() -> None:
    seats = [seat("a", 1.0, market=2), seat("c", 3.0)]
    c = call(skill="market", at=100.0, last_seat="c", last_seen_at=100.0)
    d = pick_seat(c, seats, RULES, 110.0)  # waited 10 s: no overflow yet
    assert d.seat is not None
    assert d.seat.seat_id == "a"


def test_language_preferred() -> None:
    seats = [seat("zh", 1.0), seat("dialect", 2.0, langs=("zh", "dialect"))]
    d = pick_seat(call(language="dialect"), seats, RULES, 5.0)
    assert d.seat is not None
    assert (d.seat.seat_id, d.language_match) == ("dialect", True)
    # no seat speaks it: still answered (preference only)
    d2 = pick_seat(call(language="en"), seats, RULES, 5.0)
    assert d2.seat is not None
    assert (d2.seat.seat_id, d2.language_match) == ("zh", False)


def test_language_required() -> None:
    rules = replace(RULES, language_required=True)
    seats = [seat("zh", 1.0)]
    assert not pick_seat(call(language="en"), seats, rules, 5.0).matched
    assert pick_seat(call(), seats, rules, 5.0).matched


def test_pick_call_first_eligible_in_order() -> None:
    calls = [call("m1", skill="market", at=0.0), call("g1", at=1.0), call("g2", at=2.0)]
    free = seat("gen", 0.0)
    d = pick_call(free, calls, RULES, 10.0)
    assert d.call is not None
    assert (d.call.call_id, d.step, d.examined) == ("g1", BASE, 2)
    # after 30 s the market call may go to a general seat, and it is first in line
    d30 = pick_call(free, calls, RULES, 30.0)
    assert d30.call is not None
    assert (d30.call.call_id, d30.step) == ("m1", "any-general")
    assert not pick_call(seat("hr", 0.0, hr=3), calls, RULES, 10.0).matched
