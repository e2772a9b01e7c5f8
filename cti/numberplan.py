"""The number plan: lines, trunks, skills, seats, priority classes, hours and overflow steps.

This is the ``numberplan:`` section of ``config/cti.yaml``. Like every configuration model it
is frozen and forbids unknown keys; the cross-checks that need the whole plan (a number mapped
twice, a skill that no seat has, an endpoint with an unknown channel technology, a seat id
listed twice, overflow steps whose ``after_s`` do not increase, ...) run in
:meth:`NumberPlan._check_plan` and name the items involved.

Nothing here performs I/O; :mod:`cti.routing` turns a plan into the routing rules the core
uses (``RoutingRules.from_plan``).
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Annotated, Final, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "ENDPOINT_TECHS",
    "BusinessHours",
    "EmergencyTarget",
    "EndpointTech",
    "EscalationMode",
    "HoursRule",
    "Line",
    "LineMode",
    "NumberPlan",
    "OverflowStep",
    "OverflowTarget",
    "PriorityClass",
    "QueueSettings",
    "SeatConfig",
    "Skill",
    "Trunk",
    "Weekday",
    "endpoint_tech",
]

_FROZEN: Final = ConfigDict(frozen=True, extra="forbid")

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=40)]
Digits = Annotated[str, Field(pattern=r"^\+?[0-9]{3,20}$")]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Level = Annotated[int, Field(ge=1, le=10)]


class EndpointTech(enum.StrEnum):
    """Asterisk channel technologies a seat or trunk endpoint may use."""

    PJSIP = "PJSIP"
    SIP = "SIP"
    IAX2 = "IAX2"
    DAHDI = "DAHDI"
    LOCAL = "Local"


ENDPOINT_TECHS: Final = tuple(t.value for t in EndpointTech)
_TECH_BY_LOWER: Final = {t.value.lower(): t for t in EndpointTech}


def endpoint_tech(endpoint: str) -> EndpointTech:
    """The technology of a dial string (``PJSIP/1001`` -> ``PJSIP``), case-insensitively.

    Raises:
        ValueError: no ``TECH/resource`` shape, or a technology not in :data:`ENDPOINT_TECHS`.
    """
    tech, sep, resource = endpoint.partition("/")
    if not sep or not tech or not resource:
        msg = f"endpoint {endpoint!r} is not TECH/resource (e.g. PJSIP/1001, Local/1001@seats)"
        raise ValueError(msg)
    found = _TECH_BY_LOWER.get(tech.lower())
    if found is None:
        msg = f"unknown endpoint technology {tech!r} in {endpoint!r} (allowed: " + ", ".join(
            ENDPOINT_TECHS
        )
        raise ValueError(msg + ")")
    return found


def _canonical_endpoint(endpoint: str) -> str:
    tech = endpoint_tech(endpoint)
    return f"{tech.value}/{endpoint.partition('/')[2]}"


class LineMode(enum.StrEnum):
    """How a number joined 12345 (the three merge modes of 国办发 2020 No. 53)."""

    MERGED = "merged"
    """取消号码整体并入: answered by general seats (the plan's general skill by default)."""
    DEDICATED = "dedicated"
    """双号并行: the number's own seats, merged into the 12345 platform, found by skill."""
    SUBCENTRE = "subcentre"
    """分中心: transferred out to the department's own centre (``transfer_to``)."""


class Weekday(enum.StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


_HHMM: Final = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")


class Skill(BaseModel):
    """A skill seats can have and calls can require (市场监管, 人社, 方言, English...)."""

    model_config = _FROZEN

    name: Slug = Field(description="Skill id used by lines, seats and overflow steps.")
    description: str = Field(default="", description="Human name, e.g. 市场监管.")


class PriorityClass(BaseModel):
    """A priority class of waiting calls.

    A call's effective priority is ``priority + aging_per_s * waited_s``; calls are served
    in descending effective priority, first come first served within equal priority. With
    aging, ``priority`` points are worth ``priority / aging_per_s`` seconds of waiting.
    """

    model_config = _FROZEN

    name: Slug
    priority: int = Field(ge=0, le=100_000, description="Higher is served first.")
    description: str = ""


class Trunk(BaseModel):
    """A trunk calls arrive on or leave by (to a sub-centre)."""

    model_config = _FROZEN

    name: Slug
    endpoint: str = Field(description="Dial prefix, e.g. PJSIP/carrier-ct (TECH/resource).")
    description: str = ""
    node: Slug | None = Field(
        default=None,
        description="A county node's inter-node trunk (docs/county-nodes.md): the node's name. "
        "Only on such a trunk does the city's dialplan read the X-CTI-Dialed / X-CTI-Origin "
        "headers (what the citizen dialled there, the node's linkedid); a carrier's are "
        "never believed.",
    )

    @field_validator("endpoint")
    @classmethod
    def _known_tech(cls, value: str) -> str:
        return _canonical_endpoint(value)

    @model_validator(mode="after")
    def _node_trunk_is_pjsip(self) -> Self:
        # the headers are read with PJSIP_HEADER, and the trunk is recognised by its
        # CHANNEL(endpoint): only a whole PJSIP endpoint name can be compared with it
        if self.node is not None and not re.fullmatch(r"PJSIP/[A-Za-z0-9_.-]+", self.endpoint):
            msg = f"trunk {self.name}: a node's trunk is one PJSIP endpoint (PJSIP/<name>)"
            raise ValueError(msg)
        return self


class HoursRule(BaseModel):
    """Open from ``start`` to ``end`` (local time, ``HH:MM``, end exclusive) on ``days``."""

    model_config = _FROZEN

    days: tuple[Weekday, ...] = Field(min_length=1)
    start: str = Field(default="00:00", description="HH:MM")
    end: str = Field(default="24:00", description="HH:MM, after start; 24:00 = midnight")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            msg = f"{value!r} is not HH:MM (00:00 .. 24:00)"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _start_before_end(self) -> Self:
        if _minutes(self.start) >= _minutes(self.end):
            msg = f"start {self.start} must be before end {self.end}"
            raise ValueError(msg)
        return self

    def contains(self, local: datetime) -> bool:
        if tuple(Weekday)[local.weekday()] not in self.days:
            return False
        minute = local.hour * 60 + local.minute
        return _minutes(self.start) <= minute < _minutes(self.end)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class BusinessHours(BaseModel):
    """Named opening hours (a line outside its hours is announced, not queued)."""

    model_config = _FROZEN

    name: Slug
    timezone: str = Field(default="Asia/Shanghai", description="IANA zone of the rules.")
    rules: tuple[HoursRule, ...] = Field(min_length=1)
    closed_dates: tuple[str, ...] = Field(
        default=(), description="YYYY-MM-DD days closed all day (public holidays)."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            msg = f"unknown time zone {value!r}"
            raise ValueError(msg) from exc
        return value

    @field_validator("closed_dates")
    @classmethod
    def _iso_dates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for day in value:
            try:
                datetime.strptime(day, "%Y-%m-%d")  # noqa: DTZ007 -- a date, no zone
            except ValueError as exc:
                msg = f"{day!r} is not YYYY-MM-DD"
                raise ValueError(msg) from exc
        return value

    def is_open(self, epoch_s: float) -> bool:
        """Whether these hours are open at *epoch_s* (seconds since the epoch, UTC)."""
        local = datetime.fromtimestamp(epoch_s, ZoneInfo(self.timezone))
        if local.date().isoformat() in self.closed_dates:
            return False
        return any(rule.contains(local) for rule in self.rules)


class Line(BaseModel):
    """A number citizens dial: 12345 itself, a ministry special number, an old department
    number folded in, or the 110 transfer line."""

    model_config = _FROZEN

    number: Digits = Field(description="The dialled number (DID) as the trunk delivers it.")
    name: str = Field(min_length=1, description="Shown to agents and in reports, e.g. 12315.")
    department: str = Field(default="", description="Owning department, e.g. 市场监管局.")
    mode: LineMode = LineMode.MERGED
    skill: Slug | None = Field(
        default=None,
        description="Skill a call on this line requires. merged: defaults to the general "
        "skill; dedicated: required; subcentre: not used.",
    )
    min_level: Level = Field(default=1, description="Lowest skill level that may answer.")
    language: Slug | None = Field(default=None, description="Language of the line's callers.")
    priority_class: Slug = Field(default="normal", description="Class of calls on this line.")
    dispatch110: bool = Field(
        default=False, description="Calls on this line are transfers from the 110 system."
    )
    transfer_to: Digits | None = Field(
        default=None, description="subcentre: the external number calls are transferred to."
    )
    trunk: Slug | None = Field(default=None, description="subcentre: trunk to transfer by.")
    hours: Slug | None = Field(default=None, description="Named business hours; none = 7x24.")

    @model_validator(mode="after")
    def _mode_fields(self) -> Self:
        if self.mode is LineMode.SUBCENTRE:
            if self.transfer_to is None:
                msg = f"line {self.number}: mode subcentre needs transfer_to"
                raise ValueError(msg)
            if self.skill is not None:
                msg = f"line {self.number}: a subcentre line is transferred out; drop skill"
                raise ValueError(msg)
        else:
            if self.transfer_to is not None or self.trunk is not None:
                msg = f"line {self.number}: transfer_to/trunk only apply to mode subcentre"
                raise ValueError(msg)
            if self.mode is LineMode.DEDICATED and self.skill is None:
                msg = f"line {self.number}: mode dedicated needs the skill of its seats"
                raise ValueError(msg)
        return self


class SeatConfig(BaseModel):
    """A seat (坐席) position: who can be reached where, with which skills."""

    model_config = _FROZEN

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=32)]
    endpoint: str = Field(description="Dial string: PJSIP/1001, Local/1001@seats, ...")
    name: str = ""
    skills: dict[Slug, Level] = Field(
        min_length=1, description="Skill -> level (1 lowest .. 10 highest)."
    )
    team: Slug = Field(default="centre", description="Team: the centre or a county centre.")
    languages: tuple[Slug, ...] = Field(default=("zh",), min_length=1)

    @field_validator("endpoint")
    @classmethod
    def _known_tech(cls, value: str) -> str:
        return _canonical_endpoint(value)


class OverflowTarget(BaseModel):
    """Seats an overflow step opens: any of ``skills`` (at ``min_level``) and/or ``teams``."""

    model_config = _FROZEN

    skills: tuple[Slug, ...] = ()
    min_level: Level = 1
    teams: tuple[Slug, ...] = ()

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.skills and not self.teams:
            msg = "a target needs skills and/or teams"
            raise ValueError(msg)
        return self


class OverflowStep(BaseModel):
    """One overflow step: once a call has waited ``after_s``, ``target`` seats may take it
    too, for ``timeout_s`` seconds (none = until answered)."""

    model_config = _FROZEN

    name: Slug
    after_s: Seconds = Field(description="Condition: the call has waited at least this long.")
    target: OverflowTarget
    timeout_s: PositiveSeconds | None = Field(
        default=None, description="The step stops matching after this long; none = never."
    )
    for_skills: tuple[Slug, ...] = Field(
        default=(), description="Only calls requiring one of these skills; empty = all calls."
    )


class QueueSettings(BaseModel):
    """Queue and routing knobs."""

    model_config = _FROZEN

    aging_per_s: float = Field(
        default=1.0,
        ge=0,
        allow_inf_nan=False,
        description="Priority points a call gains per second waited (0 = strict classes).",
    )
    default_class: Slug = "normal"
    repeat_class: Slug = Field(default="repeat", description="Class of repeat callers.")
    callback_class: Slug = Field(default="repeat", description="Class of callbacks.")
    dispatch110_class: Slug = Field(
        default="emergency-transfer", description="Class of 110 transfers and escalations."
    )
    ring_timeout_s: PositiveSeconds = Field(default=15.0, description="RONA after this long.")
    wrapup_s: Seconds = Field(default=30.0, description="Wrap-up (话后处理) time.")
    wrapup_max_s: PositiveSeconds = Field(
        default=600.0, description="An agent can extend wrap-up up to this in total."
    )
    sticky_window_s: Seconds = Field(
        default=86_400.0,
        description="A caller answered within this long goes to the same seat if it is ready "
        "(0 = off).",
    )
    language_required: bool = Field(
        default=False,
        description="True: a call with a language only goes to seats speaking it; false: "
        "such seats are only preferred.",
    )
    auto_ready_on_device_available: bool = Field(
        default=False,
        description="A seat made not-ready because its device was unavailable becomes ready "
        "when the device comes back.",
    )
    after_restart: Literal["wrap_up", "ready", "not_ready"] = Field(
        default="wrap_up",
        description="A seat that was on a call when the daemon stopped, once that call is "
        "found over at the restart: wrap_up (its wrap-up, then what the agent last chose), "
        "ready (what the agent last chose, at once) or not_ready (reason restart, until the "
        "agent acts).",
    )
    ewt_alpha: float = Field(
        default=0.1, gt=0, le=1, description="EWMA weight of the newest handling time."
    )
    ewt_default_handle_s: PositiveSeconds = Field(
        default=180.0, description="Handling time assumed before any call was completed."
    )
    overflow: tuple[OverflowStep, ...] = ()

    @model_validator(mode="after")
    def _steps_increase(self) -> Self:
        names: set[str] = set()
        previous: OverflowStep | None = None
        for index, step in enumerate(self.overflow):
            if step.name in names:
                msg = f"overflow.{index}: step name {step.name!r} used twice"
                raise ValueError(msg)
            names.add(step.name)
            if previous is not None and step.after_s <= previous.after_s:
                msg = (
                    f"overflow.{index} ({step.name}): after_s {step.after_s:g} must be greater "
                    f"than the previous step's ({previous.name}: {previous.after_s:g})"
                )
                raise ValueError(msg)
            previous = step
        if self.wrapup_s > self.wrapup_max_s:
            msg = f"wrapup_s ({self.wrapup_s:g}) exceeds wrapup_max_s ({self.wrapup_max_s:g})"
            raise ValueError(msg)
        return self


class EscalationMode(enum.StrEnum):
    """How an agent hands a call to an emergency service (12345 -> 110/119/120/122)."""

    BLIND = "blind"
    """一键转接: the caller goes to the emergency number; the agent's leg ends."""
    THREEWAY = "threeway"
    """三方通话: the operator joins the caller and the agent; the agent may leave later."""


class BlockedNumber(BaseModel):
    """A nuisance or abusive caller (骚扰电话) and what its calls get."""

    model_config = _FROZEN

    number: Digits = Field(description="The caller's number (+86 and 0086 are ignored).")
    treatment: Literal["reject", "last"] = Field(
        default="reject",
        description="reject: a prompt (dialplan.blocked_prompt), then the line is cleared; "
        "last: queued behind every other call.",
    )
    reason: str = Field(default="", max_length=64, description="Why (logged).")


def number_key(number: str) -> str:
    """A caller number in one form: digits only, without China's country code before a
    mobile number (+86 138…, 0086 138…, 86 138… → 138…)."""
    digits = "".join(c for c in number if c.isdigit())
    for prefix in ("0086", "86"):
        rest = digits.removeprefix(prefix)
        if rest != digits and len(rest) == 11 and rest.startswith("1"):
            return rest
    return digits


class EmergencyTarget(BaseModel):
    """An emergency service an agent can escalate a call to (``numberplan.emergency``).

    Reached by ``endpoint`` (a whole dial string) or by ``trunk`` (``number`` dialled over
    that trunk, like a sub-centre line), exactly one of the two.
    """

    model_config = _FROZEN

    number: Digits = Field(description="What the agent asks for: 110, 119, 120, 122.")
    name: str = Field(min_length=1, description="Shown to agents and on the ticket: 公安110.")
    endpoint: str | None = Field(
        default=None, description="Dial string, e.g. PJSIP/110@police-trunk (TECH/resource)."
    )
    trunk: Slug | None = Field(default=None, description="Or: dial `number` over this trunk.")
    notify_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#@]+(/[^\s?#]*)?$",
        description="The receiving side's endpoint: each escalation's call and ticket data is "
        "POSTed here (stored first, retried until taken).",
    )
    modes: tuple[EscalationMode, ...] = Field(
        default=(EscalationMode.BLIND, EscalationMode.THREEWAY),
        min_length=1,
        description="What agents may do: blind (一键转接), threeway (三方通话).",
    )
    ring_timeout_s: PositiveSeconds = Field(
        default=60.0, description="How long the operator's line may ring before giving up."
    )

    @field_validator("endpoint")
    @classmethod
    def _known_tech(cls, value: str | None) -> str | None:
        return None if value is None else _canonical_endpoint(value)

    @model_validator(mode="after")
    def _one_way_to_reach(self) -> Self:
        if (self.endpoint is None) == (self.trunk is None):
            msg = f"emergency {self.number}: give exactly one of endpoint or trunk"
            raise ValueError(msg)
        if len(set(self.modes)) != len(self.modes):
            msg = f"emergency {self.number}: a mode listed twice"
            raise ValueError(msg)
        return self


def _default_classes() -> tuple[PriorityClass, ...]:
    return (
        PriorityClass(
            name="emergency-transfer", priority=600, description="110 transfers, escalations"
        ),
        PriorityClass(name="repeat", priority=120, description="repeat callers, callbacks"),
        PriorityClass(name="normal", priority=0, description="everybody else"),
    )


def _default_skills() -> tuple[Skill, ...]:
    return (Skill(name="general", description="综合受理"),)


class NumberPlan(BaseModel):
    """The whole number plan (the ``numberplan:`` section)."""

    model_config = _FROZEN

    general_skill: Slug = Field(default="general", description="Skill of general seats.")
    skills: tuple[Skill, ...] = Field(default_factory=_default_skills)
    priority_classes: tuple[PriorityClass, ...] = Field(default_factory=_default_classes)
    trunks: tuple[Trunk, ...] = ()
    hours: tuple[BusinessHours, ...] = ()
    lines: tuple[Line, ...] = ()
    seats: tuple[SeatConfig, ...] = ()
    queue: QueueSettings = Field(default_factory=QueueSettings)
    emergency: tuple[EmergencyTarget, ...] = Field(
        default=(), description="Emergency services agents may escalate calls to."
    )
    blacklist: tuple[BlockedNumber, ...] = Field(
        default=(), description="Nuisance callers and their treatment (logged)."
    )

    def blocked(self, caller: str) -> BlockedNumber | None:
        """The blacklist entry of `caller`, if any."""
        key = number_key(caller)
        return (
            next((b for b in self.blacklist if number_key(b.number) == key), None) if key else None
        )

    @model_validator(mode="after")
    def _check_plan(self) -> Self:
        problems = _PlanCheck(self).problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def line(self, number: str) -> Line | None:
        """The line of a dialled number, or ``None``."""
        return self._lines_by_number().get(number)

    def emergency_target(self, number: str) -> EmergencyTarget | None:
        """The emergency service an agent asks for by its number (110), or ``None``."""
        return next((e for e in self.emergency if e.number == number), None)

    def _lines_by_number(self) -> dict[str, Line]:
        # Frozen model: computed on demand, cheap for a few dozen lines.
        return {line.number: line for line in self.lines}


class _PlanCheck:
    """The cross-checks of a whole plan, each problem naming the items involved."""

    def __init__(self, plan: NumberPlan) -> None:
        self.plan = plan
        self.out: list[str] = []
        self.skills: set[str] = set()
        self.seat_skills: set[str] = set()

    def problems(self) -> list[str]:
        plan, out = self.plan, self.out
        self.skills = _unique(out, "skills", [s.name for s in plan.skills], "skill")
        classes = _unique(out, "priority_classes", [c.name for c in plan.priority_classes], "class")
        trunks = _unique(out, "trunks", [t.name for t in plan.trunks], "trunk")
        hours = _unique(out, "hours", [h.name for h in plan.hours], "hours")
        _unique(out, "lines", [line.number for line in plan.lines], "number", "mapped")
        _unique(out, "seats", [seat.id for seat in plan.seats], "seat id")
        if plan.general_skill not in self.skills:
            out.append(f"general_skill {plan.general_skill!r} is not in skills")
        self._seats()
        for index, line in enumerate(plan.lines):
            where = f"lines.{index} ({line.number})"
            if line.mode is not LineMode.SUBCENTRE:
                self._needs_skill(where, line.skill or plan.general_skill)
            for kind, name, known in (
                ("priority_class", line.priority_class, classes),
                ("trunk", line.trunk, trunks),
                ("hours", line.hours, hours),
            ):
                if name is not None and name not in known:
                    out.append(f"{where}: unknown {kind} {name!r}")
        self._overflow()
        _unique(out, "emergency", [e.number for e in plan.emergency], "number")
        out.extend(
            f"emergency.{index} ({e.number}): unknown trunk {e.trunk!r}"
            for index, e in enumerate(plan.emergency)
            if e.trunk is not None and e.trunk not in trunks
        )
        for field in ("default_class", "repeat_class", "callback_class", "dispatch110_class"):
            name = getattr(plan.queue, field)
            if name not in classes:
                out.append(f"queue.{field}: unknown priority class {name!r}")
        return out

    def _seats(self) -> None:
        for index, seat in enumerate(self.plan.seats):
            for skill in seat.skills:
                self.seat_skills.add(skill)
                if skill not in self.skills:
                    self.out.append(f"seats.{index} ({seat.id}): unknown skill {skill!r}")
        if self.plan.seats:
            self.out.extend(
                f"skills: {name!r} is a skill no seat has"
                for name in sorted(self.skills)
                if name not in self.seat_skills
            )

    def _needs_skill(self, where: str, skill: str) -> None:
        if skill not in self.skills:
            self.out.append(f"{where}: unknown skill {skill!r}")
        elif skill not in self.seat_skills:
            self.out.append(f"{where}: skill {skill!r} is a skill no seat has")

    def _overflow(self) -> None:
        teams = {seat.team for seat in self.plan.seats}
        for index, step in enumerate(self.plan.queue.overflow):
            where = f"queue.overflow.{index} ({step.name})"
            for skill in step.target.skills:
                self._needs_skill(where + ".target", skill)
            self.out.extend(
                f"{where}.for_skills: unknown skill {skill!r}"
                for skill in step.for_skills
                if skill not in self.skills
            )
            if self.plan.seats:
                self.out.extend(
                    f"{where}.target: team {team!r} has no seat"
                    for team in step.target.teams
                    if team not in teams
                )


def _unique(
    problems: list[str], where: str, names: list[str], what: str, verb: str = "listed"
) -> set[str]:
    first: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in first:
            problems.append(
                f"{where}.{index}: {what} {name!r} {verb} twice ({where}.{first[name]} too)"
            )
        else:
            first[name] = index
    return set(first)
