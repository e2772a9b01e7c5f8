"""Service-target alarms from live figures: pure, so the daemon decides when and where to send.

An alarm is a *condition*, not an event: :func:`alarms` returns every condition true now.
Integrations dedupe by :attr:`Alarm.alarm_id` (line + kind): raised when an id appears,
cleared when it is gone from the next evaluation.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from cti.kpis.definitions import Figures, Thresholds

__all__ = ["Alarm", "AlarmKind", "LineFigures", "alarms"]


class AlarmKind(enum.StrEnum):
    ANSWER_RATE_24H = "answer_rate_24h"
    """Rolling 24 h 接通率 (answered ÷ offered) below ``answer_rate_min``."""
    N_S_ANSWER_RATE_TODAY = "n_s_answer_rate_today"
    """Today's N秒接通率 (answered within ``answer_s`` ÷ offered) below ``n_s_rate_min``."""
    LONGEST_WAIT = "longest_wait"
    """A caller still waiting has waited longer than ``longest_wait_max_s``."""
    NO_SEAT_READY = "no_seat_ready"
    """No seat that serves the line is ready."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LineFigures:
    """One line's figures over the two live windows."""

    today: Figures
    rolling_24h: Figures


@dataclass(frozen=True, slots=True, kw_only=True)
class Alarm:
    line: str
    kind: AlarmKind
    value: float
    """The figure that crossed the limit (a ratio, seconds, or a seat count)."""
    threshold: float

    @property
    def alarm_id(self) -> str:
        """Stable across evaluations: the same line and kind give the same id."""
        return f"{self.line}/{self.kind}"


def _longest_waiting(f: LineFigures) -> float | None:
    waits = [w for w in (f.today.longest_waiting_s, f.rolling_24h.longest_waiting_s) if w]
    return max(waits, default=None)


def alarms(
    figures_by_line: Mapping[str, LineFigures],
    thresholds: Thresholds,
    *,
    ready_seats_by_line: Mapping[str, int],
) -> list[Alarm]:
    """Every alarm condition true now, sorted by ``alarm_id``.

    A figure that is ``None`` (nothing offered yet) raises no alarm; a limit is crossed
    strictly (a 接通率 of exactly 95 % is not below 95 %). The longest-wait alarm looks at
    callers *still waiting* (``longest_waiting_s``, computed with ``now``), so it clears
    once they are answered or leave. A line missing from ``ready_seats_by_line`` is not
    judged for ready seats (unknown is not zero).
    """
    t = thresholds
    out: list[Alarm] = []
    for line, f in figures_by_line.items():
        rate = f.rolling_24h.answer_rate
        if rate is not None and rate < t.answer_rate_min:
            out.append(
                Alarm(
                    line=line,
                    kind=AlarmKind.ANSWER_RATE_24H,
                    value=rate,
                    threshold=t.answer_rate_min,
                )
            )
        n_rate = f.today.n_s_answer_rate
        if n_rate is not None and n_rate < t.n_s_rate_min:
            out.append(
                Alarm(
                    line=line,
                    kind=AlarmKind.N_S_ANSWER_RATE_TODAY,
                    value=n_rate,
                    threshold=t.n_s_rate_min,
                )
            )
        longest = _longest_waiting(f)
        if longest is not None and longest > t.longest_wait_max_s:
            out.append(
                Alarm(
                    line=line,
                    kind=AlarmKind.LONGEST_WAIT,
                    value=longest,
                    threshold=t.longest_wait_max_s,
                )
            )
    out.extend(
        Alarm(line=line, kind=AlarmKind.NO_SEAT_READY, value=float(ready), threshold=1.0)
        for line, ready in ready_seats_by_line.items()
        if ready < 1
    )
    return sorted(out, key=lambda a: a.alarm_id)
