"""The daemon: configuration in, adapters and core wired, one TaskGroup, clean shutdown.

Every task lives in one `asyncio.TaskGroup` and has a name. Shutdown is an exception:
SIGTERM/SIGINT set an event, the `shutdown` task raises :class:`ShutdownError`, the group
cancels everything else, and each adapter closes its connection on the way out. Adapters
supervise their own connections; only bugs (and a refused first AMI login, which is a
configuration error) escape the group.

The core (:class:`~cti.core.Core`) is synchronous and does no I/O. Its inputs — AMI events
(drained in order from the one event queue), agent commands (MQTT) and ticks (the timer
task) — are all handled on this one event loop, one at a time, so the core needs no locks.
Its effects leave through non-blocking entry points: the MQTT outbox, the record writer,
and one AMI action queue per node (:class:`AmiExecutor`), so a slow database, broker or
Asterisk never holds up the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Literal

import structlog

from cti import __version__
from cti.adapters.ami import (
    AmiClient,
    AmiLoginError,
    EventQueue,
    QueueItem,
)
from cti.adapters.ami_executor import AmiExecutor
from cti.adapters.db.callbacks import get_callback, mark_callback
from cti.adapters.db.records import RecordWriter
from cti.adapters.db.rows import callback_row, outbox_rows
from cti.adapters.db.store import Store
from cti.adapters.dispatch110 import (
    Dispatch110Store,
    FeedbackDeliverer,
    TransferPush,
    parse_push,
    reply_json,
)
from cti.adapters.fastagi import FastAgiServer
from cti.adapters.fdlimit import fd_budget, raise_nofile_limit
from cti.adapters.http import GuardStats, Metric, ReadyPart, build_api, error_envelope, serve_http
from cti.adapters.http.callbacks import callbacks_router
from cti.adapters.http.transfers110 import transfers_router
from cti.adapters.mqtt import Incoming, MqttAdapter
from cti.adapters.pops import PopPublisher
from cti.adapters.prompt_check import PromptCheck, configured_prompts, run_check
from cti.adapters.restart import Heartbeat, load_restart
from cti.adapters.workorders import build_workorders
from cti.adapters.workorders.outbox import OutboxDeliverer
from cti.core import (
    CallbackDone,
    CallbackKeepPlace,
    CallbackReply,
    CallbackRequested,
    Core,
    Effect,
    MessageLeft,
    NotifyEscalation,
    Pop,
    Publish,
    Reply110,
    Report110,
    SeatCommandReceived,
    StoreCall,
    StoreSeatState,
    StoreTicketOp,
    Tick,
    TicketNumberKnown,
    Transfer110Pushed,
    call_event,
    ticket_origin,
)
from cti.events import AmiConnected, AmiDisconnected, AmiEvent, AmiEventsLost
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
from cti.seats.commands import parse_seat_command
from cti.seats.model import SeatStatus
from cti.settings import Settings
from cti.workorders import OutboxOp, TicketDraft, TicketRating
from cti.workorders.backend import WorkOrderError

__all__ = ["EXIT_AMI_LOGIN", "EXIT_DATABASE", "AmiExecutor", "Daemon", "ShutdownError", "run"]

EXIT_CONFIG = 2
EXIT_AMI_LOGIN = 3
EXIT_DATABASE = 4


class ShutdownError(Exception):
    """Raised inside the TaskGroup to stop the daemon."""


async def _raise_shutdown(trigger: Callable[[], Awaitable[object]]) -> None:
    await trigger()
    raise ShutdownError


class Daemon:
    """The running parts, wired. Every input goes through :meth:`feed`."""

    def __init__(self, settings: Settings, store: Store, *, log: Any) -> None:
        self._log = log
        # tickets (工单): the configured backend (embedded on the same database, or the
        # city's system over HTTP), fed by the durable outbox that the record writer fills
        # in the call records' transactions
        self.workorders = workorders = build_workorders(
            settings.workorders, store, log=structlog.get_logger("cti.workorders")
        )
        self.tickets = OutboxDeliverer(
            store,
            workorders,
            on_delivered=self._ticket_delivered,
            log=structlog.get_logger("cti.workorders"),
            backoff_low=settings.workorders.retry_min_s,
            backoff_high=settings.workorders.retry_max_s,
        )
        self.records = RecordWriter(
            store, log=structlog.get_logger("cti.store"), on_commit=self.tickets.notify
        )
        self.mqtt = MqttAdapter(
            settings.mqtt,
            subscriptions=["seats/+/cmd", "110/transfers"],
            on_message=self._on_mqtt,
            log=structlog.get_logger("cti.mqtt"),
        )
        self.pops = PopPublisher(store, workorders, self.mqtt, log=structlog.get_logger("cti.pops"))
        self.events = EventQueue(settings.ami.event_queue_size, log=structlog.get_logger("cti.ami"))
        self.clients = {
            node.name: AmiClient(node, self.events, log=structlog.get_logger("cti.ami"))
            for node in settings.ami.nodes
        }
        self.ami = AmiExecutor(self.clients, log=structlog.get_logger("cti.ami"))
        dp = settings.dialplan
        self.core = Core(
            settings.numberplan,
            log=structlog.get_logger("cti.core"),
            recording=f"{dp.recording_dir}/{{call_id}}.{dp.recording_format}",
            match_window_s=settings.dispatch110.match_window_s,
            max_channels=settings.ami.max_channels,
        )
        # 110 ⇄ 12345: transfers and their feedback, stored before anyone is told
        feedback = settings.dispatch110.feedback
        self.store110 = Dispatch110Store(store, webhook=feedback is not None)
        # the webhooks: 110's feedback, and the escalation targets' notify_url
        notify = any(t.notify_url for t in settings.numberplan.emergency)
        self.feedback110 = (
            FeedbackDeliverer(store, feedback, log=structlog.get_logger("cti.dispatch110"))
            if feedback is not None or notify
            else None
        )
        self._reports: asyncio.Queue[Report110] = asyncio.Queue()
        self._pushes: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)
        self._gap_since: dict[str, float] = {}
        self._wake = asyncio.Event()
        self.handled = 0
        self.calls_ended = 0
        self.http_guard = GuardStats()  # the HTTP connection guard's counters (/metrics)
        self.agi: FastAgiServer | None = None  # the IVR's FastAGI server, once serving
        # survey ratings of calls still up (the caller rates before hanging up): they go
        # into the call record when it is written
        self._ratings: dict[str, str] = {}
        # short background writes (callback list, escalation notices), kept until done
        self._background: set[asyncio.Future[None]] = set()
        self._prompt_checks: dict[str, PromptCheck] = {}  # check id -> the check running
        self.settings = settings  # HTTP facade: the http section, the API's tokens
        self.store = store  # HTTP facade: call records for GET /api/v1/calls
        # liveness row + database health (cti/adapters/restart.py)
        self.heartbeat = Heartbeat(
            store,
            [n.name for n in settings.ami.nodes],
            interval_s=settings.database.heartbeat_s,
            degraded_after=settings.database.degraded_after_failures,
            log=structlog.get_logger("cti.store"),
        )
        self._readiness_seen: tuple[str, ...] | None = None

    async def aclose(self) -> None:
        """Close the HTTP clients (work-order backend, 110 webhook)."""
        await self.workorders.aclose()
        if self.feedback110 is not None:
            await self.feedback110.aclose()

    async def load_state(self) -> None:
        """What the database remembers, at start-up: the seats' states, and the 110
        transfers of the last 30 days (a push repeated after a restart is still a
        duplicate; an open transfer's feedback goes on from where it stopped)."""
        await self._load_restart()
        rows = await self.store110.load(time.time() - 30 * 86_400)
        self.core.transfers.restore(rows)
        self._log.info("transfers110_restored", transfers=len(rows))

    async def _load_restart(self) -> None:
        """Seats and calls from before a restart (cti/recovery.py): the seats' last states
        (a seat that was on a call comes back on it), and the calls taken whose end was
        never written — settled when each node's first channel list is in."""
        now = time.time()
        state = await load_restart(self.store, [n.name for n in self.settings.ami.nodes], now)
        saved = await self.store.latest_seat_states()
        if self.settings.numberplan.queue.after_restart != "not_ready":
            saved = {k: v for k, v in saved.items() if k not in state.busy}
        self.restore(saved)
        self.core.restore_calls(state.taken, state.last_alive)
        for effect in self.core.restore_busy_seats(state.busy):
            self._effect(effect)
        self._log.info(
            "restart_state_loaded",
            unfinished_calls=len(state.taken),
            busy_seats=len(state.busy),
            last_alive={n: round(t, 3) for n, t in state.last_alive.items()},
        )

    def restore(self, saved: dict[str, tuple[str, str | None, float]]) -> None:
        """Seat states from before a restart (the seat_events table)."""
        effects = self.core.restore_seats(saved, time.time())
        self._log.info("seats_restored", seats=len(saved))
        for effect in effects:
            self._effect(effect)

    def tasks(self) -> Iterable[tuple[Coroutine[Any, Any, None], str]]:
        for name, client in self.clients.items():
            yield client.run(), f"adapter.ami[{name}]"
            yield self.ami.run(name), f"adapter.ami[{name}].actions"
        yield self.mqtt.run(), "adapter.mqtt"
        yield self.records.run(), "adapter.store.records"
        yield self.heartbeat.run(), "adapter.store.heartbeat"
        yield self._watch_readiness(), "adapter.http.readiness"
        yield self.tickets.run(), "adapter.workorders.outbox"
        yield self.pops.run(), "adapter.pops"
        yield self._save_reports(), "adapter.dispatch110.reports"
        yield self._mqtt_pushes(), "adapter.dispatch110.mqtt"
        if self.feedback110 is not None:
            yield self.feedback110.run(), "adapter.dispatch110.webhook"
        yield self._pump(), "core.events"
        yield self._ticker(), "core.timers"
        yield from self._http_tasks()  # HTTP facade (cti/adapters/http.py)
        if self.settings.ivr.enabled:
            yield self._serve_agi(), "adapter.ivr"

    # ------------------------------------------------------------------ inputs

    async def _pump(self) -> None:
        while True:
            item = await self.events.get()
            if not isinstance(item, AmiEvent):
                self._connection_event(item)
            elif item.name == "UserEvent" and self._prompt_checks:
                for check in self._prompt_checks.values():
                    check.feed(item.headers)
            self.feed(item)

    async def _ticker(self) -> None:
        """Tick the core at its next deadline (at most every second, at least every 50 ms)."""
        while True:
            delay = min(1.0, max(0.05, self.core.next_deadline() - time.time()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self.feed(Tick(at=time.time()))

    def _on_mqtt(self, msg: Incoming) -> None:
        if msg.topic == "110/transfers":
            try:
                self._pushes.put_nowait(msg.payload)
            except asyncio.QueueFull:
                self._log.error("push110_dropped", reason="more than 1000 pushes queued")
            return
        parts = msg.topic.split("/")
        if len(parts) != 3 or parts[0] != "seats" or parts[2] != "cmd":
            return
        cmd = parse_seat_command(msg.payload)
        self.feed(SeatCommandReceived(seat=parts[1], command=cmd, at=msg.received))

    def feed(
        self,
        item: QueueItem
        | Tick
        | SeatCommandReceived
        | Transfer110Pushed
        | TicketNumberKnown
        | CallbackRequested
        | CallbackKeepPlace
        | MessageLeft,
        *,
        keep: Callable[[Effect], bool] | None = None,
    ) -> list[Effect]:
        """Hand one input to the core and carry out its effects. Never raises.

        Effects for which `keep` is true are returned instead of carried out (the HTTP API
        answers a command with the reply the MQTT path would publish).
        """
        self.handled += 1
        if isinstance(item, AmiEvent):
            self._log.debug("ami_event", ami_event=item.name, node=item.node)
        try:
            effects = self.core.handle(item)
        except Exception:  # noqa: BLE001 - one bad input must not stop the daemon
            self._log.exception("core_failed", item=type(item).__name__)
            return []
        kept: list[Effect] = []
        for effect in effects:
            if keep is not None and keep(effect):
                kept.append(effect)
            else:
                self._effect(effect)
        if effects:
            self._wake.set()  # a new timer may be due sooner than the ticker thinks
        return kept

    # ------------------------------------------------------------------ effects

    def _effect(self, effect: Effect) -> None:
        if isinstance(effect, Publish):
            self.mqtt.publish(effect.topic, effect.payload, retain=effect.retain)
        elif isinstance(effect, StoreCall):
            s = effect.summary
            self.calls_ended += 1
            self._log.info(
                "call_ended",
                linkedid=s.call_id,
                node=s.node,
                caller=s.caller,
                line=s.line,
                outcome=s.outcome,
                seat=s.answered_by,
                wait_s=s.wait_s,
                talk_s=s.talk_s,
                hangup_by=s.hangup_by,
                history_complete=s.history_complete,
            )
            rating = self._ratings.pop(f"{s.node}:{s.call_id}", None)
            self.records.add(
                s,
                outbox_rows(effect.ticket_ops, time.time()),
                satisfaction=rating,
                callback=callback_row(s) if effect.missed else None,
            )
        elif isinstance(effect, Pop):
            self.pops.submit(effect)
        elif isinstance(effect, StoreTicketOp):
            self.records.add_outbox(outbox_rows([effect.op], time.time()))
        elif isinstance(effect, Report110):
            self._reports.put_nowait(effect)  # stored, then published (_save_reports)
        elif isinstance(effect, NotifyEscalation):
            self._spawn(self._notify(effect))
        elif isinstance(effect, Reply110 | CallbackReply):
            pass  # only a push / a callback request makes one, and its caller keeps it
        elif isinstance(effect, CallbackDone):
            self._spawn(self._close_callback(effect))
        elif isinstance(effect, StoreSeatState):
            self._log.info(
                "seat_state",
                seat=effect.seat_id,
                status=effect.status,
                reason=effect.reason,
                cause=effect.cause,
                linkedid=effect.call_id,
            )
            self.records.add_seat_event(
                {
                    "seat": effect.seat_id,
                    "at": effect.at,
                    "status": effect.status,
                    "reason": effect.reason,
                    "previous": effect.previous,
                    "cause": effect.cause,
                    "call_id": effect.call_id,
                }
            )
        else:
            self.ami.submit(effect)

    def _ticket_delivered(self, call_id: str, kind: str, number: str) -> None:
        """The work-order backend has the ticket (create) or the call's facts (update)."""
        node, _, linkedid = call_id.partition(":")
        if kind == "create":
            self.pops.ticket(linkedid, number)
            self.feed(TicketNumberKnown(call_id=call_id, number=number, at=time.time()))
        self._log.info(
            "ticket_" + ("created" if kind == "create" else "updated"),
            linkedid=linkedid,
            node=node,
            ticket=number,
        )
        self._effect(
            call_event(
                "ticket", linkedid, event=f"ticket-{kind}", node=node, op=kind, ticket=number
            )
        )

    def _connection_event(self, item: QueueItem) -> None:
        if isinstance(item, AmiConnected) and not item.reconnect:
            self._spawn(self._check_prompts(item.node))
        if isinstance(item, AmiConnected):
            since = self._gap_since.pop(item.node, None)
            gap = round(item.time - since, 3) if since is not None else None
            self._log.info(
                "ami_node_up",
                node=item.node,
                version=item.version,
                reconnect=item.reconnect,
                gap_s=gap,
                resync="CoreShowChannels",
            )
        elif isinstance(item, AmiDisconnected):
            self._gap_since.setdefault(item.node, item.time)
            self._log.warning("ami_node_down", node=item.node, reason=item.reason)
        elif isinstance(item, AmiEventsLost):
            self._log.error("ami_events_lost", node=item.node, count=item.count, resync=True)
            client = self.clients.get(item.node)
            if client is not None:
                client.request_resync()

    # ---- IVR over FastAGI: the survey after a call, the progress query, after hours

    async def _serve_agi(self) -> None:
        ivr = self.settings.ivr
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
        self.agi = server
        while True:
            try:
                await server.serve(ivr.listen_host, ivr.listen_port)
            except OSError as exc:
                # the port taken (another daemon?): calls still flow, only the survey and
                # the progress query wait; Asterisk's AGI() fails over to Hangup meanwhile
                self._log.error("agi_listen_failed", port=ivr.listen_port, error=str(exc))
                await asyncio.sleep(10)

    def _node_of(self, peer: str) -> str:
        """The Asterisk node an AGI session came from (by address; the first node when
        there is one, or none matches)."""
        nodes = self.settings.ami.nodes
        return next((n.name for n in nodes if n.host == peer), nodes[0].name)

    async def _survey(self, agi: Agi) -> None:
        """After the agent hung up: one key, stored on the ticket and the call record."""
        linkedid = agi.headers.get("agi_arg_1") or agi.headers.get("agi_uniqueid", "")
        call_id = f"{self._node_of(agi.peer)}:{linkedid}"
        rating = await survey(agi, self.settings.ivr.survey)
        if rating is None:
            self._log.info("ivr_survey_unrated", linkedid=linkedid)
            return
        op = OutboxOp.rate(
            TicketRating(
                call_id=call_id,
                key=rating.key,
                label=rating.label,
                unsatisfied=rating.unsatisfied,
                at=time.time(),
            )
        )
        node, _, _ = call_id.partition(":")
        stored = await self.store.rate_call(call_id, rating.label, outbox_rows([op], time.time()))
        if not stored and self.core.tracker.call(node, linkedid) is not None:
            self._ratings[call_id] = rating.label  # the record comes when the caller hangs up
        elif not stored:
            # the call just ended: its record is on its way through the record writer
            await asyncio.sleep(2.0)
            if not await self.store.rate_call(call_id, rating.label, []):
                self._log.warning("ivr_survey_no_call_record", linkedid=linkedid)
        self.tickets.notify()
        self._log.info(
            "ivr_survey_rated",
            linkedid=linkedid,
            rating=rating.label,
            key=rating.key,
            flagged=rating.unsatisfied,
        )
        self._effect(
            call_event(
                "rated",
                linkedid,
                satisfaction=rating.label,
                key=rating.key,
                flagged=rating.unsatisfied,
            )
        )

    async def _announce(self, agi: Agi) -> None:
        """A waiting caller's place in the line and expected wait, from the dispatcher."""
        linkedid = agi.headers.get("agi_arg_1") or agi.headers.get("agi_uniqueid", "")
        d = self.core.dispatcher
        pos = d.position(linkedid)
        ewt = d.expected_wait(linkedid, time.time())
        steps = announcement(
            pos.overall if pos is not None else None, ewt, self.settings.ivr.announce
        )
        self._log.info(
            "ivr_announced",
            linkedid=linkedid,
            position=pos.overall if pos is not None else None,
            ewt_s=None if ewt is None else round(ewt, 1),
        )
        await announce(agi, steps)
        draft = self.core.drafts.get(linkedid)
        offer = self.settings.ivr.callback_offer
        number = draft is not None and bool(draft.caller)
        if not should_offer_callback(
            pos.overall if pos is not None else None, ewt, offer, has_number=number
        ):
            return
        choice = await offer_callback(agi, offer)
        if choice == "callback":
            self.feed(CallbackKeepPlace(call_id=linkedid, at=time.time()))
            await agi.set_variable("CTI_CALLBACK_KEEP", "1")  # the dialplan clears the line
            self._log.info("ivr_callback_requested", linkedid=linkedid)
        elif choice == "message":
            await self._message_while_waiting(agi, linkedid)

    async def _message_while_waiting(self, agi: Agi, linkedid: str) -> None:
        """Overload voicemail (留言): the message goes on the call's own ticket (the call
        record's ticket update carries it as the recording); the caller's wait ends."""
        dialplan = self.settings.dialplan

        async def keep(message: Message) -> None:
            self.feed(MessageLeft(call_id=linkedid, recording=message.recording, at=time.time()))

        message = await voicemail(
            agi,
            self.settings.ivr.voicemail,
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
            await agi.set_variable("CTI_CALLBACK_KEEP", "1")  # the line is cleared

    async def _progress(self, agi: Agi) -> None:
        """自助查询进度: a ticket number by DTMF, its status read back."""

        async def lookup(number: str) -> str | None:
            try:
                ticket = await self.workorders.status(number)
            except WorkOrderError as exc:
                self._log.warning("ivr_progress_backend_error", error=str(exc))
                return None
            return None if ticket is None else ticket.status

        prefix = self.settings.workorders.embedded.prefix
        outcome = await progress_query(agi, self.settings.ivr.progress_query, lookup, prefix=prefix)
        self._log.info(
            "ivr_progress_query",
            linkedid=agi.headers.get("agi_uniqueid", ""),
            ticket=outcome.number,
            status=outcome.status,
        )

    # ---- the missed-call callback list (cti/adapters/callbacks.py)

    async def call_back(self, call_id: str, seat: str) -> tuple[int, dict[str, Any]]:
        """One-click callback of a missed call from `seat` (HTTP)."""
        entry = await get_callback(self.store, call_id)
        if entry is None:
            return 404, error_envelope(
                "not_found", f"no missed call {call_id!r} on the callback list"
            )
        if entry["status"] != "open":
            return 409, error_envelope("not_open", f"the entry is {entry['status']}")
        kept = self.feed(
            CallbackRequested(
                callback_id=call_id,
                node=entry["node"],
                seat=seat,
                number=entry["caller"],
                at=time.time(),
            ),
            keep=lambda e: isinstance(e, CallbackReply),
        )
        reply = next(e for e in kept if isinstance(e, CallbackReply))
        if not reply.ok:
            status = 404 if reply.code == "unknown_seat" else 409
            return status, error_envelope(reply.code, reply.message)
        await mark_callback(
            self.store,
            call_id,
            status="calling",
            attempts=entry["attempts"] + 1,
            last_seat=seat,
            last_at=time.time(),
        )
        return 202, {"ok": True, "call_id": call_id, "seat": seat, "status": "calling"}

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _check_prompts(self, node: str) -> None:
        """Are the configured prompts on this Asterisk? Missing ones are a warning: the
        IVR would say nothing where they should be (docs/ivr.md)."""
        client = self.clients.get(node)
        if client is None:
            return
        prompts = configured_prompts(self.settings)
        try:
            check = await run_check(client, prompts)
            self._prompt_checks[check.check_id] = check
            async with asyncio.timeout(30):
                await check.done.wait()
            missing = check.missing()
        except Exception as exc:  # noqa: BLE001 - a check, not a reason to stop
            self._log.warning("prompts_check_failed", node=node, error=repr(exc))
            return
        finally:
            self._prompt_checks.clear()
        if missing:
            self._log.warning(
                "prompts_missing",
                node=node,
                missing=missing,
                hint="record them or fix the names in ivr: (cti check-config --live)",
            )
        else:
            self._log.info("prompts_checked", node=node, prompts=len(prompts))

    async def _notify(self, effect: NotifyEscalation) -> None:
        """An escalation's data for the receiving side: stored, then the webhook wakes."""
        for attempt in itertools.count():
            try:
                await self.store110.save_notification(effect.event_id, effect.url, effect.payload)
                break
            except Exception as exc:  # noqa: BLE001 - the database: keep trying
                self._log.warning("escalation_notify_store_failed", error=repr(exc))
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
        if self.feedback110 is not None:
            self.feedback110.notify()

    async def _close_callback(self, done: CallbackDone) -> None:
        answered = done.outcome == "answered"
        try:
            await mark_callback(
                self.store,
                done.callback_id,
                status="done" if answered else "open",
                last_outcome=done.outcome,
                last_at=done.at,
                callback_call_id=done.call_id,
            )
        except Exception:  # noqa: BLE001 - the list is an aid; the call record has it all
            self._log.exception("callback_mark_failed", linkedid=done.call_id)
        self._log.info(
            "callback_ended", linkedid=done.call_id, seat=done.seat_id, outcome=done.outcome
        )

    async def _hours(self, agi: Agi) -> None:
        """Asked by a line with `hours:` before it holds the call: open, return at once (the
        call is queued); closed, take a message (留言) that becomes a ticket."""
        number = agi.headers.get("agi_arg_1", "")
        linkedid = agi.headers.get("agi_arg_2") or agi.headers.get("agi_uniqueid", "")
        now = time.time()
        if not after_hours(self.core.plan, number, now):
            return
        node = self._node_of(agi.peer)
        call_id = f"{node}:{linkedid}"
        self._log.info("ivr_after_hours", linkedid=linkedid, line=number)
        dialplan = self.settings.dialplan

        async def keep(message: Message) -> None:
            line = self.core.plan.line(number)
            caller = agi.headers.get("agi_callerid", "")
            name = agi.headers.get("agi_calleridname", "")
            draft = TicketDraft(
                call_id=call_id,
                node=node,
                caller="" if caller == "unknown" else caller,
                caller_name="" if name == "unknown" else name,
                line=number,
                line_name=line.name if line is not None else number,
                department=line.department if line is not None else "",
                origin=ticket_origin(line, number),
                skill=(line.skill if line is not None else None) or self.core.plan.general_skill,
                created_at=now,
                recording=message.recording,
                content=message_content(message),
            )
            # the idempotency key is the call id's: a retried AGI makes no second ticket
            await self.store.queue_ops(outbox_rows([OutboxOp.create(draft)], time.time()))
            self.tickets.notify()
            self._log.info(
                "ivr_voicemail_kept",
                linkedid=linkedid,
                line=number,
                recording=message.recording,
                seconds=message.seconds,
            )

        message = await voicemail(
            agi,
            self.settings.ivr.voicemail,
            path=f"{dialplan.recording_dir}/{linkedid}",
            fmt=dialplan.recording_format,
            keep=keep,
        )
        if message is None or not worth_a_ticket(message, self.settings.ivr.voicemail):
            self._log.info(
                "ivr_voicemail_empty",
                linkedid=linkedid,
                seconds=None if message is None else message.seconds,
            )

    # ---- HTTP facade
    # What the HTTP API (cti/adapters/http.py, `ApiFacade`) reads and does. Every method
    # runs on the event loop between two inputs, so the core is never seen half-way.

    def _http_tasks(self) -> Iterable[tuple[Coroutine[Any, Any, None], str]]:
        http = self.settings.http
        if http.enabled:
            log = structlog.get_logger("cti.http")
            routers = [transfers_router(self), callbacks_router(self)]
            api = build_api(self, http, log=log, routers=routers)
            yield serve_http(api, http, log=log, stats=self.http_guard), "adapter.http"

    # ------------------------------------------------------------------ 110

    async def push110(self, push: TransferPush) -> Reply110:
        """A push from 110 (HTTP or MQTT): through the core; the transfer, its feedback and
        a data transfer's ticket operation are committed before the reply says accepted."""
        item = Transfer110Pushed(
            transfer=push.transfer(), at=time.time(), request_id=push.request_id
        )
        kept = self.feed(item, keep=lambda e: isinstance(e, Reply110 | Report110 | StoreTicketOp))
        reports = [e for e in kept if isinstance(e, Report110)]
        ops = [e.op for e in kept if isinstance(e, StoreTicketOp)]
        try:
            await self.store110.save(reports, ops)
        except Exception:
            if any(r.feedback.event == "accepted" for r in reports):
                # not stored, so not accepted: the error goes back and a repeat is new
                self.core.transfers.forget(item.transfer.transfer_id)
            raise
        if ops:
            self.tickets.notify()
        for report in reports:
            self._publish110(report)
        return next(e for e in kept if isinstance(e, Reply110))

    async def transfer110_status(self, transfer_id: str) -> dict[str, Any] | None:
        live = self.core.transfers.status(transfer_id)
        return live if live is not None else await self.store110.status(transfer_id)

    def _publish110(self, report: Report110) -> None:
        fb = report.feedback
        self.mqtt.publish(f"110/feedback/{fb.transfer_id}", fb.to_json())
        if self.feedback110 is not None:
            self.feedback110.notify()

    async def _save_reports(self) -> None:
        """Feedback from calls (answered, ticket, ended): stored, then published, in order.
        A database error is retried: the events wait rather than go out unrecorded."""
        while True:
            report = await self._reports.get()
            for attempt in itertools.count():
                try:
                    await self.store110.save([report], [])
                    break
                except Exception as exc:  # noqa: BLE001 - the database: keep trying
                    self._log.warning("feedback110_store_failed", error=repr(exc), attempt=attempt)
                    await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
            self._publish110(report)

    async def _mqtt_pushes(self) -> None:
        """Pushes on cti/110/transfers, one at a time; the reply on cti/110/transfers/reply."""
        while True:
            payload = await self._pushes.get()
            try:
                await self._mqtt_push(payload)
            except Exception:  # noqa: BLE001 - one bad push costs that push, never the loop
                self._log.exception("push110_message_failed", via="mqtt", size=len(payload))

    async def _mqtt_push(self, payload: bytes) -> None:
        parsed = parse_push(payload)
        if isinstance(parsed, dict):
            self._log.warning("push110_invalid", via="mqtt", error=parsed["error"]["message"])
            self.mqtt.publish("110/transfers/reply", parsed)
            return
        try:
            reply = await self.push110(parsed)
        except Exception as exc:  # noqa: BLE001 - not stored: say so, 110 pushes again
            self._log.exception("push110_failed", transfer_id=parsed.transfer_id)
            self.mqtt.publish(
                "110/transfers/reply",
                error_envelope("internal", repr(exc), request_id=parsed.request_id),
            )
            return
        self.mqtt.publish("110/transfers/reply", reply_json(reply)[1])

    def seat_command(self, seat: str, payload: bytes) -> dict[str, Any]:
        """An agent command from HTTP: fed to the core like an MQTT one (same parser,
        same effects); the reply is returned instead of published on seats/{seat}/reply."""
        item = SeatCommandReceived(seat=seat, command=parse_seat_command(payload), at=time.time())
        topic = f"seats/{seat}/reply"
        kept = self.feed(item, keep=lambda e: isinstance(e, Publish) and e.topic == topic)
        for effect in kept:
            if isinstance(effect, Publish):
                return effect.payload
        return {"ok": False, "request_id": None, "error": {"code": "internal"}}

    def seat_states(self) -> list[dict[str, Any]]:
        states = self.core.dispatcher.seats.states()
        return [st.to_json() for st in sorted(states, key=lambda st: st.seat_id)]

    def seat_state(self, seat: str) -> dict[str, Any] | None:
        state = self.core.dispatcher.seats.get(seat)
        return state.to_json() if state is not None else None

    def queue_snapshot(self, max_calls: int = 100) -> dict[str, Any]:
        """The snapshot of cti/queue/snapshot, plus the first *max_calls* waiting calls."""
        d = self.core.dispatcher
        now = time.time()
        calls = []
        for call in itertools.islice(d.queue, max_calls):
            pos = d.position(call.call_id)
            calls.append(
                {
                    "call_id": call.call_id,
                    "line": call.line,
                    "priority_class": call.priority_class,
                    "skills": sorted(call.skills),
                    "position": pos.overall if pos is not None else None,
                    "waiting_s": round(max(0.0, now - call.enqueued_at), 3),
                    "expected_wait_s": d.expected_wait(call.call_id, now),
                    "offers": call.offers,
                }
            )
        return {"schema_version": 1, **dataclasses.asdict(d.snapshot(now)), "calls": calls}

    def active_calls(self, *, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        # one page only: the table may hold ami.max_channels calls per node
        d = self.core.dispatcher
        out = []
        tracker = self.core.tracker
        for call in tracker.active_page(offset, limit):
            row = dataclasses.asdict(call)
            row["state"] = call.state.value
            row["channels"] = list(call.channels)
            pos = d.position(call.call_id)
            row["queue_position"] = pos.overall if pos is not None else None
            row["offered_to"] = d.offered_to(call.call_id)
            out.append(row)
        return out, tracker.call_count()

    async def call_records(
        self, *, caller: str | None, limit: int, offset: int = 0
    ) -> list[dict[str, Any]]:
        return await self.store.calls(caller=caller, limit=limit, offset=offset)

    def readiness(self) -> list[ReadyPart]:
        parts = [
            ReadyPart(
                name=f"ami.{name}",
                ready=client.connected,
                detail=client.state + (f": {client.last_error}" if client.last_error else ""),
            )
            for name, client in self.clients.items()
        ]
        # the daemon only exists once the database opened (run() exits with 4 otherwise);
        # it is degraded after database.degraded_after_failures failed writes in a row
        w, hb = self.records, self.heartbeat
        limit = self.settings.database.degraded_after_failures
        failing = max(w.failing, hb.failing)
        parts.append(
            ReadyPart(
                name="database",
                ready=failing < limit,
                detail=("open" if failing < limit else f"degraded: {failing} failed writes")
                + f"; {w.pending} record(s) pending, {w.failures} write failure(s)"
                + (f": {hb.last_error}" if hb.last_error else ""),
            )
        )
        parts.append(
            ReadyPart(
                name="mqtt",
                ready=self.mqtt.connected,
                required=False,  # seats miss pops, but calls are still routed and answered
                detail=f"{'connected' if self.mqtt.connected else 'disconnected'}; "
                f"backlog {self.mqtt.backlog}",
            )
        )
        return parts

    async def _watch_readiness(self) -> None:
        """Log each change of /readyz's answer once (not each probe): which parts went
        down, and when all are back."""
        while True:
            parts = self.readiness()
            down = tuple(p.name for p in parts if p.required and not p.ready)
            if down != self._readiness_seen:
                if self._readiness_seen is None:
                    pass  # the first look, at start-up (AMI still connecting): no change
                elif down:
                    self._log.warning(
                        "readiness_changed",
                        ready=False,
                        not_ready=list(down),
                        detail={p.name: p.detail for p in parts if p.name in down},
                    )
                else:
                    self._log.info("readiness_changed", ready=True, not_ready=[])
                self._readiness_seen = down
            await asyncio.sleep(0.25)

    def metrics(self) -> list[Metric]:
        def one(name: str, kind: Literal["counter", "gauge"], text: str, v: float) -> Metric:
            return Metric(name=name, kind=kind, help=text, samples=(({}, v),))

        def per(
            name: str,
            kind: Literal["counter", "gauge"],
            text: str,
            label: str,
            values: Mapping[str, float],
        ) -> Metric:
            samples = tuple(({label: k}, float(v)) for k, v in sorted(values.items()))
            return Metric(name=name, kind=kind, help=text, samples=samples)

        cl = self.clients
        snap = self.core.dispatcher.snapshot(time.time())
        seats = Counter(str(st.status) for st in self.core.dispatcher.seats.states())
        return [
            per("cti_ami_events_received_total", "counter", "AMI events received.", "node",
                {n: c.events_received for n, c in cl.items()}),
            per("cti_ami_connected", "gauge", "1 while the AMI connection is up.", "node",
                {n: int(c.connected) for n, c in cl.items()}),
            per("cti_ami_reconnects_total", "counter", "AMI reconnects.", "node",
                {n: c.reconnects for n, c in cl.items()}),
            per("cti_ami_parse_errors_total", "counter", "Unparsable AMI messages.", "node",
                {n: c.parse_errors for n, c in cl.items()}),
            one("cti_ami_event_queue_depth", "gauge", "Events waiting for the core.",
                self.events.qsize()),
            one("cti_ami_events_dropped_total", "counter", "Events dropped: queue full.",
                self.events.dropped_total),
            one("cti_ami_actions_failed_total", "counter", "AMI actions that failed.",
                self.ami.failed),
            one("cti_core_inputs_total", "counter", "Inputs handled by the core.", self.handled),
            one("cti_calls_waiting", "gauge", "Calls waiting for a seat.", snap.waiting),
            one("cti_calls_offered", "gauge", "Calls ringing a seat.", snap.offered),
            one("cti_calls_active", "gauge", "Calls in progress.",
                self.core.tracker.call_count()),
            per("cti_tracker_channels", "gauge", "Channels tracked, per node.", "node",
                {n: self.core.tracker.channel_count(n) for n in cl}),
            one("cti_tracker_max_channels", "gauge", "Channels tracked per node at most.",
                self.core.tracker.max_channels),
            one("cti_calls_longest_wait_seconds", "gauge", "Longest current wait.",
                snap.longest_wait_s),
            one("cti_calls_ended_total", "counter", "Calls ended.", self.calls_ended),
            per("cti_seats", "gauge", "Seats by status.", "status",
                {str(s): seats.get(str(s), 0) for s in SeatStatus}),
            one("cti_call_records_pending", "gauge", "Records not yet stored.",
                self.records.pending),
            one("cti_call_records_written_total", "counter", "Rows stored.",
                self.records.written),
            one("cti_call_records_dropped_total", "counter", "Rows dropped.",
                self.records.dropped),
            one("cti_call_records_write_failures_total", "counter", "Failed batches.",
                self.records.failures),
            one("cti_mqtt_connected", "gauge", "1 while the broker connection is up.",
                int(self.mqtt.connected)),
            one("cti_mqtt_backlog", "gauge", "Messages waiting to be published.",
                self.mqtt.backlog),
            one("cti_mqtt_published_total", "counter", "Messages published.",
                self.mqtt.published),
            per("cti_core_counts_total", "counter", "Core events by kind.", "kind",
                self.core.counts),
            per("cti_tracker_anomalies_total", "counter", "Call tracker anomalies.", "kind",
                self.core.tracker.anomalies),
            one("cti_http_connections", "gauge", "HTTP connections open.",
                self.http_guard.open),
            one("cti_http_connections_refused_total", "counter",
                "HTTP connections refused: http.max_connections open.", self.http_guard.refused),
            one("cti_http_header_timeouts_total", "counter",
                "HTTP connections closed: headers not in within http.header_timeout_s.",
                self.http_guard.header_timeouts),
            per("cti_dispatcher_events_total", "counter", "Dispatcher events and anomalies.",
                "kind", self.core.dispatcher.stats),
        ]  # fmt: skip


async def _flush_records(records: RecordWriter, log: Any) -> None:
    """Store the call records still in memory before exiting (bounded wait)."""
    if not records.pending:
        return
    writer = asyncio.create_task(records.run(), name="adapter.store.flush")
    try:
        async with asyncio.timeout(5):
            await records.flushed()
    except TimeoutError:
        log.error("call_records_not_flushed", pending=records.pending)
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


def _fds_fit(settings: Settings, log: Any) -> bool:
    """Before any socket: the HTTP and FastAGI caps must leave AMI its descriptors."""
    budget = fd_budget(settings, raise_nofile_limit())
    if not budget.fits:
        log.error("cti_fatal", error=f"configuration: {budget.problem()}")
        return False
    log.info("fd_budget", limit=budget.limit, needed=budget.needed, http=budget.http)
    return True


async def _open(settings: Settings, log: Any) -> tuple[Store, Daemon] | int:
    """The database and the daemon built on it, or the exit code of why not."""
    if not _fds_fit(settings, log):
        return EXIT_CONFIG
    store = Store(settings.database.url)
    try:
        await store.open()
    except Exception as exc:  # noqa: BLE001 - any driver error: report it, exit clearly
        log.error(
            "cti_fatal",
            error=f"cannot open the database: {exc}",
            hint="check database.url (CTI_DATABASE_URL) and the directory's permissions",
        )
        await store.close()
        return EXIT_DATABASE
    try:
        return store, Daemon(settings, store, log=log)
    except ValueError as exc:  # what only shows when used, e.g. an unreadable CA file
        log.error("cti_fatal", error=f"configuration: {exc}", hint="fix it; cti check-config")
        await store.close()
        return EXIT_CONFIG


async def run(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
) -> int:
    """Run the daemon until SIGTERM/SIGINT (or `shutdown_trigger` returns).

    Returns the process exit code: 0 after a clean shutdown, 2 when a setting proves
    unusable only now (e.g. workorders.http.ca_file is not a CA bundle), 3 when an Asterisk node
    refused the first login (wrong username/secret: a configuration error), 4 when the
    database cannot be opened.
    """
    log = structlog.get_logger("cti")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    if shutdown_trigger is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        shutdown_trigger = stop.wait

    opened = await _open(settings, log)
    if isinstance(opened, int):
        return opened
    store, daemon = opened
    await daemon.load_state()
    log.info(
        "cti_starting",
        version=__version__,
        nodes=[f"{n.name}@{n.host}:{n.port}" for n in settings.ami.nodes],
        seats=len(settings.numberplan.seats),
        lines=len(settings.numberplan.lines),
    )
    started = time.monotonic()
    code = 0
    try:
        async with asyncio.TaskGroup() as tg:
            for coro, name in daemon.tasks():
                tg.create_task(coro, name=name)
            tg.create_task(_raise_shutdown(shutdown_trigger), name="shutdown")
    except* ShutdownError:
        log.info("cti_stopping", reason="signal")
    except* AmiLoginError as group:
        for err in group.exceptions:
            log.error(
                "cti_fatal",
                error=str(err),
                hint="check ami.nodes[].username and the "
                "secret (CTI_AMI_SECRET / CTI_AMI_SECRET_<NODE>) against manager.conf",
            )
        code = EXIT_AMI_LOGIN
    finally:
        if shutdown_trigger is stop.wait:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        await _flush_records(daemon.records, log)
        await daemon.aclose()
        await store.close()
    log.info(
        "cti_stopped",
        uptime_s=round(time.monotonic() - started, 3),
        events=daemon.handled,
        calls=daemon.calls_ended,
        exit_code=code,
    )
    return code
