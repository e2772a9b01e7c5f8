"""A report's window from what a person types: ISO dates or date-times in local time.

Pure (the time zone is resolved from its name; ``now`` is passed in). Shared by
``cti report`` and ``GET /api/v1/stats``, so both read ``--from``/``from=`` alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["ReportWindow", "ReportWindowError", "report_window"]

_MAX_DAYS = 3 * 366  # a report over more is a mistake, not a question


class ReportWindowError(ValueError):
    """A bound that is not an ISO date/date-time, or a window that is empty or too long."""


@dataclass(frozen=True, slots=True)
class ReportWindow:
    start: float
    end: float
    tz: tzinfo
    tz_name: str
    start_label: str
    end_label: str


def _zone(name: str | None) -> tuple[tzinfo, str]:
    if name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ReportWindowError(f"unknown time zone {name!r}") from exc
    # the machine's zone (astimezone() always gives one; the fallback only satisfies types)
    here = datetime.now().astimezone()
    local = here.tzinfo or UTC
    return local, f"local ({here.strftime('%Z %z')})"


def _bound(text: str, tz: tzinfo, *, end: bool, what: str) -> datetime:
    text = text.strip()
    if len(text) > 40:
        raise ReportWindowError(f"{what}: too long")
    try:
        if len(text) == 10:  # a date: its midnight, or for an end the next midnight
            d = date.fromisoformat(text)
            return datetime.combine(d + timedelta(days=1 if end else 0), time(), tz)
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        msg = f"{what}: not an ISO date or date-time: {text!r}"
        raise ReportWindowError(msg) from exc
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt


def report_window(
    start: str | None, end: str | None, tz_name: str | None, *, now: float
) -> ReportWindow:
    """``[start, end)`` in epoch seconds; defaults: today's midnight, and now."""
    tz, label = _zone(tz_name)
    now_dt = datetime.fromtimestamp(now, tz)
    lo = (
        _bound(start, tz, end=False, what="from")
        if start
        else datetime.combine(now_dt.date(), time(), tz)
    )
    hi = _bound(end, tz, end=True, what="to") if end else now_dt
    if hi <= lo:
        raise ReportWindowError(f"to ({hi.isoformat()}) is not after from ({lo.isoformat()})")
    if hi - lo > timedelta(days=_MAX_DAYS):
        raise ReportWindowError(f"a window of more than {_MAX_DAYS} days")
    return ReportWindow(
        start=lo.timestamp(),
        end=hi.timestamp(),
        tz=tz,
        tz_name=label,
        start_label=lo.isoformat(timespec="seconds"),
        end_label=hi.isoformat(timespec="seconds"),
    )
