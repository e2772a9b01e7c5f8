"""IVR flows: plain async functions over `Agi`, with their decisions as pure functions.

GB/T 33358 prefers no menu in front of a person, so these serve the caller around the
call: the one-key satisfaction survey after it (一次一评), the self-service progress
query on its own number (自助查询进度), and the message a caller leaves after hours (留言).
No flow touches the network or the database: what
they need (a ticket lookup) is passed in, and what they decide is returned.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from cti.dialplan.contract import AFTER_HOURS_VARIABLE, VOICEMAIL_VARIABLE
from cti.ivr.config import (
    AnnounceSettings,
    CallbackOfferSettings,
    ProgressQuerySettings,
    SurveySettings,
    VoicemailSettings,
)
from cti.ivr.session import Agi, AgiHangup, Recorded
from cti.numberplan import NumberPlan

__all__ = [
    "SAMPLES_PER_S",
    "VOICEMAIL_DONE",
    "Message",
    "Rating",
    "after_hours",
    "announce",
    "announcement",
    "message_content",
    "offer_callback",
    "progress_query",
    "rating_for",
    "should_offer_callback",
    "survey",
    "ticket_number_from_digits",
    "voicemail",
    "worth_a_ticket",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rating:
    key: int
    label: str  # as configured, e.g. 满意; stored on the ticket and the call record
    unsatisfied: bool  # flags the ticket: a return visit is owed


def rating_for(digit: str | None, cfg: SurveySettings) -> Rating | None:
    """The rating a key stands for; `None` for no key or one off the scale."""
    if digit is None or len(digit) != 1 or not digit.isdigit():
        return None
    key = int(digit)
    label = cfg.scale.get(key)
    if label is None:
        return None
    return Rating(key=key, label=label, unsatisfied=key in cfg.unsatisfied)


async def survey(agi: Agi, cfg: SurveySettings) -> Rating | None:
    """Ask for one key, up to `attempts` times; thank the caller for a valid one."""
    for attempt in range(cfg.attempts):
        digit = await agi.get_digits(cfg.prompt, timeout_s=cfg.timeout_s, max_digits=1)
        rating = rating_for(digit, cfg)
        if rating is not None:
            with contextlib.suppress(AgiHangup):  # rated, then hung up on the thanks: kept
                await agi.stream(cfg.thanks)
            return rating
        if attempt + 1 < cfg.attempts:
            await agi.stream(cfg.invalid)
    return None


_NUMBER = re.compile(r"^(?P<prefix>[0-9]{1,16}?)(?P<day>20[0-9]{6})(?P<seq>[0-9]{6})$")


def ticket_number_from_digits(digits: str, *, prefix: str) -> str | None:
    """A ticket number typed on a keypad: ``1234520261127000042`` →
    ``12345-20261127-000042`` (the embedded backend's form, `prefix` first). Digits that
    do not fit that form are passed as they are (a city backend's own numbers)."""
    if not digits or not digits.isdigit():
        return None
    m = _NUMBER.match(digits)
    if m is not None and m["prefix"] == prefix:
        return f"{m['prefix']}-{m['day']}-{m['seq']}"
    return digits


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryOutcome:
    number: str | None
    status: str | None  # None: not found (or nothing entered)


async def progress_query(
    agi: Agi,
    cfg: ProgressQuerySettings,
    lookup: Callable[[str], Awaitable[str | None]],
    *,
    prefix: str,
) -> QueryOutcome:
    """Ask for a ticket number, read its status back; `lookup(number)` gives the status
    (or `None`: no such ticket)."""
    await agi.answer()
    number: str | None = None
    for _ in range(cfg.attempts):
        digits = await agi.get_digits(cfg.prompt, timeout_s=cfg.timeout_s, max_digits=24)
        number = ticket_number_from_digits(digits or "", prefix=prefix)
        if number is None:
            continue
        status = await lookup(number)
        if status is None:
            await agi.stream(cfg.not_found)
            continue
        await agi.stream(cfg.status_prompts.get(status, cfg.unknown_status))
        await agi.stream(cfg.goodbye)
        return QueryOutcome(number=number, status=status)
    await agi.stream(cfg.goodbye)
    return QueryOutcome(number=number, status=None)


Step = tuple[str, str | int]  # ("play", prompt) | ("number", n)


def announcement(position: int | None, ewt_s: float | None, cfg: AnnounceSettings) -> list[Step]:
    """What a waiting caller hears: its place in the line, then the expected wait (in
    whole minutes, rounded up; "less than 1 minute"; nothing when unknown or very long).
    Nothing at all for a call that is not waiting (being offered, or unknown)."""
    if position is None:
        return []
    steps: list[Step] = []
    if position <= 1:
        steps.append(("play", cfg.you_are_next))
    else:
        steps += [("play", cfg.ahead), ("number", position - 1), ("play", cfg.calls_waiting)]
    if ewt_s is not None and ewt_s >= 0:
        minutes = int(-(-ewt_s // 60))  # ceil
        if minutes <= 1:
            steps += [("play", cfg.hold_time), ("play", cfg.less_than), ("number", 1),
                      ("play", cfg.minutes)]  # fmt: skip
        elif minutes <= cfg.max_wait_minutes:
            steps += [("play", cfg.hold_time), ("number", minutes), ("play", cfg.minutes)]
    steps.append(("play", cfg.thanks))
    return steps


async def announce(agi: Agi, steps: list[Step]) -> None:
    """Play an announcement (see `announcement`)."""
    for kind, value in steps:
        if kind == "number":
            await agi.say_number(int(value))
        else:
            await agi.stream(str(value))


def should_offer_callback(
    position: int | None, ewt_s: float | None, cfg: CallbackOfferSettings, *, has_number: bool
) -> bool:
    """Offer "press 1 to be called back" to a waiting caller whose number is known, when
    its wait promises to be long (or cannot be estimated: no staffed seat can take it)."""
    if not cfg.enabled or not has_number or position is None:
        return False
    return ewt_s is None or ewt_s >= cfg.min_ewt_s


async def offer_callback(agi: Agi, cfg: CallbackOfferSettings) -> str | None:
    """Ask; "callback" when the caller pressed the key (then it is thanked), "message"
    for `message_key` (overload voicemail, recorded by the caller), else None."""
    digit = await agi.get_digits(cfg.prompt, timeout_s=cfg.timeout_s, max_digits=1)
    if cfg.message_key is not None and digit == cfg.message_key:
        return "message"
    if digit != cfg.key:
        return None
    with contextlib.suppress(AgiHangup):
        await agi.stream(cfg.confirm)
    return "callback"


# ---------------------------------------------------------------------- after hours (留言)

SAMPLES_PER_S: Final = 8000
"""RECORD FILE's `endpos` is in samples; every `dialplan.recording_format` (wav, gsm,
wav49, sln) is 8 kHz."""
VOICEMAIL_DONE: Final = VOICEMAIL_VARIABLE
"""Set (to ``1``) once the flow has dealt with the call: the dialplan hangs up instead of
queueing. Unset (the daemon down, the flow failed): queued, so no citizen is lost."""


def after_hours(plan: NumberPlan, number: str, now: float) -> bool:
    """Whether a call to line *number* at *now* (epoch seconds) is outside the line's
    business hours (its `hours:` entry, holidays included). A line without hours, an
    unknown line or unknown hours: open."""
    line = plan.line(number)
    if line is None or line.hours is None:
        return False
    hours = next((h for h in plan.hours if h.name == line.hours), None)
    return hours is not None and not hours.is_open(now)


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message as recorded: the file (on the Asterisk host) and its length."""

    recording: str  # <path>.<format>
    seconds: float | None  # None: Asterisk did not say (the session broke off)
    ended: str  # dtmf | timeout | hangup


def worth_a_ticket(message: Message, cfg: VoicemailSettings) -> bool:
    """A message shorter than `min_s` (the caller hung up at the tone) makes no ticket; one
    of unknown length does (better a ticket for silence than a lost message)."""
    return message.seconds is None or message.seconds >= cfg.min_s


def message_content(message: Message) -> str:
    """The ticket's content for a message: marked 【留言】 so the agent calls back."""
    length = "" if message.seconds is None else f" {round(message.seconds)} 秒"
    return f"【留言】非工作时间来电留言{length}; 录音见附件"


async def voicemail(
    agi: Agi,
    cfg: VoicemailSettings,
    *,
    path: str,
    fmt: str,
    keep: Callable[[Message], Awaitable[None]],
) -> Message | None:
    """Greet, record a message to `path`.`fmt`, hand it to `keep` (the ticket), say goodbye.

    `keep` runs before anything else is said, even when the caller has hung up already,
    and only for a message `worth_a_ticket`. When `keep` raises, the flow stops without
    setting `VOICEMAIL_DONE`: a caller still on the line is queued. Returns the message
    (`None`: the caller hung up before the tone)."""
    await agi.answer()
    try:
        # the call record says voicemail, not abandoned (cti/calls/tracker.py)
        await agi.set_variable(AFTER_HOURS_VARIABLE, "1")
        await agi.stream(cfg.greeting)
        recorded: Recorded = await agi.record_file(
            path,
            fmt,
            escape_digits="#",
            timeout_ms=cfg.max_s * 1000,
            silence_s=cfg.silence_s,
            beep=True,
        )
    except AgiHangup:
        return None
    seconds = None if recorded.samples is None else recorded.samples / SAMPLES_PER_S
    message = Message(recording=f"{path}.{fmt}", seconds=seconds, ended=recorded.ended)
    if worth_a_ticket(message, cfg):
        await keep(message)
    if recorded.ended != "hangup":
        with contextlib.suppress(AgiHangup):  # the message is kept; the goodbye is courtesy
            await agi.set_variable(VOICEMAIL_DONE, "1")
            await agi.stream(cfg.goodbye)
    return message
