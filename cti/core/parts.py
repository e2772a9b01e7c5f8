"""What the parts of the core are handed by :class:`cti.core.core.Core`, which composes
them: parts never import the core; they get the dispatcher's command router as a callable,
the way hypercorn hands a stream its ``send``."""

from __future__ import annotations

from collections.abc import Callable

from cti.core.messages import Effect
from cti.routing import commands as rc

__all__ = ["Route"]

Route = Callable[[list[rc.Command], list[Effect]], None]
"""Carry out the dispatcher's commands (offers, seat states, snapshots) into `out`."""
