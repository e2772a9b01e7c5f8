"""Routing policy (pure: which seat, which call, overflow, sticky agent, language) and the
dispatcher that combines it with the queue and the seats.

Pure and synchronous: no I/O, no asyncio; time is passed in.
"""

from cti.routing.commands import (
    CallAnswered,
    CancelRing,
    Command,
    CommandRejected,
    ConnectCall,
    PublishQueueSnapshot,
    PublishSeatState,
    QueueSnapshot,
    RecordAbandonment,
    StartTimer,
    TransferOut,
)
from cti.routing.dispatcher import RING_TIMER, Dispatcher, IncomingCall
from cti.routing.policy import BASE, Decision, match, pick_call, pick_seat
from cti.routing.rules import OverflowRule, RoutingRules, SeatCandidate, SeatProfile

__all__ = [
    "BASE",
    "RING_TIMER",
    "CallAnswered",
    "CancelRing",
    "Command",
    "CommandRejected",
    "ConnectCall",
    "Decision",
    "Dispatcher",
    "IncomingCall",
    "OverflowRule",
    "PublishQueueSnapshot",
    "PublishSeatState",
    "QueueSnapshot",
    "RecordAbandonment",
    "RoutingRules",
    "SeatCandidate",
    "SeatProfile",
    "StartTimer",
    "TransferOut",
    "match",
    "pick_call",
    "pick_seat",
]
