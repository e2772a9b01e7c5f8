"""110 ⇄ 12345 (非警务警情分流): transfers pushed by the 110 dispatch system, matched to the
calls that arrive on the 110 line, and the status feedback owed to 110. Sans-IO: the
validation of pushes and the delivery of feedback are in `cti.adapters.dispatch110`."""

from cti.dispatch110.book import PushOutcome, TransferBook
from cti.dispatch110.model import FEEDBACK_EVENTS, Feedback110, Transfer110, TransferMode

__all__ = [
    "FEEDBACK_EVENTS",
    "Feedback110",
    "PushOutcome",
    "Transfer110",
    "TransferBook",
    "TransferMode",
]
