"""What the HTTP API reads and does: the daemon as :class:`~cti.adapters.http.ApiFacade`.

Every method runs on the event loop between two inputs, so the core is never seen half-way.
The core is asked through its questions (snapshots), never walked into; an agent command
goes through `feed` like an MQTT one. Also here: /readyz's parts (and the task that logs
each change of its answer once) and the /metrics table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal

import structlog
from fastapi import APIRouter, FastAPI
from structlog.typing import FilteringBoundLogger

from cti.adapters.ami import AmiClient, EventQueue
from cti.adapters.ami_executor import AmiExecutor
from cti.adapters.db.records import RecordWriter
from cti.adapters.db.store import Store
from cti.adapters.http import GuardStats, Metric, ReadyPart, build_api, serve_http
from cti.adapters.http.auth import TokenAuth
from cti.adapters.http.metrics import HistogramMetric
from cti.adapters.http.ratelimit import RateLimiter
from cti.adapters.http.throttle import ApiLimits
from cti.adapters.mqtt import MqttAdapter
from cti.adapters.pops import PopLatency
from cti.adapters.restart import Heartbeat
from cti.app.feed import Feed, Tally
from cti.app.live_stats import LiveStats
from cti.app.reload import ReloadStats
from cti.core import Core, Publish, SeatCommandReceived
from cti.seats.commands import parse_seat_command
from cti.seats.model import SeatStatus
from cti.settings import Settings

__all__ = ["HttpFacade"]

_READINESS_POLL_S = 0.25


class HttpFacade:
    """The daemon seen from HTTP: seats, the queue, calls in progress, readiness, metrics."""

    def __init__(
        self,
        settings: Settings,
        *,
        core: Core,
        feed: Feed,
        store: Store,
        clients: Mapping[str, AmiClient],
        events: EventQueue,
        ami: AmiExecutor,
        records: RecordWriter,
        heartbeat: Heartbeat,
        mqtt: MqttAdapter,
        tally: Tally,
        live: LiveStats,
        log: FilteringBoundLogger,
        reloads: ReloadStats | None = None,
        pop_latency: PopLatency | None = None,
        mqtt_push_limit: RateLimiter | None = None,
    ) -> None:
        self.settings = settings  # the http section, the API's tokens
        self._reloads = reloads if reloads is not None else ReloadStats()
        self._api: FastAPI | None = None  # once serving: its tokens can be swapped
        self._core = core
        self._feed = feed
        self._store = store
        self._clients = clients
        self._events = events
        self._ami = ami
        self._records = records
        self._heartbeat = heartbeat
        self._mqtt = mqtt
        self._tally = tally
        self._live = live
        self._pop_latency = pop_latency if pop_latency is not None else PopLatency()
        self._log = log
        self.guard = GuardStats()  # the HTTP connection guard's counters (/metrics)
        self._readiness_seen: tuple[str, ...] | None = None
        # the rate limiters whose refusals /metrics counts (issue 15)
        self.limits = ApiLimits.from_settings(settings.http)
        self._mqtt_push_limit = mqtt_push_limit
        # metrics of parts built after this facade (the browser pages, cti/app/web.py)
        self.more_metrics: list[Callable[[], Sequence[Metric]]] = []
        # /readyz parts of parts built after it (the ticket outbox, cti/app/outbox_health.py;
        # the ha role)
        self.more_ready: list[Callable[[], Sequence[ReadyPart]]] = []

    def serve(
        self,
        routers: Sequence[APIRouter],
        extend: Callable[[FastAPI], None] | None = None,
    ) -> Coroutine[Any, Any, None]:
        """The HTTP server (the API, `routers` added, then `extend` of the app: the browser
        pages), to run as a task."""
        http = self.settings.http
        log = structlog.get_logger("cti.http")
        api = self._api = build_api(self, http, log=log, routers=routers, limits=self.limits)
        if extend is not None:
            extend(api)
        return serve_http(api, http, log=log, stats=self.guard)

    def use_settings(self, settings: Settings, *, tokens: bool) -> None:
        """A reloaded configuration (cti/app/reload.py); with `tokens`, the API checks the
        new bearer tokens from the next request on (a request already past its check
        finishes as it began)."""
        self.settings = settings
        if tokens and self._api is not None:
            self._api.state.cti_auth = TokenAuth(settings.http.tokens)

    # ---- seats and the queue

    def seat_command(self, seat: str, payload: bytes) -> dict[str, Any]:
        """An agent command from HTTP: fed to the core like an MQTT one (same parser,
        same effects); the reply is returned instead of published on seats/{seat}/reply."""
        item = SeatCommandReceived(seat=seat, command=parse_seat_command(payload), at=time.time())
        topic = f"seats/{seat}/reply"
        kept = self._feed(item, keep=lambda e: isinstance(e, Publish) and e.topic == topic)
        for effect in kept:
            if isinstance(effect, Publish):
                return effect.payload
        return {"ok": False, "request_id": None, "error": {"code": "internal"}}

    def seat_states(self) -> list[dict[str, Any]]:
        return [st.to_json() for st in self._core.seat_states()]

    def seat_state(self, seat: str) -> dict[str, Any] | None:
        state = self._core.seat_state(seat)
        return state.to_json() if state is not None else None

    def queue_snapshot(self, max_calls: int = 100) -> dict[str, Any]:
        """The snapshot of cti/queue/snapshot, plus the first *max_calls* waiting calls."""
        core = self._core
        now = time.time()
        calls = []
        for call in core.waiting(max_calls):
            pos = core.position(call.call_id)
            calls.append(
                {
                    "call_id": call.call_id,
                    "line": call.line,
                    "priority_class": call.priority_class,
                    "skills": sorted(call.skills),
                    "position": pos.overall if pos is not None else None,
                    "waiting_s": round(max(0.0, now - call.enqueued_at), 3),
                    "expected_wait_s": core.expected_wait(call.call_id, now),
                    "offers": call.offers,
                }
            )
        snapshot = dataclasses.asdict(core.queue_snapshot(now))
        return {"schema_version": 1, **snapshot, "calls": calls}

    # ---- calls

    def active_calls(self, *, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        # one page only: the table may hold ami.max_channels calls per node
        core = self._core
        out = []
        for call in core.active_page(offset, limit):
            row = dataclasses.asdict(call)
            row["state"] = call.state.value
            row["channels"] = list(call.channels)
            pos = core.position(call.call_id)
            row["queue_position"] = pos.overall if pos is not None else None
            row["offered_to"] = core.offered_to(call.call_id)
            out.append(row)
        return out, core.tracker_load()["calls"]

    async def call_records(
        self, *, caller: str | None, limit: int, offset: int = 0
    ) -> list[dict[str, Any]]:
        return await self._store.calls(caller=caller, limit=limit, offset=offset)

    # ---- /readyz

    def readiness(self) -> list[ReadyPart]:
        parts = [
            ReadyPart(
                name=f"ami.{name}",
                ready=client.connected,
                detail=client.state + (f": {client.last_error}" if client.last_error else ""),
            )
            for name, client in self._clients.items()
        ]
        # the daemon only exists once the database opened (run() exits with 4 otherwise);
        # it is degraded after database.degraded_after_failures failed writes in a row
        w, hb = self._records, self._heartbeat
        limit = self.settings.database.degraded_after_failures
        failing = max(w.failing, hb.failing)
        # the reason as the driver gave it (``database or disk is full``): the records'
        # own, else the heartbeat's
        reason = w.last_error or hb.last_error
        parts.append(
            ReadyPart(
                name="database",
                ready=failing < limit,
                detail=("open" if failing < limit else f"degraded: {failing} failed writes")
                + (f" ({reason})" if reason else "")
                + f"; {w.pending} record(s) pending (at most {w.max_pending}), "
                f"{w.failures} write failure(s)",
            )
        )
        mqtt = self._mqtt
        parts.append(
            ReadyPart(
                name="mqtt",
                ready=mqtt.connected,
                required=False,  # seats miss pops, but calls are still routed and answered
                detail=f"{'connected to' if mqtt.connected else 'disconnected, next'} "
                f"{mqtt.broker}; backlog {mqtt.backlog}",
            )
        )
        parts.extend(p for more in self.more_ready for p in more())
        return parts

    async def watch_readiness(self) -> None:
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
            await asyncio.sleep(_READINESS_POLL_S)

    # ---- /metrics

    def metrics(self) -> list[Metric | HistogramMetric]:
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

        cl, core, rec, mqtt, guard = (
            self._clients,
            self._core,
            self._records,
            self._mqtt,
            self.guard,
        )
        waits, pops = self._live.waits, self._pop_latency
        snap = core.queue_snapshot(time.time())
        seats = Counter(str(st.status) for st in core.seat_states())
        load = core.tracker_load()
        counters = core.counters()
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
                self._events.qsize()),
            one("cti_ami_events_dropped_total", "counter", "Events dropped: queue full.",
                self._events.dropped_total),
            one("cti_ami_actions_failed_total", "counter", "AMI actions that failed.",
                self._ami.failed),
            one("cti_core_inputs_total", "counter", "Inputs handled by the core.",
                self._tally.inputs),
            one("cti_calls_waiting", "gauge", "Calls waiting for a seat.", snap.waiting),
            one("cti_calls_offered", "gauge", "Calls ringing a seat.", snap.offered),
            one("cti_calls_active", "gauge", "Calls in progress.", load["calls"]),
            per("cti_tracker_channels", "gauge", "Channels tracked, per node.", "node",
                core.channels_by_node(cl)),
            one("cti_tracker_max_channels", "gauge", "Channels tracked per node at most.",
                load["max_channels"]),
            one("cti_calls_longest_wait_seconds", "gauge", "Longest current wait.",
                snap.longest_wait_s),
            one("cti_calls_ended_total", "counter", "Calls ended.", self._tally.calls_ended),
            per("cti_seats", "gauge", "Seats by status.", "status",
                {str(s): seats.get(str(s), 0) for s in SeatStatus}),
            one("cti_call_records_pending", "gauge", "Records not yet stored.", rec.pending),
            one("cti_call_records_written_total", "counter", "Rows stored.", rec.written),
            one("cti_call_records_dropped_total", "counter", "Rows dropped.", rec.dropped),
            one("cti_call_records_write_failures_total", "counter", "Failed batches.",
                rec.failures),
            one("cti_call_records_pending_limit", "gauge", "Rows kept in memory at most.",
                rec.max_pending),
            per("cti_call_records_dropped_by_kind_total", "counter",
                "Rows dropped at the memory cap, by kind (outbox: ticket operations).", "kind",
                {k: rec.dropped_by_kind[k] for k in ("call", "seat", "outbox", "callback",
                                                     "entry")}),
            per("cti_call_records_poisoned_total", "counter",
                "Rows the database refused on their own, left out (logged).", "kind",
                {k: rec.poisoned[k] for k in ("call", "seat", "outbox", "callback", "entry")}),
            one("cti_mqtt_connected", "gauge", "1 while the broker connection is up.",
                int(mqtt.connected)),
            one("cti_mqtt_backlog", "gauge", "Messages waiting to be published.",
                mqtt.backlog),
            one("cti_mqtt_published_total", "counter", "Messages published.", mqtt.published),
            one("cti_mqtt_broker_switches_total", "counter",
                "Moves to the next broker of mqtt.failover.", mqtt.failovers),
            per("cti_core_counts_total", "counter", "Core events by kind.", "kind",
                counters["core"]),
            per("cti_tracker_anomalies_total", "counter", "Call tracker anomalies.", "kind",
                counters["tracker"]),
            one("cti_http_connections", "gauge", "HTTP connections open.", guard.open),
            one("cti_http_connections_refused_total", "counter",
                "HTTP connections refused: http.max_connections open.", guard.refused),
            one("cti_http_header_timeouts_total", "counter",
                "HTTP connections closed: headers not in within http.header_timeout_s.",
                guard.header_timeouts),
            per("cti_dispatcher_events_total", "counter", "Dispatcher events and anomalies.",
                "kind", counters["dispatcher"]),
            waits.metric(name="cti_queue_wait_seconds",
                help="Waits of offered queue entries ended since start (ringing included)."),
            pops.metric(name="cti_pop_latency_seconds",
                help="Screen-pops: the core's pop to the broker's PUBACK of its MQTT publish "
                "(history lookup and MQTT backlog included), since start."),
            one("cti_kpi_alarms_active", "gauge", "KPI alarms raised now (cti/stats/alarms).",
                len(self._live.active_alarms)),
            *reload_metrics(self._reloads),
            self._rate_limited(),
            *(m for more in self.more_metrics for m in more()),
        ]  # fmt: skip

    def _rate_limited(self) -> Metric:
        """Requests refused by a rate limit (429 on HTTP, a rate_limited reply on MQTT)."""
        counts = [
            ("auth_failures", "http", self.limits.auth_failures.refused),
            ("push110", "http", self.limits.push110.refused),
        ]
        if self._mqtt_push_limit is not None:
            counts.append(("push110", "mqtt", self._mqtt_push_limit.refused))
        return Metric(
            name="cti_rate_limited_total",
            kind="counter",
            help="Requests refused by a rate limit: limit auth_failures (token failures "
            "from one address), push110 (the 110 push), via http (429) or mqtt.",
            samples=tuple(({"limit": k, "via": v}, float(n)) for k, v, n in counts),
        )


def reload_metrics(stats: ReloadStats) -> list[Metric]:
    """The configuration reloads (SIGHUP, `cti reload`) since start, and what waits for a
    restart."""
    return [
        Metric(
            name="cti_config_reloads_total",
            kind="counter",
            help="Configuration reloads, by result (refused: the file had errors).",
            samples=(
                ({"result": "applied"}, stats.applied),
                ({"result": "refused"}, stats.refused),
            ),
        ),
        Metric(
            name="cti_config_restart_pending",
            kind="gauge",
            help="Settings changed in the file that take effect only after a restart.",
            samples=(({}, len(stats.needs_restart)),),
        ),
        Metric(
            name="cti_config_dialplan_stale",
            kind="gauge",
            help="1 when a reloaded number plan generates another dialplan (cti dialplan).",
            samples=(({}, int(stats.dialplan_stale)),),
        ),
    ]
