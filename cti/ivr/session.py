"""What an IVR flow may do with the caller's channel: a pure session type (a Protocol) and
its two ways of ending. :class:`cti.adapters.fastagi.AgiSession` implements it over
FastAGI; tests implement it with fakes. No I/O here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Agi", "AgiError", "AgiHangup", "Flow", "Recorded"]


class AgiHangup(Exception):  # noqa: N818 - it is the caller hanging up, not an error
    """The channel hung up (or Asterisk closed the session): stop the flow."""


class AgiError(Exception):
    """An AGI command failed, timed out, or was refused."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """How a RECORD FILE ended. The file is written (and closed) in every case here."""

    ended: str  # "dtmf", "timeout" (the time limit or the silence), "hangup"
    digit: str | None  # the escape digit that ended it
    samples: int | None  # endpos: samples written (8000 a second); None if not reported


class Agi(Protocol):
    """What a flow may do with the caller's channel."""

    headers: Mapping[str, str]
    peer: str

    async def answer(self) -> None: ...

    async def stream(self, prompt: str, escape: str = "") -> str | None:
        """Play a sound file; the digit that interrupted it, if any."""
        ...

    async def get_digits(self, prompt: str, *, timeout_s: float, max_digits: int) -> str | None:
        """Play `prompt` and collect up to `max_digits` (ended by `#`); `None` on timeout."""
        ...

    async def say_digits(self, digits: str) -> None: ...

    async def say_number(self, number: int) -> None: ...

    async def get_variable(self, name: str) -> str | None: ...

    async def set_variable(self, name: str, value: str) -> None: ...

    async def record_file(
        self,
        path: str,
        fmt: str,
        *,
        escape_digits: str,
        timeout_ms: int,
        silence_s: int = 0,
        beep: bool = True,
    ) -> Recorded:
        """Record the caller to `path`.`fmt` until an escape digit, `timeout_ms`, `silence_s`
        of silence (0: not checked) or the caller hanging up — which is a normal end here:
        the message is on disk. Raises `AgiError` when the file cannot be written."""
        ...


Flow = Callable[[Agi], Awaitable[None]]
