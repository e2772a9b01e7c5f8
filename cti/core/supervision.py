"""Supervisor controls (班长席, docs/supervision.md): listen, whisper, barge on an agent's
live call, and forced ready / not ready / logout, each one written to the audit log.

Decided here, sans-IO; the supervisor arrives resolved (:class:`Supervisor`: a bearer
token's principal now, a session user later) and is checked against the number plan: a
supervisor may act on a seat that serves one of their lines (the seat has the line's skill
at its ``min_level``), and listen in on a call only of one of their lines.

The spy is the supervisor's own phone, originated into ``cti-spy,<mode>,1`` (the dialplan
runs ``ChanSpy(<agent channel>,qSEd…)``: ``w`` whisper, ``B`` barge). Switching modes is
ChanSpy's ``d`` option: the digit 4 (listen), 5 (whisper) or 6 (barge) *from* the spy
channel, which the daemon queues there with AMI ``PlayDTMF`` and ``Receive: true`` (plain
PlayDTMF sends the digit out to the phone, where ChanSpy never sees it); the supervisor can
press the same digits on the phone (then the daemon's idea of the mode is stale until the
next switch). No new call rings the supervisor. Stop
hangs the spy channel up. Forced seat states go through the agents' own command path
(:class:`~cti.core.seat_commands.SeatCommands`), so a logout during a call is pending
until the call ends, like the agent's own.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from typing import Any

from structlog.typing import FilteringBoundLogger

from cti.calls.tracker import CallTracker
from cti.core.hold import Holding
from cti.core.messages import Effect, Publish, SeatCommandReceived
from cti.core.seat_commands import SeatCommands
from cti.core.supervision_types import (
    SPY_ID_PREFIX,
    SPY_MODES,
    AuditEntry,
    SpyMode,
    StartSpy,
    StopSpy,
    StoreAudit,
    Supervisor,
    SupervisorRequested,
    SwitchSpy,
)
from cti.events import Hangup, Newchannel
from cti.numberplan import NumberPlan
from cti.routing.dispatcher import Dispatcher
from cti.seats.commands import Logout, NotReady, Ready, SeatCommand
from cti.seats.model import AGENT_REASONS, SeatStatus

__all__ = ["Refused", "Supervision", "seat_lines"]

_REASONS = frozenset(r.value for r in AGENT_REASONS)


@dataclasses.dataclass(slots=True, kw_only=True)
class _Spy:
    """A supervisor's spy channel (mutable: only this part changes it)."""

    node: str
    spy_id: str
    seat: str
    call_id: str
    mode: SpyMode
    channel: str | None = None  # known at its Newchannel


@dataclasses.dataclass(frozen=True, slots=True)
class Refused(Exception):  # noqa: N818 - a decision, not a failure
    """Why an action is refused: a code (docs/supervision.md) and a sentence."""

    code: str
    detail: str


def seat_lines(plan: NumberPlan, seat: str) -> frozenset[str]:
    """The lines (numbers) whose calls `seat` may be offered: it has the line's skill (the
    general one for a line without) at the line's ``min_level`` or above."""
    config = next((s for s in plan.seats if s.id == seat), None)
    if config is None:
        return frozenset()
    return frozenset(
        line.number
        for line in plan.lines
        if config.skills.get(line.skill or plan.general_skill, 0) >= line.min_level
    )


class Supervision:
    """See the module docstring. One spy per supervisor at a time."""

    def __init__(
        self,
        *,
        plan: NumberPlan,
        dispatcher: Dispatcher,
        tracker: CallTracker,
        hold: Holding,
        seat_commands: SeatCommands,
        log: FilteringBoundLogger,
        counts: Counter[str],
    ) -> None:
        self._plan = plan
        self._dispatcher = dispatcher
        self._tracker = tracker
        self._hold = hold
        self._seat_commands = seat_commands
        self._log = log
        self._counts = counts
        self._spies: dict[str, _Spy] = {}  # by supervisor name
        self._by_id: dict[str, str] = {}  # spy_id -> supervisor name
        self._serial = itertools.count(1)

    def replan(self, plan: NumberPlan) -> None:
        self._plan = plan

    # ------------------------------------------------------------------ questions

    def spies(self) -> list[dict[str, Any]]:
        """The spies going on (the board shows who listens to whom)."""
        return [
            {
                "supervisor": name,
                "seat": s.seat,
                "call_id": s.call_id,
                "mode": s.mode,
                "up": s.channel is not None,
            }
            for name, s in sorted(self._spies.items())
        ]

    # ------------------------------------------------------------------ inputs

    def requested(self, item: SupervisorRequested, out: list[Effect]) -> None:
        who, seat = item.supervisor, item.seat
        call_id: str | None = None
        extra: dict[str, Any] = {}
        try:
            self._authorised(who, seat)
            if item.action in SPY_MODES:
                call_id, extra = self._spy(item, item.action, out)  # type: ignore[arg-type]
            elif item.action == "stop":
                call_id = self._stop(who, seat, out)
            else:
                state = self._dispatcher.seats.get(seat)
                call_id = state.call_id if state is not None else None
                extra = self._force(item, out)
        except Refused as why:
            self._counts["supervision_refused"] += 1
            self._log.warning(
                "supervision_refused",
                supervisor=who.name,
                action=item.action,
                seat=seat,
                code=why.code,
                error=why.detail,
            )
            entry = AuditEntry(
                at=item.at,
                supervisor=who.name,
                action=item.action,
                seat=seat,
                call_id=call_id,
                result="refused",
                code=why.code,
                detail=why.detail,
                request_id=item.request_id,
            )
            error = {"code": why.code, "message": why.detail, "fields": []}
            self._audit(entry, out, {"ok": False, "error": error})
            return
        self._counts["supervision_" + item.action] += 1
        self._log.info(
            "supervision_action",
            supervisor=who.name,
            action=item.action,
            seat=seat,
            linkedid=call_id,
        )
        entry = AuditEntry(
            at=item.at,
            supervisor=who.name,
            action=item.action,
            seat=seat,
            call_id=call_id,
            result="ok",
            detail=str(extra.get("detail", "")),
            request_id=item.request_id,
        )
        self._audit(entry, out, {"ok": True, **extra})

    def event_in(self, ev: Newchannel | Hangup, _out: list[Effect]) -> None:
        """A spy channel's birth (its name, needed to switch or stop it) or its end."""
        name = self._by_id.get(ev.chan.uniqueid)
        spy = self._spies.get(name) if name is not None else None
        if name is None or spy is None:
            return
        if isinstance(ev, Newchannel):
            spy.channel = ev.chan.channel
            return
        del self._spies[name]
        del self._by_id[spy.spy_id]
        self._log.info(
            "supervision_spy_ended", supervisor=name, seat=spy.seat, linkedid=spy.call_id
        )

    @staticmethod
    def owns(call_id: str) -> bool:
        """A spy channel's own "call" (not a citizen's: not recorded)."""
        return call_id.startswith(SPY_ID_PREFIX)

    # ------------------------------------------------------------------ decisions

    def _authorised(self, who: Supervisor, seat: str) -> None:
        if not any(s.id == seat for s in self._plan.seats):
            raise Refused("unknown_seat", f"no seat {seat!r} in the number plan")
        if not seat_lines(self._plan, seat) & who.lines:
            raise Refused("forbidden", f"seat {seat!r} serves none of the lines of {who.name!r}")

    def _spy(
        self, item: SupervisorRequested, mode: SpyMode, out: list[Effect]
    ) -> tuple[str | None, dict[str, Any]]:
        who, seat = item.supervisor, item.seat
        node, call_id, target = self._agent_channel(who, seat)
        spy = self._spies.get(who.name)
        if spy is not None:
            if spy.seat != seat or spy.call_id != call_id:
                msg = f"already listening to seat {spy.seat!r}: stop first"
                raise Refused("spy_active", msg)
            if spy.channel is None:
                raise Refused("spy_not_up", "the supervisor's phone is not up yet")
            if spy.mode != mode:
                spy.mode = mode
                out.append(
                    SwitchSpy(node=spy.node, channel=spy.channel, mode=mode, call_id=call_id)
                )
            return call_id, {"mode": mode, "detail": f"switched to {mode}"}
        if who.endpoint is None:
            raise Refused("no_phone", f"supervisor {who.name!r} has no endpoint configured")
        spy_id = f"{SPY_ID_PREFIX}{round(item.at * 1000)}-{next(self._serial)}"
        self._spies[who.name] = _Spy(
            node=node, spy_id=spy_id, seat=seat, call_id=call_id, mode=mode
        )
        self._by_id[spy_id] = who.name
        out.append(
            StartSpy(
                node=node,
                spy_id=spy_id,
                endpoint=who.endpoint,
                target=target,
                mode=mode,
                call_id=call_id,
                supervisor=who.name,
                timeout_s=item.ring_timeout_s,
            )
        )
        return call_id, {"mode": mode, "spy_id": spy_id, "detail": f"{mode} on {target}"}

    def _agent_channel(self, who: Supervisor, seat: str) -> tuple[str, str, str]:
        """(node, call id, the agent's channel) of the seat's live call, from the tracker."""
        state = self._dispatcher.seats.get(seat)
        call_id = state.call_id if state is not None else None
        if state is None or state.status is not SeatStatus.TALKING or call_id is None:
            status = str(state.status) if state is not None else "?"
            raise Refused("no_call", f"seat {seat!r} is on no call ({status})")
        held = self._hold.get(call_id)
        call = self._tracker.call(held.node, call_id) if held is not None else None
        if held is None or call is None:
            raise Refused("no_call", f"the call of seat {seat!r} is not tracked")
        if call.line and call.line not in who.lines:
            raise Refused("forbidden", f"line {call.line} is not one of {who.name!r}'s")
        endpoint = next(s.endpoint for s in self._plan.seats if s.id == seat)
        # PJSIP/6001-0000002a; a Local seat's two halves: the ;1 in the caller's bridge
        legs = sorted(c for c in call.channels if c.startswith(endpoint + "-"))
        if not legs:
            raise Refused("no_call", f"no channel of {endpoint} in the call of seat {seat!r}")
        return held.node, call_id, legs[0]

    def _stop(self, who: Supervisor, seat: str, out: list[Effect]) -> str | None:
        spy = self._spies.get(who.name)
        if spy is None or spy.seat != seat:
            raise Refused("no_spy", f"{who.name!r} is not listening to seat {seat!r}")
        if spy.channel is None:
            raise Refused("spy_not_up", "the supervisor's phone is not up yet")
        out.append(StopSpy(node=spy.node, channel=spy.channel, call_id=spy.call_id))
        return spy.call_id

    def _force(self, item: SupervisorRequested, out: list[Effect]) -> dict[str, Any]:
        """ready / not_ready / logout through the agents' own command path."""
        cmd: SeatCommand
        rid = item.request_id
        if item.action == "ready":
            cmd = Ready(cmd="ready", request_id=rid)
        elif item.action == "logout":
            cmd = Logout(cmd="logout", request_id=rid)
        elif item.reason in _REASONS:
            cmd = NotReady(cmd="not_ready", reason=item.reason, request_id=rid)  # type: ignore[arg-type]
        else:
            raise Refused("invalid_reason", f"reason must be one of {sorted(_REASONS)}")
        effects: list[Effect] = []
        self._seat_commands.received(
            SeatCommandReceived(seat=item.seat, command=cmd, at=item.at), effects
        )
        topic = f"seats/{item.seat}/reply"
        reply = next(
            (e.payload for e in effects if isinstance(e, Publish) and e.topic == topic), {}
        )
        out.extend(effects)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise Refused("rejected", str(error.get("message", "refused by the seat")))
        state = self._dispatcher.seats.get(item.seat)
        pending = state is not None and state.pending is not None
        detail = f"{item.action}{' ' + item.reason if item.reason else ''}"
        return {"detail": detail + (" (pending: after the call)" if pending else "")}

    def _audit(self, entry: AuditEntry, out: list[Effect], reply: dict[str, Any]) -> None:
        out.append(StoreAudit(entry=entry))
        out.append(Publish(topic="supervision/audit", payload=entry.to_json()))
        body = {
            "request_id": entry.request_id,
            "action": entry.action,
            "seat": entry.seat,
            "call_id": entry.call_id,
            **reply,
        }
        out.append(Publish(topic=f"supervisors/{entry.supervisor}/reply", payload=body))
