"""Expected wait time (EWT) from recent handling times and staffed seats.

The formula (docs/routing.md has the derivation)::

    k        calls ahead of this one that need the same seats (position - 1)
    R        ready seats that could take it now
    N        staffed seats that could take it (ready + reserved + ringing + talking +
             wrap-up; not-ready and logged-out seats do not count)
    AHT      average handling time = talk + wrap-up, an EWMA over completed calls

    EWT = 0                          if R > k
        = (k + 1 - R) * AHT / N      otherwise
        = None (unknown)             if N == 0

Each of the N seats frees on average once per AHT, so seats free at N / AHT per second;
the call is answered when k + 1 - R more seats have freed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HandleTimeEstimator", "expected_wait"]


def expected_wait(*, ahead: int, ready: int, staffed: int, aht_s: float) -> float | None:
    """Expected wait in seconds of a call with *ahead* calls in front of it (see module)."""
    if ready > ahead:
        return 0.0
    if staffed <= 0:
        return None
    return (ahead + 1 - ready) * aht_s / staffed


@dataclass(slots=True)
class HandleTimeEstimator:
    """Exponentially weighted moving average of handling time, per skill and overall.

    ``alpha`` is the weight of the newest observation (0.1: roughly the last 20 calls
    matter). Before a skill has seen a call its estimate is the overall one, and before any
    call at all it is ``default_s``.
    """

    alpha: float
    default_s: float
    overall_s: float | None = None
    by_skill: dict[str, float] = field(default_factory=dict)
    samples: int = 0

    def observe(self, skills: frozenset[str], handle_s: float) -> None:
        """Record one completed call (talk + wrap-up seconds) for each of its *skills*."""
        if handle_s < 0:
            return
        self.samples += 1
        self.overall_s = self._blend(self.overall_s, handle_s)
        for skill in skills:
            self.by_skill[skill] = self._blend(self.by_skill.get(skill), handle_s)

    def aht(self, skill: str | None = None) -> float:
        """Current average handling time of *skill* (overall when ``None`` or unseen)."""
        if skill is not None:
            found = self.by_skill.get(skill)
            if found is not None:
                return found
        return self.default_s if self.overall_s is None else self.overall_s

    def _blend(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.alpha * (new - old)
