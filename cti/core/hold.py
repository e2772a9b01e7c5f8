"""Held channels and the lease: how the core moves a waiting caller (docs/dialplan.md).

The dialplan contract (:mod:`cti.dialplan.contract`):

* a channel entering ``cti-hold`` for the first time is a call waiting for a seat:
  :class:`~cti.core.messages.MarkTaken` tells Asterisk the daemon has it, so the holding
  loop does not fall back to ``Queue()`` while the daemon's lease is valid;
* an offer is a :class:`~cti.core.messages.RedirectToSeat` of the held channel to
  ``cti-connect``;
* a call that comes back to ``cti-hold`` while offered means the dialplan's ``Dial`` gave
  up (no answer, busy, unavailable): ring no answer. A return the core caused itself
  (:class:`~cti.core.messages.ReturnToHold`) is expected, counted here, and ignored.

The lease: every ``lease_every_s`` the core asks for
:class:`~cti.core.messages.RenewLease` (the global ``CTI_LEASE_UNTIL`` on every connected
node). If the daemon dies, its calls fall back to the plain queue when the lease runs out.
"""

from __future__ import annotations

from dataclasses import dataclass

from cti.core.messages import MarkTaken, RedirectToSeat, RenewLease, ReturnToHold
from cti.routing import commands as rc

__all__ = ["Held", "Holding"]


@dataclass(slots=True)
class Held:
    """A caller's channel the daemon has taken (mutable: only the core changes it)."""

    node: str
    channel: str
    in_hold: bool = True
    expected_returns: int = 0  # ReturnToHold we issued whose cti-hold entry is still to come


class Holding:
    """The held channels by call id, and the lease per connected node."""

    def __init__(self, *, lease_s: float, lease_every_s: float) -> None:
        self._held: dict[str, Held] = {}
        self._nodes: set[str] = set()
        self._lease_s = lease_s
        self._lease_every_s = lease_every_s
        self._lease_due = 0.0

    def get(self, call_id: str) -> Held | None:
        return self._held.get(call_id)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._held

    def take(self, node: str, channel: str, call_id: str) -> MarkTaken:
        """The daemon has the call now: ``CTI_TAKEN=1`` on its channel."""
        self._held[call_id] = Held(node=node, channel=channel)
        return MarkTaken(node=node, channel=channel, call_id=call_id)

    def drop(self, call_id: str) -> None:
        self._held.pop(call_id, None)

    def left_hold(self, call_id: str, channel: str) -> None:
        """The caller's channel entered ``cti-connect`` (the offer's Redirect arrived)."""
        held = self._held.get(call_id)
        if held is not None and held.channel == channel:
            held.in_hold = False

    def offer(self, c: rc.ConnectCall) -> RedirectToSeat | None:
        held = self._held.get(c.call_id)
        if held is None:
            return None
        return RedirectToSeat(
            node=held.node,
            channel=held.channel,
            call_id=c.call_id,
            seat_id=c.seat_id,
            endpoint=c.endpoint,
            ring_timeout_s=c.ring_timeout_s,
        )

    def send_back(self, call_id: str, reason: str) -> ReturnToHold | None:
        """Back to ``cti-hold``, out of a ringing Dial (or a fallback ``Queue()``); its
        arrival there is expected, so it is not taken for a ring-no-answer."""
        held = self._held.get(call_id)
        if held is None:
            return None
        held.in_hold = False
        held.expected_returns += 1
        return ReturnToHold(node=held.node, channel=held.channel, call_id=call_id, reason=reason)

    # ---- the lease

    def node_up(self, node: str, at: float) -> RenewLease:
        self._nodes.add(node)
        return RenewLease(node=node, until=at + self._lease_s)

    def node_down(self, node: str) -> None:
        self._nodes.discard(node)

    def renew(self, now: float) -> list[RenewLease]:
        if not self._nodes or now < self._lease_due:
            return []
        self._lease_due = now + self._lease_every_s
        return [RenewLease(node=n, until=now + self._lease_s) for n in sorted(self._nodes)]

    def next_deadline(self) -> float:
        return self._lease_due if self._nodes else float("inf")
