"""Agent commands: the wire contract of ``cti/seats/{seat}/cmd`` (and the HTTP twin).

A command is one JSON object::

    {"cmd": "not_ready", "reason": "meal", "request_id": "r-42"}

Validated here, once, into a frozen :data:`SeatCommand`; anything else becomes a
:class:`CommandError` that the daemon sends back on ``cti/seats/{seat}/reply`` (or as an
HTTP 4xx) **and changes nothing**. Pure: no I/O.

| cmd | fields | effect |
|---|---|---|
| `login` | `ready` (bool, default false) | logged out -> not ready (login) or ready |
| `logout` | | -> logged out (after the current call: pending) |
| `ready` | | 示闲 |
| `not_ready` | `reason`: meal, meeting, training, rest, other | 示忙 (pending during a call) |
| `wrapup_done` | | ends 话后处理 now |
| `wrapup_extend` | `seconds` (1..3600) | more after-call work |
| `transfer` | `target`: line number or skill | 一键转接 to that department (back to the queue) |
| `escalate` | `target`: emergency number (110); `mode`: blind, threeway | to an emergency service |
| `leave` | | the agent drops out of its three-way call (caller + 110 stay) |

Every command may carry `request_id` (string, ≤ 64), echoed in the reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from cti.jsonin import JsonRefused, load_json
from cti.seats.model import AGENT_REASONS, Reason

__all__ = [
    "MAX_COMMAND_BYTES",
    "CommandError",
    "Escalate",
    "Leave",
    "Login",
    "Logout",
    "NotReady",
    "Ready",
    "RefusalCode",
    "SeatCommand",
    "Transfer",
    "WrapupDone",
    "WrapupExtend",
    "parse_seat_command",
]

MAX_COMMAND_BYTES: Final = 4096

_AgentReason = Literal["meal", "meeting", "training", "rest", "other"]
if {r.value for r in AGENT_REASONS} != set(_AgentReason.__args__):  # type: ignore[attr-defined]
    msg = "the agent reasons of the command schema and of the seat model differ"
    raise RuntimeError(msg)


class _Cmd(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    request_id: str | None = Field(default=None, max_length=64)


class Login(_Cmd):
    cmd: Literal["login"]
    ready: bool = False


class Logout(_Cmd):
    cmd: Literal["logout"]


class Ready(_Cmd):
    cmd: Literal["ready"]


class NotReady(_Cmd):
    cmd: Literal["not_ready"]
    reason: _AgentReason

    @property
    def reason_code(self) -> Reason:
        return Reason(self.reason)


class WrapupDone(_Cmd):
    cmd: Literal["wrapup_done"]


class WrapupExtend(_Cmd):
    cmd: Literal["wrapup_extend"]
    seconds: float = Field(gt=0, le=3600)


class Transfer(_Cmd):
    """一键转接: send the call this seat is talking to to another department — `target` is
    a line number of the plan (its skill) or a skill name."""

    cmd: Literal["transfer"]
    target: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")


class Escalate(_Cmd):
    """12345 -> 110/119/120/122: `target` is an emergency number of the plan
    (``numberplan.emergency``); `mode` blind (一键转接: the caller goes, the agent's leg
    ends) or threeway (三方通话: the operator joins caller and agent)."""

    cmd: Literal["escalate"]
    target: str = Field(min_length=3, max_length=20, pattern=r"^\+?[0-9]+$")
    mode: Literal["blind", "threeway"]


class Leave(_Cmd):
    """The agent drops out of its three-way escalation; caller and operator stay."""

    cmd: Literal["leave"]


SeatCommand = (
    Login | Logout | Ready | NotReady | WrapupDone | WrapupExtend | Transfer | Escalate | Leave
)
_ADAPTER: Final = TypeAdapter[SeatCommand](Annotated[SeatCommand, Field(discriminator="cmd")])


RefusalCode = Literal[
    "bad_json",
    "too_large",
    "invalid_command",
    "unknown_seat",
    "rejected",
    # the refusals of escalate and leave: docs/escalation.md
    "no_call",
    "unknown_target",
    "mode_not_allowed",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandError:
    """Why a command was refused; `fields` are `path: message` of each bad field."""

    code: RefusalCode
    message: str
    request_id: str | None = None
    fields: tuple[str, ...] = ()

    def reply(self) -> dict[str, Any]:
        return {
            "ok": False,
            "request_id": self.request_id,
            "error": {"code": self.code, "message": self.message, "fields": list(self.fields)},
        }


def _path(loc: tuple[int | str, ...], tag: object) -> tuple[int | str, ...]:
    return loc[1:] if len(loc) > 1 and loc[0] == tag else loc


def parse_seat_command(payload: bytes) -> SeatCommand | CommandError:
    """Validate one command payload. Never raises."""
    try:
        data = load_json(payload, max_bytes=MAX_COMMAND_BYTES)
    except JsonRefused as exc:
        return CommandError(code=exc.code, message=exc.message)
    request_id = data.get("request_id") if isinstance(data, dict) else None
    request_id = request_id if isinstance(request_id, str) and len(request_id) <= 64 else None
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        # pydantic puts the discriminator's value first in the path: drop it
        tag = data.get("cmd") if isinstance(data, dict) else None
        fields = tuple(
            f"{'.'.join(str(p) for p in _path(err['loc'], tag)) or '(root)'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        return CommandError(
            code="invalid_command",
            message="; ".join(fields),
            request_id=request_id,
            fields=fields,
        )
