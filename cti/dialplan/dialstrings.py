"""Dial strings of the number plan's endpoints and trunks, checked so that a name can never
change the dialplan: used by the generator and by the core (an escalation's leg)."""

from __future__ import annotations

import re
from typing import Final

from cti.numberplan import EmergencyTarget, EndpointTech, NumberPlan, endpoint_tech

__all__ = ["DialplanError", "dial_string", "emergency_dial", "trunk_dial"]

_DIAL_SAFE: Final = re.compile(r"^[A-Za-z0-9/@._+-]+$")


class DialplanError(ValueError):
    """The configuration cannot be turned into a dialplan (names the item)."""


def dial_string(endpoint: str, where: str) -> str:
    if not _DIAL_SAFE.match(endpoint):
        msg = f"{where}: endpoint {endpoint!r} has characters a dial string cannot carry"
        raise DialplanError(msg)
    return endpoint


def trunk_dial(endpoint: str, number: str) -> str:
    """The dial string of *number* over a trunk whose endpoint is *endpoint*."""
    tech = endpoint_tech(endpoint)
    resource = endpoint.partition("/")[2]
    if tech is EndpointTech.PJSIP:
        return f"PJSIP/{number}@{resource}"
    if tech is EndpointTech.LOCAL:  # Local/<context> or Local/<anything>@<context>
        return f"Local/{number}@{resource.rpartition('@')[2]}"
    return f"{endpoint}/{number}"  # SIP/peer/n, IAX2/peer/n, DAHDI/g1/n


def emergency_dial(plan: NumberPlan, target: EmergencyTarget) -> str:
    """The dial string of an emergency service: its endpoint, or its number over its trunk.

    Raises:
        DialplanError: a trunk that is not in the plan, or characters a dial string cannot
            carry.
    """
    where = f"emergency {target.number}"
    if target.endpoint is not None:
        return dial_string(target.endpoint, where)
    trunk = next((t for t in plan.trunks if t.name == target.trunk), None)
    if trunk is None:
        msg = f"{where}: unknown trunk {target.trunk!r}"
        raise DialplanError(msg)
    return dial_string(trunk_dial(trunk.endpoint, target.number), f"{where} trunk")
