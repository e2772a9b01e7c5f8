"""Routing rules compiled from the number plan, and the seat profile routing looks at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cti.numberplan import NumberPlan, SeatConfig

__all__ = ["OverflowRule", "RoutingRules", "SeatCandidate", "SeatProfile"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatProfile:
    """What routing needs to know about a seat (static, from the plan)."""

    seat_id: str
    endpoint: str
    skills: Mapping[str, int]
    team: str = "centre"
    languages: frozenset[str] = frozenset({"zh"})

    @classmethod
    def from_config(cls, seat: SeatConfig) -> SeatProfile:
        return cls(
            seat_id=seat.id,
            endpoint=seat.endpoint,
            skills=dict(seat.skills),
            team=seat.team,
            languages=frozenset(seat.languages),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatCandidate:
    """A ready seat: its profile and when its current idle period began."""

    profile: SeatProfile
    ready_since: float

    @property
    def seat_id(self) -> str:
        return self.profile.seat_id


@dataclass(frozen=True, slots=True, kw_only=True)
class OverflowRule:
    """A compiled overflow step: matches while ``after_s <= waited < until_s``."""

    name: str
    after_s: float
    until_s: float
    skills: frozenset[str] = frozenset()
    min_level: int = 1
    teams: frozenset[str] = frozenset()
    for_skills: frozenset[str] = frozenset()

    def applies(self, call_skills: frozenset[str], waited: float) -> bool:
        if not self.after_s <= waited < self.until_s:
            return False
        return not self.for_skills or not self.for_skills.isdisjoint(call_skills)

    def takes(self, seat: SeatProfile) -> bool:
        if self.teams and seat.team not in self.teams:
            return False
        if not self.skills:
            return True
        levels = seat.skills
        return any(levels.get(skill, 0) >= self.min_level for skill in self.skills)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingRules:
    """Everything the pure routing functions need besides the call, the seats and *now*."""

    overflow: tuple[OverflowRule, ...] = ()
    sticky_window_s: float = 86_400.0
    language_required: bool = False
    ring_timeout_s: float = 15.0
    class_priority: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_plan(cls, plan: NumberPlan) -> RoutingRules:
        q = plan.queue
        return cls(
            overflow=tuple(
                OverflowRule(
                    name=step.name,
                    after_s=step.after_s,
                    until_s=step.after_s + step.timeout_s
                    if step.timeout_s is not None
                    else float("inf"),
                    skills=frozenset(step.target.skills),
                    min_level=step.target.min_level,
                    teams=frozenset(step.target.teams),
                    for_skills=frozenset(step.for_skills),
                )
                for step in q.overflow
            ),
            sticky_window_s=q.sticky_window_s,
            language_required=q.language_required,
            ring_timeout_s=q.ring_timeout_s,
            class_priority={c.name: c.priority for c in plan.priority_classes},
        )

    def boundaries(self, enqueued_at: float) -> list[float]:
        """Times at which a call enqueued at *enqueued_at* may become eligible for more seats."""
        return [enqueued_at + rule.after_s for rule in self.overflow if rule.after_s > 0]
