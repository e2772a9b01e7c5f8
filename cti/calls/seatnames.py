"""Which seat a channel is: the endpoint → seat lookup of the number plan (sans-IO, pure).

The tracker names every party after its channel (`party_name`), which for a SIP phone is
the phone's name (`PJSIP/6001-0000002a` → `6001`), not the seat the daemon rang through
it (seat `1001`, `endpoint: PJSIP/6001`). Every seat field of a call record, a
`cti/calls/events` message and a ticket comes from those names, so the core gives the
tracker :func:`seat_namer` of its plan: a channel created by dialling a seat's endpoint is
named by that seat's id; any other channel keeps its `party_name`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cti.calls.tracker import party_name

__all__ = ["channel_endpoint", "endpoint_key", "seat_namer"]


def endpoint_key(endpoint: str) -> str:
    """The part of a dial string that names the channels it creates, lower-cased.

    `PJSIP/6001` → `pjsip/6001`; `PJSIP/1234@carrier` → `pjsip/carrier` (PJSIP names
    the channel after the endpoint, not the number); `Local/1001@seats/n` →
    `local/1001@seats` (Local options are not in the channel name); `SIP/6001/1234` →
    `sip/6001`.
    """
    tech, _sep, resource = endpoint.partition("/")
    resource = resource.split("/", 1)[0]
    if tech.lower() == "pjsip" and "@" in resource:
        resource = resource.rpartition("@")[2]
    return f"{tech}/{resource}".lower()


def channel_endpoint(channel: str) -> str:
    """The key (:func:`endpoint_key`) of the dial string a channel came from.

    `PJSIP/6001-0000002a` → `pjsip/6001`; `Local/1001@seats-00000001;2` →
    `local/1001@seats`; a name without a sequence number is returned lower-cased.
    """
    name = channel
    if name.startswith("Local/") and name[-2:] in {";1", ";2"}:
        name = name[:-2]
    tech, sep, rest = name.partition("/")
    if sep:
        base, dash, _seq = rest.rpartition("-")
        if dash:
            rest = base
    return f"{tech}{sep}{rest}".lower()


def seat_namer(seats: Mapping[str, str]) -> Callable[[str], str]:
    """`channel → party name` for a plan whose seats are `{endpoint: seat id}`.

    A channel of a seat's endpoint is named by the seat id; every other channel (callers,
    trunks, a dial string the plan does not know) by :func:`party_name`. Two seats on one
    endpoint: the first one wins (the plan should not have them).
    """
    by_key: dict[str, str] = {}
    for endpoint, seat_id in seats.items():
        by_key.setdefault(endpoint_key(endpoint), seat_id)

    def name_of(channel: str) -> str:
        seat = by_key.get(channel_endpoint(channel))
        return seat if seat is not None else party_name(channel)

    return name_of
