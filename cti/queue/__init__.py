"""The unified waiting queue: priority classes, order, aging, position, EWT, abandonment.

Pure and synchronous: no I/O, no asyncio; time is passed in.
"""

from cti.queue.ewt import HandleTimeEstimator, expected_wait
from cti.queue.model import Abandonment, Position, WaitingCall
from cti.queue.waiting import WaitingLine

__all__ = [
    "Abandonment",
    "HandleTimeEstimator",
    "Position",
    "WaitingCall",
    "WaitingLine",
    "expected_wait",
]
