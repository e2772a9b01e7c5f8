"""The Asterisk dialplan and fallback queues of the number plan (``cti dialplan``).

Pure functions: a :class:`~cti.numberplan.NumberPlan` and the ``dialplan:`` settings in, the
text of an Asterisk configuration file out, the same bytes for the same configuration (lines,
seats and skills are sorted), so a test can compare the file shipped in ``asterisk-sample/``
with what the configuration generates.

* :func:`generate_dialplan` -> ``extensions_cti.conf`` (``#include``-d by extensions.conf)
* :func:`generate_queues` -> ``queues_cti.conf`` (``#include``-d by queues.conf)

The contexts, the variables the daemon sets and reads, and the fallback rule are the contract
with the daemon; their names are the constants below and docs/dialplan.md describes them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Final

from cti.numberplan import (
    EmergencyTarget,
    EndpointTech,
    EscalationMode,
    Line,
    LineMode,
    NumberPlan,
    endpoint_tech,
)
from cti.settings import DialplanSettings

__all__ = [
    "AFTER_HOURS_VARIABLE",
    "CONTEXT_BLOCKED",
    "CONTEXT_CALLBACK",
    "CONTEXT_CONNECT",
    "CONTEXT_DIAL_SEAT",
    "CONTEXT_ESCALATE",
    "CONTEXT_FALLBACK",
    "CONTEXT_FROM_TRUNK",
    "CONTEXT_HOLD",
    "CONTEXT_INBOUND",
    "CONTEXT_LINE",
    "CONTEXT_PROMPT_CHECK",
    "CONTEXT_RECORD",
    "ENTERED_VARIABLE",
    "LEASE_VARIABLE",
    "PROMPT_CHECK_ID_PREFIX",
    "PROMPT_FORMATS",
    "TAKEN_VARIABLE",
    "VOICEMAIL_VARIABLE",
    "DialplanError",
    "emergency_dial",
    "fallback_queue",
    "generate_dialplan",
    "generate_queues",
]

CONTEXT_FROM_TRUNK: Final = "cti-from-trunk"
"""Context of a trunk endpoint (pjsip.conf ``context = cti-from-trunk``)."""
CONTEXT_INBOUND: Final = "cti-inbound"
"""One extension per number of the plan (and patterns for unknown numbers)."""
CONTEXT_LINE: Final = "cti-line"
"""Common part of every answered line: answer, call id, hold deadline, optional AGI."""
CONTEXT_HOLD: Final = "cti-hold"
"""The holding loop (music); ``s``, priority 1. RONA returns here."""
CONTEXT_FALLBACK: Final = "cti-fallback"
"""Plain Asterisk ``Queue()`` for calls the daemon has not taken."""
CONTEXT_CONNECT: Final = "cti-connect"
"""Redirect target of the daemon: exten = seat id, priority 1."""
CONTEXT_DIAL_SEAT: Final = "cti-dial-seat"
CONTEXT_BLOCKED: Final = "cti-blocked"
"""Redirect target of a blacklisted caller (treatment reject): a prompt, then hang up."""
CONTEXT_PROMPT_CHECK: Final = "cti-prompt-check"
"""Originated by the daemon at start-up: reports which IVR prompts exist (UserEvents)."""
PROMPT_FORMATS: Final = ("gsm", "wav", "ulaw", "alaw", "sln", "g722", "wav16")
PROMPT_CHECK_ID_PREFIX: Final = "ctiprompts"
"""The check channel's ids: its "call" is not a citizen's and is not recorded."""
CONTEXT_CALLBACK: Final = "cti-callback"
"""Originate target of a callback: the seat answered, now dial the citizen (<number>)."""
"""Common part of cti-connect: record, Dial the seat, back to holding on no answer."""
CONTEXT_RECORD: Final = "cti-record"
"""Gosub: start MixMonitor once per call."""
CONTEXT_ESCALATE: Final = "cti-escalate"
"""Redirect target of a blind escalation: exten = the emergency number (110), priority 1."""

TAKEN_VARIABLE: Final = "CTI_TAKEN"
"""Channel variable: ``1`` once the daemon has taken the call (set by cti-connect, or by the
daemon with AMI ``Setvar``). A taken call stays held while the lease is valid."""
LEASE_VARIABLE: Final = "CTI_LEASE_UNTIL"
"""Global variable: epoch seconds until which a running daemon answers for taken calls. The
daemon renews it with AMI ``Setvar`` (no ``Channel``) while it runs."""

ENTERED_VARIABLE: Final = "CTI_ENTERED"
"""Channel variable: when ``cti-line`` put the call in the line (epoch seconds, ms). A daemon
that adopts a waiting call it did not see arrive reads it back, so the call keeps the place
its wait gives it in the one line (cti/adoption.py)."""

AFTER_HOURS_VARIABLE: Final = "CTI_AFTER_HOURS"
"""Channel variable: ``1`` set by the daemon when it found the line closed and takes a
message; the call record's outcome is then ``voicemail`` (not ``abandoned``)."""
VOICEMAIL_VARIABLE: Final = "CTI_VOICEMAIL"
"""Channel variable: ``1`` once the daemon's after-hours flow has dealt with the call (a
message taken, or the caller said nothing): the line's extension then hangs up instead of
holding. Unset (the daemon is down, or failed): the call is held and queued as usual."""

_QUEUE_PREFIX: Final = "cti-"
_CLOSED: Final = "closed"
# Characters that mean something to the config parser (`;`), to application argument
# splitting (`,` `(` `)` `|`), to IF/ExecIf (`?` `:`) or to substitution (`$` `[` `]` `{` `}`)
# are replaced in free text (names, departments) so a name can never change the dialplan.
_UNSAFE_TEXT: Final = re.compile(r"""[\x00-\x1f\x7f;,()|?:$\[\]{}\\"'^]""")
_DIAL_SAFE: Final = re.compile(r"^[A-Za-z0-9/@._+-]+$")
_RULE: Final = "-" * 88


class DialplanError(ValueError):
    """The configuration cannot be turned into a dialplan (names the item)."""


def fallback_queue(skill: str) -> str:
    """Name of the fallback queue of *skill* (``general`` -> ``cti-general``)."""
    return _QUEUE_PREFIX + skill


# --------------------------------------------------------------------------- output


@dataclass(slots=True)
class _Conf:
    """An Asterisk configuration file being written."""

    out: list[str] = field(default_factory=list)

    def comment(self, *lines: str) -> None:
        self.out.extend(f"; {line}".rstrip() for line in lines)

    def blank(self) -> None:
        self.out.append("")

    def section(self, name: str, *comment: str) -> None:
        self.blank()
        self.comment(*comment)
        self.out.append(f"[{name}]")

    def exten(self, name: str, *apps: str) -> None:
        """An extension: the first app at priority 1, the others ``same => n``.

        An app written ``(label)App(...)`` gets a priority label.
        """
        first, *rest = apps
        self.out.append(f"exten => {name},1,{first}")
        for app in rest:
            label, sep, call = app.partition(")") if app.startswith("(") else ("", "", app)
            self.out.append(f" same => n{label}{sep},{call}")

    def text(self) -> str:
        return "\n".join(self.out).lstrip("\n") + "\n"


def _header(conf: _Conf, *, source: str, what: str, regenerate: str) -> None:
    conf.comment(
        f"{what}",
        f"GENERATED by `cti dialplan` from {source} -- DO NOT EDIT BY HAND.",
        "Change the configuration, then regenerate and reload:",
        f"  {regenerate}",
        "Contexts, variables and the fallback rule: docs/dialplan.md.",
    )


def _text(value: str) -> str:
    """Free text made safe to appear in an application argument."""
    return _UNSAFE_TEXT.sub("_", value).strip()


def _dial_string(endpoint: str, where: str) -> str:
    if not _DIAL_SAFE.match(endpoint):
        msg = f"{where}: endpoint {endpoint!r} has characters a dial string cannot carry"
        raise DialplanError(msg)
    return endpoint


def _seconds(value: float) -> int:
    """Whole seconds for Dial()/queues.conf, never shorter than configured."""
    return max(1, math.ceil(value))


# --------------------------------------------------------------------------- dialplan


def generate_dialplan(plan: NumberPlan, settings: DialplanSettings, *, source: str) -> str:
    """The text of ``extensions_cti.conf`` for *plan*.

    Args:
        plan: the number plan (``numberplan:``).
        settings: the ``dialplan:`` section.
        source: the configuration file named in the header comment.

    Raises:
        DialplanError: an endpoint or trunk that cannot be written as a dial string, or a
            sub-centre line without a trunk.
    """
    conf = _Conf()
    _header(
        conf,
        source=source,
        what="extensions_cti.conf: the hotline-cti dialplan of the number plan.",
        regenerate="cti dialplan -o /etc/asterisk/extensions_cti.conf && "
        "asterisk -rx 'dialplan reload'",
    )
    conf.comment(
        "Include it at the end of extensions.conf: #include extensions_cti.conf",
        f"Holding: {settings.hold_timeout_s} s before the fallback Queue(); ring timeout "
        f"{_seconds(plan.queue.ring_timeout_s)} s; recordings in {settings.recording_dir}.",
    )
    _from_trunk(conf)
    _inbound(conf, plan, settings)
    _line(conf, settings)
    _hold(conf, settings)
    _fallback(conf, plan, settings)
    _connect(conf, plan)
    _dial_seat(conf, plan, settings)
    _record(conf, settings)
    _callback(conf, plan, settings)
    _prompt_check(conf)
    conf.section(
        CONTEXT_BLOCKED,
        _RULE,
        "A blacklisted caller (numberplan.blacklist, treatment reject): the daemon Redirects",
        "it here from the holding loop: one prompt, then the line is cleared.",
    )
    conf.exten(
        "s",
        "NoOp(CTI call ${CTI_CALL_ID} from a blacklisted number)",
        "StopMusicOnHold()",
        f"Playback({settings.blocked_prompt})",
        "Hangup()",
    )
    if plan.emergency:
        _escalate(conf, plan)
    return conf.text()


def _from_trunk(conf: _Conf) -> None:
    conf.section(
        CONTEXT_FROM_TRUNK,
        _RULE,
        "Calls from the carrier: set `context = cti-from-trunk` on the trunk's endpoint.",
        "The dialled number (DNIS) is the extension.",
    )
    body = (
        'GotoIf($["${CHANNEL(channeltype)}" != "PJSIP"]?in)',
        "Set(__CTI_TRUNK=${CHANNEL(endpoint)})",
        f"(in)Goto({CONTEXT_INBOUND},${{EXTEN}},1)",
    )
    conf.exten("_X!", "NoOp(CTI trunk call for ${EXTEN})", *body)
    conf.exten("_+X!", "NoOp(CTI trunk call for ${EXTEN})", *body)
    conf.exten("s", "NoOp(CTI trunk call without a dialled number)", f"Goto({CONTEXT_INBOUND},s,1)")


def _inbound(conf: _Conf, plan: NumberPlan, settings: DialplanSettings) -> None:
    conf.section(
        CONTEXT_INBOUND,
        _RULE,
        "One extension per number of the plan. Sets the line variables (inherited by the",
        "seat's leg), then answers and holds (cti-line) or transfers out (sub-centre).",
        "Local/<number>@cti-inbound works like a trunk call (tests, demos).",
    )
    classes = {c.name: c.priority for c in plan.priority_classes}
    for line in sorted(plan.lines, key=lambda item: item.number):
        conf.blank()
        conf.comment(f"{_text(line.name)} {_text(line.department)} ({line.mode.value})".strip())
        if line.mode is LineMode.SUBCENTRE:
            conf.exten(line.number, *_subcentre(plan, line, settings.subcentre_timeout_s))
            continue
        name = _line_class(plan, line, classes)
        apps = [
            f"NoOp({_line_title(line)})",
            *_line_vars(line, line.skill or plan.general_skill, name),
        ]
        if classes.get(name, 0):  # the fallback Queue() serves higher QUEUE_PRIO first
            apps.append(f"Set(QUEUE_PRIO={classes[name]})")
        if line.hours is not None:
            apps += _after_hours(line, settings)
        goto = f"Goto({CONTEXT_LINE},s,1)"
        if line.dispatch110:
            apps += [
                "Set(__CTI_DISPATCH110=1)",
                # PJSIP_HEADER exists only on PJSIP channels; on a Local channel (tests, a
                # transfer that came through the dialplan) it would log an error.
                'GotoIf($["${CHANNEL(channeltype)}" != "PJSIP"]?other)',
                "Set(CTI_X_TRANSFER_ID=${PJSIP_HEADER(read,X-Transfer-Id)})",
                'GotoIf($["${CTI_X_TRANSFER_ID}" = ""]?line)',
                "Set(__CTI_TRANSFER_ID=${CTI_X_TRANSFER_ID})",
                "Goto(line)",
                # a Local channel (a transfer through the dialplan, the tests) brings the id
                # as a variable it inherited: set it again, so the CTI sees it (a VarSet event)
                (
                    '(other)ExecIf($["${CTI_TRANSFER_ID}" != ""]'
                    "?Set(__CTI_TRANSFER_ID=${CTI_TRANSFER_ID}))"
                ),
            ]
            goto = "(line)" + goto
        apps.append(goto)
        if line.hours is not None:
            apps.append(f"({_CLOSED})Hangup()")
        conf.exten(line.number, *apps)
    conf.blank()
    conf.comment("A number that is not in the plan: the general skill, default class.")
    unknown = [
        f"Set(__CTI_LINE_MODE={LineMode.MERGED.value})",
        f"Set(__CTI_SKILL={plan.general_skill})",
        f"Set(__CTI_PRIORITY_CLASS={plan.queue.default_class})",
    ]
    default_prio = classes.get(plan.queue.default_class, 0)
    if default_prio:
        unknown.append(f"Set(QUEUE_PRIO={default_prio})")
    unknown.append(f"Goto({CONTEXT_LINE},s,1)")
    for pattern in ("_X!", "_+X!"):
        conf.exten(
            pattern,
            "NoOp(CTI ${EXTEN} is not in the number plan)",
            "Set(__CTI_DNIS=${EXTEN})",
            *unknown,
        )
    conf.exten("s", "NoOp(CTI call without a dialled number)", *unknown)
    if settings.progress_number is not None:
        conf.blank()
        conf.comment(
            "Self-service progress query (自助查询进度): a ticket number by DTMF, its status",
            "read back by the daemon's FastAGI; no seat involved.",
        )
        conf.exten(
            settings.progress_number,
            "NoOp(CTI progress query)",
            "Answer()",
            f"AGI({settings.ivr_url}/progress)",
            "Hangup()",
        )


def _after_hours(line: Line, settings: DialplanSettings) -> list[str]:
    """A line with business hours asks the daemon before holding: open, the AGI returns at
    once; closed, it takes a message (留言) and sets CTI_VOICEMAIL. The daemon down (AGI
    fails) or the message not taken: on to cti-line, queued like any call (docs/ivr.md)."""
    return [
        f"Set(__CTI_HOURS={line.hours})",
        f"AGI({settings.ivr_url}/hours,${{CTI_LINE}},${{CHANNEL(linkedid)}})",
        f'GotoIf($["${{{VOICEMAIL_VARIABLE}}}" = "1"]?{_CLOSED})',
    ]


def _line_title(line: Line) -> str:
    name = _text(line.name)
    return f"CTI line {line.number}" + (f" {name}" if name != line.number else "")


def _line_class(plan: NumberPlan, line: Line, classes: dict[str, int]) -> str:
    """The line's priority class, as the routing core classifies it (110 lines at least
    ``dispatch110_class``)."""
    names = [line.priority_class]
    if line.dispatch110:
        names.append(plan.queue.dispatch110_class)
    return max(names, key=lambda n: classes.get(n, 0))


def _line_vars(line: Line, skill: str | None, priority_class: str) -> list[str]:
    apps = [
        f"Set(__CTI_LINE={line.number})",
        "Set(__CTI_DNIS=${EXTEN})",
        f"Set(__CTI_LINE_NAME={_text(line.name)})",
        f"Set(__CTI_LINE_MODE={line.mode.value})",
    ]
    if _text(line.department):
        apps.append(f"Set(__CTI_DEPARTMENT={_text(line.department)})")
    if skill is not None:
        apps.append(f"Set(__CTI_SKILL={skill})")
        if line.min_level > 1:
            apps.append(f"Set(__CTI_MIN_LEVEL={line.min_level})")
    if line.language is not None:
        apps.append(f"Set(__CTI_LANGUAGE={line.language})")
    apps.append(f"Set(__CTI_PRIORITY_CLASS={priority_class})")
    return apps


def _subcentre(plan: NumberPlan, line: Line, timeout: int) -> list[str]:
    where = f"line {line.number}"
    trunk = next((t for t in plan.trunks if t.name == line.trunk), None)
    if trunk is None or line.transfer_to is None:
        msg = f"{where}: a subcentre line needs a trunk to transfer by (trunk:)"
        raise DialplanError(msg)
    dial = _dial_string(_trunk_dial(trunk.endpoint, line.transfer_to), f"{where} trunk")
    return [
        f"NoOp({_line_title(line)}: to the sub-centre {line.transfer_to})",
        *_line_vars(line, None, line.priority_class),
        f"Set(__CTI_TRANSFER_TO={line.transfer_to})",
        # not answered here: the sub-centre answers (and its ringing reaches the caller)
        f"Dial({dial},{timeout})",
        'GotoIf($["${DIALSTATUS}" = "ANSWER"]?done)',
        "Set(CTI_SUBCENTRE_STATUS=${DIALSTATUS})",
        f"Set(__CTI_SKILL={plan.general_skill})",
        f"Goto({CONTEXT_LINE},s,1)",
        "(done)Hangup()",
    ]


def _callback(conf: _Conf, plan: NumberPlan, settings: DialplanSettings) -> None:
    dial = settings.callback_dial
    if dial is None and plan.trunks:
        dial = _trunk_dial(plan.trunks[0].endpoint, "${EXTEN}")
    if dial is None:
        return  # no way out to citizens: no callbacks
    conf.section(
        CONTEXT_CALLBACK,
        _RULE,
        "A callback (漏接电话回拨): the daemon Originates the seat's phone into here; once the",
        "agent answers, the citizen (<exten>) is dialled and the call recorded.",
    )
    conf.exten(
        "_X!",
        "NoOp(CTI callback of ${CTI_CALLBACK_OF} by seat ${CTI_SEAT} to ${EXTEN})",
        "Set(__CTI_CALL_ID=${CHANNEL(linkedid)})",
        f"Gosub({CONTEXT_RECORD},s,1)",
        f"Dial({dial},45)",
        "Hangup()",
    )


def _prompt_check(conf: _Conf) -> None:
    conf.section(
        CONTEXT_PROMPT_CHECK,
        _RULE,
        "The daemon's check of the IVR prompts (cti/ivr/prompts.py): it Originates a Local",
        "channel here with CTI_PROMPT_FILES = file bases joined by ^; one UserEvent per file",
        "with a 0/1 per format. STAT() runs here, in a channel: over AMI it is refused.",
        "A relative name is looked for in CTI_PROMPT_DIR (<data dir>/sounds/<language>).",
    )
    found = "".join(f"${{STAT(e,${{P}}.{fmt})}}" for fmt in PROMPT_FORMATS)
    conf.exten(
        "s",
        "Answer()",  # the Originate reports success once the channel is answered
        "Set(I=1)",
        "(next)Set(F=${CUT(CTI_PROMPT_FILES,^,${I})})",
        'GotoIf($["${F}" = ""]?done)',
        'Set(P=${IF($["${F:0:1}" = "/"]?${F}:${CTI_PROMPT_DIR}/${F})})',
        f"UserEvent(CtiPromptCheck,Base: ${{F}},Found: {found})",
        "Set(I=$[${I} + 1])",
        "Goto(next)",
        "(done)UserEvent(CtiPromptCheckDone,Checked: $[${I} - 1])",
        "Hangup()",
    )


def _trunk_dial(endpoint: str, number: str) -> str:
    """The dial string of *number* over a trunk whose endpoint is *endpoint*."""
    tech = endpoint_tech(endpoint)
    resource = endpoint.partition("/")[2]
    if tech is EndpointTech.PJSIP:
        return f"PJSIP/{number}@{resource}"
    if tech is EndpointTech.LOCAL:  # Local/<context> or Local/<anything>@<context>
        return f"Local/{number}@{resource.rpartition('@')[2]}"
    return f"{endpoint}/{number}"  # SIP/peer/n, IAX2/peer/n, DAHDI/g1/n


def _line(conf: _Conf, settings: DialplanSettings) -> None:
    conf.section(
        CONTEXT_LINE,
        _RULE,
        "Every answered line: answer, call id (the linkedid unless already set), music",
        f"class, the hold deadline (now + {settings.hold_timeout_s} s), optional FastAGI,",
        "the time it joins the line (CTI_ENTERED: a restarted daemon keeps its place).",
    )
    apps = [
        "Answer()",
        'Set(__CTI_CALL_ID=${IF($["${CTI_CALL_ID}" = ""]?${CHANNEL(linkedid)}:${CTI_CALL_ID})})',
        f"Set(CHANNEL(musicclass)={settings.moh_class})",
        f"Set(CTI_HOLD_UNTIL=$[${{EPOCH}} + {settings.hold_timeout_s}])",
    ]
    if settings.agi_url is not None:
        apps.append(f"AGI({settings.agi_url})")
    # STRFTIME's %3q: milliseconds (EPOCH is whole seconds; calls arrive closer than that)
    apps.append(f"Set({ENTERED_VARIABLE}=${{STRFTIME(,,%s.%3q)}})")
    apps.append(f"Goto({CONTEXT_HOLD},s,1)")
    conf.exten("s", *apps)


def _hold(conf: _Conf, settings: DialplanSettings) -> None:
    conf.section(
        CONTEXT_HOLD,
        _RULE,
        "The holding loop: music until the daemon Redirects the call to cti-connect.",
        "Leaves for the fallback Queue() when the hold deadline has passed and either the",
        f"daemon has not taken the call ({TAKEN_VARIABLE} != 1) or its lease (global",
        f"{LEASE_VARIABLE}, epoch s) has run out. Sleeps until the next deadline: no",
        "polling, a handful of AMI events per call.",
    )
    check = [
        "(check)Set(CTI_HOLD_LEFT=$[0${CTI_HOLD_UNTIL} - ${EPOCH}])",
        "GotoIf($[${CTI_HOLD_LEFT} > 0]?wait)",
        f'GotoIf($["${{{TAKEN_VARIABLE}}}" != "1"]?fallback)',
        f"Set(CTI_HOLD_LEFT=$[0${{GLOBAL({LEASE_VARIABLE})}} - ${{EPOCH}}])",
        "GotoIf($[${CTI_HOLD_LEFT} > 0]?wait)",
        f"(fallback)Goto({CONTEXT_FALLBACK},s,1)",
    ]
    every = settings.announce_every_s
    if not every:
        conf.exten("s", "StartMusicOnHold()", *check, "(wait)Wait(${CTI_HOLD_LEFT})", "Goto(check)")
        return
    conf.comment(
        "Waiting announcements: a call the daemon has taken hears its place in the line and",
        f"the expected wait after {settings.announce_first_s} s, then every {every} s "
        "(AGI announce; no",
        "Redirect, so the daemon's view of the hold is unchanged). If the daemon is down the",
        "AGI fails at once and the call waits on.",
    )
    conf.exten(
        "s",
        "StartMusicOnHold()",
        'Set(CTI_NEXT_ANNOUNCE=${IF($["${CTI_NEXT_ANNOUNCE}" = ""]?'
        f"$[${{EPOCH}} + {settings.announce_first_s}]:${{CTI_NEXT_ANNOUNCE}})}})",
        *check,
        f'(wait)GotoIf($["${{{TAKEN_VARIABLE}}}" != "1"]?sleep)',
        "GotoIf($[${EPOCH} < ${CTI_NEXT_ANNOUNCE}]?sleep)",
        f"Set(CTI_NEXT_ANNOUNCE=$[${{EPOCH}} + {every}])",
        f"AGI({settings.ivr_url}/announce,${{CHANNEL(linkedid)}})",
        # the caller pressed for a callback: the daemon keeps its place, the line is cleared
        'GotoIf($["${CTI_CALLBACK_KEEP}" = "1"]?bye)',
        "StartMusicOnHold()",
        "Goto(check)",
        # sleep until the next announcement or the next deadline, whichever comes first
        "(sleep)Set(CTI_SLEEP=$[${CTI_NEXT_ANNOUNCE} - ${EPOCH}])",
        "Wait(${IF($[${CTI_SLEEP} < ${CTI_HOLD_LEFT} & ${CTI_SLEEP} > 0]"
        "?${CTI_SLEEP}:${CTI_HOLD_LEFT})})",
        "Goto(check)",
        "(bye)Hangup()",
    )


def _fallback(conf: _Conf, plan: NumberPlan, settings: DialplanSettings) -> None:
    general = fallback_queue(plan.general_skill)
    wait = settings.fallback_skill_wait_s
    conf.section(
        CONTEXT_FALLBACK,
        _RULE,
        "The daemon did not take the call: plain app_queue, static members = the plan's",
        f"seats (queues_cti.conf). A call needing another skill tries cti-<skill> for {wait} s",
        f"first, then {general}. The daemon may still Redirect the call to cti-connect.",
    )
    apps = [
        "NoOp(CTI call ${CTI_CALL_ID} was not taken by the daemon: fallback queue)",
        "StopMusicOnHold()",
        "Set(CTI_FALLBACK=1)",
        f"Gosub({CONTEXT_RECORD},s,1)",
    ]
    if wait > 0:
        apps += [
            f'GotoIf($["${{CTI_SKILL}}" = "" | "${{CTI_SKILL}}" = "{plan.general_skill}"]?general)',
            f"Queue({_QUEUE_PREFIX}${{CTI_SKILL}},,,,{wait})",
        ]
    apps += [
        f"(general)Queue({general})",
        # joinempty/leavewhenempty keep a caller in the queue; this is a failed queue only
        "NoOp(CTI fallback queue returned ${QUEUESTATUS})",
        "Wait(1)",
        "Goto(general)",
    ]
    conf.exten("s", *apps)


def _connect(conf: _Conf, plan: NumberPlan) -> None:
    conf.section(
        CONTEXT_CONNECT,
        _RULE,
        "Redirect target of the daemon: Context=cti-connect, Exten=<seat id>, Priority=1,",
        "Channel=the held channel (the ;2 half of a Local pair). Optional channel variables,",
        "set with AMI Setvar before the Redirect: CTI_SEAT_ENDPOINT (dial string instead of",
        "the plan's), CTI_RING_TIMEOUT (s), __CTI_CALL_ID, __CTI_TICKET.",
    )
    for seat in sorted(plan.seats, key=lambda s: s.id):
        dial = _dial_string(seat.endpoint, f"seat {seat.id}")
        conf.exten(
            seat.id,
            f"Set(__CTI_SEAT={seat.id})",
            f"Set(CTI_SEAT_DIAL={dial})",
            'GotoIf($["${CTI_SEAT_ENDPOINT}" = ""]?dial)',
            "Set(CTI_SEAT_DIAL=${CTI_SEAT_ENDPOINT})",
            f"(dial)Goto({CONTEXT_DIAL_SEAT},s,1)",
        )
    conf.comment("A seat that is not in the plan: only with CTI_SEAT_ENDPOINT.")
    conf.exten(
        "_[0-9A-Za-z]!",
        "Set(__CTI_SEAT=${EXTEN})",
        'GotoIf($["${CTI_SEAT_ENDPOINT}" = ""]?noseat)',
        "Set(CTI_SEAT_DIAL=${CTI_SEAT_ENDPOINT})",
        f"Goto({CONTEXT_DIAL_SEAT},s,1)",
        "(noseat)Set(CTI_CONNECT_STATUS=NOSEAT)",
        f"Goto({CONTEXT_HOLD},s,1)",
    )


def _dial_seat(conf: _Conf, plan: NumberPlan, settings: DialplanSettings) -> None:
    ring = _seconds(plan.queue.ring_timeout_s)
    options = settings.dial_options
    after: list[str] = ["(done)Hangup()"]
    if settings.survey:
        # g: when the seat hangs up first, the caller goes on here, to the one-key survey
        # (满意度评价); a caller who hangs up first is simply gone. If the daemon's FastAGI
        # is down, AGI() fails (AGISTATUS=FAILURE) and the call just ends.
        options += "" if "g" in options else "g"
        # CTI_NO_SURVEY: set by the daemon on a call escalated three-way (the caller's last
        # words were with 110, not with 12345)
        after = [
            '(done)GotoIf($["${CTI_NO_SURVEY}" = "1"]?end)',
            f"AGI({settings.ivr_url}/survey,${{CHANNEL(linkedid)}})",
            "(end)Hangup()",
        ]
    conf.section(
        CONTEXT_DIAL_SEAT,
        _RULE,
        f"Record, ring the seat (CTI_RING_TIMEOUT or {ring} s), and on no answer / busy /",
        "unavailable go back to the holding loop (RONA): the daemon offers the call to the",
        "next seat. CTI_CONNECT_STATUS = DIALSTATUS of the attempt.",
    )
    conf.exten(
        "s",
        "NoOp(CTI call ${CTI_CALL_ID} to seat ${CTI_SEAT} at ${CTI_SEAT_DIAL})",
        "StopMusicOnHold()",
        f"Set({TAKEN_VARIABLE}=1)",
        f"Gosub({CONTEXT_RECORD},s,1)",
        f'Set(CTI_RING=${{IF($["${{CTI_RING_TIMEOUT}}" = ""]?{ring}:${{CTI_RING_TIMEOUT}})}})',
        f"Dial(${{CTI_SEAT_DIAL}},${{CTI_RING}},{options})",
        "Set(CTI_CONNECT_STATUS=${DIALSTATUS})",
        # per-attempt variables must not leak into the next attempt (next seat)
        "Set(CTI_SEAT_ENDPOINT=)",
        "Set(CTI_RING_TIMEOUT=)",
        'GotoIf($["${DIALSTATUS}" = "ANSWER"]?done)',
        f"Goto({CONTEXT_HOLD},s,1)",
        *after,
    )


def _record(conf: _Conf, settings: DialplanSettings) -> None:
    path = f"{settings.recording_dir}/${{CTI_CALL_ID}}.{settings.recording_format}"
    conf.section(
        CONTEXT_RECORD,
        _RULE,
        "Gosub: one MixMonitor per call (b: only while bridged, so no hold music), however",
        "many seats it rings; the file name is in CTI_RECORDING.",
    )
    conf.exten(
        "s",
        'GotoIf($["${CTI_RECORDING}" != ""]?done)',
        f"Set(__CTI_RECORDING={path})",
        "MixMonitor(${CTI_RECORDING},b)",
        "(done)Return()",
    )


def emergency_dial(plan: NumberPlan, target: EmergencyTarget) -> str:
    """The dial string of an emergency service: its endpoint, or its number over its trunk.

    Raises:
        DialplanError: a trunk that is not in the plan, or characters a dial string cannot
            carry.
    """
    where = f"emergency {target.number}"
    if target.endpoint is not None:
        return _dial_string(target.endpoint, where)
    trunk = next((t for t in plan.trunks if t.name == target.trunk), None)
    if trunk is None:
        msg = f"{where}: unknown trunk {target.trunk!r}"
        raise DialplanError(msg)
    return _dial_string(_trunk_dial(trunk.endpoint, target.number), f"{where} trunk")


def _escalate(conf: _Conf, plan: NumberPlan) -> None:
    conf.section(
        CONTEXT_ESCALATE,
        _RULE,
        "Blind escalation (一键转接 to 110/119/120/122): the daemon Redirects the caller's",
        "channel here (Exten=<number>) out of its seat's Dial, which ends the seat's leg.",
        "Unanswered: back to cti-hold, where the daemon queues the caller again (110 class).",
        "Three-way calls need no dialplan: the daemon Originates the operator's leg into",
        "the caller's bridge (Application=BridgeAdd). docs/escalation.md.",
    )
    for target in sorted(plan.emergency, key=lambda t: t.number):
        if EscalationMode.BLIND not in target.modes:
            continue
        conf.exten(
            target.number,
            f"NoOp(CTI call ${{CTI_CALL_ID}} escalated to {target.number} {_text(target.name)})",
            f"Set(__CTI_ESCALATED_TO={target.number})",
            f"Dial({emergency_dial(plan, target)},{_seconds(target.ring_timeout_s)})",
            "Set(CTI_ESCALATION_STATUS=${DIALSTATUS})",
            'GotoIf($["${DIALSTATUS}" = "ANSWER"]?done)',
            f"Goto({CONTEXT_HOLD},s,1)",
            "(done)Hangup()",
        )


# --------------------------------------------------------------------------- queues


def generate_queues(plan: NumberPlan, settings: DialplanSettings, *, source: str) -> str:
    """The text of ``queues_cti.conf``: one fallback queue per skill a line needs.

    Static members are the seats with that skill (``member => endpoint,0,seat id``), all at
    penalty 0: in the fallback nobody knows who is at their desk, so every seat gets its turn.

    Raises:
        DialplanError: a seat endpoint that cannot be written as a queue member.
    """
    conf = _Conf()
    _header(
        conf,
        source=source,
        what="queues_cti.conf: the fallback queues of hotline-cti (used when the daemon is down).",
        regenerate="cti dialplan --queues -o /etc/asterisk/queues_cti.conf && "
        "asterisk -rx 'queue reload all'",
    )
    conf.comment("Include it at the end of queues.conf: #include queues_cti.conf")
    skills = {plan.general_skill}
    skills.update(line.skill for line in plan.lines if line.skill is not None)
    for skill in sorted(skills):
        conf.section(fallback_queue(skill))
        conf.out += [
            "strategy = rrmemory",
            f"timeout = {_seconds(plan.queue.ring_timeout_s)}",
            "retry = 1",
            f"wrapuptime = {math.floor(plan.queue.wrapup_s)}",
            "ringinuse = no",
            "joinempty = yes",
            "leavewhenempty = no",
            f"musicclass = {settings.moh_class}",
            "announce-frequency = 0",
            "periodic-announce-frequency = 0",
            "announce-holdtime = no",
            "announce-position = no",
        ]
        for seat in sorted(plan.seats, key=lambda s: s.id):
            if skill in seat.skills:
                dial = _dial_string(seat.endpoint, f"seat {seat.id}")
                conf.out.append(f"member => {dial},0,{seat.id}")
    return conf.text()
