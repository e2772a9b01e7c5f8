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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cti.dialplan.contract import ENTERED_VARIABLE

__all__ = ["AdoptedFacts"]

# a line or dialled number: what a dial string / the number plan can hold
_NUMBER: Final = re.compile(r"\+?[0-9A-Za-z*#]{1,40}")
_TRANSFER_ID: Final = re.compile(r"[0-9A-Za-z._:-]{1,64}")
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
        line = values.get("CTI_LINE", "")
        dnis = values.get("CTI_DNIS", "")
        tid = values.get("CTI_TRANSFER_ID", "")
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
