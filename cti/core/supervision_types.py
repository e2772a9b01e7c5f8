"""The messages of supervision (docs/supervision.md): the supervisor's request going in,
the spy channel's AMI effects and the audit entry coming out. Frozen dataclasses; kept
apart from :mod:`cti.core.messages` (which unions them) so that the part
:mod:`cti.core.supervision` and the messages import each other in one direction only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

__all__ = [
    "SPY_ID_PREFIX",
    "SPY_MODES",
    "SUPERVISOR_ACTIONS",
    "AuditEntry",
    "SpyMode",
    "StartSpy",
    "StopSpy",
    "StoreAudit",
    "Supervisor",
    "SupervisorAction",
    "SupervisorRequested",
    "SwitchSpy",
]

SpyMode = Literal["listen", "whisper", "barge"]
SupervisorAction = Literal["listen", "whisper", "barge", "stop", "ready", "not_ready", "logout"]
SPY_MODES: Final[frozenset[str]] = frozenset(get_args(SpyMode))
SUPERVISOR_ACTIONS: Final[tuple[str, ...]] = get_args(SupervisorAction)
SPY_ID_PREFIX: Final = "ctispy-"
"""The spy channel's Uniqueid (and so its linkedid): its "call" is no citizen's and is not
recorded (like the prompt check's)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Supervisor:
    """Who asks: a principal's name (a bearer token's now, a session user's later), the
    lines they supervise and their own phone (``None``: state controls only)."""

    name: str
    lines: frozenset[str]
    endpoint: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorRequested:
    """A supervisor's action on a seat (validated at the edge: `action` is one of
    :data:`SUPERVISOR_ACTIONS`; `reason` is the not-ready reason)."""

    supervisor: Supervisor
    action: SupervisorAction
    seat: str
    reason: str | None = None
    request_id: str | None = None
    ring_timeout_s: float = 30.0
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StartSpy:
    """Originate the supervisor's phone (`endpoint`) into ``cti-spy,<mode>,1``, which runs
    ``ChanSpy`` on `target` (the agent's channel). `spy_id` is the new channel's Uniqueid."""

    node: str
    spy_id: str
    endpoint: str
    target: str
    mode: SpyMode
    call_id: str
    supervisor: str
    timeout_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchSpy:
    """Switch the running ChanSpy to `mode`: its ``d`` option's digit (4/5/6) queued on
    the spy channel as if the supervisor had pressed it (the phone keeps its call)."""

    node: str
    channel: str
    mode: SpyMode
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StopSpy:
    """Hang up the spy channel."""

    node: str
    channel: str
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One supervisor action and what came of it (the ``supervision_audit`` table and
    ``cti/supervision/audit``). `result` is ``ok`` or ``refused``; `code` says why."""

    at: float
    supervisor: str
    action: str
    seat: str
    call_id: str | None
    result: Literal["ok", "refused"]
    code: str | None = None
    detail: str = ""
    request_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "supervisor": self.supervisor,
            "action": self.action,
            "seat": self.seat,
            "call_id": self.call_id,
            "result": self.result,
            "code": self.code,
            "detail": self.detail,
            "request_id": self.request_id,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreAudit:
    """Write one audit entry."""

    entry: AuditEntry
