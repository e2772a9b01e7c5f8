"""110 ⇄ 12345 in the core: pushes from 110 matched to the calls on 110 lines, a data
transfer's ticket, and the feedback 110 is owed (docs/dispatch110.md). The matching itself
is :class:`cti.dispatch110.TransferBook` (pure); this part turns it into effects."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from structlog.typing import FilteringBoundLogger

from cti.core.messages import Effect, Reply110, Report110, StoreTicketOp, Transfer110Pushed
from cti.core.screen import Screen
from cti.core.tickets import draft_for
from cti.dispatch110 import Feedback110, Transfer110, TransferBook, TransferMode
from cti.dispatch110.book import data_call_id
from cti.numberplan import NumberPlan, number_key
from cti.workorders.model import OutboxOp

__all__ = ["Transfers110"]


class Transfers110:
    """Owns the transfer book; tells the screen when 110's data arrives for a call."""

    def __init__(
        self,
        *,
        plan: NumberPlan,
        screen: Screen,
        match_window_s: float,
        log: FilteringBoundLogger,
        counts: Counter[str],
    ) -> None:
        self._plan = plan
        self._screen = screen
        self._log = log
        self._counts = counts
        self.book = TransferBook(match_window_s=match_window_s)

    def replan(self, plan: NumberPlan) -> None:
        """A reloaded number plan holds from now on (cti/core/core.py, PlanReloaded)."""
        self._plan = plan

    def transfer_of(self, call_id: str) -> Transfer110 | None:
        return self.book.transfer_of(call_id)

    def status(self, transfer_id: str) -> dict[str, Any] | None:
        return self.book.status(transfer_id)

    def restore(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.book.restore([dict(row) for row in rows])

    def forget(self, transfer_id: str) -> None:
        self.book.forget(transfer_id)

    def report(self, feedback: list[Feedback110], out: list[Effect]) -> None:
        for fb in feedback:
            status = self.book.status(fb.transfer_id) or {}
            out.append(Report110(feedback=fb, status=status))

    def pushed(self, item: Transfer110Pushed, out: list[Effect]) -> None:
        t, at = item.transfer, item.at
        outcome = self.book.push(t, at)
        self._counts[f"push110_{outcome.result}"] += 1
        self._log.info(
            "transfer110_pushed",
            transfer_id=t.transfer_id,
            mode=t.mode.value,
            # normalised, so a number written in groups is masked like any other
            caller=number_key(t.caller),
            result=outcome.result,
            linkedid=outcome.matched_call,
        )
        self.report(list(outcome.feedback), out)
        if outcome.result == "new" and t.mode is TransferMode.DATA:
            # 工单推送: a ticket and no call; opened like a call's, through the outbox
            line = next((ln for ln in self._plan.lines if ln.dispatch110), None)
            draft = draft_for(
                self._plan,
                call_id=data_call_id(t.transfer_id),
                node="110",
                number=line.number if line is not None else "110",
                caller=t.caller,
                caller_name=t.caller_name,
                at=at,
                transfer=t,
                origin="dispatch110",
            )
            out.append(StoreTicketOp(op=OutboxOp.create(draft)))
        call_id = outcome.matched_call
        if call_id is not None:
            # the caller was already here: the seat's screen gets the 110 data now
            pop = self._screen.update(call_id)
            if pop is not None:
                out.append(pop)
            seat = self._screen.talking(call_id)
            if seat is not None:
                self.report(self.book.call_answered(call_id, seat, at), out)
            known = self._screen.ticket_number(call_id)
            if known is not None:
                self.report(self.book.ticket_known(call_id, known, at), out)
        out.append(
            Reply110(
                transfer_id=t.transfer_id,
                request_id=item.request_id,
                result=outcome.result,
                status=self.book.status(t.transfer_id) or outcome.status,
            )
        )
