"""The ``ha:`` section: an active/standby pair of daemons on one PostgreSQL.

See docs/high-availability.md.

Off by default: SQLite is one daemon on one machine. The margins are validated here so that
a configuration cannot make the two daemons act at once: the leader stops acting
``margin_s`` before the lease it last renewed runs out (its own clock), the standby takes
over only once the database's clock says the lease ran out.
"""

from __future__ import annotations

import os
import socket

from pydantic import BaseModel, Field, model_validator

from cti.settings.base import FROZEN, Seconds

__all__ = ["HaSettings", "default_node_id"]


def default_node_id() -> str:
    """host:pid: two daemons of one configuration on one host still differ."""
    return f"{socket.gethostname()}:{os.getpid()}"


class HaSettings(BaseModel):
    """Active/standby: one leader acts, the standby stays connected and takes over."""

    model_config = FROZEN

    enabled: bool = Field(
        default=False,
        description="Run as one of an active/standby pair on the same PostgreSQL database "
        "(refused on SQLite). Off: a single daemon.",
    )
    node_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="This daemon's name in the lease row, logs, /readyz and cti/status/<id> "
        "(CTI_HA_NODE_ID); none: host:pid.",
    )
    lease_s: Seconds = Field(
        default=3.0,
        description="How long a renewed lease lasts, on the database's clock. A dead or "
        "frozen leader is replaced after at most this plus renew_s (takeover target 5 s).",
    )
    renew_s: Seconds = Field(
        default=0.5,
        description="The leader renews the lease this often; the standby looks this often.",
    )
    margin_s: Seconds = Field(
        default=0.5,
        description="The leader stops acting this long before its lease runs out by its own "
        "clock (AMI actions in flight, clock rate drift); the standby acts only after.",
    )
    idle_in_transaction_s: Seconds = Field(
        default=1.5,
        description="PostgreSQL ends a session of this daemon left idle inside a transaction "
        "this long (a frozen leader's open write), so its lock on the lease row never holds "
        "the takeover back. Below lease_s.",
    )

    @model_validator(mode="after")
    def _margins(self) -> HaSettings:
        # at least two renewals fit in a lease after the margin: one lost renewal (a slow
        # database, a lock) is no step-down
        if self.lease_s - self.margin_s < 2 * self.renew_s:
            msg = "lease_s - margin_s must be at least twice renew_s"
            raise ValueError(msg)
        if self.idle_in_transaction_s >= self.lease_s:
            msg = "idle_in_transaction_s must be below lease_s"
            raise ValueError(msg)
        return self

    def node(self) -> str:
        return self.node_id or default_node_id()
