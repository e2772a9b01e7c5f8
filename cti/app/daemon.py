"""The daemon: adapters and core wired, every task in one TaskGroup, the effect table.

Every task lives in one `asyncio.TaskGroup` and has a name (:meth:`Daemon.tasks`; short
background jobs too, cti/app/jobs.py). Shutdown is an exception (cti/app/run.py). Adapters
supervise their own connections; only bugs (and a refused first AMI login, which is a
configuration error) escape the group.

The core (:class:`~cti.core.Core`) is synchronous and does no I/O. Its inputs — AMI events
(drained in order from the one event queue), agent commands (MQTT) and ticks (the timer
task) — are all handled on this one event loop, one at a time, so the core needs no locks.
Its effects leave through non-blocking entry points, one small method per effect type (the
table in :meth:`Daemon._effect_table`): the MQTT outbox, the record writer, one AMI action
queue per node (:class:`AmiExecutor`), so a slow database, broker or Asterisk never holds
up the events.

The glue of each capability is its own module: the IVR routes (agi_routes.py), 110
(transfers110.py), the callback list (callbacks.py), what HTTP reads (http_facade.py), the
AMI connections' events (ami_nodes.py), the active/standby lease (ha.py).

Active/standby (``ha.enabled``, docs/high-availability.md): a standby keeps its AMI, MQTT,
HTTP and database connections but feeds its core nothing (its AMI events go to a call
tracker of their own, for the standby's metrics); :meth:`Daemon.take_over` then does what a
restart does. Outward effects are gated at their executors by
:meth:`~cti.core.leadership.Leadership.acting` (AMI actions, MQTT publishes, ticket
delivery, the heartbeat) and every database write carries the epoch, which the database
checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, get_args

import structlog
from structlog.typing import FilteringBoundLogger

from cti.adapters.ami import AmiClient, EventQueue
from cti.adapters.ami_executor import AmiExecutor
from cti.adapters.chanvars import read_adopted_channel
from cti.adapters.db.kpi_callbacks import load_callback_requests
from cti.adapters.db.kpi_queries import load_facts
from cti.adapters.db.leader import LeaseConnection
from cti.adapters.db.records import RecordWriter
from cti.adapters.db.rows import callback_row, outbox_rows
from cti.adapters.db.store import Store
from cti.adapters.http.callbacks import callbacks_router
from cti.adapters.http.stats import stats_router
from cti.adapters.http.supervision import supervision_router
from cti.adapters.http.transfers110 import transfers_router
from cti.adapters.mqtt import Incoming, MqttAdapter
from cti.adapters.pops import PopPublisher
from cti.adapters.restart import Heartbeat, load_restart
from cti.adapters.workorders import build_workorders
from cti.adapters.workorders.outbox import OutboxDeliverer
from cti.app.agi_routes import AgiRoutes
from cti.app.ami_nodes import AmiNodes
from cti.app.callbacks import Callbacks
from cti.app.fallback_facts import FallbackFacts
from cti.app.feed import Tally
from cti.app.ha import HaControl, ha_metrics, ha_ready_part
from cti.app.http_facade import HttpFacade
from cti.app.jobs import Jobs
from cti.app.live_stats import DAY_S, LiveStats, zone
from cti.app.outbox_health import outbox_metrics, outbox_ready
from cti.app.reload import Reloader, ReloadStats
from cti.app.supervision import SupervisionDesk
from cti.app.transfers110 import PUSH_TOPIC, Transfers110
from cti.app.web import WebPages
from cti.calls import VARIABLES_READ
from cti.calls.ids import CallRef
from cti.calls.seatnames import seat_namer
from cti.calls.tracker import CallTracker
from cti.core import (
    CallbackDone,
    CallbackReply,
    Core,
    CoreInput,
    Effect,
    NotifyEscalation,
    PlanReloaded,
    Pop,
    Publish,
    Reply110,
    Report110,
    SeatCommandReceived,
    StateRestored,
    StoreCall,
    StoreSeatState,
    StoreTicketOp,
    Tick,
    TicketNumberKnown,
    call_event,
)
from cti.core.leadership import Leadership, LeaseTerms
from cti.core.messages import AmiEffect, ReadAdoptedChannel, StoreAudit
from cti.events import EVENT_TYPES, AmiConnected, AmiEvent, ConnectionEvent
from cti.seats.commands import parse_seat_command
from cti.settings import Settings
from cti.settings.reload import ReloadPlan

__all__ = ["AmiExecutor", "Daemon"]

_TRANSFERS_KEPT_S = 30 * 86_400  # 110 transfers loaded at start-up: a repeat is a duplicate


class Daemon:
    """The running parts, wired. Every input goes through :meth:`feed`."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        log: FilteringBoundLogger,
        config_path: Path | None = None,
        reload_status: Path | None = None,
    ) -> None:
        self._log = log
        self.settings = settings
        self.store = store
        # active/standby (cti/core/leadership.py): SOLO (always acting) when ha is off
        ha = settings.ha
        terms = (
            LeaseTerms(lease_s=ha.lease_s, renew_s=ha.renew_s, margin_s=ha.margin_s)
            if ha.enabled
            else None
        )
        self.leadership = Leadership(ha.node(), terms)
        # a standby feeds its core nothing until it takes over (the restart path then)
        self._serving = not ha.enabled
        self._not_leader: dict[str, int] = {"inputs": 0}
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
            acting=self.acting,
        )
        self.ha: HaControl | None = None
        if ha.enabled:
            self.ha = HaControl(
                ha,
                # its own session; a statement that hangs longer than a third of the lease
                # is given up (the clock decides what that means for the leader)
                LeaseConnection(store.url, ha.node(), timeout_s=min(1.0, ha.lease_s / 3)),
                self.leadership,
                take_over=self.take_over,
                changed=self._publish_status,
                log=structlog.get_logger("cti.ha"),
            )
        self.records = RecordWriter(
            store,
            log=structlog.get_logger("cti.store"),
            on_commit=self.tickets.notify,
            max_pending=settings.database.max_pending_rows,
            on_fenced=self.ha.fenced if self.ha is not None else None,
        )
        mqtt_settings = settings.mqtt
        if ha.enabled:  # one configuration, two clients: the broker would drop one of them
            mqtt_settings = mqtt_settings.model_copy(
                update={"client_id": f"{mqtt_settings.client_id}-{ha.node()}"}
            )
        self.mqtt = MqttAdapter(
            mqtt_settings,
            subscriptions=["seats/+/cmd", PUSH_TOPIC],
            on_message=self._on_mqtt,
            log=structlog.get_logger("cti.mqtt"),
            gate=self.acting,
            status_topic=f"status/{ha.node()}" if ha.enabled else "status",
            status=self.leadership.status if ha.enabled else dict,
        )
        self.pops = PopPublisher(store, workorders, self.mqtt, log=structlog.get_logger("cti.pops"))
        self.events = EventQueue(settings.ami.event_queue_size, log=structlog.get_logger("cti.ami"))
        self.clients = {
            node.name: AmiClient(
                node,
                self.events,
                log=structlog.get_logger("cti.ami"),
                # the daemon reads only the typed events (the tracker, the core and the
                # prompt check dispatch on them); the others are dropped unparsed (issue 12)
                keep_events=EVENT_TYPES if settings.ami.drop_unread_events else None,
                keep_variables=VARIABLES_READ if settings.ami.drop_unread_events else None,
                filter_on_server=settings.ami.filter_on_server,
            )
            for node in settings.ami.nodes
        }
        self.ami = AmiExecutor(
            self.clients, log=structlog.get_logger("cti.ami"), acting=self.acting
        )
        dp = settings.dialplan
        self.core = core = Core(
            settings.numberplan,
            log=structlog.get_logger("cti.core"),
            recording=f"{dp.recording_dir}/{{call_id}}.{dp.recording_format}",
            match_window_s=settings.dispatch110.match_window_s,
            max_channels=settings.ami.max_channels,
            lease_s=settings.ami.lease_s,
            lease_every_s=settings.ami.lease_renew_s,
            transit_nodes=frozenset(n.name for n in settings.ami.nodes if n.transit),
        )
        # liveness row + database health (cti/adapters/restart.py)
        self.heartbeat = Heartbeat(
            store,
            [n.name for n in settings.ami.nodes],
            interval_s=settings.database.heartbeat_s,
            degraded_after=settings.database.degraded_after_failures,
            log=structlog.get_logger("cti.store"),
            acting=self.acting,
        )
        # a standby's view of the calls (its metrics); the core takes over at takeover
        self.standby_calls: CallTracker | None = (
            CallTracker(
                logger=structlog.get_logger("cti.ha"),
                name_of=seat_namer({s.endpoint: s.id for s in settings.numberplan.seats}),
                max_channels=settings.ami.max_channels,
            )
            if ha.enabled
            else None
        )
        self.tally = Tally()
        self.jobs = Jobs(log=log)  # short background work, in the one TaskGroup
        self._wake = asyncio.Event()
        # the glue per capability
        self.nodes = AmiNodes(settings, self.clients, jobs=self.jobs, log=log)
        self.transfers110 = Transfers110(
            settings,
            store,
            mqtt=self.mqtt,
            feed=self.feed,
            live_status=core.transfer110_status,
            tickets_changed=self.tickets.notify,
            log=log,
        )
        self.callbacks = Callbacks(store, feed=self.feed, log=log)
        # supervisor controls and their audit log (cti/app/supervision.py)
        self.supervision = SupervisionDesk(
            settings.supervision,
            store,
            feed=self.feed,
            spies=core.supervision.spies,
            log=log,
        )
        # the live KPI figures and alarms (cti/stats/live, cti/stats/alarms; docs/kpis.md)
        self.live = LiveStats(
            thresholds=settings.kpis.thresholds(),
            tz=zone(settings.kpis.timezone),
            publish=self._publish,
            waiting=lambda: core.waiting(10_000),
            ready_seats=core.ready_seats_by_line,
            log=structlog.get_logger("cti.kpis"),
        )
        self.ivr = AgiRoutes(
            settings,
            core=core,
            store=store,
            workorders=workorders,
            feed=self.feed,
            publish=self._publish,
            tickets_changed=self.tickets.notify,
            log=log,
        )
        # SIGHUP / `cti reload` (cti/app/reload.py): the file it was started with, again
        self.reloads = ReloadStats()
        self.reloader = Reloader(
            config_path,
            current=lambda: self.settings,
            apply=self.apply_reload,
            stats=self.reloads,
            log=structlog.get_logger("cti.config"),
            status_file=reload_status,
        )
        self.http = HttpFacade(
            settings,
            core=core,
            feed=self.feed,
            store=store,
            clients=self.clients,
            events=self.events,
            ami=self.ami,
            records=self.records,
            heartbeat=self.heartbeat,
            mqtt=self.mqtt,
            tally=self.tally,
            live=self.live,
            pop_latency=self.pops.latency,
            log=log,
            reloads=self.reloads,
            mqtt_push_limit=self.transfers110.push_limit,
        )
        # the browser pages (docs/console.md): every MQTT publish goes to their streams too
        self.web = WebPages(
            settings,
            http=self.http,
            callbacks=self.callbacks,
            supervision=self.supervision,
            store=store,
            waiting=lambda: core.waiting(10_000),
            log=structlog.get_logger("cti.web"),
        )
        self.mqtt.taps.append(self.web.hub.publish)
        self.mqtt.taps.append(self.web.board.tap)
        self.fallback_facts = self._fallback_facts(store)
        # parked ticket operations (issue 15): /readyz degraded, /metrics counts
        self.http.more_metrics += (
            self.web.metrics,
            lambda: outbox_metrics(self.tickets),
            self.fallback_facts.metrics,
        )
        self.http.more_ready.append(lambda: outbox_ready(self.tickets))
        if self.ha is not None:
            control = self.ha
            self.http.more_ready.append(lambda: [ha_ready_part(self.leadership, time.monotonic())])
            self.http.more_metrics.append(
                lambda: ha_metrics(control, time.monotonic(), dropped=self._dropped())
            )
        self._group: asyncio.TaskGroup | None = None
        self._effects = self._effect_table()

    def _fallback_facts(self, store: Store) -> FallbackFacts:
        """The calls Asterisk's fallback took while this daemon was down, from each node's
        queue_log (``ami.nodes[].queue_log``) into the KPI facts and the live figures."""
        settings, tracker = self.settings, self.core.tracker
        return FallbackFacts(
            files={
                n.name: n.queue_log
                for n in settings.ami.nodes
                if n.queue_log is not None and not n.transit
            },
            plan=settings.numberplan,
            store=store,
            is_live=lambda node, call_id: tracker.call(node, call_id) is not None,
            acting=self.acting,
            scan_s=settings.kpis.fallback_scan_s,
            settle_s=settings.kpis.fallback_settle_s,
            lookback_s=settings.kpis.fallback_lookback_s,
            log=structlog.get_logger("cti.fallback"),
            on_stored=self.live.add,
        )

    # ------------------------------------------------------------------ active/standby

    def acting(self) -> bool:
        """May this daemon act now (always, without ha)? Asked by every outward executor."""
        return self.leadership.acting(time.monotonic())

    async def take_over(self) -> None:
        """The lease is ours: do what a restart does (docs/high-availability.md). The state
        the old leader stored is loaded into the core, then each connected node is treated
        as freshly logged in (the core's node_up, a CoreShowChannels list): the calls in
        progress are adopted (cti/core/adoption.py, cti/core/recovery.py) as after a
        restart. Events that came while loading are not lost: the list has their calls."""
        self.standby_calls = None
        await self.load_state()
        self._serving = True
        now = time.time()
        for name, client in self.clients.items():
            if client.connected:  # one not connected yet resyncs itself at its login
                self.feed(
                    AmiConnected(node=name, time=now, version=client.version, reconnect=False)
                )
                client.request_resync()
        if self.settings.ivr.enabled and self._group is not None:
            # FastAGI only on the leader: one port, one daemon (a frozen old leader keeps it
            # until it exits: the bind is retried, docs/high-availability.md)
            self._group.create_task(self.ivr.serve(retry_s=1.0), name="adapter.ivr")
        self.tickets.notify()

    def _publish_status(self) -> None:
        """Role, epoch and leader on cti/status/<node> (each daemon) and, from the leader,
        on cti/status (who leads now), retained; sent even while not acting."""
        st = {**self.leadership.status(), "online": True}
        self.mqtt.publish(f"status/{self.leadership.node_id}", st, retain=True, always=True)
        if self.acting():
            self.mqtt.publish("status", st, retain=True, always=True)

    def _dropped(self) -> dict[str, int]:
        return {
            **self._not_leader,
            "ami": self.ami.not_leader,
            "mqtt": self.mqtt.not_leader,
            "fenced_rows": self.records.fenced,
        }

    def apply_reload(self, plan: ReloadPlan) -> None:
        """A reloaded configuration's live part, into the parts that use it: the number
        plan into the core (an input like any other), the tokens into the HTTP API, the
        whole (its other settings as they were) to the IVR and HTTP glue."""
        self.settings = plan.settings
        if plan.plan_changed:
            self.feed(PlanReloaded(plan=plan.settings.numberplan, at=time.time()))
            self.fallback_facts.replan(plan.settings.numberplan)
        self.http.use_settings(plan.settings, tokens=plan.tokens_changed)
        self.ivr.use_settings(plan.settings)
        self.web.use_settings(plan.settings)
        self.supervision.use_settings(plan.settings.supervision)

    async def aclose(self) -> None:
        """Close the HTTP clients (work-order backend, 110 webhook)."""
        await self.workorders.aclose()
        await self.transfers110.aclose()

    async def load_state(self) -> None:
        """What the database remembers, at start-up, into the core in one input: the seats'
        last states (a seat that was on a call comes back on it), the calls taken whose end
        was never written — settled when each node's first channel list is in
        (cti/core/recovery.py) — and the 110 transfers of the last 30 days (a push repeated
        after a restart is still a duplicate; an open transfer's feedback goes on)."""
        now = time.time()
        state = await load_restart(self.store, [n.name for n in self.settings.ami.nodes], now)
        saved = await self.store.latest_seat_states()
        rows = await self.transfers110.load(now - _TRANSFERS_KEPT_S)
        self.feed(
            StateRestored(
                seats=saved,
                busy=state.busy,
                taken=tuple(state.taken),
                last_alive=state.last_alive,
                transfers110=tuple(rows),
                at=now,
            )
        )
        self._log.info("seats_restored", seats=len(saved))
        self._log.info(
            "restart_state_loaded",
            unfinished_calls=len(state.taken),
            busy_seats=len(state.busy),
            last_alive={n: round(t, 3) for n, t in state.last_alive.items()},
        )
        self._log.info("transfers110_restored", transfers=len(rows))
        facts = await load_facts(self.store, now - DAY_S, now + 1.0)
        self.live.seed(facts.entries)
        self._log.info("live_stats_seeded", entries=len(facts.entries))

    async def _load_live_callbacks(self) -> None:
        now = time.time()
        # the rolling window reaches 24 h 59 s back (whole minutes): a minute more
        reqs = await load_callback_requests(self.store, now - DAY_S - 60.0, now + 60.0)
        self.live.set_callbacks(reqs)

    async def _live_callbacks(self) -> None:
        """The callback list's last 24 h into the live figures, every
        `kpis.live_callbacks_s` (a failed read is logged; the last figures stand)."""
        while True:
            try:
                await self._load_live_callbacks()
            except Exception:  # noqa: BLE001 - the figures must not stop the daemon
                self._log.exception("live_callbacks_failed")
            await asyncio.sleep(self.settings.kpis.live_callbacks_s)

    # ------------------------------------------------------------------ tasks

    def start(self, group: asyncio.TaskGroup) -> None:
        """Every task of :meth:`tasks` in `group`, named; background jobs go there too."""
        self._group = group
        for coro, name in self.tasks():
            group.create_task(coro, name=name)
        self.jobs.attach(group)

    def tasks(self) -> Iterable[tuple[Coroutine[Any, Any, None], str]]:
        for name, client in self.clients.items():
            yield client.run(), f"adapter.ami[{name}]"
            yield self.ami.run(name), f"adapter.ami[{name}].actions"
        yield self.mqtt.run(), "adapter.mqtt"
        yield self.records.run(), "adapter.store.records"
        yield self.heartbeat.run(), "adapter.store.heartbeat"
        yield self.http.watch_readiness(), "adapter.http.readiness"
        yield self.tickets.run(), "adapter.workorders.outbox"
        yield self.pops.run(), "adapter.pops"
        yield self.transfers110.save_reports(), "adapter.dispatch110.reports"
        yield self.transfers110.mqtt_pushes(), "adapter.dispatch110.mqtt"
        if (webhook := self.transfers110.webhook) is not None:
            yield webhook.run(), "adapter.dispatch110.webhook"
        yield self._pump(), "core.events"
        yield self._ticker(), "core.timers"
        yield self.live.run(), "kpis.live"
        yield self._live_callbacks(), "kpis.live.callbacks"
        if self.fallback_facts.enabled:
            yield self.fallback_facts.run(), "kpis.fallback"
        yield self.reloader.run(), "config.reload"
        if self.settings.http.enabled:
            kpis = self.settings.kpis
            routers = [
                transfers_router(self.transfers110),
                callbacks_router(self.callbacks),
                supervision_router(self.supervision),
                stats_router(self.store, kpis.thresholds(), kpis.timezone, rollup=kpis.rollup),
            ]
            yield self.http.serve(routers, self.web.install), "adapter.http"
            yield self.web.hub.run(), "adapter.http.live"
            yield self.web.board.run(), "app.board"
        if self.ha is not None:
            yield self.ha.run(), "ha.lease"
        elif self.settings.ivr.enabled:  # with ha: at takeover (take_over)
            yield self.ivr.serve(), "adapter.ivr"

    # ------------------------------------------------------------------ inputs

    async def _pump(self) -> None:
        while True:
            item = await self.events.get()
            try:
                self.nodes.observe(item)
                if self.standby_calls is not None and isinstance(item, AmiEvent | ConnectionEvent):
                    self.standby_calls.handle(item)
            except Exception:  # noqa: BLE001 - one odd event costs itself, not the pump
                self._log.exception("ami_input_failed", item=type(item).__name__)
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
        if msg.topic == PUSH_TOPIC:
            self.transfers110.on_mqtt(msg.payload)
            return
        parts = msg.topic.split("/")
        if len(parts) != 3 or parts[0] != "seats" or parts[2] != "cmd":
            return
        cmd = parse_seat_command(msg.payload)
        self.feed(SeatCommandReceived(seat=parts[1], command=cmd, at=msg.received))

    def feed(
        self,
        item: CoreInput,
        *,
        keep: Callable[[Effect], bool] | None = None,
    ) -> list[Effect]:
        """Hand one input to the core and carry out its effects. Never raises.

        Effects for which `keep` is true are returned instead of carried out (the HTTP API
        answers a command with the reply the MQTT path would publish).
        """
        serving = self._serving or isinstance(item, StateRestored)  # take_over's first input
        if not serving or not self.acting():
            # a standby (or a leader whose lease ran out): the leader handles this input
            self._not_leader["inputs"] += 1
            return []
        self.tally.inputs += 1
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
                continue
            try:
                self._effect(effect)
            except Exception:  # noqa: BLE001 - one effect's failure costs only that effect
                self._log.exception(
                    "effect_failed",
                    effect=type(effect).__name__,
                    linkedid=getattr(effect, "call_id", None),
                )
        if effects:
            self._wake.set()  # a new timer may be due sooner than the ticker thinks
        return kept

    # ------------------------------------------------------------------ effects

    def _effect_table(self) -> dict[type, Callable[[Any], None]]:
        """Effect type -> the method that carries it out (each takes that type)."""
        return {
            Publish: self._publish,
            StoreCall: self._store_call,
            StoreSeatState: self._store_seat_state,
            StoreTicketOp: self._store_ticket_op,
            Pop: self.pops.submit,
            Report110: self.transfers110.report,  # stored, then published
            NotifyEscalation: self._notify_escalation,
            CallbackDone: self._callback_done,
            StoreAudit: self._store_audit,
            # only a push / a callback request makes these, and its caller keeps them
            Reply110: self._kept_by_caller,
            CallbackReply: self._kept_by_caller,
            ReadAdoptedChannel: self._read_adopted,
            **dict.fromkeys(get_args(AmiEffect), self.ami.submit),
        }

    def _effect(self, effect: Effect) -> None:
        handler = self._effects.get(type(effect))
        if handler is None:
            self._log.error("effect_unknown", effect=type(effect).__name__)
            return
        handler(effect)

    def _publish(self, effect: Publish) -> None:
        self.mqtt.publish(effect.topic, effect.payload, retain=effect.retain)

    def _store_call(self, effect: StoreCall) -> None:
        s = effect.summary
        who = s.answered_by
        self.tally.calls_ended += 1
        self._log.info(
            "call_ended",
            linkedid=s.call_id,
            node=s.node,
            caller=s.caller,
            line=s.line,
            outcome=s.outcome,
            **answerer_fields(
                who, is_seat=who is not None and self.core.seat_state(who) is not None
            ),
            wait_s=s.wait_s,
            talk_s=s.talk_s,
            hangup_by=s.hangup_by,
            history_complete=s.history_complete,
        )
        self.records.add(
            s,
            outbox_rows(effect.ticket_ops, time.time()),
            satisfaction=self.ivr.take_rating(CallRef(s.node, s.call_id)),
            callback=callback_row(s) if effect.missed else None,
            entries=effect.entries,
        )
        self.live.add(effect.entries)

    def _store_seat_state(self, effect: StoreSeatState) -> None:
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

    def _store_ticket_op(self, effect: StoreTicketOp) -> None:
        self.records.add_outbox(outbox_rows([effect.op], time.time()))

    def _notify_escalation(self, effect: NotifyEscalation) -> None:
        self.jobs.start(self.transfers110.notify(effect), "dispatch110.notify")

    def _callback_done(self, effect: CallbackDone) -> None:
        self.jobs.start(self.callbacks.close(effect), "callbacks.close")

    def _store_audit(self, effect: StoreAudit) -> None:
        self.jobs.start(self.supervision.store(effect), "supervision.audit")

    def _kept_by_caller(self, effect: Reply110 | CallbackReply) -> None:
        pass

    def _read_adopted(self, effect: ReadAdoptedChannel) -> None:
        """An adopted call's variables (line, entry time), read, then back into the core."""
        client = self.clients.get(effect.node)
        if client is not None:
            self.jobs.start(self._read_adopted_channel(client, effect), "ami.read_adopted")

    async def _read_adopted_channel(self, client: AmiClient, effect: ReadAdoptedChannel) -> None:
        self.feed(await read_adopted_channel(client, effect, log=self._log))

    def _ticket_delivered(self, call_id: str, kind: str, number: str) -> None:
        """The work-order backend has the ticket (create) or the call's facts (update)."""
        try:
            call = CallRef.parse(call_id)
        except ValueError:  # the outbox only holds ids it was given: a bug, not a stop
            self._log.error("ticket_delivered_bad_call_id", call_id=call_id, ticket=number)
            return
        if kind == "create":  # the core shows the number (an update pop) and tells 110
            self.feed(TicketNumberKnown(call_id=call_id, number=number, at=time.time()))
        self._log.info(
            "ticket_" + ("created" if kind == "create" else "updated"),
            linkedid=call.linkedid,
            node=call.node,
            ticket=number,
        )
        self._effect(
            call_event(
                "ticket",
                call.linkedid,
                event=f"ticket-{kind}",
                node=call.node,
                op=kind,
                ticket=number,
            )
        )


def answerer_fields(answered_by: str | None, *, is_seat: bool) -> dict[str, str | None]:
    """Who answered, for the `call_ended` log line. A call into the line is answered by a
    seat (`seat`: an id, kept whole by the log masking); a call the daemon originated (a
    callback) by the citizen, whose number must go under a phone field (`callee`) so the
    masking hides it."""
    if answered_by is None or is_seat:
        return {"seat": answered_by}
    return {"callee": answered_by}
