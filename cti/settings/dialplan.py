"""The ``dialplan`` section: what ``cti dialplan`` needs beyond the number plan."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from cti.settings.base import FROZEN

__all__ = ["DialplanSettings"]


class DialplanSettings(BaseModel):
    """What ``cti dialplan`` needs beyond the number plan: holding, fallback, connecting.

    The generated contexts and the variables the daemon uses are described in
    docs/dialplan.md. Ring timeout and wrap-up come from ``numberplan.queue``.
    """

    model_config = FROZEN

    hold_timeout_s: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="A held call the daemon has not taken after this many seconds goes to "
        "the fallback Queue() (the daemon is down or lost the call).",
    )
    moh_class: str = Field(
        default="default",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
        max_length=80,
        description="musiconhold.conf class for holding, ringing and the fallback queue.",
    )
    recording_dir: str = Field(
        default="/var/spool/asterisk/monitor/hotline-cti",
        pattern=r"^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$",
        description="Absolute directory (on the Asterisk host) of the call recordings, "
        "<recording_dir>/<call id>.<recording_format>; MixMonitor creates it.",
    )
    recording_format: Literal["wav", "gsm", "wav49", "sln"] = Field(
        default="wav", description="Recording file format (and extension)."
    )
    dial_options: str = Field(
        default="mt",
        pattern=r"^[A-Za-z]*$",
        max_length=20,
        description="Dial() options when connecting a seat: m = the caller hears music while "
        "the seat rings, t = the seat may transfer (needed by AMI Atxfer).",
    )
    ivr_url: str = Field(
        default="agi://127.0.0.1:4573",
        pattern=r"^agi://[A-Za-z0-9.\-]+(:[0-9]{1,5})?$",
        description="Where Asterisk reaches the daemon's FastAGI server (ivr.listen_*): "
        "the survey and the progress query run <ivr_url>/survey, <ivr_url>/progress.",
    )
    survey: bool = Field(
        default=False,
        description="After the agent hangs up, keep the caller for the one-key satisfaction "
        "survey (满意度评价): Dial gets the g option, then AGI(<ivr_url>/survey).",
    )
    blocked_prompt: str = Field(
        default="vm-goodbye",
        pattern=r"^[A-Za-z0-9_./-]+$",
        max_length=128,
        description="What a blacklisted caller (treatment reject) hears before the line is "
        "cleared (a sound file, no extension).",
    )
    callback_dial: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9/@._${}-]*\$\{EXTEN\}[A-Za-z0-9/@._${}-]*$",
        max_length=128,
        description="How a callback (漏接电话回拨) dials the citizen, ${EXTEN} = the number: "
        "PJSIP/${EXTEN}@carrier; none = over the number plan's first trunk.",
    )
    announce_every_s: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="Waiting announcements (position and expected wait) every this many "
        "seconds to a call the daemon holds; 0 = none.",
    )
    announce_first_s: int = Field(
        default=30, ge=1, le=3600, description="The first announcement after this wait, s."
    )
    progress_number: str | None = Field(
        default=None,
        pattern=r"^[0-9]{3,20}$",
        description="A number citizens dial to hear their ticket's status (自助查询进度); "
        "none = no such number.",
    )
    fallback_skill_wait_s: int = Field(
        default=5,
        ge=0,
        le=3600,
        description="In the fallback, a call needing a skill other than the general one "
        "rings only its skill's seats this long; then, while they are all busy, the other "
        "general seats too (skilled seats still first). Keep it well under the 15 s answer "
        "target; 0 = the other seats at once when the skilled ones are busy.",
    )
    subcentre_timeout_s: int = Field(
        default=60,
        ge=1,
        le=600,
        description="A sub-centre line rings the external centre this long; unanswered, "
        "the call is answered by 12345 (general skill).",
    )
    agi_url: str | None = Field(
        default=None,
        pattern=r"^agis?://[A-Za-z0-9.:/_@-]+$",
        description="FastAGI run once after answering, before holding (announcements, "
        "survey opt-in), e.g. agi://127.0.0.1:4573/line; none = no AGI.",
    )
