"""KPIs by their official definitions (docs/kpis.md): facts in, figures and alarms out.

Pure and synchronous, like the core: no I/O library, no asyncio, no clock read; the
adapters that store the facts and publish the figures live at the edge.
"""

from cti.kpis.alarms import Alarm, AlarmKind, LineFigures, alarms
from cti.kpis.callback_report import with_callbacks
from cti.kpis.callbacks import (
    CallbackFigures,
    CallbackRequest,
    callback_figures,
    group_callbacks,
)
from cti.kpis.definitions import (
    Figures,
    GroupBy,
    SeatFigures,
    Thresholds,
    WithinN,
    centre,
    collapse_call,
    compute,
    group,
    grouped_by_key,
    window,
)
from cti.kpis.facts import (
    IVR_ONLY,
    NOT_OFFERED,
    OFFERED,
    Origin,
    Outcome,
    QueueEntry,
    Rating,
    SeatInterval,
)

__all__ = [
    "IVR_ONLY",
    "NOT_OFFERED",
    "OFFERED",
    "Alarm",
    "AlarmKind",
    "CallbackFigures",
    "CallbackRequest",
    "Figures",
    "GroupBy",
    "LineFigures",
    "Origin",
    "Outcome",
    "QueueEntry",
    "Rating",
    "SeatFigures",
    "SeatInterval",
    "Thresholds",
    "WithinN",
    "alarms",
    "callback_figures",
    "centre",
    "collapse_call",
    "compute",
    "group",
    "group_callbacks",
    "grouped_by_key",
    "window",
    "with_callbacks",
]
