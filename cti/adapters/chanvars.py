"""Reading an adopted call's channel variables back from Asterisk (cti/core/adoption.py).

One AMI ``Status`` of the channel with ``Variables: A,B,...`` answers them all in one
round trip (checked on Asterisk 22: a ``Status`` event whose ``Variable`` header repeats as
``NAME=value``, ``(null)`` for one that is not set), where ``Getvar`` would need one action
per variable. ``CoreShowChannels`` has no way to ask for variables, and ``channelvars`` in
manager.conf would add them to every event of every channel.
"""

from __future__ import annotations

import time
from typing import Any, Final

from cti.adapters.ami import AmiClient, AmiError
from cti.core.messages import AdoptedChannelRead, ReadAdoptedChannel

__all__ = ["read_adopted_channel"]


async def read_adopted_channel(
    client: AmiClient, effect: ReadAdoptedChannel, *, log: Any, timeout: float = 5.0
) -> AdoptedChannelRead:
    """The variables of `effect.channel`; never raises (a failure is ``ok=False``)."""
    try:
        reply = await client.action(
            {"Action": "Status", "Channel": effect.channel, "Variables": ",".join(effect.names)},
            timeout=timeout,
        )
    except (AmiError, ValueError) as exc:  # ValueError: a line break in the channel name
        log.warning(
            "adoption_read_failed", linkedid=effect.call_id, channel=effect.channel, error=str(exc)
        )
        return AdoptedChannelRead(
            node=effect.node,
            call_id=effect.call_id,
            channel=effect.channel,
            ok=False,
            connected=client.connected,
            at=time.time(),
        )
    variables: dict[str, str] = {}
    for item in reply.items:
        if item.name == "Status" and item.headers.get("Linkedid", effect.call_id) == effect.call_id:
            variables.update(parse_status_variables(item.headers.get("Variable", "")))
    wanted = set(effect.names)
    return AdoptedChannelRead(
        node=effect.node,
        call_id=effect.call_id,
        channel=effect.channel,
        variables={k: v for k, v in variables.items() if k in wanted},
        at=time.time(),
    )


_NULL: Final = "(null)"  # what Status prints for a variable that is not set


def parse_status_variables(text: str) -> dict[str, str]:
    """The ``Variable`` header of a ``Status`` event (``NAME=value`` per occurrence, joined
    with newlines by the wire decoder) as a dict; unset variables (``(null)``) left out."""
    out: dict[str, str] = {}
    for item in text.split("\n"):
        name, sep, value = item.partition("=")
        if sep and name and value != _NULL:
            out[name.strip()] = value
    return out
