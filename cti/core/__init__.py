"""The sans-IO core: events in, effects out (DESIGN.md). :mod:`cti.core.messages` holds the
inputs and effects (all that the adapters may know of the core); :class:`Core` composes the
parts (hold, screen, tickets, seat commands, 110 transfers, callbacks, escalation)."""

from cti.core.core import Core
from cti.core.messages import *  # noqa: F403 - the messages are the core's public face
from cti.core.messages import __all__ as _messages
from cti.core.screen import call_event
from cti.core.tickets import draft_for, ticket_origin

__all__ = ["Core", "call_event", "draft_for", "ticket_origin", *_messages]  # noqa: PLE0604
