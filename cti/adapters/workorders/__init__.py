"""Work-order backends: the implementations of `cti.workorders.WorkOrderBackend`.

`embedded` keeps tickets in the CTI's own database (the default); `http` talks to the
city's work-order system (docs/workorders.md has its contract). `build_workorders` picks
one from the ``workorders`` section of the configuration.
"""

from __future__ import annotations

from structlog.typing import FilteringBoundLogger

from cti.adapters.db.store import Store
from cti.adapters.workorders.embedded import EmbeddedWorkOrders
from cti.adapters.workorders.http import HttpWorkOrders
from cti.settings import WorkOrdersSettings

__all__ = ["EmbeddedWorkOrders", "HttpWorkOrders", "build_workorders"]


def build_workorders(
    settings: WorkOrdersSettings, store: Store, *, log: FilteringBoundLogger | None = None
) -> EmbeddedWorkOrders | HttpWorkOrders:
    """The backend the configuration chooses. Close it with ``aclose()`` at shutdown.

    Raises:
        ValueError: ``backend: http`` without an ``http`` section (the settings already
            refuse it), or an unreadable ``ca_file``.
    """
    if settings.backend == "http":
        if settings.http is None:
            msg = "workorders.http is required when workorders.backend is http"
            raise ValueError(msg)
        return HttpWorkOrders(settings.http, log=log)
    return EmbeddedWorkOrders(store, prefix=settings.embedded.prefix)
