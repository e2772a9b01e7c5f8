"""Screen-pops (弹屏) on `cti/seats/{seat}/pop`: the core's Pop effects (which carry the
ticket number, once known), enriched with the caller's history, published in order.

An `offer` pop must reach the seat while its phone rings, so the history lookup (the last
calls and tickets of this number, from the local database) is bounded by a short deadline
and a pop goes out without history rather than late. Pops of one call go out in the order
the core made them (one queue, one task). When a ticket number arrives after the call was
popped, the core sends the seat an `update` pop with it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

import structlog
from pydantic import BaseModel, ConfigDict, Field
from structlog.typing import FilteringBoundLogger

from cti.adapters.db.store import Store
from cti.adapters.http.metrics import Histogram
from cti.adapters.mqtt import MqttAdapter
from cti.core.messages import Pop
from cti.workorders.backend import WorkOrderBackend, WorkOrderError

__all__ = [
    "POP_LATENCY_BUCKETS_S",
    "POP_SCHEMA_VERSION",
    "PopLatency",
    "PopMessage",
    "PopPublisher",
    "pop_json_schema",
]

POP_LATENCY_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class PopLatency(Histogram):
    """Seconds from the core's pop (its ``Pop`` effect handed to the publisher) to the
    broker's acknowledgement of the MQTT publish (QoS 1 PUBACK): the caller-history lookup
    and the MQTT backlog included (/metrics ``cti_pop_latency_seconds``). Cumulative
    buckets, as Prometheus expects of a histogram; since the daemon started."""

    def __init__(self, buckets: tuple[float, ...] = POP_LATENCY_BUCKETS_S) -> None:
        super().__init__(buckets)


POP_SCHEMA_VERSION: Final = 1
HISTORY_DEADLINE_S: Final = 0.2
# calls whose caller history is kept for their re-offers (a few minutes of a busy centre)
HISTORY_MEMO_CALLS: Final = 4096


# ------------------------------------------------------------------ the contract
# docs/schemas/pop.schema.json is generated from these models (`pop_json_schema()`); a test
# checks the file is current, and the real-server tests validate every pop they receive.


class _Open(BaseModel):
    # receivers must ignore fields they do not know: new ones may come in a minor version
    model_config = ConfigDict(extra="allow", frozen=True)


class PopQueueMark(_Open):
    at: float
    event: str = Field(description="queued | requeued | overflow | offered")
    position: int = Field(ge=1, description="1-based place in the one waiting line.")
    waiting: int = Field(ge=1, description="Calls waiting then, this one included.")


class PopTransfer110(_Open):
    transfer_id: str = Field(description="110's incident number (接警单号).")
    caller: str
    caller_name: str = ""
    category: str = ""
    summary: str = ""
    address: str = ""
    location: dict[str, float] | None = Field(default=None, description="{lat, lon}")
    called_at: float = Field(description="When the citizen called 110 (epoch s).")
    operator_id: str = ""


class PopVia(_Open):
    node: str = Field(description="The county node (县区平台) the call came from.")
    dialed: str = Field(
        default="", description="What the citizen dialled there (the county's 12345)."
    )
    call_id: str = Field(default="", description="The call's linkedid on that node.")


class PopCall(_Open):
    call_id: str = Field(description="The call id (Asterisk Linkedid).")
    node: str | None = None
    caller: str | None = Field(default=None, description="Caller number (ANI).")
    caller_name: str | None = None
    line: str | None = Field(default=None, description="The number dialled (CTI_LINE).")
    line_name: str | None = None
    department: str | None = None
    skill: str | None = None
    origin: str | None = Field(
        default=None,
        description="direct | special_number | department_line | dispatch110 | callback",
    )
    arrived_at: float | None = Field(default=None, description="When the call came in (epoch s).")
    queue_positions: list[PopQueueMark] = Field(
        default_factory=list,
        description="Where the call stood while it waited: when it queued, was put back "
        "(ring no answer, transfer), reached an overflow step, and was offered. Empty when a "
        "seat was free at once.",
    )
    recording: str | None = Field(
        default=None,
        description="The call's recording file (on `answer`, and `end` of an answered call).",
    )
    late: bool = Field(
        default=False,
        description="True when the pop comes late, after a daemon restart: `answer` of a call "
        "found talking with this seat (answered while the daemon was down; `answered_at` null "
        "if unknown), or `end` (with `reconstructed`) of a call this seat was on that ended "
        "while the daemon was down.",
    )
    reconstructed: bool = Field(
        default=False,
        description="`end` only, with `late`: the call ended while the daemon was down; "
        "`outcome` and the times are the daemon's reconstruction (a seat that was ringing "
        "may have answered: the daemon cannot tell, it says `abandoned`).",
    )
    via: PopVia | None = Field(
        default=None,
        description="A county node's call (docs/county-nodes.md): `line` is the county line, "
        "`caller` the citizen as the county saw them; absent for every other call.",
    )
    dispatch110: PopTransfer110 | None = Field(
        default=None,
        description="What 110 pushed about this call, when it is a transfer from 110 (an "
        "`update` pop brings it if the push came after the offer).",
    )


class PopHistoryCall(_Open):
    call_id: str
    started_at: float
    line: str
    outcome: str
    seat: str | None


class PopHistoryTicket(_Open):
    number: str
    status: str
    created_at: float
    line: str
    request_type: str | None
    content: str


class PopHistory(_Open):
    calls: list[PopHistoryCall]
    tickets: list[PopHistoryTicket]
    repeat_caller: bool = Field(description="Called within the repeat window (并单 hint).")
    complete: bool = Field(description="False when the lookup missed its deadline.")


class PopMessage(_Open):
    """One screen-pop on `cti/seats/{seat}/pop`."""

    schema_version: int = Field(ge=1)
    pop_id: str = Field(description="call:seat:attempt:type; the same on a re-delivery.")
    type: str = Field(pattern="^(offer|answer|update|end)$")
    seat: str
    at: float
    waited_s: float | None = Field(
        default=None, description="Seconds since the call came in (on `offer` and `answer`)."
    )
    ticket: str = Field(description="The ticket number, or 'pending'.")
    call: PopCall
    history: PopHistory | None = Field(default=None, description="On `offer` pops.")


def pop_json_schema() -> dict[str, Any]:
    schema = PopMessage.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hotline-cti screen-pop (cti/seats/{seat}/pop)"
    return schema


def _forget(
    pending: dict[tuple[str, str], asyncio.Task[None]],
    keys: tuple[tuple[str, str], ...],
    task: asyncio.Task[None],
) -> None:
    for k in keys:
        if pending.get(k) is task:
            del pending[k]


class PopPublisher:
    def __init__(
        self,
        store: Store,
        workorders: WorkOrderBackend,
        mqtt: MqttAdapter,
        *,
        repeat_window_s: float = 86_400.0,
        history_days: float = 90.0,
        log: FilteringBoundLogger | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._workorders = workorders
        self._mqtt = mqtt
        self._repeat_window_s = repeat_window_s
        self._history_s = history_days * 86_400.0
        self._log: FilteringBoundLogger = log or structlog.get_logger("cti.pops")
        self._clock = clock
        self._monotonic = monotonic
        self._queue: asyncio.Queue[tuple[Pop, float]] = asyncio.Queue()
        # call id -> its caller's history, found for its first offer: a re-offer (ring no
        # answer, overflow to the next seat) shows the same one without the two queries.
        # Excluding the call itself, it changes only if the same number's other call ends
        # meanwhile. Only complete lookups are kept, the last HISTORY_MEMO_CALLS calls'.
        self._histories: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.history_lookups = 0
        self.published = 0
        self.latency = PopLatency()

    def submit(self, pop: Pop) -> None:
        self._queue.put_nowait((pop, self._monotonic()))

    async def run(self) -> None:
        """Pops in the order the core made them per call and per seat, but a call's history
        lookup holds up only the pops behind it in that order: one at a time, every answer
        pop waited for all the offers' lookups before it, and at 50 calls/s those queued
        into seconds (issue 12). A pop with nothing before it and no lookup goes at once."""
        # name -> the last unfinished pop task of that call / seat
        pending: dict[tuple[str, str], asyncio.Task[None]] = {}
        async with asyncio.TaskGroup() as group:
            while True:
                pop, since = await self._queue.get()
                keys = (("call", pop.call_id), ("seat", pop.seat))
                before = {t for k in keys if (t := pending.get(k)) is not None}
                if not before and pop.kind != "offer":
                    await self._send(pop, since)  # no awaits inside for these kinds: no I/O
                    continue
                task = group.create_task(self._after(before, pop, since), name="adapter.pops.pop")
                for k in keys:
                    pending[k] = task
                task.add_done_callback(functools.partial(_forget, pending, keys))

    async def _after(self, before: set[asyncio.Task[None]], pop: Pop, since: float) -> None:
        if before:
            await asyncio.wait(before)  # they never raise: _send logs its own failures
        await self._send(pop, since)

    async def _send(self, pop: Pop, since: float) -> None:
        try:
            payload = await self._payload(pop)
        except Exception:  # noqa: BLE001 - one bad pop must not stop the others
            self._log.exception("pop_failed", linkedid=pop.call_id, seat=pop.seat)
            return
        self._mqtt.publish(f"seats/{pop.seat}/pop", payload, on_sent=self._sent_since(since))
        self.published += 1

    def _sent_since(self, since: float) -> Callable[[], None]:
        def sent() -> None:
            self.latency.observe(max(0.0, self._monotonic() - since))

        return sent

    async def _payload(self, pop: Pop) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schema_version": POP_SCHEMA_VERSION,
            "pop_id": f"{pop.call_id}:{pop.seat}:{pop.attempt}:{pop.kind}",
            "type": pop.kind,
            "seat": pop.seat,
            "at": self._clock(),
            "call": pop.call,
            # the core knows the number once the backend has answered (it sends an update
            # pop then): the one owner of what a pop shows
            "ticket": pop.ticket or "pending",
        }
        arrived = pop.call.get("arrived_at")
        if pop.kind in ("offer", "answer") and isinstance(arrived, int | float):
            body["waited_s"] = round(max(0.0, body["at"] - arrived), 3)
        if pop.kind == "offer":
            body["history"] = await self._history(str(pop.call.get("caller", "")), pop.call_id)
        return body

    async def _history(self, caller: str, call_id: str) -> dict[str, Any]:
        """The caller's recent calls and tickets; `repeat_caller` is the hint for 并单."""
        if not caller:
            return {"calls": [], "tickets": [], "repeat_caller": False, "complete": True}
        known = self._histories.get(call_id)
        if known is not None:
            return known
        history = await self._lookup(caller, call_id)
        if history["complete"]:
            self._histories[call_id] = history
            if len(self._histories) > HISTORY_MEMO_CALLS:
                self._histories.popitem(last=False)
        return history

    async def _lookup(self, caller: str, call_id: str) -> dict[str, Any]:
        self.history_lookups += 1
        now = self._clock()
        try:
            async with asyncio.timeout(HISTORY_DEADLINE_S):
                # both at once: the deadline is one database round trip, not two
                calls, tickets = await asyncio.gather(
                    self._store.calls(caller=caller, limit=5),
                    self._workorders.find_recent_by_caller(
                        caller, since=now - self._history_s, limit=5
                    ),
                )
        except (TimeoutError, WorkOrderError, OSError) as exc:
            self._log.warning("pop_history_incomplete", linkedid=call_id, error=repr(exc))
            return {"calls": [], "tickets": [], "repeat_caller": False, "complete": False}
        recent_calls = [
            {
                "call_id": c["linkedid"],
                "started_at": c["started_at"],
                "line": c["line"],
                "outcome": c["outcome"],
                "seat": c["answered_by"],
            }
            for c in calls
            if c["linkedid"] != call_id
        ]
        recent_tickets = [
            {
                "number": t.number,
                "status": t.status,
                "created_at": t.created_at,
                "line": t.line,
                "request_type": t.request_type and t.request_type.value,
                "content": t.content[:200],
            }
            for t in tickets
            # a ticket opened elsewhere (web, app) may have no call at all
            if not t.call_ids or t.call_ids[0].partition(":")[2] != call_id
        ]
        repeat = any(now - c["started_at"] <= self._repeat_window_s for c in recent_calls)
        return {
            "calls": recent_calls,
            "tickets": recent_tickets,
            "repeat_caller": repeat,
            "complete": True,
        }
