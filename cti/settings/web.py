"""The ``web`` section: the browser pages' users, roles, sessions and login lockout.

People log in to the browser pages (``/console`` for agents) with a name and a password;
machines keep the bearer tokens of ``http.tokens``. A password is stored only as its argon2
hash (``cti hash-password`` prints one), never in clear.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from cti.settings.base import FROZEN, Seconds

__all__ = ["WebRole", "WebSettings", "WebUser"]

WebRole = Literal["agent", "supervisor", "admin"]
"""agent: one seat (its own console, its own stream); supervisor: a set of lines; admin:
everything."""


class WebUser(BaseModel):
    """One person who logs in to the browser pages."""

    model_config = FROZEN

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=32,
        description="The login name.",
    )
    role: WebRole = Field(description="agent | supervisor | admin.")
    password_hash: str = Field(
        pattern=r"^\$argon2id?\$",
        max_length=256,
        description="The password's argon2 hash (`cti hash-password`); never the password.",
    )
    seat: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
        max_length=32,
        description="agent: the seat id this agent works at (required for an agent).",
    )
    lines: tuple[str, ...] = Field(
        default=(),
        description="supervisor: the line numbers (and their seats) this supervisor oversees.",
    )
    endpoint: str | None = Field(
        default=None,
        pattern=r"^(PJSIP|SIP|IAX2|Local)/[A-Za-z0-9@._+-]{1,80}$",
        description="supervisor, admin: their own phone (dial string), rung into ChanSpy "
        "for the board's 监听/耳语/强插 (docs/board.md). None: state controls only.",
    )
    display_name: str = Field(default="", max_length=64, description="Shown on the page.")
    disabled: bool = Field(
        default=False,
        description="Refused at login, its sessions ended (at `cti reload` too), its entry "
        "kept: an agent on leave, a supervisor moved, without losing the hash.",
    )
    test_only: bool = Field(
        default=False,
        description="Marks a user of the testbed (scripts/dev run); the daemon warns at "
        "start when one is configured, as a production file must hold none.",
    )

    @model_validator(mode="after")
    def _seat_for_agents(self) -> WebUser:
        if self.role == "agent" and self.seat is None:
            msg = f"web user {self.name!r}: an agent needs `seat`"
            raise ValueError(msg)
        if self.role != "agent" and self.seat is not None:
            msg = f"web user {self.name!r}: only an agent is bound to a seat"
            raise ValueError(msg)
        if self.role == "agent" and self.endpoint is not None:
            msg = f"web user {self.name!r}: an agent's phone is its seat's, not `endpoint`"
            raise ValueError(msg)
        if self.role != "supervisor" and self.lines:
            msg = f"web user {self.name!r}: only a supervisor has `lines`"
            raise ValueError(msg)
        return self


class WebSettings(BaseModel):
    """The browser pages (docs/console.md): users, sessions, lockout, the live streams."""

    model_config = FROZEN

    users: tuple[WebUser, ...] = Field(
        default=(), description="Who may log in; none = the pages answer only the login page."
    )
    session_ttl_s: Seconds = Field(
        default=12 * 3600.0,
        le=7 * 86_400,
        description="A session ends this long after its login (a shift).",
    )
    session_idle_s: Seconds = Field(
        default=3600.0,
        le=86_400,
        description="A session unused (no request, no open stream) this long ends.",
    )
    lockout_after: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Failed logins in a row for one name before it is locked.",
    )
    lockout_s: Seconds = Field(
        default=300.0, le=86_400, description="How long a locked name stays locked."
    )
    stream_queue: int = Field(
        default=256,
        ge=8,
        le=100_000,
        description="Events waiting for one browser stream at most; a browser that falls "
        "this far behind loses its stream (it reconnects and refetches), never the daemon.",
    )
    max_streams_per_user: int = Field(
        default=4, ge=1, le=100, description="Open live streams of one user at most (tabs)."
    )
    stream_batch_ms: float = Field(
        default=10.0,
        ge=0,
        le=1000,
        description="The browsers' fan-out gathers publishes this long before writing them "
        "out, so a burst costs each stream one socket write (0: at the next loop turn).",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> WebSettings:
        seen: set[str] = set()
        for user in self.users:
            if user.name.lower() in seen:
                msg = f"web user {user.name!r} listed twice"
                raise ValueError(msg)
            seen.add(user.name.lower())
        return self

    def user(self, name: str) -> WebUser | None:
        low = name.lower()
        return next((u for u in self.users if u.name.lower() == low), None)
