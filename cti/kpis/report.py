"""A report of figures for people and programs: one JSON-able dict, a table with Chinese
headings, CSV. Pure: the figures come from :mod:`cti.kpis.definitions`."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from cti.kpis.definitions import Figures, Thresholds

__all__ = ["columns", "figures_json", "report_csv", "report_json", "report_table"]


def _n(n: float) -> str:
    return f"{n:g}"


def figures_json(f: Figures) -> dict[str, Any]:
    """Every figure of `f` by its English key (ratios 0..1 or null, seconds)."""
    out: dict[str, Any] = {
        "units": f.units,
        "offered": f.offered,
        "answered": f.answered,
        "abandoned": f.abandoned,
        "short_abandoned": f.short_abandoned,
        "callback_requested": f.callback_requested,
        "voicemail": f.voicemail,
        "fallback": f.fallback,
        "transferred_out": f.transferred_out,
        "after_hours": f.after_hours,
        "blacklisted": f.blacklisted,
        "ivr_only": f.ivr_only,
        "answer_rate": f.answer_rate,
        "within": [
            {
                "n_s": w.n_s,
                "answered": w.answered,
                "answer_rate": w.answer_rate,
                "service_level": w.service_level,
            }
            for w in f.within
        ],
        "n_s_answer_rate": f.n_s_answer_rate,
        "service_level": f.service_level,
        "abandon_rate": f.abandon_rate,
        "abandon_rate_excluding_short": f.abandon_rate_excluding_short,
        "asa_s": f.asa_s,
        "longest_wait_s": f.longest_wait_s,
        "talk_s": f.talk_s,
        "wrapup_s": f.wrapup_s,
        "aht_s": f.aht_s,
        "transfers_out": f.transfers_out,
        "rona": f.rona,
        "ratings": f.ratings,
        "ratings_satisfied": f.ratings_satisfied,
        "satisfaction_rate": f.satisfaction_rate,
        "rating_coverage": f.rating_coverage,
    }
    if f.callbacks is not None:
        c = f.callbacks
        out["callbacks"] = {
            "within_min": c.within_min,
            "requests": c.requests,
            "placed": c.placed,
            "attempts": c.attempts,
            "reached": c.reached,
            "reached_within": c.reached_within,
            "reach_rate": c.reach_rate,
            "reached_within_rate": c.reached_within_rate,
        }
    if f.seats:
        out["seats"] = [
            {
                "seat": s.seat,
                "answered": s.answered,
                "talk_s": s.talk_s,
                "wrapup_s": s.wrapup_s,
                "aht_s": s.aht_s,
                "logged_in_s": s.logged_in_s,
                "occupied_s": s.occupied_s,
                "occupancy": s.occupancy,
                "not_ready_s": dict(s.not_ready_s),
                "rona": s.rona,
            }
            for s in f.seats
        ]
    return out


def thresholds_json(t: Thresholds) -> dict[str, Any]:
    return {
        "answer_s": t.answer_s,
        "n_s": list(t.n_s),
        "short_abandon_s": t.short_abandon_s,
        "callback_within_min": t.callback_within_min,
    }


def report_json(
    *,
    start: str,
    end: str,
    timezone: str,
    by: str | None,
    thresholds: Thresholds,
    centre: Figures,
    groups: Sequence[tuple[str | None, Figures]] = (),
) -> dict[str, Any]:
    """The report as one object: the window, the thresholds, the centre (one unit per call)
    and, with `by`, one row per group (one unit per entry)."""
    return {
        "from": start,
        "to": end,
        "timezone": timezone,
        "by": by,
        "thresholds": thresholds_json(thresholds),
        "centre": figures_json(centre),
        "groups": [{"key": k, **figures_json(f)} for k, f in groups],
    }


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _sec(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def columns(t: Thresholds) -> list[tuple[str, Any]]:
    """(heading, cell of a Figures) for the table and CSV, in the order shown."""
    cols: list[tuple[str, Any]] = [
        ("人工请求量", lambda f: str(f.offered)),
        ("接通量", lambda f: str(f.answered)),
        ("接通率", lambda f: _pct(f.answer_rate)),
    ]
    cols.extend((f"{_n(n)}秒接通率", lambda f, n=n: _pct(f.within_n(n).answer_rate)) for n in t.n_s)
    cols.append(
        (f"应答及时率(SL,{_n(t.answer_s)}秒)", lambda f: _pct(f.service_level)),
    )
    cols += [
        ("放弃量", lambda f: str(f.abandoned)),
        ("放弃率", lambda f: _pct(f.abandon_rate)),
        (
            f"放弃率(不含{_n(t.short_abandon_s)}秒内)",
            lambda f: _pct(f.abandon_rate_excluding_short),
        ),
        ("回拨请求", lambda f: str(f.callback_requested)),
        ("留言", lambda f: str(f.voicemail)),
        ("ASA(秒)", lambda f: _sec(f.asa_s)),
        ("最长等待(秒)", lambda f: _sec(f.longest_wait_s)),
        ("AHT(秒)", lambda f: _sec(f.aht_s)),
        ("转出", lambda f: str(f.transfers_out)),
        ("RONA", lambda f: str(f.rona)),
        ("满意率", lambda f: _pct(f.satisfaction_rate)),
        ("评价覆盖率", lambda f: _pct(f.rating_coverage)),
        ("仅IVR/非工作时间/黑名单", lambda f: str(f.ivr_counted_apart)),
        # the callback list (漏接电话回拨): missed calls, called back, citizen reached
        ("漏接待回拨", lambda f: _cb(f, "requests")),
        ("已回拨", lambda f: _cb(f, "placed")),
        ("回拨接通", lambda f: _cb(f, "reached")),
        (f"{_n(t.callback_within_min)}分钟内回拨接通", lambda f: _cb(f, "reached_within")),
    ]
    return cols


def _cb(f: Figures, name: str) -> str:
    return "-" if f.callbacks is None else str(getattr(f.callbacks, name))


_GROUP_HEADING: Mapping[str | None, str] = {
    None: "范围",
    "line": "线路",
    "department": "部门",
    "seat": "坐席",
    "hour": "小时",
    "day": "日期",
}


def _rows(
    by: str | None,
    thresholds: Thresholds,
    centre: Figures,
    groups: Sequence[tuple[str | None, Figures]],
) -> tuple[list[str], list[list[str]]]:
    cols = columns(thresholds)
    head = [_GROUP_HEADING.get(by, by or "范围"), *(h for h, _ in cols)]
    rows = [[k if k is not None else "(无)", *(cell(f) for _, cell in cols)] for k, f in groups]
    rows.append(["全中心(按呼叫)", *(cell(centre) for _, cell in cols)])
    return head, rows


def _width(s: str) -> int:
    # a CJK character takes two columns in a terminal
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in s)


def report_table(
    *,
    start: str,
    end: str,
    timezone: str,
    by: str | None,
    thresholds: Thresholds,
    centre: Figures,
    groups: Sequence[tuple[str | None, Figures]] = (),
) -> str:
    """For a supervisor: the window and thresholds, then one line per group and the centre."""
    head, rows = _rows(by, thresholds, centre, groups)
    widths = [max(_width(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c + " " * (w - _width(c)) for c, w in zip(cells, widths, strict=True))

    t = thresholds
    lines = [
        f"统计区间 {start} 至 {end} ({timezone})",
        (
            f"阈值: N秒接通率 N = {', '.join(_n(n) for n in t.n_s)} 秒 (等待 ≤ N); "
            f"短时放弃 < {_n(t.short_abandon_s)} 秒; 接通率 = 接通 ÷ 人工请求量; "
            f"SL = {_n(t.answer_s)}秒内接通 ÷ 接通; "
            f"回拨接通 = 漏接电话的市民接听了回拨 (≤ {_n(t.callback_within_min)} 分钟)"
        ),
        "",
        line(head),
        *(line(r) for r in rows),
    ]
    return "\n".join(lines) + "\n"


def report_csv(
    *,
    by: str | None,
    thresholds: Thresholds,
    centre: Figures,
    groups: Sequence[tuple[str | None, Figures]] = (),
) -> str:
    head, rows = _rows(by, thresholds, centre, groups)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    w.writerows(rows)
    return buf.getvalue()
