"""The IVR's FastAGI routes: the survey after a call, the place in line (and the callback
or message offer), the progress query and the after-hours message.

The flows' decisions are pure (cti/ivr/flows.py); here they meet the daemon: what the core
knows of a call (asked through :class:`CallFacts`, never by walking into it), the store
(ratings, tickets), and `feed` for what the caller chose. FastAGI has no authentication
(docs/ivr.md), so the survey asks the daemon's own facts before it writes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Protocol

import structlog
from structlog.typing import FilteringBoundLogger

from cti.adapters.db.rows import outbox_rows
from cti.adapters.db.store import Store
from cti.adapters.fastagi import FastAgiServer
from cti.app.feed import Feed
from cti.calls.ids import CallRef
from cti.calls.model import ActiveCall
from cti.core import (
    CallbackKeepPlace,
    MessageLeft,
    Publish,
    call_event,
    draft_for,
)
from cti.dialplan.contract import CALLBACK_KEEP_VARIABLE
from cti.ivr.flows import (
    Message,
    after_hours,
    announce,
    announcement,
    message_content,
    offer_callback,
    progress_query,
    should_offer_callback,
    survey,
    voicemail,
    worth_a_ticket,
)
from cti.ivr.session import Agi, AgiHangup
from cti.queue.model import Position
from cti.settings import Settings
from cti.workorders import OutboxOp, TicketDraft, TicketRating
from cti.workorders.backend import WorkOrderBackend, WorkOrderError

__all__ = ["AgiRoutes", "CallFacts"]

_RATED_KEPT = 10_000  # calls remembered as surveyed (one rating each), the oldest go first


class CallFacts(Protocol):
    """What the IVR asks the core (cti.core.Core's questions)."""

    def active_call(self, node: str, call_id: str) -> ActiveCall | None: ...

    def position(self, call_id: str) -> Position | None: ...

    def expected_wait(self, call_id: str, now: float) -> float | None: ...

    def draft(self, call_id: str) -> TicketDraft | None: ...


class AgiRoutes:
    """The FastAGI routes (`survey`, `progress`, `announce`, `hours`) and their server."""

    def __init__(
        self,
        settings: Settings,
        *,
        core: CallFacts,
        store: Store,
        workorders: WorkOrderBackend,
        feed: Feed,
        publish: Callable[[Publish], None],
        tickets_changed: Callable[[], None],
        log: FilteringBoundLogger,
    ) -> None:
        self._settings = settings
        self._core = core
        self._store = store
        self._workorders = workorders
        self._feed = feed
        self._publish = publish
        self._tickets_changed = tickets_changed  # wakes the outbox deliverer
        self._log = log
        self.server: FastAgiServer | None = None  # the FastAGI server, once serving
        # survey ratings of calls still up (the caller rates before hanging up): they go
        # into the call record when it is written
        self._ratings: dict[CallRef, str] = {}
        self._rated: dict[CallRef, None] = {}  # calls surveyed (insertion order): one each

    def use_settings(self, settings: Settings) -> None:
        """A reloaded configuration (cti/app/reload.py): the number plan's lines and hours
        hold for the next request; the server's own settings stay as they were."""
        self._settings = settings

    def take_rating(self, call: CallRef) -> str | None:
        """The survey rating of a call that just ended, for its call record (once)."""
        return self._ratings.pop(call, None)

    async def serve(self, *, retry_s: float = 10.0) -> None:
        """Serve FastAGI on ivr.listen_host:listen_port (retried every `retry_s` while the
        port is taken)."""
        ivr = self._settings.ivr
        server = FastAgiServer(
            {
                "survey": self._survey,
                "progress": self._progress,
                "announce": self._announce,
                "hours": self._hours,
            },
            header_timeout_s=ivr.header_timeout_s,
            command_timeout_s=ivr.command_timeout_s,
            max_sessions=ivr.max_sessions,
            log=structlog.get_logger("cti.ivr"),
        )
        self.server = server
        while True:
            try:
                await server.serve(ivr.listen_host, ivr.listen_port)
            except OSError as exc:
                # the port taken (another daemon?): calls still flow, only the survey and
                # the progress query wait; Asterisk's AGI() fails over to Hangup meanwhile
                self._log.error("agi_listen_failed", port=ivr.listen_port, error=str(exc))
                await asyncio.sleep(retry_s)

    def _node_of(self, peer: str) -> str:
        """The Asterisk node an AGI session came from (by address; the first node when
        there is one, or none matches)."""
        nodes = self._settings.ami.nodes
        return next((n.name for n in nodes if n.host == peer), nodes[0].name)

    # ---- the survey after a call

    def _survey_refusal(self, agi: Agi, call: CallRef) -> str | None:
        """Why this AGI session may not rate the call, or None. FastAGI has no
        authentication (docs/ivr.md: keep it on loopback or a private interface), so the
        daemon's own facts decide: the dialplan sends a caller to the survey only after a
        seat answered and hung up, on the caller's own channel, while the call is up."""
        active = self._core.active_call(call.node, call.linkedid)
        if active is None:
            return "no such call in progress"
        if active.answered_by is None:
            return "the call was not answered by a seat"
        if agi.headers.get("agi_channel", "") not in active.channels:
            return "the AGI channel is not one of the call's channels"
        if call in self._rated:
            return "already rated"
        return None

    async def _survey(self, agi: Agi) -> None:
        """After the agent hung up: one key, stored on the ticket and the call record."""
        linkedid = agi.headers.get("agi_arg_1") or agi.headers.get("agi_uniqueid", "")
        node = self._node_of(agi.peer)
        call = CallRef(node, linkedid)
        refused = self._survey_refusal(agi, call)
        if refused is not None:
            self._log.warning(
                "ivr_survey_refused", linkedid=linkedid, node=node, peer=agi.peer, reason=refused
            )
            return  # nothing asked, nothing written
        self._rated[call] = None
        while len(self._rated) > _RATED_KEPT:  # bounded: the oldest go first
            del self._rated[next(iter(self._rated))]
        rating = await survey(agi, self._settings.ivr.survey)
        if rating is None:
            self._log.info("ivr_survey_unrated", linkedid=linkedid)
            return
        op = OutboxOp.rate(
            TicketRating(
                call_id=str(call),
                key=rating.key,
                label=rating.label,
                unsatisfied=rating.unsatisfied,
                at=time.time(),
            )
        )
        rows = outbox_rows([op], time.time())
        stored = await self._store.rate_call(str(call), rating.label, rows)
        if not stored and self._core.active_call(node, linkedid) is not None:
            self._ratings[call] = rating.label  # the record comes when the caller hangs up
        elif not stored:
            # the call just ended: its record is on its way through the record writer
            await asyncio.sleep(2.0)
            if not await self._store.rate_call(str(call), rating.label, []):
                self._log.warning("ivr_survey_no_call_record", linkedid=linkedid)
        self._tickets_changed()
        self._log.info(
            "ivr_survey_rated",
            linkedid=linkedid,
            rating=rating.label,
            key=rating.key,
            flagged=rating.unsatisfied,
        )
        self._publish(
            call_event(
                "rated",
                linkedid,
                satisfaction=rating.label,
                key=rating.key,
                flagged=rating.unsatisfied,
            )
        )

    # ---- while waiting: the place in line, a callback or a message instead

    async def _announce(self, agi: Agi) -> None:
        """A waiting caller's place in the line and expected wait, from the dispatcher."""
        linkedid = agi.headers.get("agi_arg_1") or agi.headers.get("agi_uniqueid", "")
        pos = self._core.position(linkedid)
        ewt = self._core.expected_wait(linkedid, time.time())
        ivr = self._settings.ivr
        steps = announcement(pos.overall if pos is not None else None, ewt, ivr.announce)
        self._log.info(
            "ivr_announced",
            linkedid=linkedid,
            position=pos.overall if pos is not None else None,
            ewt_s=None if ewt is None else round(ewt, 1),
        )
        await announce(agi, steps)
        draft = self._core.draft(linkedid)
        offer = ivr.callback_offer
        number = draft is not None and bool(draft.caller)
        if not should_offer_callback(
            pos.overall if pos is not None else None, ewt, offer, has_number=number
        ):
            return
        choice = await offer_callback(agi, offer)
        if choice == "callback":
            self._feed(CallbackKeepPlace(call_id=linkedid, at=time.time()))
            await agi.set_variable(CALLBACK_KEEP_VARIABLE, "1")  # the dialplan clears the line
            self._log.info("ivr_callback_requested", linkedid=linkedid)
        elif choice == "message":
            await self._message_while_waiting(agi, linkedid)

    async def _message_while_waiting(self, agi: Agi, linkedid: str) -> None:
        """Overload voicemail (留言): the message goes on the call's own ticket (the call
        record's ticket update carries it as the recording); the caller's wait ends."""
        dialplan = self._settings.dialplan

        async def keep(message: Message) -> None:
            self._feed(MessageLeft(call_id=linkedid, recording=message.recording, at=time.time()))

        message = await voicemail(
            agi,
            self._settings.ivr.voicemail,
            path=f"{dialplan.recording_dir}/{linkedid}-message",
            fmt=dialplan.recording_format,
            keep=keep,
        )
        self._log.info(
            "ivr_overload_message",
            linkedid=linkedid,
            seconds=None if message is None else message.seconds,
        )
        with contextlib.suppress(AgiHangup):
            await agi.set_variable(CALLBACK_KEEP_VARIABLE, "1")  # the line is cleared

    # ---- 自助查询进度 and after hours

    async def _progress(self, agi: Agi) -> None:
        """自助查询进度: a ticket number by DTMF, its status read back."""

        async def lookup(number: str) -> str | None:
            try:
                ticket = await self._workorders.status(number)
            except WorkOrderError as exc:
                self._log.warning("ivr_progress_backend_error", error=str(exc))
                return None
            return None if ticket is None else ticket.status

        prefix = self._settings.workorders.embedded.prefix
        query = self._settings.ivr.progress_query
        outcome = await progress_query(agi, query, lookup, prefix=prefix)
        self._log.info(
            "ivr_progress_query",
            linkedid=agi.headers.get("agi_uniqueid", ""),
            ticket=outcome.number,
            status=outcome.status,
        )

    async def _hours(self, agi: Agi) -> None:
        """Asked by a line with `hours:` before it holds the call: open, return at once (the
        call is queued); closed, take a message (留言) that becomes a ticket."""
        number = agi.headers.get("agi_arg_1", "")
        linkedid = agi.headers.get("agi_arg_2") or agi.headers.get("agi_uniqueid", "")
        now = time.time()
        plan = self._settings.numberplan
        if not after_hours(plan, number, now):
            return
        call = CallRef(self._node_of(agi.peer), linkedid)
        self._log.info("ivr_after_hours", linkedid=linkedid, line=number)
        dialplan = self._settings.dialplan

        async def keep(message: Message) -> None:
            caller = agi.headers.get("agi_callerid", "")
            draft = draft_for(  # the one draft builder (cti/core/tickets.py)
                plan,
                call_id=str(call),
                node=call.node,
                number=number,
                caller="" if caller == "unknown" else caller,
                caller_name=agi.headers.get("agi_calleridname", ""),
                at=now,
                recording=message.recording,
                content=message_content(message),
            )
            # the idempotency key is the call id's: a retried AGI makes no second ticket
            await self._store.queue_ops(outbox_rows([OutboxOp.create(draft)], time.time()))
            self._tickets_changed()
            self._log.info(
                "ivr_voicemail_kept",
                linkedid=linkedid,
                line=number,
                recording=message.recording,
                seconds=message.seconds,
            )

        message = await voicemail(
            agi,
            self._settings.ivr.voicemail,
            path=f"{dialplan.recording_dir}/{linkedid}",
            fmt=dialplan.recording_format,
            keep=keep,
        )
        if message is None or not worth_a_ticket(message, self._settings.ivr.voicemail):
            self._log.info(
                "ivr_voicemail_empty",
                linkedid=linkedid,
                seconds=None if message is None else message.seconds,
            )
