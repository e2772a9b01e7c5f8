"""The AMI wire format: bytes in, messages (header dicts) out. Pure, no I/O.

AMI is line based: ``Key: Value\\r\\n`` headers, a blank line ends a message, and the
server greets with one line (``Asterisk Call Manager/11.0.0``) before the first message.

Why not panoramisk's parser (`AMIProtocol.data_received` in 1.4):

* it decodes every TCP chunk on its own with ``errors='ignore'``: a Chinese character
  split across two reads is silently dropped. Here the bytes are framed first (the
  separator is ASCII, so it never cuts a character) and each whole message is decoded;
* it ``strip()``s each message, so an empty value on the last line (``Key: ``) loses its
  separator and the header disappears. Here every line is split on its first colon;
* a trunk that sends caller names in GBK (seen in China) makes invalid UTF-8: such a
  message is decoded with a fallback codec (gb18030 by default) instead of dropping
  characters, and counted.

A header that appears more than once (``ChanVariable``, ``Output``) becomes one value, the
occurrences joined with a newline (a JSON trace cannot repeat keys; AMI values never
contain a newline, so nothing is ambiguous).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Collection

__all__ = ["BANNER_PREFIX", "AmiWireDecoder", "WireStats", "encode_action", "parse_block"]

BANNER_PREFIX: Final = b"Asterisk Call Manager/"
_SEP: Final = b"\r\n\r\n"
# A message larger than this without a blank line is garbage (or an attack): drop it
# instead of buffering forever. The largest real messages (Command output, QueueStatus
# with many members) are far below it.
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024


@dataclass(slots=True)
class WireStats:
    """Counters of what the decoder had to repair or drop (exported as metrics)."""

    messages: int = 0
    fallback_decoded: int = 0
    replaced_chars: int = 0
    garbage_blocks: int = 0
    oversized_dropped: int = 0
    lines_without_colon: int = 0
    bytes_in: int = 0
    # unsolicited events dropped unparsed because their name is not in `keep_events`
    filtered_events: int = 0
    last_garbage: list[str] = field(default_factory=list)


def parse_block(text: str, stats: WireStats | None = None) -> dict[str, str] | None:
    """Parse one message (without its terminating blank line) into headers.

    Returns None for a block that has no header at all (noise between messages).
    """
    # The common message (every line `Key: Value`, no repeated key) in C-level calls instead
    # of a Python loop over its lines: AMI parsing was the largest share of the daemon's CPU
    # under load (issue 12). Splitting at the first ": " is splitting at the first colon
    # only if no key holds a colon; anything unusual takes the loop, which is the definition.
    lines = text.split("\r\n")
    try:
        fast = dict([line.split(": ", 1) for line in lines])
    except ValueError:  # a line without ": " (an empty line, "Key:", noise)
        pass
    else:
        if len(fast) == len(lines) and "" not in fast and ":" not in "\n".join(fast):
            return fast
    return _parse_lines(lines, stats)


def _parse_lines(lines: list[str], stats: WireStats | None) -> dict[str, str] | None:
    headers: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep or not key:
            if stats is not None:
                stats.lines_without_colon += 1
            continue
        # AMI writes "Key: Value"; strip exactly the one space after the colon so a value's
        # own leading/trailing blanks survive and "Key: " stays an empty value.
        if value[:1] == " ":
            value = value[1:]
        old = headers.get(key)
        headers[key] = value if old is None else old + "\n" + value
    return headers or None


class AmiWireDecoder:
    """Incremental decoder of an AMI byte stream.

    Feed it whatever the socket returns, at any chunk boundary; it returns the complete
    messages in order. The greeting line is stored in :attr:`banner`.
    """

    def __init__(
        self,
        *,
        fallback_encoding: str = "gb18030",
        expect_banner: bool = True,
        keep_events: Collection[str] | None = None,
        keep_variables: Collection[str] | None = None,
    ) -> None:
        self._buf = bytearray()
        # bytes at the start of the buffer already searched for the separator without a hit:
        # a message arriving in many small reads is scanned once, not once per read
        self._scanned = 0
        self._fallback = fallback_encoding
        self.banner: str | None = None if expect_banner else ""
        self.stats = WireStats()
        # None: every message is parsed. Otherwise an unsolicited event (no ActionID) whose
        # name is not in the set is dropped before it is decoded or split into headers: a
        # busy Asterisk sends many events the daemon never reads (AGIExec, Cdr, RTCP...).
        self._keep: frozenset[bytes] | None = (
            None if keep_events is None else frozenset(n.encode("ascii") for n in keep_events)
        )
        # With `keep_events`: an unsolicited VarSet whose variable (leading underscores, the
        # inheritance marks, stripped) is not in this set is dropped the same way. A call
        # brings ~30 VarSets (DIALSTATUS, BRIDGEPEER, RINGTIME...) and the daemon reads 3.
        self._keep_vars: frozenset[bytes] | None = (
            None if keep_variables is None else frozenset(v.encode() for v in keep_variables)
        )

    def feed(self, data: bytes) -> list[dict[str, str]]:
        """Add bytes; return every message completed by them (possibly none)."""
        buf = self._buf
        buf += data
        self.stats.bytes_in += len(data)
        if self.banner is None and not self._take_banner():
            return []
        # the separator may straddle the old end: look back len(_SEP) - 1 bytes
        end = buf.rfind(_SEP, max(0, self._scanned - len(_SEP) + 1))
        if end < 0:
            if len(buf) > MAX_MESSAGE_BYTES:
                self.stats.oversized_dropped += 1
                buf.clear()
            self._scanned = len(buf)
            return []
        chunk = bytes(buf[:end])
        del buf[: end + len(_SEP)]
        self._scanned = 0
        out: list[dict[str, str]] = []
        keep = self._keep
        for raw in chunk.split(_SEP):
            if keep is not None and self._filtered(raw, keep):
                continue
            msg = self._decode(raw)
            if msg is not None:
                out.append(msg)
        return out

    def _filtered(self, raw: bytes, keep: frozenset[bytes]) -> bool:
        """True for an unsolicited event not in `keep` (counted). Asterisk writes `Event:`
        as an event's first line; anything else (responses, noise, an event with another
        first line) is parsed as usual. An event carrying an ActionID belongs to an action
        (a list's item, an OriginateResponse) and is always kept."""
        if not raw.startswith(b"Event: "):
            return False
        nl = raw.find(b"\r\n")
        name = raw[7:] if nl < 0 else raw[7:nl]
        if name in keep and (
            name != b"VarSet" or self._keep_vars is None or self._variable_kept(raw)
        ):
            return False
        if b"\r\nActionID:" in raw:
            return False
        self.stats.filtered_events += 1
        return True

    def _variable_kept(self, raw: bytes) -> bool:
        """A VarSet whose `Variable` is one the daemon reads (or that has none: parse it)."""
        at = raw.find(b"\r\nVariable: ")
        if at < 0:
            return True
        at += 12
        end = raw.find(b"\r\n", at)
        variable = raw[at:] if end < 0 else raw[at:end]
        return variable.lstrip(b"_") in (self._keep_vars or ())

    def _take_banner(self) -> bool:
        buf = self._buf
        nl = buf.find(b"\r\n")
        if nl < 0:
            if len(buf) > 1024:  # no banner line in sight: not an AMI server, treat as data
                self.banner = ""
                return True
            return False
        line = bytes(buf[:nl])
        if line.startswith(BANNER_PREFIX):
            self.banner = line.decode("ascii", "replace")
            del buf[: nl + 2]
        else:
            self.banner = ""
        return True

    def _decode(self, raw: bytes) -> dict[str, str] | None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            try:
                text = raw.decode(self._fallback)
                self.stats.fallback_decoded += 1
            except (UnicodeDecodeError, LookupError):
                text = raw.decode("utf-8", "replace")
                self.stats.replaced_chars += text.count("\ufffd")
        msg = parse_block(text, self.stats)
        if msg is None:
            if raw.strip():
                self.stats.garbage_blocks += 1
                self._remember_garbage(raw)
            return None
        self.stats.messages += 1
        return msg

    def _remember_garbage(self, raw: bytes) -> None:
        keep = self.stats.last_garbage
        keep.append(raw[:200].decode("utf-8", "replace"))
        del keep[:-5]


def encode_action(headers: dict[str, str | list[str]]) -> bytes:
    """Serialize an action. Refuses CR/LF in names and values: an AMI header injection
    (a caller name or a pushed field reaching an Originate) could run any action.
    """
    lines: list[str] = []
    for key, value in headers.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if "\r" in key or "\n" in key or ":" in key or "\r" in v or "\n" in v:
                msg = f"AMI header {key!r} contains a line break or colon: refused"
                raise ValueError(msg)
            lines.append(f"{key}: {v}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8")
