"""FastAGI on panoramisk 1.4, hardened, and the small typed AGI API the flows use.

panoramisk's `Application.handler` reads the AGI header block with `reader.read(100)` until
a blank line: a peer that closes first (a port probe, a health check, Asterisk giving up)
makes it spin on `b""` without yielding, and the whole event loop freezes. Its
`Request.send_command` waits for an answer without a deadline, and a hung-up channel's
`HANGUP` or an EOF comes back as a dict the caller must remember to inspect. Here:

* the header block is read with `readuntil` under a deadline and a size limit; a probe, a
  half-sent header or a silent client costs one task, never the loop (tests/ivr);
* each command has a deadline; every answer is checked: a hang-up (`HANGUP`, EOF,
  `result=-1`) raises :class:`AgiHangup`, any other failure :class:`AgiError`;
* sessions are bounded (`max_sessions`); one flow failing is logged and closes its own
  connection only.

Flows (cti/ivr/) are plain async functions ``flow(agi: Agi) -> None`` over the pure
session type :class:`cti.ivr.session.Agi`, which :class:`AgiSession` implements; their
decisions are testable with a fake (tests/ivr/test_flows.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog
from panoramisk.fast_agi import Application, Request
from panoramisk.utils import parse_agi_result

from cti.ivr.session import Agi, AgiError, AgiHangup, Flow, Recorded

__all__ = [
    "Agi",
    "AgiError",
    "AgiHangup",
    "AgiSession",
    "FastAgiServer",
    "Flow",
    "Recorded",
]

MAX_HEADER_BYTES: Final = 16 * 1024
# a result or endpos with more digits is garbage (and int() refuses 4,300+ digits)
_MAX_RESULT_DIGITS: Final = 18
_QUOTE: Final = re.compile(r'["\\\n\r]')
# RECORD FILE's answer: "200 result=<n> (<why>) endpos=<samples>"; <why> is dtmf, timeout
# (also silence), hangup (result=-1), writefile (result=-1: the file could not be opened),
# waitfor or randomerror
_RECORDED: Final = re.compile(r"^200 result=(-?[0-9]+)(?: \(([a-z]+)\))?(?: endpos=([0-9]+))?")


@dataclass(frozen=True, slots=True)
class AgiResult:
    code: int
    result: str
    data: str


class AgiSession:
    """:class:`Agi` over one FastAGI connection (panoramisk's `Request` underneath)."""

    def __init__(self, request: Request, *, command_timeout_s: float) -> None:
        self._request = request
        self._timeout = command_timeout_s
        self.headers: Mapping[str, str] = request.headers
        peer = request.writer.get_extra_info("peername")
        self.peer: str = str(peer[0]) if peer else ""  # which Asterisk asked

    async def command(self, line: str, *, timeout_s: float | None = None) -> AgiResult:
        """Send one AGI command and check its answer."""
        if "\n" in line or "\r" in line:
            raise AgiError(f"a command is one line: {line!r}")
        verb = line.split(maxsplit=1)[0]
        try:
            async with asyncio.timeout(timeout_s or self._timeout):
                raw = await self._exchange(line)
        except TimeoutError:
            raise AgiError(f"{verb}: no answer within {timeout_s or self._timeout} s") from None
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise AgiHangup(f"{verb}: connection lost ({exc})") from exc
        except ValueError as exc:
            # StreamReader.readline's LimitOverrunError comes out as ValueError: an
            # answer line over MAX_HEADER_BYTES (found by tests/fuzz)
            raise AgiError(f"{verb}: answer line too long ({exc})") from exc
        try:
            parsed: dict[str, Any] = parse_agi_result(raw)
        except ValueError as exc:
            # panoramisk 1.4 does int() on the leading digits: an answer that does not
            # start with a code ("garbage", "") or has 5,000 of them raises ValueError
            # (found by tests/fuzz); a flow must only ever see AgiError/AgiHangup
            raise AgiError(f"{verb}: not an AGI answer: {raw[:80]!r}") from exc
        error = parsed.get("error")
        if error in ("AGIResultHangup", "AGIAppError"):
            # result=-1: "error executing application, or hangup" — on a live channel the
            # next command will tell; treat it as the channel gone, which it nearly always is
            raise AgiHangup(f"{verb}: {parsed.get('msg', error)}")
        if error is not None:
            raise AgiError(f"{verb}: {error} {parsed.get('msg', '')}".strip())
        value, data = parsed.get("result", ("", ""))
        return AgiResult(code=int(parsed.get("status_code", 0)), result=value, data=data)

    async def _exchange(self, line: str) -> str:
        writer: asyncio.StreamWriter = self._request.writer
        reader: asyncio.StreamReader = self._request.reader
        writer.write(line.encode() + b"\n")
        await writer.drain()
        while True:
            raw = await reader.readline()
            if not raw:
                raise asyncio.IncompleteReadError(b"", None)  # EOF: the session is over
            text: str = raw.decode("utf-8", "replace").rstrip("\r\n")
            if text.startswith("100 "):
                continue  # "100 result=0 Trying..." precedes the real answer
            if text.startswith("520-"):
                # a usage error spans lines up to "520 End of proper usage."
                while raw and not raw.startswith(b"520 "):
                    raw = await reader.readline()
                return text
            return text

    async def answer(self) -> None:
        await self.command("ANSWER")

    async def stream(self, prompt: str, escape: str = "") -> str | None:
        # "200 result=0 endpos=N": played to the end; "result=<ASCII code>": interrupted
        res = await self.command(f'STREAM FILE {_arg(prompt)} "{_digits(escape)}"')
        return _digit_of(res.result) if res.result not in ("", "0") else None

    async def get_digits(self, prompt: str, *, timeout_s: float, max_digits: int) -> str | None:
        ms = int(timeout_s * 1000)
        res = await self.command(
            f"GET DATA {_arg(prompt)} {ms} {max_digits}", timeout_s=timeout_s + 60
        )
        # "result=123": the digits; "result=123 (timeout)": digits, then no "#"; "result="
        # with "(timeout)" or nothing: none pressed
        return res.result or None

    async def say_digits(self, digits: str) -> None:
        await self.command(f'SAY DIGITS {_digits(digits)} ""')

    async def say_number(self, number: int) -> None:
        await self.command(f'SAY NUMBER {int(number)} ""')

    async def get_variable(self, name: str) -> str | None:
        res = await self.command(f"GET VARIABLE {_arg(name)}")
        return res.data if res.result == "1" else None

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(f'SET VARIABLE {_arg(name)} "{_QUOTE.sub("", value)}"')

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
        # RECORD FILE "<file>" "<format>" "<escape>" <timeout> [offset] [BEEP] [s=<silence>]
        # The offset must be given for BEEP to be read as such (res_agi counts arguments).
        escape = _digits(escape_digits)
        line = f'RECORD FILE {_arg(path)} {_arg(fmt)} "{escape}" {int(timeout_ms)} 0'
        if beep:
            line += " BEEP"
        if silence_s > 0:
            line += f" s={int(silence_s)}"
        if "\n" in line or "\r" in line:
            raise AgiError(f"a command is one line: {line!r}")
        # not `command()`: a hang-up while recording answers "result=-1 (hangup)", which is
        # how most messages end (the caller speaks, then hangs up), not a failure
        deadline = (timeout_ms / 1000 if timeout_ms > 0 else 3600) + 60
        try:
            async with asyncio.timeout(deadline):
                raw = await self._exchange(line)
                if raw == "HANGUP":  # FastAGI's hang-up notice may come before the answer
                    raw = await self._exchange_next()
        except TimeoutError:
            raise AgiError(f"RECORD FILE: no answer within {deadline} s") from None
        except (ConnectionError, asyncio.IncompleteReadError):
            # the session ended with no answer: the file may or may not hold a message
            return Recorded(ended="hangup", digit=None, samples=None)
        except ValueError as exc:  # an answer line over MAX_HEADER_BYTES
            raise AgiError(f"RECORD FILE: answer line too long ({exc})") from exc
        return _recorded(raw)

    async def _exchange_next(self) -> str:
        reader: asyncio.StreamReader = self._request.reader
        raw = await reader.readline()
        if not raw:
            raise asyncio.IncompleteReadError(b"", None)
        return str(raw.decode("utf-8", "replace").rstrip("\r\n"))


def _recorded(raw: str) -> Recorded:
    """RECORD FILE's answer line, checked."""
    m = _RECORDED.match(raw)
    if m is None or len(m[1]) > _MAX_RESULT_DIGITS or len(m[3] or "") > _MAX_RESULT_DIGITS:
        raise AgiError(f"RECORD FILE: {raw[:80]}")
    result, why, endpos = int(m[1]), m[2] or "", m[3]
    samples = int(endpos) if endpos is not None else None
    if why == "hangup":
        return Recorded(ended="hangup", digit=None, samples=samples)
    if result < 0 or why not in ("dtmf", "timeout", ""):
        raise AgiError(f"RECORD FILE: {raw}")
    digit = _digit_of(m[1]) if why == "dtmf" and result > 0 else None
    return Recorded(ended=why or "timeout", digit=digit, samples=samples)


def _digit_of(result: str) -> str:
    """The key a `result=<ASCII code>` names. Anything but a code point (`abc`, a huge
    number, a surrogate) is an AgiError, never a ValueError (found by tests/fuzz)."""
    if not result.isascii() or not result.isdigit() or len(result) > _MAX_RESULT_DIGITS:
        raise AgiError(f"not a key code: {result[:20]!r}")
    code = int(result)
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise AgiError(f"not a key code: {result[:20]!r}")
    return chr(code)


def _arg(value: str) -> str:
    if not value or not re.fullmatch(r"[A-Za-z0-9_./:-]+", value):
        raise AgiError(f"not a safe AGI argument: {value!r}")
    return value


def _digits(value: str) -> str:
    return "".join(c for c in value if c in "0123456789*#")


class FastAgiServer(Application):  # type: ignore[misc]  # panoramisk is untyped
    """panoramisk's FastAGI `Application` with a handler that cannot freeze the loop.

    Routes are flows by script name (`agi://host:port/<name>`)."""

    def __init__(
        self,
        routes: Mapping[str, Flow],
        *,
        header_timeout_s: float = 5.0,
        command_timeout_s: float = 30.0,
        max_sessions: int = 200,
        log: Any = None,
    ) -> None:
        super().__init__(default_encoding="utf-8", loop=asyncio.get_running_loop())
        self._flows = dict(routes)
        self._header_timeout = header_timeout_s
        self._command_timeout = command_timeout_s
        self._slots = asyncio.Semaphore(max_sessions)
        self._log = log or structlog.get_logger("cti.ivr")
        self.sessions = 0
        self.refused = 0
        self.failed = 0

    async def serve(
        self, host: str, port: int, *, on_listening: Callable[[int], None] | None = None
    ) -> None:
        """Listen until cancelled."""
        server = await asyncio.start_server(self.handler, host, port, limit=MAX_HEADER_BYTES)
        bound = server.sockets[0].getsockname()[1]
        self._log.info("agi_listening", host=host, port=bound)
        if on_listening is not None:
            on_listening(bound)
        async with server:
            await server.serve_forever()

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            headers = await self._headers(reader)
            if headers is None:
                return
            script = headers.get("agi_network_script", "")
            flow = self._flows.get(script)
            linkedid = headers.get("agi_uniqueid", "")
            if flow is None:
                self.refused += 1
                self._log.error("agi_no_route", script=script, linkedid=linkedid)
                return
            if self._slots.locked():
                self.refused += 1
                self._log.error("agi_too_many_sessions", script=script, linkedid=linkedid)
                return
            async with self._slots:
                self.sessions += 1
                request = Request(
                    app=self, headers=headers, reader=reader, writer=writer, encoding="utf-8"
                )
                session = AgiSession(request, command_timeout_s=self._command_timeout)
                try:
                    await flow(session)
                except AgiHangup as exc:
                    self._log.info("agi_hangup", script=script, linkedid=linkedid, detail=str(exc))
                except AgiError as exc:
                    self.failed += 1
                    self._log.warning(
                        "agi_failed", script=script, linkedid=linkedid, error=str(exc)
                    )
                except Exception:  # noqa: BLE001 - a flow's bug ends its own session only
                    self.failed += 1
                    self._log.exception("agi_flow_crashed", script=script, linkedid=linkedid)
        finally:
            writer.close()

    async def _headers(self, reader: asyncio.StreamReader) -> dict[str, str] | None:
        try:
            async with asyncio.timeout(self._header_timeout):
                raw = await reader.readuntil(b"\n\n")
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ):
            # a port probe, a half-sent header, a silent client: drop it, alone
            self._log.debug("agi_headers_incomplete")
            return None
        headers: dict[str, str] = {}
        for line in raw.decode("utf-8", "replace").split("\n"):
            name, sep, value = line.partition(": ")
            if sep:
                headers[name.strip()] = value.strip()
        return headers
