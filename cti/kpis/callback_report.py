"""A report's figures with the callback list's (docs/kpis.md, "Callbacks"): the centre and
each group of ``cti report`` and the stats API get their :class:`CallbackFigures`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import tzinfo

from cti.kpis.callbacks import (
    CallbackFigures,
    CallbackRequest,
    callback_figures,
    counted,
    group_callbacks,
    keys_of,
)
from cti.kpis.definitions import Figures, GroupBy, Thresholds, compute

__all__ = ["attach_callbacks", "with_callbacks"]


def with_callbacks(
    whole: Figures,
    groups: Sequence[tuple[str | None, Figures]],
    requests: Iterable[CallbackRequest],
    *,
    by: GroupBy | Sequence[GroupBy] | None,
    thresholds: Thresholds,
    tz: tzinfo | None = None,
) -> tuple[Figures, list[tuple[str | None, Figures]]]:
    """A report's centre and groups with the figures of these requests (see
    :func:`attach_callbacks`)."""
    t = thresholds
    reqs = list(requests)
    total = callback_figures(reqs, within_min=t.callback_within_min)
    keys = keys_of(by)
    per = group_callbacks(reqs, by=keys, within_min=t.callback_within_min, tz=tz) if keys else {}
    return attach_callbacks(whole, groups, total, per, grouped=bool(keys), thresholds=t)


def attach_callbacks(
    whole: Figures,
    groups: Sequence[tuple[str | None, Figures]],
    total: CallbackFigures,
    per: Mapping[str | None, CallbackFigures],
    *,
    grouped: bool,
    thresholds: Thresholds,
) -> tuple[Figures, list[tuple[str | None, Figures]]]:
    """A report's centre and groups with their callback figures: a group of requests but no
    queue entry (a day whose missed calls were all called back the next) is added with
    zero entry figures, and the groups are sorted by key again (``None`` first)."""
    t = thresholds
    centre = replace(whole, callbacks=total)
    if not grouped:
        return centre, list(groups)
    none = counted(t.callback_within_min, requests=0, placed=0, attempts=0, reached=0, within=0)
    out = [(k, replace(f, callbacks=per.get(k, none))) for k, f in groups]
    have = {k for k, _ in groups}
    if missing := [k for k in per if k not in have]:
        empty = compute((), thresholds=t)
        out += [(k, replace(empty, callbacks=per[k])) for k in missing]
    out.sort(key=lambda kv: (kv[0] is not None, kv[0] or ""))
    return centre, out
