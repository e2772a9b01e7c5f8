"""The daemon's one way into the core, as the capability glue sees it.

Every input goes through `Daemon.feed`: the core handles it and the effects are carried
out. A caller that answers a request itself (the HTTP API, a 110 push) passes `keep` and
gets those effects back instead of having them carried out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cti.core import CoreInput, Effect

__all__ = ["Feed", "Tally"]


class Feed(Protocol):
    """`Daemon.feed`: hand one input to the core; never raises."""

    def __call__(
        self, item: CoreInput, *, keep: Callable[[Effect], bool] | None = None
    ) -> list[Effect]: ...


@dataclass(slots=True)
class Tally:
    """What `Daemon.feed` counts, for /metrics and the last log line (mutable counters)."""

    inputs: int = 0  # inputs handled by the core
    calls_ended: int = 0  # call records handed to the record writer
