"""File descriptors: raise the soft RLIMIT_NOFILE at start and check the budget fits.

Every connection costs a descriptor. Under the usual ``ulimit -n 1024`` a few hundred
slow HTTP clients once left none for the AMI reconnect (``Too many open files``) and the
FastAGI listener (``accept() out of system resource``): issue 16. The HTTP side is capped
(``http.max_connections``, :mod:`cti.adapters.http.guard`), FastAGI too
(``ivr.max_sessions``); this module makes sure the two caps plus a reserve for everything
else (AMI, MQTT, the database, the work-order and webhook HTTP pools, logs) fit the
process's limit, so AMI and FastAGI keep their descriptors whatever the HTTP side suffers.

The soft limit is raised to the hard one first (allowed without privileges): systemd's
default soft limit is 1024 even where the hard one is 512 K; the shipped unit
(deploy/systemd/hotline-cti.service) sets ``LimitNOFILE=`` explicitly.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Final

from cti.adapters.http.guard import refusing_slots
from cti.settings import Settings

__all__ = ["FD_RESERVE", "FdBudget", "fd_budget", "raise_nofile_limit"]

# descriptors kept for everything that is not an HTTP or FastAGI connection: AMI (one per
# node), MQTT, SQLite (+ journal), the httpx pools of the work-order backend and the
# webhooks (≤ 20 each), the listeners, stdio, the event loop's own
FD_RESERVE: Final = 128


@dataclass(frozen=True, slots=True)
class FdBudget:
    """What the configuration may hold open, against the process's limit."""

    http: int
    fastagi: int
    reserve: int
    limit: int

    @property
    def needed(self) -> int:
        return self.http + self.fastagi + self.reserve

    @property
    def fits(self) -> bool:
        return self.needed <= self.limit

    def problem(self) -> str:
        return (
            f"the file descriptor limit (RLIMIT_NOFILE) is {self.limit}, but "
            f"http.max_connections and its refusals ({self.http}) + "
            f"ivr.max_sessions ({self.fastagi}) + "
            f"{self.reserve} kept for AMI, MQTT and the database need {self.needed}: raise "
            "LimitNOFILE= in the systemd unit (deploy/systemd/hotline-cti.service) or lower "
            "http.max_connections"
        )


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard not in (resource.RLIM_INFINITY, soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft  # e.g. a sandbox that refuses: check against what we have
        soft = hard
    return soft


def fd_budget(settings: Settings, limit: int) -> FdBudget:
    """The descriptors *settings* may hold open, against *limit*."""
    cap = settings.http.max_connections
    return FdBudget(
        http=cap + refusing_slots(cap) if settings.http.enabled else 0,
        fastagi=settings.ivr.max_sessions if settings.ivr.enabled else 0,
        reserve=FD_RESERVE,
        limit=limit,
    )
