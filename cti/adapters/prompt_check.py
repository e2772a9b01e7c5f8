"""Are the configured prompts on the Asterisk side? (asked over AMI, at start-up and by
`cti check-config --live`).

Asterisk 22's CLI has no "does this sound exist" without its media index, and STAT() is
refused when evaluated over AMI (AMI cannot run functions that touch the file system). So
the daemon Originates a Local channel into the generated `cti-prompt-check` context, which
runs STAT() for each prompt in the usual formats and answers with one UserEvent each. A
prompt named `vm-goodbye` is looked for as `<data directory>/sounds/<default
language>/vm-goodbye.<format>`; an absolute name as is. The data directory and language
come from `core show settings` (an AMI Command, which is allowed).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from cti.adapters.ami import AmiClient, EventQueue
from cti.dialplan.contract import CONTEXT_PROMPT_CHECK, PROMPT_CHECK_ID_PREFIX
from cti.events import AmiEvent
from cti.settings import Settings

__all__ = ["PREFIX", "PromptCheck", "ami_cli", "check_live", "configured_prompts", "run_check"]


Cli = Callable[[str], Awaitable[str]]  # runs one CLI command, returns its output


# str fields of these sections that are not sounds
_NOT_PROMPTS: Final = frozenset({"key", "message_key"})
# an AMI line is at most 1024 bytes: the prompt list goes in chunks, one channel each
_CHUNK: Final = 700


def configured_prompts(settings: Settings) -> dict[str, str]:
    """Every prompt of the configuration: its setting's path -> the sound name."""
    ivr = settings.ivr
    found: dict[str, str] = {"dialplan.blocked_prompt": settings.dialplan.blocked_prompt}
    for section_name in ("survey", "progress_query", "announce", "callback_offer", "voicemail"):
        section = getattr(ivr, section_name, None)
        if section is None:
            continue
        for field, value in section.model_dump().items():
            if isinstance(value, str) and field not in _NOT_PROMPTS:
                found[f"ivr.{section_name}.{field}"] = value
            elif field == "status_prompts" and isinstance(value, dict):
                for status, prompt in value.items():
                    found[f"ivr.{section_name}.status_prompts.{status}"] = str(prompt)
    return found


PREFIX: Final = PROMPT_CHECK_ID_PREFIX


class PromptCheck:
    """One check: which bases to look for, and the answers as they come (UserEvents)."""

    def __init__(self, prompts: dict[str, str], settings_text: str, check_id: str) -> None:
        datadir = _setting(settings_text, "Data directory") or "/usr/share/asterisk"
        lang = _setting(settings_text, "Default language") or "en"
        self.check_id = check_id
        self.directory = f"{datadir}/sounds/{lang}"  # where a relative name is looked for
        self.by_base: dict[str, list[tuple[str, str]]] = {}  # the name as configured
        for path, name in prompts.items():
            self.by_base.setdefault(name, []).append((path, name))
        self.found: dict[str, bool] = {}
        self.done = asyncio.Event()

    def originates(self) -> list[dict[str, str]]:
        """One Originate per chunk of names (an AMI line has at most 1024 bytes)."""
        chunks: list[list[str]] = [[]]
        for name in self.by_base:
            if chunks[-1] and len("^".join([*chunks[-1], name])) > _CHUNK:
                chunks.append([])
            chunks[-1].append(name)
        return [
            {
                "Action": "Originate",
                "Channel": f"Local/s@{CONTEXT_PROMPT_CHECK}",
                "Application": "Wait",
                "Data": "30",
                "Async": "true",
                "Variable": f"CTI_PROMPT_DIR={self.directory},CTI_PROMPT_FILES=" + "^".join(names),
                "ChannelId": f"{self.check_id}{n}",
                "OtherChannelId": f"{self.check_id}{n}b",
            }
            for n, names in enumerate(chunks)
        ]

    def feed(self, headers: Mapping[str, str]) -> None:
        kind = headers.get("UserEvent")
        if kind == "CtiPromptCheck":
            base = headers.get("Base", "")
            if base in self.by_base:
                self.found[base] = "1" in headers.get("Found", "")
        elif kind == "CtiPromptCheckDone" and len(self.found) >= len(self.by_base):
            self.done.set()
        if len(self.found) >= len(self.by_base):
            self.done.set()

    def missing(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for base, uses in self.by_base.items():
            if not self.found.get(base, False):
                out.update(uses)
        return out


async def run_check(
    client: Any, prompts: dict[str, str], *, timeout_s: float = 15.0
) -> PromptCheck:
    """Start a check through `client` (an AmiClient); the caller feeds it the UserEvents
    and awaits `check.done`."""
    settings_text = await ami_cli(client)("core show settings")
    check = PromptCheck(prompts, settings_text, f"{PREFIX}{uuid.uuid4().hex[:12]}")
    if not check.by_base:
        check.done.set()
        return check
    for action in check.originates():
        await client.action(action, timeout=timeout_s)
    return check


def _setting(text: str, name: str) -> str | None:
    m = re.search(rf"{re.escape(name)}:\s*(\S+)", text)
    return m.group(1) if m else None


async def check_live(settings: Settings, *, timeout_s: float = 20.0) -> dict[str, dict[str, str]]:
    """Log in to every AMI node and ask: node -> the missing prompts (path -> name).

    Raises:
        TimeoutError: a node could not be reached and asked within `timeout_s`.
    """
    prompts = configured_prompts(settings)
    result: dict[str, dict[str, str]] = {}
    for node in settings.ami.nodes:
        events = EventQueue(10_000)
        client = AmiClient(node, events)
        task = asyncio.create_task(client.run())
        try:
            async with asyncio.timeout(timeout_s):
                await client.wait_connected(timeout_s)
                check = await run_check(client, prompts)
                while not check.done.is_set():
                    item = await events.get()
                    if isinstance(item, AmiEvent) and item.name == "UserEvent":
                        check.feed(item.headers)
                result[node.name] = check.missing()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return result


def ami_cli(client: Any) -> Cli:
    """`Cli` over an AMI client's `Command` action (its output lines joined)."""

    async def run(command: str) -> str:
        reply = await client.action({"Action": "Command", "Command": command})
        return str(reply.response.get("Output", ""))

    return run
