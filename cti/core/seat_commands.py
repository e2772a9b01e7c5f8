"""Agent commands for a seat (docs/mqtt.md, ``cti/seats/{seat}/cmd``; the HTTP API feeds
the same ones): ready / not ready with a reason / wrap-up done or extended / login / logout,
the transfer to a department (一键转接), and ``escalate``/``leave``, which the escalation part
decides. Every command gets one reply on ``seats/{seat}/reply``."""

from __future__ import annotations

from collections import Counter
from typing import Any, assert_never

from structlog.typing import FilteringBoundLogger

from cti.calls.tracker import CallTracker
from cti.core.entries import EntryBook
from cti.core.escalation import Escalations
from cti.core.hold import Holding
from cti.core.messages import Effect, Publish, SeatCommandReceived
from cti.core.parts import Route
from cti.core.screen import Screen
from cti.numberplan import NumberPlan
from cti.routing import commands as rc
from cti.routing.dispatcher import Dispatcher
from cti.seats.commands import (
    CommandError,
    Escalate,
    Leave,
    Login,
    Logout,
    NotReady,
    Ready,
    SeatCommand,
    Transfer,
    WrapupDone,
    WrapupExtend,
)
from cti.seats.model import SeatStatus

__all__ = ["SeatCommands"]


class SeatCommands:
    """Applies agent commands through the dispatcher; effects a command produces before
    the dispatcher's (a transfer: the caller back to hold first) come out first."""

    def __init__(
        self,
        *,
        plan: NumberPlan,
        dispatcher: Dispatcher,
        tracker: CallTracker,
        hold: Holding,
        screen: Screen,
        escalations: Escalations,
        route: Route,
        log: FilteringBoundLogger,
        counts: Counter[str],
        entries: EntryBook | None = None,
    ) -> None:
        self._plan = plan
        self._entries = entries
        self._seat_ids = {s.id for s in plan.seats}
        self._dispatcher = dispatcher
        self._tracker = tracker
        self._hold = hold
        self._screen = screen
        self._escalations = escalations
        self._route = route
        self._log = log
        self._counts = counts
        self._pending_effects: list[Effect] = []

    def replan(self, plan: NumberPlan, retiring: frozenset[str]) -> None:
        """A reloaded number plan holds from now on; a seat gone from it that is still on
        a call (`retiring`) still takes its agent's commands until the call ends."""
        self._plan = plan
        self._seat_ids = {s.id for s in plan.seats} | retiring

    def received(self, item: SeatCommandReceived, out: list[Effect]) -> None:
        seat, cmd, now = item.seat, item.command, item.at
        if seat not in self._seat_ids:
            cmd = CommandError(
                code="unknown_seat",
                message=f"no seat {seat!r} in the number plan",
                request_id=getattr(cmd, "request_id", None),
            )
        if isinstance(cmd, Escalate | Leave):
            cmd = self._escalations.command(seat, cmd, now, out)
        if isinstance(cmd, CommandError):
            self._counts["command_refused"] += 1
            self._log.warning("seat_command_refused", seat=seat, code=cmd.code, error=cmd.message)
            out.append(Publish(topic=f"seats/{seat}/reply", payload=cmd.reply()))
            return
        if isinstance(cmd, Escalate | Leave):  # done: effects in `out`
            done = {"ok": True, "request_id": cmd.request_id, "cmd": cmd.cmd}
            out.append(Publish(topic=f"seats/{seat}/reply", payload=done))
            return
        routed = self._apply_seat_command(seat, cmd, now)
        out.extend(self._pending_effects)
        self._pending_effects.clear()
        rejected = [c for c in routed if isinstance(c, rc.CommandRejected)]
        reply: dict[str, Any] = {"ok": not rejected, "request_id": cmd.request_id, "cmd": cmd.cmd}
        if rejected:
            reply["error"] = {"code": "rejected", "message": rejected[0].reason, "fields": []}
        self._route(routed, out)
        out.append(Publish(topic=f"seats/{seat}/reply", payload=reply))

    def _apply_seat_command(  # noqa: PLR0911 - one case per command of the union
        self, seat: str, cmd: SeatCommand, now: float
    ) -> list[rc.Command]:
        d = self._dispatcher
        match cmd:
            case Login():
                return d.on_login(seat, now, ready=cmd.ready)
            case Logout():
                return d.on_logout(seat, now)
            case Ready():
                return d.on_seat_ready(seat, now)
            case NotReady():
                return d.on_seat_not_ready(seat, cmd.reason_code, now)
            case WrapupDone():
                return d.on_wrapup_done(seat, now)
            case WrapupExtend():
                return d.on_wrapup_extend(seat, cmd.seconds, now)
            case Transfer():
                return self._transfer(seat, cmd.target, now)
            case Escalate() | Leave():
                return []  # _seat_command hands these to _escalation_command
            case _:
                assert_never(cmd)

    def _transfer(self, seat: str, target: str, now: float) -> list[rc.Command]:
        """一键转接 to a department: the caller back to hold and to the head of the line
        with the target's skill; the seat to wrap-up. The Redirect is recorded on the call
        (Asterisk reports no transfer event for it)."""
        line = self._plan.line(target)
        skills = {s.name for s in self._plan.skills}
        if line is not None:
            skill, min_level = line.skill or self._plan.general_skill, line.min_level
        elif target in skills:
            skill, min_level = target, 1
        else:
            return [
                rc.CommandRejected(
                    seat_id=seat,
                    command="transfer",
                    reason=f"unknown target {target!r}: a line or a skill",
                )
            ]
        state = self._dispatcher.seats.get(seat)
        call_id = state.call_id if state is not None else None
        held = self._hold.get(call_id) if call_id is not None else None
        if (
            state is None
            or state.status is not SeatStatus.TALKING
            or call_id is None
            or held is None
        ):
            status = str(state.status) if state is not None else "?"
            return [
                rc.CommandRejected(
                    seat_id=seat,
                    command="transfer",
                    reason=f"no call of the daemon to transfer while {status}",
                )
            ]
        if self._entries is not None:  # before the new offer in `routed` is seen
            self._entries.transferred(call_id, skill, now)
        routed = self._dispatcher.on_transfer(call_id, skill, now, min_level=min_level)
        self._tracker.note_transfer(
            held.node, call_id, type_="redirect", by=seat, to=target, at=now
        )
        self._log.info("call_transferred", linkedid=call_id, seat=seat, target=target, skill=skill)
        # the caller goes back to hold first; a new offer (in `routed`) follows it
        back = self._hold.send_back(call_id, "transfer")
        if back is not None:
            self._pending_effects.append(back)
        pop = self._screen.withdraw(call_id, reason="transferred", to=target)
        if pop is not None:  # the sender's screen: the call has left it
            self._pending_effects.append(pop)
        return routed
