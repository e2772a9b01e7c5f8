"""The ``supervision`` section: the supervisors (班长席) and what they may supervise
(docs/supervision.md).

A supervisor is, for now, a bearer-token principal: ``name`` is the name of a token in
``http.tokens`` that holds the ``supervise`` scope. A session-based user (issue 13's
browser pages) will resolve to the same :class:`SupervisorConfig` by name, so the rules do
not change when the login does.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from cti.settings.base import FROZEN

__all__ = ["SupervisionSettings", "SupervisorConfig"]

_NAME = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=64)]
_DIGITS = Annotated[str, Field(pattern=r"^[0-9]{2,20}$")]


class SupervisorConfig(BaseModel):
    """One supervisor: the lines whose seats they supervise, and their own phone."""

    model_config = FROZEN

    name: _NAME = Field(description="The principal: a token name of http.tokens (scope supervise).")
    lines: tuple[_DIGITS, ...] = Field(
        min_length=1,
        max_length=256,
        description="Line numbers (numberplan.lines) whose seats and calls this supervisor "
        "may listen to, coach, barge in on and force.",
    )
    endpoint: str | None = Field(
        default=None,
        pattern=r"^(PJSIP|SIP|IAX2|Local)/[A-Za-z0-9@._+-]{1,80}$",
        description="The supervisor's own phone (dial string), rung for listen/whisper/barge. "
        "None: state controls only.",
    )


class SupervisionSettings(BaseModel):
    """Supervisors and the spy call's ring time."""

    model_config = FROZEN

    supervisors: tuple[SupervisorConfig, ...] = Field(default=(), max_length=1000)
    ring_timeout_s: float = Field(
        default=30.0, gt=0, le=300, description="How long the supervisor's phone rings."
    )

    @model_validator(mode="after")
    def _unique(self) -> SupervisionSettings:
        names = [s.name for s in self.supervisors]
        if len(names) != len(set(names)):
            msg = "supervision.supervisors: each name once"
            raise ValueError(msg)
        return self

    def get(self, name: str) -> SupervisorConfig | None:
        """The supervisor of a principal's name, or ``None``."""
        return next((s for s in self.supervisors if s.name == name), None)
