"""Logging: structlog, one line per event, JSON in production.

:func:`configure_logging` sets up structlog (context variables, level filter, UTC ISO
timestamps, phone-number masking, a JSON or console renderer) and routes the standard
library's ``logging`` (panoramisk, aiomqtt, asyncio) through the same renderer at WARNING and
above, so every line on stderr has one format.

Callers' phone numbers are personal data: :func:`mask_phone_numbers` masks them in every
string value before anything is rendered.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TextIO, cast

import structlog

from cti.settings import LoggingSettings

if TYPE_CHECKING:
    from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger


__all__ = ["configure_logging", "get_logger", "mask_phone_numbers", "mask_text"]

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Keys whose value is a phone number whatever its length (AMI header names lower-cased too).
_PHONE_KEYS: Final = frozenset(
    {
        "caller",
        "callee",
        "number",
        "caller_num",
        "ani",
        "dnis",
        "connected_num",
        "calleridnum",
        "connectedlinenum",
    }
)
# Keys that hold ids, times and ports: digits, but nobody's phone number.
_EXEMPT_KEYS: Final = frozenset(
    {
        "linkedid",
        "uniqueid",
        "call_id",
        "action_id",
        "actionid",
        "time",
        "timestamp",
        "pid",
        "port",
        "seat",
        # ids of cases, not of people: 12345-20261127-000042, 110's incident numbers
        "ticket",
        "transfer_id",
    }
)

# What is masked in any text: a run of 7+ ASCII digits, optionally after '+', or a number
# written in groups joined by one space or dash (138 0013 8000, +86 138-0013-8000,
# 400-810-1234: a group of 1-4 digits, then groups of 3-4). Neither may be part of a
# longer token: not next to a letter or digit, and not either side of a decimal point,
# so an Asterisk uniqueid like 1732665600.42 (a 10-digit epoch) stays whole. A ticket
# number (12345-20261127-000042: line, date, sequence) is matched first and kept: it is a
# case's id. Dates (2026-11-27) have 2-digit groups, so they are no grouped number.
# ASCII classes on purpose: `\w` would match Chinese characters and spare "来电13800138000".
_NUMBER: Final = re.compile(
    r"(?<![0-9A-Za-z+])(?<![0-9]\.)"
    r"(?:(?P<ticket>[0-9]{3,6}-[0-9]{8}-[0-9]{3,})"
    r"|(?P<plus>\+?)(?P<digits>[0-9]{1,4}(?:[ -][0-9]{3,4})+|[0-9]{7,}))"
    r"(?![0-9A-Za-z])(?!\.[0-9])"
)
# In a phone field, any run of 6+ digits (spaces and dashes allowed) is a number; 3-5
# digits are service lines (110, 12345, 12315) or seat extensions, not personal data.
_FIELD_NUMBER: Final = re.compile(r"(?<![0-9])(?<![0-9][ -])(\+?)([0-9]+(?:[ -][0-9]+)*)(?![0-9])")
_SEPARATOR: Final = re.compile(r"[ -]")


def _mask_digits(plus: str, digits: str) -> str:
    if plus and digits.startswith("86") and len(digits) == 13:
        # +86 and an 11-digit mobile number: keep the country code readable.
        return "+86" + _mask_digits("", digits[2:])
    if len(digits) >= 11:
        keep_head, keep_tail = 3, 4
    elif len(digits) >= 7:
        keep_head, keep_tail = 3, 2
    else:
        keep_head, keep_tail = 0, 2
    hidden = len(digits) - keep_head - keep_tail
    return plus + digits[:keep_head] + "*" * hidden + digits[len(digits) - keep_tail :]


def _mask_grouped(plus: str, run: str) -> str:
    """Mask the digits of *run* as one number, its spaces and dashes where they were."""
    masked = iter(_mask_digits(plus, _SEPARATOR.sub("", run))[len(plus) :])
    return plus + "".join(c if c in " -" else next(masked) for c in run)


def _replace_number(match: re.Match[str]) -> str:
    if match.group("ticket"):
        return match.group(0)
    plus, digits = match.group("plus"), match.group("digits")
    if _SEPARATOR.search(digits):
        if len(_SEPARATOR.sub("", digits)) < 7:  # 12 345: a count, a service line
            return match.group(0)
        return _mask_grouped(plus, digits)
    start = match.start("digits")
    # The 8-digit suffix of an Asterisk channel name (PJSIP/trunk-00000012) is no phone
    # number; a Chinese subscriber number never starts with 0 after a '-'.
    if (
        not plus
        and len(digits) == 8
        and digits[0] == "0"
        and start > 0
        and match.string[start - 1] == "-"
    ):
        return match.group(0)
    return _mask_digits(plus, digits)


def _replace_field(match: re.Match[str]) -> str:
    plus, run = match.group(1), match.group(2)
    if len(_SEPARATOR.sub("", run)) < 6:
        return match.group(0)
    return _mask_grouped(plus, run)


def mask_text(text: str, *, phone_field: bool = False) -> str:
    """Mask the phone numbers in *text*, also when written in groups.

    ``13800138000`` -> ``138****8000``, ``138 0013 8000`` -> ``138 **** 8000``,
    ``7461234`` -> ``746**34``. With *phone_field* (the value of a key like ``caller``),
    6-digit numbers are masked too (``****56``). Numbers of 3-5 digits (110, 12345),
    dates and ticket numbers (``12345-20261127-000042``) are never masked.
    """
    if phone_field:
        return _FIELD_NUMBER.sub(_replace_field, text)
    return _NUMBER.sub(_replace_number, text)


def _mask_value(key: str, value: Any) -> Any:
    lowered = key.lower()
    if lowered in _EXEMPT_KEYS or lowered.endswith(("uniqueid", "linkedid")):
        return value
    phone_field = lowered in _PHONE_KEYS
    if isinstance(value, str):
        return mask_text(value, phone_field=phone_field)
    if phone_field and isinstance(value, int) and not isinstance(value, bool):
        masked = mask_text(str(value), phone_field=True)
        return value if masked == str(value) else masked
    if isinstance(value, Mapping):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask_value(key, item) for item in value)
    return _mask_repr(value, phone_field=phone_field)


def _mask_repr(value: Any, *, phone_field: bool) -> Any:
    """Anything else (the bytes of a payload, a dataclass, a set) is rendered by its repr:
    mask that, and hand over the masked text only when it hides something."""
    if value is None or isinstance(value, int | float):
        return value
    shown = repr(value)
    masked = mask_text(shown, phone_field=phone_field)
    return value if masked == shown else masked


def mask_phone_numbers(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask phone numbers in every string value (nested too).

    Values of id, time and port keys (``uniqueid``, ``linkedid``, ``call_id``, ``seat``, …)
    are left alone; values of phone keys (``caller``, ``callee``, ``ani``, …) are masked
    even when short.
    """
    del logger, method_name
    return {key: _mask_value(key, value) for key, value in event_dict.items()}


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger that remembers the name given to ``structlog.get_logger(name)``."""

    def __init__(self, file: TextIO, name: str | None) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        name = args[0] if args and isinstance(args[0], str) else None
        return _NamedWriteLogger(self._file, name)


def _add_logger_name(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    del method_name
    name = getattr(logger, "name", None)
    if name is not None:
        event_dict.setdefault("logger", name)
    return event_dict


_handler: logging.Handler | None = None


def configure_logging(
    settings: LoggingSettings, *, stream: TextIO | None = None, cache_loggers: bool = True
) -> None:
    """Configure structlog and the standard library's logging.

    Args:
        settings: the ``logging`` section.
        stream: where lines go; ``None`` means ``sys.stderr`` at the time of the call.
        cache_loggers: cache each logger on first use (fast); tests that reconfigure pass
            ``False`` so loggers made earlier follow the new configuration.
    """
    out = sys.stderr if stream is None else stream
    try:
        tty = out.isatty()
    except ValueError:  # a closed stream
        tty = False
    level = _LEVELS[settings.level]

    renderer: Processor
    if settings.format == "json" or (settings.format == "auto" and not tty):
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=tty)

    shared: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        # Tracebacks become a string before masking, so numbers in them are masked too.
        structlog.processors.format_exc_info,
    ]
    if settings.mask_numbers:
        shared.append(mask_phone_numbers)

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_logger_name,
            *shared,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_NamedWriteLoggerFactory(out),
        cache_logger_on_first_use=cache_loggers,
    )

    # panoramisk, aiomqtt and asyncio log through the standard library: same renderer,
    # WARNING and above (their INFO/DEBUG chatter would drown ours).
    global _handler  # noqa: PLW0603 -- one handler per process, replaced on reconfigure
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(out)
    _handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root.addHandler(_handler)
    root.setLevel(max(level, logging.WARNING))


def get_logger(name: str, **initial: Any) -> FilteringBoundLogger:
    """A structlog logger whose lines carry ``logger=name`` (pass the module's ``__name__``).

    ``structlog.get_logger(name)`` gives the same lines; this one is typed.
    """
    return cast("FilteringBoundLogger", structlog.get_logger(name, **initial))
