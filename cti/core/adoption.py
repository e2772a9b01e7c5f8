"""Adopting a waiting call the daemon did not see arrive (after a restart, an AMI reconnect).

The call tracker learns a call's line from the ``VarSet`` of ``CTI_LINE`` and its wait
from the moment it entered ``cti-hold``. A call that was already waiting when the daemon
(re)connected showed neither: it is only listed by ``CoreShowChannels``, whose items carry
no channel variables. Taking it as it is would give its ticket and record an empty line,
department and dialled number and put it at the back of the line (issue 18, items 1, 4).

So the core first asks for the channel's variables (``ReadAdoptedChannel`` in
:mod:`cti.core.messages`, carried out with an AMI ``Status`` of that channel with
``Variables:``, one action for all of them) and takes the call when the answer
(``AdoptedChannelRead``) comes back:

* ``CTI_LINE`` / ``CTI_DNIS`` / ``CTI_TRANSFER_ID``: what the inbound dialplan set;
* ``CTI_VIA_NODE`` / ``CTI_VIA_DIALED`` / ``CTI_VIA_CALL_ID``: a county node's call, where
  it came from (checked by the tracker, :meth:`CallTracker.note_adopted`);
* ``CTI_ENTERED``: when ``cti-line`` put the call in the line (epoch seconds with ms,
  ``STRFTIME(,,%s.%3q)``): the call joins the one line at the place its wait gives it.
  Missing (a dialplan generated before this variable existed): the channel's age.

A call waiting in a fallback ``Queue()`` is also taken back: it is Redirected to
``cti-hold`` (or straight to a seat when one is ready), so app_queue stops ringing seats
behind the daemon's back. Everything here is pure; the values come from Asterisk and are
checked like any outside input.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from structlog.typing import FilteringBoundLogger

from cti.calls.tracker import CallTracker
from cti.core.hold import Holding
from cti.core.messages import (
    AdoptedChannelRead,
    Effect,
    MarkTaken,
    ReadAdoptedChannel,
    RedirectToSeat,
    RejectCall,
)
from cti.dialplan.contract import (
    DNIS_VARIABLE,
    ENTERED_VARIABLE,
    LINE_VARIABLE,
    TRANSFER_ID_VARIABLE,
    VIA_CALL_ID_VARIABLE,
    VIA_DIALED_VARIABLE,
    VIA_NODE_VARIABLE,
)
from cti.events import ChannelSnapshot
from cti.routing.dispatcher import Dispatcher

__all__ = ["AdoptedFacts", "Adoption", "Wait"]

# a line or dialled number: what a dial string / the number plan can hold
_NUMBER: Final = re.compile(r"\+?[0-9A-Za-z*#]{1,40}")
_TRANSFER_ID: Final = re.compile(r"[0-9A-Za-z._:-]{1,64}")
_VIA_VARIABLES: Final = frozenset({VIA_NODE_VARIABLE, VIA_DIALED_VARIABLE, VIA_CALL_ID_VARIABLE})
# an entry time older than this is not believed (a clock step, a forged variable)
_MAX_AGE_S: Final = 86_400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AdoptedFacts:
    """What the channel says about a call the daemon did not see arrive (checked)."""

    line: str = ""
    dnis: str = ""
    transfer_id: str = ""
    entered_at: float | None = None

    @classmethod
    def from_variables(cls, values: Mapping[str, str], *, now: float) -> AdoptedFacts:
        """Keep only values that look like what the dialplan sets; drop the rest."""
        line = values.get(LINE_VARIABLE, "")
        dnis = values.get(DNIS_VARIABLE, "")
        tid = values.get(TRANSFER_ID_VARIABLE, "")
        return cls(
            line=line if _NUMBER.fullmatch(line) else "",
            dnis=dnis if _NUMBER.fullmatch(dnis) else "",
            transfer_id=tid if _TRANSFER_ID.fullmatch(tid) else "",
            entered_at=_entered(values.get(ENTERED_VARIABLE, ""), now),
        )


def _entered(text: str, now: float) -> float | None:
    if len(text) > 32:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or not now - _MAX_AGE_S <= value <= now + 1.0:
        return None
    return min(value, now)  # the clocks of Asterisk and the daemon may differ a little


Wait = Callable[..., None]
"""The core's "a call is waiting in the holding loop": `wait(node, chan, at, out, *,
adopted, entered_at=None)` takes it (or notes it back in hold)."""


@dataclass(slots=True)
class _Adopting:
    """A waiting call the daemon did not see arrive, until its channel's variables are
    read back."""

    node: str
    chan: ChannelSnapshot
    from_fallback: bool


# Take-backs of one call from a fallback Queue() before it is left there: a daemon
# restart or an AMI outage takes one; more than a few means something keeps bouncing it.
MAX_TAKE_BACKS = 3


class Adoption:
    """Calls waiting when the daemon (re)connects, which it did not see arrive (issue 18,
    items 1 and 4): read their variables first, then take them at the place their wait
    gives them; take back the ones waiting in a fallback Queue()."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        tracker: CallTracker,
        hold: Holding,
        wait: Wait,
        log: FilteringBoundLogger,
        counts: Counter[str],
    ) -> None:
        self._dispatcher = dispatcher
        self._tracker = tracker
        self._hold = hold
        self._wait = wait
        self._log = log
        self._counts = counts
        self._adopting: dict[str, _Adopting] = {}  # call id -> waiting for its variables
        self._taken_back: Counter[str] = Counter()  # call id -> take-backs from fallback

    def ended(self, call_id: str) -> None:
        self._adopting.pop(call_id, None)
        self._taken_back.pop(call_id, None)

    def in_fallback(self, node: str, chan: ChannelSnapshot, at: float, out: list[Effect]) -> None:
        """`chan` waits in a fallback ``Queue()`` (the daemon was down, or its lease ran
        out while the AMI link was down)."""
        call_id = chan.linkedid
        held = self._hold.get(call_id)
        if held is None:
            self.adopt_or_wait(node, chan, at, out, from_fallback=True)
        elif held.channel == chan.channel and call_id in self._dispatcher.queue:
            # still in our line: back to the holding loop, or app_queue rings seats too
            self._taken_back[call_id] += 1
            if self._taken_back[call_id] > MAX_TAKE_BACKS:
                # the holding loop keeps handing it to Queue() (its lease check failing for
                # a reason the daemon cannot see, a dialplan edited under it): each take-back
                # would be a Redirect a second, forever. Queue() answers it; a seat the core
                # picks still gets it by Redirect, which takes it out of Queue() too.
                if self._taken_back[call_id] == MAX_TAKE_BACKS + 1:
                    self._counts["fallback_left_in_queue"] += 1
                    self._log.warning(
                        "fallback_take_backs_stopped",
                        linkedid=call_id,
                        node=node,
                        take_backs=MAX_TAKE_BACKS,
                    )
                return
            self._counts["fallback_taken_back"] += 1
            self._log.info("call_back_from_fallback", linkedid=call_id, node=node)
            self._out_of_fallback(call_id, out)

    def adopt_or_wait(
        self,
        node: str,
        chan: ChannelSnapshot,
        at: float,
        out: list[Effect],
        *,
        adopted: bool = True,
        from_fallback: bool = False,
    ) -> None:
        """A call in the holding loop (or a fallback queue): one the tracker did not see
        arrive (history incomplete) is taken only once its variables are read back."""
        call_id = chan.linkedid
        if call_id not in self._hold:
            active = self._tracker.call(node, call_id)
            if active is None or not active.history_complete:
                self._read_before_taking(node, chan, out, from_fallback=from_fallback)
                return
        self._wait(node, chan, at, out, adopted=adopted)
        if from_fallback:
            self._out_of_fallback(call_id, out)

    def _read_before_taking(
        self, node: str, chan: ChannelSnapshot, out: list[Effect], *, from_fallback: bool
    ) -> None:
        call_id = chan.linkedid
        pending = self._adopting.get(call_id)
        if pending is not None:  # listed and seen moving: one read is enough
            pending.from_fallback = pending.from_fallback or from_fallback
            return
        self._adopting[call_id] = _Adopting(node=node, chan=chan, from_fallback=from_fallback)
        # CTI_TAKEN first: a held call must not fall back while its variables are read
        out.append(MarkTaken(node=node, channel=chan.channel, call_id=call_id))
        out.append(ReadAdoptedChannel(node=node, channel=chan.channel, call_id=call_id))

    def read(self, item: AdoptedChannelRead, out: list[Effect]) -> None:
        pending = self._adopting.pop(item.call_id, None)
        if pending is None or pending.node != item.node:
            return  # ended meanwhile
        call_id, node = item.call_id, item.node
        if not item.ok and not item.connected:
            # the link went down: the resync after the next login lists the call again
            self._counts["adoption_read_lost"] += 1
            return
        facts = AdoptedFacts.from_variables(item.variables, now=item.at)
        active = self._tracker.call(node, call_id)
        if active is None:
            return
        self._tracker.note_adopted(
            node,
            call_id,
            line=facts.line,
            dialed=facts.dnis,
            transfer_id=facts.transfer_id,
            # a county node's call: the tracker checks these as it does their VarSets
            via={k: v for k, v in item.variables.items() if k in _VIA_VARIABLES},
        )
        if facts.entered_at is None and active.started_at > 0:
            # a dialplan without CTI_ENTERED: the channel's age (CoreShowChannels Duration)
            facts = AdoptedFacts(
                line=facts.line,
                dnis=facts.dnis,
                transfer_id=facts.transfer_id,
                entered_at=min(active.started_at, item.at),
            )
        self._log.info(
            "call_adoption_read",
            linkedid=call_id,
            node=node,
            ok=item.ok,
            line=facts.line,
            entered_at=facts.entered_at,
            from_fallback=pending.from_fallback,
        )
        if active.answered_by is not None:
            # a fallback queue member answered first: that call is served, leave it be
            self._counts["adopted_answered_in_fallback"] += 1
            self._log.info("call_answered_in_fallback", linkedid=call_id, seat=active.answered_by)
            return
        self._wait(node, pending.chan, item.at, out, adopted=True, entered_at=facts.entered_at)
        if pending.from_fallback:
            self._out_of_fallback(call_id, out)

    def _out_of_fallback(self, call_id: str, out: list[Effect]) -> None:
        """Redirect a call in a fallback ``Queue()`` to ``cti-hold``, unless routing just
        offered it (its Redirect to ``cti-connect`` takes it out of the queue itself) or
        it was rejected (blacklist)."""
        held = self._hold.get(call_id)
        if held is None:
            return
        held.in_hold = False
        if any(isinstance(e, RedirectToSeat | RejectCall) and e.call_id == call_id for e in out):
            return
        back = self._hold.send_back(call_id, "fallback")
        if back is not None:
            out.append(back)
