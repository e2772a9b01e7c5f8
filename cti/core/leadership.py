"""Leadership of an active/standby pair: the lease discipline, pure (time is passed in).

The lease itself is a row in PostgreSQL (cti/adapters/db/leader.py): its expiry is set by the
*database's* clock at each renewal, and a standby takes it only once the database's clock is
past that expiry, bumping the **epoch** (the fencing token). This module is what the leader
believes on its *own* clock, and when it must stop believing it:

* A renewal is sent at ``sent`` (monotonic) and the database stamps the expiry when it runs
  the statement, which is after ``sent``. So ``sent + lease_s`` is never later than the
  database's expiry, and the leader acts only until ``sent + lease_s - margin_s``. The
  margin covers an AMI action written to the socket just before that instant and still on
  its way to Asterisk, and the rate drift between two clocks over one lease (ppm: µs).
* The standby acts only after the database's expiry, hence at least ``margin_s`` after the
  old leader's last action by the old leader's own clock, whatever happened to it: killed,
  frozen (SIGSTOP) and resumed, cut off from the database.
* :meth:`Leadership.acting` is asked at the moment of every outward action (an AMI action, an
  MQTT publish, a ticket delivery), not a flag set by a task: a leader resumed after a
  freeze has every timer due at once, and whichever task runs first must already see that
  its lease is over. Writes are fenced by the database as well (the epoch), so a bug or a
  clock jump here still cannot double a ticket.

A leader that lost the lease never becomes leader again in the same process: its memory
(calls, seats, queued actions, rows not yet written) may be stale, so it steps down by
ending (the daemon exits with its own code and its supervisor starts it again, as a
standby): the restart path is the one tested path back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Leadership", "LeaseTerms", "Role", "StepDown"]


class Role(StrEnum):
    SOLO = "solo"  # ha off: always acting
    STANDBY = "standby"
    LEADER = "leader"
    STEPPED_DOWN = "stepped_down"  # was leader, lost it; the process ends


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseTerms:
    lease_s: float
    renew_s: float
    margin_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StepDown:
    """The leader lost the lease (what the daemon logs and exits with)."""

    epoch: int
    reason: str  # renew_refused | session_lost | lease_expired_locally | write_fenced


class Leadership:
    """What this daemon may do, on its own clock (see the module docstring)."""

    def __init__(self, node_id: str, terms: LeaseTerms | None) -> None:
        self.node_id = node_id
        self._terms = terms
        self.role = Role.SOLO if terms is None else Role.STANDBY
        self.epoch: int | None = None  # held (leader) or last held (stepped down)
        self.leader: str | None = node_id if terms is None else None  # as last seen
        self.leader_epoch: int | None = None
        self._valid_until = float("-inf")  # monotonic
        self.acquired_at: float | None = None  # monotonic, of the last acquisition
        self.stepped_down: StepDown | None = None

    @property
    def enabled(self) -> bool:
        return self._terms is not None

    def acting(self, now: float) -> bool:
        """May this daemon act (route, send AMI actions, publish, deliver) at `now`?"""
        if self.role is Role.SOLO:
            return True
        return self.role is Role.LEADER and now < self._valid_until

    def write_epoch(self, now: float) -> int:
        """The epoch a database write carries now; -1 (refused) when not acting."""
        if self.role is Role.SOLO:
            return 0
        if self.epoch is not None and self.acting(now):
            return self.epoch
        return -1

    def acquired(self, epoch: int, sent: float) -> None:
        """The lease is ours with `epoch`: the statement that took it was sent at `sent`."""
        if self._terms is None or self.role is not Role.STANDBY:
            return
        self.role = Role.LEADER
        self.epoch = epoch
        self.leader, self.leader_epoch = self.node_id, epoch
        self.acquired_at = sent
        self._extend(sent)

    def renewed(self, sent: float) -> None:
        if self.role is Role.LEADER:
            self._extend(sent)

    def seen(self, holder: str | None, epoch: int | None) -> None:
        """The lease row as a standby read it: who leads (for /readyz and cti/status)."""
        if self.role is Role.STANDBY:
            self.leader, self.leader_epoch = holder, epoch

    def expired(self, now: float) -> bool:
        """The leader's own clock is past what it may act on: it must step down."""
        return self.role is Role.LEADER and now >= self._valid_until

    def step_down(self, reason: str) -> StepDown | None:
        """Lose the lease (once); returns what happened, None when not leader."""
        if self.role is not Role.LEADER or self.epoch is None:
            return None
        self.role = Role.STEPPED_DOWN
        self._valid_until = float("-inf")
        self.stepped_down = StepDown(epoch=self.epoch, reason=reason)
        return self.stepped_down

    def remaining(self, now: float) -> float:
        """Seconds this leader may still act (0 when not acting)."""
        return max(0.0, self._valid_until - now) if self.role is Role.LEADER else 0.0

    def _extend(self, sent: float) -> None:
        t = self._terms
        if t is not None:  # a renewal sent earlier than one already seen never shortens it
            self._valid_until = max(self._valid_until, sent + t.lease_s - t.margin_s)

    def status(self) -> dict[str, object]:
        """Role, epoch and leader, as /readyz and cti/status show them."""
        return {
            "node": self.node_id,
            "role": str(self.role),
            "epoch": self.epoch if self.role is not Role.STANDBY else None,
            "leader": self.leader,
            "leader_epoch": self.leader_epoch,
        }
