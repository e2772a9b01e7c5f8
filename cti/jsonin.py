"""JSON from outside, parsed so that no input can raise anything but :class:`JsonRefused`.

Every byte a peer sends (an MQTT push or seat command, an HTTP body, a backend's answer)
is parsed here, never with a bare :func:`json.loads`, which a hostile or buggy peer can
make raise far more than ``JSONDecodeError``:

* ``RecursionError`` for a few thousand ``[`` (the C scanner recurses per level) — and a
  shallower document that passes the scanner can still overflow a recursive consumer;
* ``ValueError: Exceeds the limit (4300 digits)`` for a long integer (CPython's guard
  against quadratic ``int()``), and ``inf`` for ``1e999`` or ``Infinity``;
* ``UnicodeDecodeError`` for bytes that are not UTF-8; ``json.loads(bytes)`` would even
  guess UTF-16/32 from the first bytes, and a lone surrogate escape (``"\\ud800"``) makes a
  ``str`` that every later ``.encode()`` (the database, a reply, a log line) chokes on.

So: the size first, then a cheap depth pre-scan on the raw bytes (no recursion, C-speed
``bytes`` methods only), then strict UTF-8, then :func:`json.loads` with hooks that refuse
long numbers, non-finite numbers and the non-JSON constants. Pure: no I/O, no clock.
docs/mqtt.md and docs/http-api.md state the limits.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final, Literal

__all__ = ["MAX_DEPTH", "MAX_NUMBER_DIGITS", "JsonRefused", "load_json"]

MAX_DEPTH: Final = 32
"""Arrays and objects nested deeper than this are refused (our documents use 2 to 4)."""

MAX_NUMBER_DIGITS: Final = 40
"""A number literal with more digits than this is refused (a phone number has 15 at most,
a float 17 significant ones)."""

# A string literal, escapes included. An unterminated one runs to the end, and a lone
# backslash may end it: the pattern cannot fail once it has seen a quote, so the engine
# never retries from the escaped quotes inside (which would be quadratic on `"\"\"\"…`).
_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.?)*(?:"|\Z)', re.DOTALL)
_BRACKETS: Final = b"[]{}"
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in _BRACKETS)
_PARENS: Final = bytes.maketrans(b"[]{}", b"()()")
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")


class JsonRefused(ValueError):  # noqa: N818 - a refusal, not an internal error
    """Why an outside JSON document was refused.

    Attributes:
        code: ``too_large`` (over the size limit) or ``bad_json`` (everything else: not
            UTF-8, not JSON, too deep, a number too long or not finite).
        message: for the peer: what is wrong, with the limit that was passed.
    """

    def __init__(self, code: Literal["bad_json", "too_large"], message: str) -> None:
        super().__init__(message)
        self.code: Literal["bad_json", "too_large"] = code
        self.message = message


def load_json(
    data: bytes | bytearray | memoryview | str,
    *,
    max_bytes: int,
    max_depth: int = MAX_DEPTH,
    max_digits: int = MAX_NUMBER_DIGITS,
) -> Any:
    """Parse one outside JSON document (UTF-8) within the limits.

    Args:
        data: the raw document; a ``str`` is checked as its UTF-8 encoding.
        max_bytes: the largest document accepted, in bytes.
        max_depth: the deepest nesting of arrays and objects accepted.
        max_digits: the most digits a number literal may have.

    Raises:
        JsonRefused: and nothing else, whatever *data* holds.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        msg = f"over {max_bytes} bytes"
        raise JsonRefused("too_large", msg)
    depth = nesting_depth(raw, limit=max_depth)
    if depth > max_depth:
        msg = f"nested deeper than {max_depth} levels"
        raise JsonRefused("bad_json", msg)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"not JSON: not UTF-8 ({exc.reason} at byte {exc.start})"
        raise JsonRefused("bad_json", msg) from exc

    hooks = _Numbers(max_digits)
    try:
        value = json.loads(
            text,
            parse_int=hooks.parse_int,
            parse_float=hooks.parse_float,
            parse_constant=hooks.parse_constant,
        )
    except json.JSONDecodeError as exc:
        msg = f"not JSON: {exc}"
        raise JsonRefused("bad_json", msg) from exc
    except RecursionError as exc:  # the pre-scan makes this unreachable; a second fence
        msg = "nested too deeply"
        raise JsonRefused("bad_json", msg) from exc
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value):
        msg = "a string with a lone surrogate escape (\\ud800-\\udfff): not Unicode text"
        raise JsonRefused("bad_json", msg)
    return value


def nesting_depth(raw: bytes, *, limit: int) -> int:
    """How deep arrays and objects nest in *raw*, counted up to ``limit + 1``.

    Strings are blanked out first (a ``[`` in a summary is text); then each pass deletes
    the innermost ``()`` pairs, so the number of passes is the depth. Brackets left over
    (an unbalanced document, which the parser refuses anyway) count as depth too, so
    5,000 ``[`` with no ``]`` are refused here, before the parser recurses into them.
    """
    shape = _STRING.sub(b"", raw).translate(_PARENS, _NOT_BRACKETS)
    depth = 0
    while b"()" in shape and depth <= limit:
        shape = shape.replace(b"()", b"")
        depth += 1
    return depth + shape.count(b"(")


class _Numbers:
    """The parser's number hooks: a long literal is refused before ``int()`` sees it."""

    def __init__(self, max_digits: int) -> None:
        self.max_digits = max_digits

    def _check(self, literal: str) -> None:
        if sum(c.isdigit() for c in literal) > self.max_digits:
            msg = f"a number with more than {self.max_digits} digits"
            raise JsonRefused("bad_json", msg)

    def parse_int(self, literal: str) -> int:
        self._check(literal)
        return int(literal)

    def parse_float(self, literal: str) -> float:
        self._check(literal)
        value = float(literal)
        if not math.isfinite(value):  # 1e999
            msg = f"a number out of range: {literal[:20]}"
            raise JsonRefused("bad_json", msg)
        return value

    def parse_constant(self, name: str) -> float:
        msg = f"{name} is not JSON"  # NaN, Infinity, -Infinity: Python's extension
        raise JsonRefused("bad_json", msg)


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
