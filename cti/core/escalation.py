"""Escalating a call to an emergency service (12345 -> 110/119/120/122): the effects the
core emits and the AMI actions that carry them out. Sans-IO: no asyncio, no sockets.

The decisions live in :class:`cti.core.Core` (its "escalation" section), which knows the
seat, the caller's channel and the call; this module holds what leaves the core and what
the core remembers about an escalated call. docs/escalation.md tells the whole story,
including the Asterisk 22 behaviour it relies on (measured on the testbed):

* **blind** (一键转接): AMI ``Redirect`` of the caller's channel to
  ``cti-escalate,<number>,1`` (generated from ``numberplan.emergency``). The caller leaves
  the seat's ``Dial``, which ends the seat's leg; the dialplan ``Dial``s the service.
* **threeway** (三方通话): AMI ``Originate`` of the service's dial string with
  ``Application=BridgeAdd``, ``Data=<the caller's channel>``: once the operator answers,
  its channel joins the bridge the caller shares with the seat (Asterisk turns the
  two-party bridge into a multi-party mixing one). The caller's ``Dial`` stays where it is.
* **leave**: AMI ``Hangup`` of the seat's channel only. The bridge Dial made is *not*
  dissolved by that hangup: caller and operator stay connected.
"""

from __future__ import annotations

from dataclasses import dataclass

from cti.numberplan import EscalationMode

__all__ = ["Escalation", "leg_ids"]


@dataclass(slots=True, kw_only=True)
class Escalation:
    """What the core remembers of one escalated call until it ends."""

    call_id: str
    node: str
    seat: str
    number: str
    mode: EscalationMode
    at: float
    seat_channel: str = ""  # the seat's leg (threeway: what `leave` hangs up)
    leg_ids: tuple[str, ...] = ()  # threeway: the operator leg's Uniqueids
    endpoint: str = ""
    leg_channel: str = ""  # threeway: the operator leg's channel while it exists
    leg_up: bool = False  # threeway: the operator's leg entered the caller's bridge
    released: bool = False  # the seat is out of the call (blind, or left the three-way)


def leg_ids(call_id: str, at: float) -> tuple[str, str]:
    """Uniqueids for the operator's leg (``;1`` and ``;2`` of a Local channel).

    Asterisk refuses an Originate whose ChannelId is a *prefix* of a live channel's
    Uniqueid (docs/ami.md), so neither id may start another: both end in a distinct
    ``-1``/``-2``, and the milliseconds keep two escalations of one call apart. They do not
    start with the call id either, which *is* a live Uniqueid (the caller's).
    """
    stem = f"esc{round(at * 1000)}-{call_id}"
    return f"{stem}-1", f"{stem}-2"
