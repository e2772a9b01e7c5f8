"""The id of a call across Asterisk nodes: ``<node>:<linkedid>``.

A Linkedid is unique only on its own node, so everything stored or sent outside the daemon
(call records, the outbox's idempotency keys, tickets, the callback list) names a call by
node and Linkedid together. A 110 data transfer's ticket has no call: its id is
``110:<transfer id>`` (:data:`DATA_TRANSFER_NODE`). One type, so the string is built and
split in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Self

__all__ = ["DATA_TRANSFER_NODE", "CallRef"]

DATA_TRANSFER_NODE: Final = "110"


@dataclass(frozen=True, slots=True)
class CallRef:
    node: str
    linkedid: str

    @classmethod
    def parse(cls, text: str) -> Self:
        """``main:1733212345.12`` -> CallRef("main", "1733212345.12").

        Raises:
            ValueError: no ``:`` in `text`, or an empty part.
        """
        node, sep, linkedid = text.partition(":")
        if not sep or not node or not linkedid:
            msg = f"not a call id <node>:<linkedid>: {text!r}"
            raise ValueError(msg)
        return cls(node, linkedid)

    @property
    def is_data_transfer(self) -> bool:
        """A 110 data transfer's ticket (no call): `linkedid` is the transfer id."""
        return self.node == DATA_TRANSFER_NODE

    def __str__(self) -> str:
        return f"{self.node}:{self.linkedid}"
