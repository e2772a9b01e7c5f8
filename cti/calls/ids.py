"""A call's id across nodes: ``<node>:<linkedid>``, built and split in one place.

A linkedid is unique on one Asterisk only, so what leaves the daemon (ticket drafts, call
records, the callback list, survey ratings) names a call by its node too. Code that needs
the parts asks :meth:`CallRef.parse` instead of splitting strings itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

__all__ = ["CallRef"]


@dataclass(frozen=True, slots=True)
class CallRef:
    """One call: the node it is on and its linkedid there."""

    node: str
    linkedid: str

    @classmethod
    def parse(cls, call_id: str) -> Self:
        """``"main:1700000000.1"`` -> ``CallRef("main", "1700000000.1")``; without a ``:`` the
        whole id is the node and the linkedid is empty (as ``str.partition`` splits)."""
        node, _, linkedid = call_id.partition(":")
        return cls(node, linkedid)

    def __str__(self) -> str:
        return f"{self.node}:{self.linkedid}"
