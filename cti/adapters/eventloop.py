"""Which asyncio event loop the daemon runs on: uvloop when installed and wanted (issue 12).

uvloop (libuv) schedules callbacks and drives sockets in C; under load most of the daemon's
non-database time is asyncio's own scheduling and transports. It is an optional dependency
(`pip install 'hotline-cti[fast]'`): without it, or with `event_loop: asyncio`, the
standard loop runs and nothing else changes.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from typing import Literal

__all__ = ["EventLoopChoice", "loop_factory"]

EventLoopChoice = Literal["auto", "uvloop", "asyncio"]


def loop_factory(
    choice: EventLoopChoice,
) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The loop factory for `asyncio.Runner` (None: the standard loop) and a note for the
    log: which loop runs, and why when uvloop was asked for but is not installed."""
    if choice == "asyncio":
        return None, "asyncio"
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None, "asyncio (uvloop not installed)" if choice == "uvloop" else "asyncio"
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory, "uvloop"
