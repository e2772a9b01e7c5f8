"""`cti seat-console SEAT`: a terminal agent desktop — the reference client of the MQTT
contract (docs/mqtt.md), for admins testing a seat.

It shows the seat's state, its screen-pops and the replies to its commands, and reads
commands from standard input, one per line:

    login [ready] | ready | notready REASON | logout | done | extend SECONDS |
    transfer TARGET | quit

It knows only the documented topics and payloads: nothing here imports the daemon's core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from typing import Any, Final, TextIO

import aiomqtt

from cti.jsonin import JsonRefused, load_json
from cti.settings import MqttSettings

__all__ = ["parse_line", "render", "seat_console"]

USAGE = (
    "commands: login [ready] | ready | notready meal|meeting|training|rest|other | logout | "
    "done | extend SECONDS | transfer LINE-OR-SKILL | escalate 110 [threeway] | leave | quit"
)

BROKER_REFUSED: Final = 3  # exit status: the broker is unreachable or refused the login
MAX_SHOWN_BYTES: Final = 64 * 1024  # a message to show is parsed up to this size


def _no_args(cmd: str) -> Any:
    return lambda args: {"cmd": cmd} if not args else None


def _seconds(args: list[str]) -> dict[str, Any] | None:
    try:
        return {"cmd": "wrapup_extend", "seconds": float(args[0])} if len(args) == 1 else None
    except ValueError:
        return None


_COMMANDS: dict[str, Any] = {
    "ready": _no_args("ready"),
    "logout": _no_args("logout"),
    "done": _no_args("wrapup_done"),
    "login": lambda a: {"cmd": "login", "ready": bool(a)} if a in ([], ["ready"]) else None,
    "notready": lambda a: {"cmd": "not_ready", "reason": a[0]} if len(a) == 1 else None,
    "extend": _seconds,
    "transfer": lambda a: {"cmd": "transfer", "target": a[0]} if len(a) == 1 else None,
    # 12345 -> 110/119/120/122: blind (一键转接) unless `threeway` (三方通话)
    "escalate": lambda a: (
        {"cmd": "escalate", "target": a[0], "mode": a[1] if len(a) == 2 else "blind"}
        if len(a) in {1, 2}
        else None
    ),
    "leave": _no_args("leave"),
}


def parse_line(line: str) -> dict[str, Any] | str:
    """A command line -> the command object, or an error text. The daemon validates the
    values (a reason it does not know comes back as a refused reply)."""
    words = line.split()
    if not words:
        return "empty line"
    build = _COMMANDS.get(words[0].lower())
    cmd = build(words[1:]) if build is not None else None
    if cmd is None:
        return f"unknown command {line.strip()!r}; {USAGE}"
    return dict(cmd)


def render(kind: str, body: Any) -> str:
    """One line for a message of the seat's topics."""
    if not isinstance(body, dict):
        return f"[{kind}] {body!r}"
    if kind == "state":
        reason = f" ({body.get('reason')})" if body.get("reason") else ""
        on_call = f" call {body.get('call_id')}" if body.get("call_id") else ""
        return f"[state] {body.get('status')}{reason}{on_call}"
    if kind == "reply":
        if body.get("ok"):
            return f"[reply] ok {body.get('cmd', '')}"
        err = body.get("error") or {}
        return f"[reply] REFUSED {err.get('code')}: {err.get('message')}"
    if kind == "pop":
        call: dict[str, Any] = body.get("call") or {}
        who = f"{call.get('caller_name') or ''} {call.get('caller') or ''}".strip()
        line = f"{call.get('line_name') or call.get('line') or ''} {call.get('department') or ''}"
        text = f"[pop {body.get('type')}] {who} -> {line.strip()} ticket {body.get('ticket')}"
        history = body.get("history")
        if isinstance(history, dict):
            text += (
                f" | earlier calls {len(history.get('calls', []))}, tickets "
                f"{len(history.get('tickets', []))}"
                + (" | REPEAT CALLER" if history.get("repeat_caller") else "")
            )
        if body.get("type") == "end":
            text += f" | {call.get('outcome') or call.get('reason') or ''}"
        return text
    return f"[{kind}] {json.dumps(body, ensure_ascii=False)}"


async def _read_lines(queue: asyncio.Queue[str | None], stdin: TextIO) -> None:
    # a pipe reader on the loop, not a thread blocked in readline(): a thread would keep
    # the process alive after `quit` until stdin closes
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    try:
        while line := await reader.readline():
            await queue.put(line.decode("utf-8", "replace"))
        await queue.put(None)
    finally:
        transport.close()


async def _show(client: aiomqtt.Client, say: Any) -> None:
    async for msg in client.messages:
        kind = msg.topic.value.rsplit("/", 1)[-1]
        raw = msg.payload if isinstance(msg.payload, bytes) else b""
        try:
            body = load_json(raw, max_bytes=MAX_SHOWN_BYTES)
        except JsonRefused:
            body = raw[:MAX_SHOWN_BYTES]
        say(render(kind, body))


async def _send(
    client: aiomqtt.Client, base: str, lines: asyncio.Queue[str | None], say: Any
) -> None:
    while (line := await lines.get()) is not None:
        if line.strip().lower() in {"quit", "exit"}:
            return
        if not line.strip():
            continue
        cmd = parse_line(line)
        if isinstance(cmd, str):
            say(f"[error] {cmd}")
            continue
        cmd["request_id"] = uuid.uuid4().hex[:8]
        try:
            await client.publish(f"{base}/cmd", json.dumps(cmd), qos=1)
        except aiomqtt.MqttError:
            # the connection went with it: say so rather than resend a command the agent
            # may already have replaced (the state after the reconnect tells what holds)
            say(f"[error] not sent, the broker went away: {line.strip()}")
            raise


async def _connect(
    settings: MqttSettings, seat: str, username: str | None, password: str | None, start: int
) -> tuple[aiomqtt.Client, int] | list[str]:
    """The first broker from `start` on (mqtt.failover order) that takes the login; or why
    none did."""
    brokers = settings.brokers()
    errors: list[str] = []
    for k in range(len(brokers)):
        index = (start + k) % len(brokers)
        host, port = brokers[index]
        client = aiomqtt.Client(
            host,
            port,
            username=username or seat,
            password=password,
            identifier=f"seat-console-{seat}-{uuid.uuid4().hex[:6]}",
            # the daemon's mqtt.tls: the same broker listener, the same CA and name check
            tls_context=settings.tls.client_context() if settings.tls is not None else None,
        )
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            errors.append(f"{host}:{port}: {exc}")
            continue
        return client, index
    return errors


async def seat_console(
    settings: MqttSettings,
    seat: str,
    *,
    username: str | None = None,
    password: str | None = None,
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
) -> int:
    """Run the console until `quit` or the end of standard input.

    It logs in as the seat (`username`, default the seat id), not as the daemon: the
    broker's ACL (docs/mqtt.md) then shows it exactly what that agent's desktop would see.
    """
    base = f"{settings.prefix}/seats/{seat}"
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    reader = asyncio.create_task(_read_lines(lines, stdin))
    try:
        index, first = 0, True
        while True:
            got = await _connect(settings, seat, username, password, index)
            if isinstance(got, list):
                # e.g. "[code:135] Not authorized": a wrong CTI_SEAT_PASSWORD, or a user the
                # ACL does not know — say so in one line, not with a traceback
                sys.stderr.write(
                    f"cannot log in to the broker as {username or seat!r}: "
                    f"{'; '.join(got)} (password from $CTI_SEAT_PASSWORD)\n"
                )
                return BROKER_REFUSED
            client, index = got
            where = "{}:{}".format(*settings.brokers()[index])
            if await _serve(client, base, lines, say, where=where, first=first):
                return 0
            first = False
            index += 1  # the next broker first: this one just failed (mqtt.failover)
    finally:
        reader.cancel()


async def _serve(
    client: aiomqtt.Client,
    base: str,
    lines: asyncio.Queue[str | None],
    say: Any,
    *,
    where: str,
    first: bool,
) -> bool:
    """One connection's life: True when the agent quit, False when the broker went away."""
    async with contextlib.AsyncExitStack() as stack:
        # leaving a dead connection raises again; it is already reported
        stack.push_async_exit(_QuietExit(client))
        try:
            for kind in ("state", "pop", "reply"):
                await client.subscribe(f"{base}/{kind}", qos=1)
        except aiomqtt.MqttError as exc:
            say(f"[broker] {where} went away: {exc}; trying the next")
            return False
        say(
            f"seat {seat_of(base)} on {where} ({base}); {USAGE}"
            if first
            else f"[broker] on {where}"
        )
        shower = asyncio.create_task(_show(client, say))
        sender = asyncio.create_task(_send(client, base, lines, say))
        try:
            await asyncio.wait({shower, sender}, return_when=asyncio.FIRST_COMPLETED)
            if sender.done() and sender.exception() is None:
                await asyncio.sleep(1.0)  # let the last replies arrive
                return True
            failed = sender if sender.done() else shower
            say(f"[broker] {where} went away: {failed.exception()}; trying the next")
            return False
        finally:
            for task in (shower, sender):
                task.cancel()
            for task in (shower, sender):
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await task


def seat_of(base: str) -> str:
    return base.rsplit("/", 1)[-1]


class _QuietExit:
    """Leave an aiomqtt client whose connection may already be gone."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(None, None, None)
