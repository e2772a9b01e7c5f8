"""The fuzz targets: one function per input the daemon reads from the network.

Shared by the atheris harness (``fuzz/run.py <name>`` for a name of ``HARNESSES``,
coverage-guided, bounded runs in
tests/fuzz/test_atheris_harnesses.py) and the hypothesis properties
(tests/fuzz/test_hostile_inputs.py). Each target takes raw bytes (what a peer can send)
and raises :class:`FuzzFinding` (or lets an unexpected exception escape) when the code
under test breaks its contract:

* nothing but the documented error type escapes (none for the AMI side, which never
  raises; :class:`~cti.ivr.session.AgiError`/`AgiHangup` for FastAGI; the parsers of
  MQTT payloads return a refusal, never raise);
* the AMI decoder resynchronises: after any garbage, a blank line and a valid message
  give that message back;
* the call tracker never trips its own last-resort `except` (``handler_error``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Final

from pydantic import SecretStr

from cti.adapters.ami import AmiClient, EventQueue
from cti.adapters.amiwire import AmiWireDecoder
from cti.adapters.dispatch110 import TransferPush, parse_push
from cti.adapters.fastagi import AgiError, AgiHangup, AgiSession, FastAgiServer
from cti.calls import CallTracker
from cti.events import EVENT_TYPES, AmiEvent, parse_event
from cti.jsonin import JsonRefused, load_json
from cti.seats.commands import CommandError, parse_seat_command
from cti.settings import AmiNode

__all__ = [
    "FuzzFinding",
    "ami_client",
    "ami_events",
    "amiwire",
    "fastagi_answer",
    "fastagi_headers",
    "mqtt_payloads",
]

VALID: Final = (
    b"Event: Newchannel\r\nChannel: PJSIP/1001-00000001\r\nUniqueid: 1700000000.1\r\n"
    b"Linkedid: 1700000000.1\r\nCallerIDNum: 13912345678\r\n\r\n"
)
VALID_HEADERS: Final = {
    "Event": "Newchannel",
    "Channel": "PJSIP/1001-00000001",
    "Uniqueid": "1700000000.1",
    "Linkedid": "1700000000.1",
    "CallerIDNum": "13912345678",
}
EVENT_NAMES: Final = sorted(EVENT_TYPES)
# header names the parsers read, with and without the snapshot prefixes
_PREFIXES: Final = (
    "",
    "Dest",
    "LocalOne",
    "LocalTwo",
    "Source",
    "Transferee",
    "TransferTarget",
    "OrigTransferer",
    "SecondTransferer",
    "Transferer",
    "Orig",
    "Second",
)
_FIELDS: Final = (
    "Channel",
    "Uniqueid",
    "Linkedid",
    "ChannelState",
    "CallerIDNum",
    "CallerIDName",
    "Context",
    "Exten",
    "Priority",
    "BridgeUniqueid",
    "BridgeNumChannels",
)
HEADER_NAMES: Final = sorted(
    {p + f for p in _PREFIXES for f in _FIELDS}
    | {
        "Event",
        "Timestamp",
        "Cause",
        "DialStatus",
        "Result",
        "Variable",
        "Value",
        "Newname",
        "Duration",
        "BridgeId",
        "DestType",
        "DestBridgeUniqueid",
        "ActionID",
        "Response",
        "EventList",
        "Uptime",
        "Id",
        "DestUniqueId",
        "Success",
        "Restart",
    }
)


class FuzzFinding(AssertionError):  # noqa: N818 - a finding, named as the docs call it
    """The code under test broke its contract on this input."""


def _node() -> AmiNode:
    return AmiNode(name="fuzz", username="cti", secret=SecretStr("fuzz"))


# --------------------------------------------------------------------------- AMI


def amiwire(data: bytes, cuts: list[int] | None = None) -> None:
    """Feed *data* in pieces, then a blank line and a valid message: it must come back."""
    dec = AmiWireDecoder()
    pos = 0
    for cut in cuts or []:
        dec.feed(data[pos : pos + cut])
        pos += cut
    dec.feed(data[pos:])
    out = dec.feed(b"\r\n\r\n" + VALID)
    if not out or out[-1] != VALID_HEADERS:
        msg = f"decoder did not resync after {data[:60]!r}: {out[-1:]!r}"
        raise FuzzFinding(msg)


def ami_client(data: bytes, tracker: CallTracker | None = None) -> None:
    """The daemon's AMI client fed *data* as socket reads: no exception, only typed events,
    and every event goes through the call tracker without tripping its `except`."""
    events = EventQueue(10_000)
    client = AmiClient(_node(), events)
    half = len(data) // 2
    for piece in (b"Asterisk Call Manager/11.0.0\r\n", data[:half], data[half:]):
        client._on_data(piece)  # noqa: SLF001 - the socket's entry point
    client._on_data(b"\r\n\r\n" + VALID)  # noqa: SLF001
    tracker = tracker or CallTracker()
    last: AmiEvent | None = None
    while events.qsize():
        item = events.get_nowait()
        if not isinstance(item, AmiEvent):
            continue
        last = item
        tracker.handle(item)
    if client.parse_errors:
        msg = f"{client.parse_errors} message(s) raised in the AMI client"
        raise FuzzFinding(msg)
    if last is None or dict(last.headers) != VALID_HEADERS:
        msg = "the AMI client did not resync after garbage"
        raise FuzzFinding(msg)
    _check_tracker(tracker)


def ami_events(headers: list[tuple[str, str]], tracker: CallTracker | None = None) -> None:
    """A run of AMI messages (header lists, hostile values) through the event parser and
    the call tracker."""
    tracker = tracker or CallTracker()
    msg: dict[str, str] = {}
    for key, value in headers:
        if key == "Event" and msg:
            _one_event(msg, tracker)
            msg = {}
        msg[key] = value
    if msg:
        _one_event(msg, tracker)
    _check_tracker(tracker)


def _one_event(msg: dict[str, str], tracker: CallTracker) -> None:
    ev = parse_event("fuzz", msg, 1_700_000_000.0)
    if not 0 < ev.time < 1e11:
        raise FuzzFinding(f"event time {ev.time!r} from {msg.get('Timestamp')!r}")
    tracker.handle(ev)


def _check_tracker(tracker: CallTracker) -> None:
    if tracker.anomalies["handler_error"]:
        msg = "the call tracker caught an exception of its own (see call_tracker_error)"
        raise FuzzFinding(msg)
    for call in tracker.active_calls():
        json.dumps([call.started_at], allow_nan=False)


# --------------------------------------------------------------------------- FastAGI


class _Writer:
    """The StreamWriter surface AgiSession and the header reader use."""

    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        return None

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 4573) if name == "peername" else None

    def close(self) -> None:
        return None


async def _headers(data: bytes) -> dict[str, str] | None:
    server = FastAgiServer({}, header_timeout_s=0.5)
    reader = asyncio.StreamReader(limit=16 * 1024)
    reader.feed_data(data)
    reader.feed_eof()
    return await server._headers(reader)  # noqa: SLF001 - the request reader itself


def fastagi_headers(data: bytes, loop: asyncio.AbstractEventLoop) -> None:
    """The FastAGI request reader on *data*: a dict or None, never an exception, and it
    never waits for more once the peer is done (EOF)."""
    result = loop.run_until_complete(asyncio.wait_for(_headers(data), 2.0))
    if result is not None and not all(isinstance(v, str) for v in result.values()):
        raise FuzzFinding(f"header values not text: {result!r}")


async def _answer(data: bytes) -> None:
    from panoramisk.fast_agi import Request  # noqa: PLC0415 - only the FastAGI target needs it

    reader = asyncio.StreamReader(limit=16 * 1024)
    reader.feed_data(data)
    reader.feed_eof()
    writer = _Writer()
    request = Request(app=None, headers={}, reader=reader, writer=writer, encoding="utf-8")
    session = AgiSession(request, command_timeout_s=0.5)
    for call in (
        session.answer(),
        session.stream("hello"),
        session.get_digits("hello", timeout_s=0.1, max_digits=4),
        session.get_variable("CTI_LINE"),
        session.record_file("/tmp/x", "wav", escape_digits="#", timeout_ms=100),  # noqa: S108
    ):
        try:
            await call
        except (AgiError, AgiHangup):
            pass  # the documented errors


def fastagi_answer(data: bytes, loop: asyncio.AbstractEventLoop) -> None:
    """Asterisk's answers to AGI commands replaced by *data*: only AgiError/AgiHangup."""
    loop.run_until_complete(asyncio.wait_for(_answer(data), 5.0))


# --------------------------------------------------------------------------- MQTT


def mqtt_payloads(data: bytes) -> None:
    """Every MQTT payload the daemon reads: a seat command, a 110 push, and the JSON
    loader under both. A refusal comes back as a value, never as an exception."""
    try:
        load_json(data, max_bytes=16 * 1024)
    except JsonRefused:
        pass
    cmd = parse_seat_command(data)
    if isinstance(cmd, CommandError):
        json.dumps(cmd.reply(), allow_nan=False)
    push = parse_push(data)
    if isinstance(push, TransferPush):
        push.transfer()  # the conversion the core gets (called_at.timestamp(), ...)
    else:
        json.dumps(push, allow_nan=False)


def quiet() -> None:
    """Silence structlog (the harnesses run millions of inputs; the logs are the noise)."""
    import logging  # noqa: PLC0415

    import structlog  # noqa: PLC0415

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


def headers_from(data: bytes) -> list[tuple[str, str]]:
    """A header list from raw fuzz bytes: a name picked by each byte pair, the value the
    bytes up to the next NUL (hostile text: CR/LF, huge numbers, any encoding)."""
    out: list[tuple[str, str]] = []
    for chunk in data.split(b"\x00"):
        if len(chunk) < 2:
            continue
        names = EVENT_NAMES if chunk[0] & 1 else HEADER_NAMES
        key = "Event" if names is EVENT_NAMES else names[chunk[1] % len(names)]
        value = (
            names[chunk[1] % len(names)]
            if names is EVENT_NAMES
            else chunk[2:].decode("utf-8", "surrogateescape")
        )
        out.append((key, value))
    return out


def harnesses(loop: asyncio.AbstractEventLoop) -> dict[str, Callable[[bytes], None]]:
    """Each target fed raw bytes, by the name `python -m fuzz.run NAME` takes; the FastAGI
    targets run their coroutine on *loop*."""
    return {
        "ami_client": ami_client,
        "ami_events": lambda data: ami_events(headers_from(data)),
        "amiwire": amiwire,
        "fastagi_answer": lambda data: fastagi_answer(data, loop),
        "fastagi_headers": lambda data: fastagi_headers(data, loop),
        "mqtt_payloads": mqtt_payloads,
    }
