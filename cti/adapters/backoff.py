"""Reconnect delays shared by every adapter that supervises a connection."""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random | None = None) -> float:
    """Capped exponential backoff with full jitter: uniform(low, min(high, low * 2**attempt)).

    Full jitter spreads the reconnects of many clients (several CTI nodes, a broker
    restart) instead of making them hit the server in waves.
    """
    top = min(high, low * (2 ** min(attempt, 30)))
    return (rng or random).uniform(low, max(low, top))
