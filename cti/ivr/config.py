"""What the IVR flows are configured with: prompts, keys, timeouts (``ivr.*`` in the file).

Pydantic models only, no file reading: :mod:`cti.ivr.flows` takes them as arguments and
stays pure, and :mod:`cti.settings.schema` composes them into ``IvrSettings`` (the way
:mod:`cti.numberplan` serves both sides for the number plan).
"""

from __future__ import annotations

import json
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = [
    "AnnounceSettings",
    "CallbackOfferSettings",
    "ProgressQuerySettings",
    "Prompt",
    "SurveySettings",
    "VoicemailSettings",
]


# The same as cti.settings.base: importing that would run cti/settings/__init__, which
# loads yaml; a pure package must not.
_FROZEN: Final = ConfigDict(frozen=True, extra="forbid")
_Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]

Prompt = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_./-]+$",
        max_length=128,
        description="A sound file as Asterisk names it: no extension, relative to the sounds "
        "directory (hotline/survey-zh) or absolute.",
    ),
]


class SurveySettings(BaseModel):
    """The one-key satisfaction survey after the agent hangs up (一次一评)."""

    model_config = _FROZEN

    def __hash__(self) -> int:  # frozen, but its dict fields are not hashable as such
        return hash(json.dumps(self.model_dump(), sort_keys=True, ensure_ascii=False))

    prompt: Prompt = Field(default="beep", description='"Please rate: 1 very satisfied …"')
    invalid: Prompt = Field(default="pbx-invalid", description="A key not on the scale.")
    thanks: Prompt = Field(default="auth-thankyou", description="After a rating.")
    scale: dict[int, str] = Field(
        default_factory=lambda: {1: "非常满意", 2: "满意", 3: "基本满意", 4: "不满意"},
        description="Key -> rating stored on the ticket and the call record.",
    )
    unsatisfied: tuple[int, ...] = Field(
        default=(4,), description="Keys that flag the ticket (a return visit is owed)."
    )
    timeout_s: _Seconds = Field(default=10.0, description="Wait for the key, s.")
    attempts: int = Field(default=2, ge=1, le=5, description="Tries before giving up.")

    @field_validator("scale")
    @classmethod
    def _keys_are_digits(cls, value: dict[int, str]) -> dict[int, str]:
        if not value or any(not 0 <= k <= 9 for k in value):
            msg = "keys must be single digits 0-9, at least one"
            raise ValueError(msg)
        return value

    @field_validator("unsatisfied")
    @classmethod
    def _unsatisfied_on_scale(cls, value: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        scale = info.data.get("scale") or {}
        if missing := [k for k in value if k not in scale]:
            msg = f"keys not on the scale: {missing}"
            raise ValueError(msg)
        return value


class ProgressQuerySettings(BaseModel):
    """Self-service progress query (自助查询进度): a ticket number by DTMF, its status read."""

    model_config = _FROZEN

    def __hash__(self) -> int:  # frozen, but its dict fields are not hashable as such
        return hash(json.dumps(self.model_dump(), sort_keys=True, ensure_ascii=False))

    prompt: Prompt = Field(
        default="vm-enter-num-to-call", description='"Enter your ticket number, then #"'
    )
    not_found: Prompt = Field(default="vm-nonumber", description="No such ticket.")
    goodbye: Prompt = Field(default="vm-goodbye")
    status_prompts: dict[str, Prompt] = Field(
        default_factory=lambda: {
            "受理": "vm-received",
            "派单": "vm-forward",
            "签收": "vm-saved",
            "办理": "vm-review",
            "办结": "vm-msgsaved",
            "回访": "vm-tocallback",
            "归档": "vm-savedto",
        },
        description="Ticket status -> the sound that says it.",
    )
    unknown_status: Prompt = Field(
        default="vm-sorry", description="A status with no sound of its own."
    )
    timeout_s: _Seconds = Field(default=15.0, description="Wait for the digits, s.")
    attempts: int = Field(default=3, ge=1, le=5)


class AnnounceSettings(BaseModel):
    """What a waiting caller hears (dialplan.announce_every_s turns it on)."""

    model_config = _FROZEN

    ahead: Prompt = Field(default="queue-thereare", description='"There are …"')
    calls_waiting: Prompt = Field(
        default="queue-callswaiting", description='"… calls waiting ahead of you"'
    )
    you_are_next: Prompt = Field(default="queue-youarenext", description="First in line.")
    hold_time: Prompt = Field(default="queue-holdtime", description='"The expected wait is …"')
    minutes: Prompt = Field(default="queue-minutes")
    less_than: Prompt = Field(default="queue-less-than", description='"less than" (1 minute)')
    thanks: Prompt = Field(default="queue-thankyou", description="Thanks for waiting.")
    max_wait_minutes: int = Field(
        default=30, ge=1, le=600, description="Longer expected waits are not announced."
    )


class CallbackOfferSettings(BaseModel):
    """After a waiting announcement: "press 1 to be called back, keeping your place"."""

    model_config = _FROZEN

    enabled: bool = Field(default=False, description="Offer it (needs announcements).")
    min_ewt_s: _Seconds = Field(
        default=120.0,
        description="Offer it when the expected wait is at least this long, or unknown (no "
        "staffed seat can take the call), s.",
    )
    prompt: Prompt = Field(default="vm-tocallback", description='"Press 1 to be called back"')
    key: str = Field(default="1", pattern=r"^[0-9*#]$")
    message_key: str | None = Field(
        default=None,
        pattern=r"^[0-9*#]$",
        description="Overload voicemail: this key leaves a message instead (ivr.voicemail "
        "prompts); it goes on the call's ticket and the caller's wait ends. None = no "
        "such option. The prompt should name both keys.",
    )
    confirm: Prompt = Field(default="auth-thankyou", description="Before the line is cleared.")
    timeout_s: _Seconds = Field(default=4.0, description="Wait for the key, s.")


class VoicemailSettings(BaseModel):
    """After hours (留言): a line outside its business hours takes a message, which becomes
    a ticket with the recording (docs/ivr.md)."""

    model_config = _FROZEN

    greeting: Prompt = Field(
        default="vm-intro", description='"We are closed; leave a message after the tone"'
    )
    goodbye: Prompt = Field(default="vm-goodbye", description="After the message.")
    max_s: int = Field(default=120, ge=5, le=600, description="Longest message, s.")
    silence_s: int = Field(
        default=5, ge=0, le=60, description="Silence that ends the message, s (0 = never)."
    )
    min_s: _Seconds = Field(
        default=1.0,
        le=60,
        description="A message shorter than this (the caller hung up at the tone) makes no "
        "ticket, s.",
    )
