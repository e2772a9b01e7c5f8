"""The supervisor's wallboard ``/board`` (班长席大屏, docs/board.md): one snapshot per board
user, of the lines that user is granted only, pushed on its live stream.

Why a per-user snapshot and not the daemon's raw publishes: the centre-wide ones (every
seat's state, the queue snapshot, ``stats/live`` with every line) carry lines a supervisor
is not granted, and a stream must carry only what its user may see. So the board part taps
every publish (like the stream hub), notes that something the board shows changed, and
within :data:`DEBOUNCE_S` builds each watching user's snapshot — the waiting calls and
longest wait per line, today's and rolling-24 h 接通率 / N秒接通率 with alarm classes from
``kpis`` thresholds, the seats of those lines with state, reason and since, the missed
calls for callback, the spies and the audit log of those seats — and publishes it on the
hub as ``board/{user}`` (only that user's streams see it) when it differs from the last
one. A one-second tick keeps the waits current while nobody acts.

Actions go through :meth:`cti.app.supervision.SupervisionDesk.act_as`: the same core
decision and audit as the bearer-token API, with the session user resolved to a
:class:`~cti.core.Supervisor` of its ``web.users`` entry (lines; admin: every line; its
``endpoint``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from structlog.typing import FilteringBoundLogger

from cti.adapters.db.audit import audit_entries
from cti.adapters.db.callbacks import list_callbacks
from cti.adapters.db.store import Store
from cti.adapters.http.live import LiveHub
from cti.app.supervision import SupervisionDesk
from cti.core import Supervisor, SupervisorAction
from cti.core.supervision import seat_lines
from cti.queue.model import WaitingCall
from cti.settings import Settings, WebUser

__all__ = ["Board"]

DEBOUNCE_S: Final = 0.1  # a burst of publishes (a call connecting) makes one snapshot
TICK_S: Final = 1.0
CALLBACKS_EVERY_S: Final = 5.0  # the missed-call list from the database, at most this often
AUDIT_KEPT: Final = 500
AUDIT_SHOWN: Final = 30
ABANDONED_SHOWN: Final = 50
_WATCHED_TOPICS: Final = ("queue/snapshot", "stats/live", "stats/alarms", "supervision/audit")
_STATUS: Final = {
    "logged_out": "未签入", "ready": "示闲", "not_ready": "示忙", "reserved": "预占",
    "ringing": "振铃", "talking": "通话中", "wrap_up": "话后整理",
}  # fmt: skip
_REASON: Final = {
    "meal": "用餐", "meeting": "会议", "training": "培训", "rest": "小休", "other": "其他",
    "login": "刚签入", "rona": "未接听", "device_unavailable": "话机不可用",
    "callback": "回拨中", "restart": "系统重启",
}  # fmt: skip
_ACTION: Final = {
    "listen": "监听", "whisper": "耳语", "barge": "强插", "stop": "停止监听",
    "ready": "强制示闲", "not_ready": "强制示忙", "logout": "强制签出",
}  # fmt: skip


def _rate_class(value: float | None, minimum: float) -> str:
    """The alarm colour of a ratio: bad below the alarm's minimum (the alarm fires strictly
    below it, cti/kpis/alarms.py), warn within 2 points above it, ok, none (no data)."""
    if value is None:
        return "none"
    if value < minimum:
        return "bad"
    return "warn" if value < minimum + 0.02 else "ok"


def _figures(f: Mapping[str, Any] | None, t: Mapping[str, float]) -> dict[str, Any]:
    f = f or {}
    answer, n_s = f.get("answer_rate"), f.get("n_s_answer_rate")
    return {
        "offered": f.get("offered", 0),
        "answered": f.get("answered", 0),
        "abandoned": f.get("abandoned", 0),
        "answer_rate": answer,
        "answer_rate_cls": _rate_class(answer, t["answer_rate_min"]),
        "n_s_answer_rate": n_s,
        "n_s_answer_rate_cls": _rate_class(n_s, t["n_s_rate_min"]),
    }


class Board:
    """See the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        hub: LiveHub,
        desk: SupervisionDesk,
        store: Store,
        seat_states: Callable[[], list[dict[str, Any]]],
        waiting: Callable[[], Iterable[WaitingCall]],
        log: FilteringBoundLogger,
    ) -> None:
        self._settings = settings
        self._hub = hub
        self._desk = desk
        self._store = store
        self._seat_states = seat_states
        self._waiting = waiting
        self._log = log
        self._wake = asyncio.Event()
        self._watchers: Counter[str] = Counter()  # user name -> open board streams
        self._users: dict[str, WebUser] = {}
        self._last: dict[str, str] = {}  # user name -> its last snapshot's JSON (no `at`)
        self._live: Mapping[str, Any] = {}  # the last stats/live payload
        self._alarms: list[Mapping[str, Any]] = []
        self._audit: deque[dict[str, Any]] = deque(maxlen=AUDIT_KEPT)  # newest last
        self._callbacks: list[dict[str, Any]] = []
        self._callbacks_at = float("-inf")
        self._callbacks_dirty = True
        self.snapshots = 0
        """Board snapshots pushed (a metric for the tests)."""

    def use_settings(self, settings: Settings) -> None:
        self._settings = settings
        self._wake.set()

    # ------------------------------------------------------------------ who

    def lines_of(self, user: WebUser) -> list[str]:
        """The lines a board user is granted, in the number plan's order: a supervisor's
        `lines`, an admin's all."""
        plan = self._settings.numberplan.lines
        if user.role == "admin":
            return [ln.number for ln in plan]
        granted = set(user.lines)
        return [ln.number for ln in plan if ln.number in granted]

    def seats_of(self, user: WebUser) -> frozenset[str]:
        """The seats serving one of the user's lines (the rule of the core's decision)."""
        plan = self._settings.numberplan
        lines = set(self.lines_of(user))
        return frozenset(s.id for s in plan.seats if seat_lines(plan, s.id) & lines)

    def supervisor(self, user: WebUser) -> Supervisor:
        return Supervisor(
            name=user.name, lines=frozenset(self.lines_of(user)), endpoint=user.endpoint
        )

    # ------------------------------------------------------------------ actions, reads

    def act(
        self, user: WebUser, action: SupervisorAction, seat: str, reason: str | None
    ) -> tuple[int, dict[str, Any]]:
        status, reply = self._desk.act_as(self.supervisor(user), action, seat, reason=reason)
        self._wake.set()
        return status, reply

    async def audit(self, user: WebUser, limit: int) -> list[dict[str, Any]]:
        """The audit log a board user may read: its seats' entries and its own."""
        return await self._desk.audit(
            seat=None,
            supervisor=None,
            limit=limit,
            offset=0,
            visible_to=(user.name, self.seats_of(user)),
        )

    @contextlib.contextmanager
    def watching(self, user: WebUser) -> Iterator[None]:
        """While a board stream of *user* is open, its snapshots are built and pushed."""
        self._watchers[user.name] += 1
        self._users[user.name] = user
        self._last.pop(user.name, None)  # the new stream gets one at once
        self._wake.set()
        try:
            yield
        finally:
            self._watchers[user.name] -= 1
            if self._watchers[user.name] <= 0:
                del self._watchers[user.name]

    # ------------------------------------------------------------------ the tap

    def tap(self, topic: str, payload: Mapping[str, Any] | bytes) -> None:
        """Every daemon publish (the MQTT adapter's tap): cheap, never raises."""
        if not isinstance(payload, Mapping):
            return
        if topic == "stats/live":
            self._live = payload
        elif topic == "stats/alarms":
            alarms = payload.get("alarms")
            self._alarms = list(alarms) if isinstance(alarms, list) else []
        elif topic == "supervision/audit":
            self._audit.append(dict(payload))
        elif topic == "calls/events":
            self._callbacks_dirty = True  # an abandon may have opened a callback
        elif topic not in _WATCHED_TOPICS and not (
            topic.startswith("seats/") and topic.endswith("/state")
        ):
            return
        self._wake.set()

    # ------------------------------------------------------------------ the snapshot

    def snapshot(self, user: WebUser, now: float) -> dict[str, Any]:
        """What the board of *user* shows (the first paint and every push)."""
        k = self._settings.kpis
        t = {
            "answer_rate_min": k.answer_rate_min,
            "n_s_rate_min": k.n_s_rate_min,
            "longest_wait_max_s": k.longest_wait_max_s,
            "answer_s": k.answer_s,
        }
        lines = self.lines_of(user)
        granted = set(lines)
        waiting: dict[str, list[float]] = {ln: [] for ln in lines}
        for waiter in self._waiting():
            if waiter.line in granted:
                waiting[waiter.line].append(waiter.waited(now))
        live_lines = self._live.get("lines")
        live = live_lines if isinstance(live_lines, Mapping) else {}
        alarms: dict[str, list[str]] = {}
        for a in self._alarms:
            alarms.setdefault(str(a.get("line")), []).append(str(a.get("kind")))
        plan = {ln.number: ln for ln in self._settings.numberplan.lines}
        line_rows = []
        for number in lines:
            waits = waiting[number]
            longest = round(max(waits)) if waits else None
            figs = live.get(number) or {}
            line_rows.append(
                {
                    "number": number,
                    "name": plan[number].name,
                    "department": plan[number].department,
                    "waiting": len(waits),
                    "longest_wait_s": longest,
                    "longest_wait_cls": "none"
                    if longest is None
                    else ("bad" if longest > k.longest_wait_max_s else "ok"),
                    "today": _figures(figs.get("today"), t),
                    "rolling_24h": _figures(figs.get("rolling_24h"), t),
                    "alarms": sorted(alarms.get(number, [])),
                }
            )
        seats = self.seats_of(user)
        spies = {s["seat"]: s for s in self._desk.spies() if s["seat"] in seats}
        seat_rows = []
        for st in sorted(self._seat_states(), key=lambda s: str(s["seat"])):
            seat = str(st["seat"])
            if seat not in seats:
                continue
            pop = self._hub.last_pop(seat) or {}
            popped = pop.get("call")
            # the seat's latest pop, if it is of the call the seat is on now
            call: Mapping[str, Any] | None = (
                popped
                if isinstance(popped, Mapping)
                and st.get("call_id")
                and popped.get("call_id") == st.get("call_id")
                else None
            )
            pending = st.get("pending")
            spy = spies.get(seat)
            seat_rows.append(
                {
                    "seat": seat,
                    "status": st["status"],
                    "status_label": _STATUS.get(str(st["status"]), str(st["status"])),
                    "reason": st.get("reason"),
                    "reason_label": _REASON.get(str(st.get("reason")), st.get("reason") or ""),
                    "since": st.get("since"),
                    "call_id": st.get("call_id"),
                    # the caller as the console shows it to the agent (the board's user is
                    # authorised for this line)
                    "caller": call.get("caller") if call else None,
                    "line": call.get("line") if call else None,
                    "pending": None
                    if not isinstance(pending, Mapping)
                    else _ACTION.get(str(pending.get("kind")), str(pending.get("kind"))),
                    "spy": None
                    if spy is None
                    else {"supervisor": spy["supervisor"], "mode": spy["mode"], "up": spy["up"]},
                }
            )
        abandoned = [
            {
                "call_id": c["call_id"],
                "caller": c["caller"],
                "caller_name": c["caller_name"],
                "line": c["line"],
                "abandoned_at": c["abandoned_at"],
                "waited_s": c["waited_s"],
                "attempts": c["attempts"],
            }
            for c in self._callbacks
            if c["line"] in granted
        ][-ABANDONED_SHOWN:][::-1]
        audit = [
            {**a, "action_label": _ACTION.get(str(a.get("action")), str(a.get("action")))}
            for a in reversed(self._audit)
            if a.get("seat") in seats or a.get("supervisor") == user.name
        ][:AUDIT_SHOWN]
        mine = next((s for s in self._desk.spies() if s["supervisor"] == user.name), None)
        return {
            "user": user.name,
            "thresholds": t,
            "lines": line_rows,
            "seats": seat_rows,
            "abandoned": abandoned,
            "audit": audit,
            "my_spy": mine,
        }

    # ------------------------------------------------------------------ the task

    async def _refresh_callbacks(self, now: float) -> None:
        if not self._callbacks_dirty and now - self._callbacks_at < CALLBACKS_EVERY_S:
            return
        self._callbacks_dirty = False
        self._callbacks_at = now
        try:
            self._callbacks = await list_callbacks(self._store, status="open", limit=500)
        except Exception:  # noqa: BLE001 - the board goes on with the last list
            self._log.exception("board_callbacks_failed")

    async def seed(self) -> None:
        """The audit log's latest entries, at start (then the tap keeps it)."""
        try:
            rows = await audit_entries(self._store.engine, limit=AUDIT_KEPT)
        except Exception:  # noqa: BLE001 - an empty log on the board, not a dead daemon
            self._log.exception("board_audit_seed_failed")
            return
        for row in reversed(rows):
            row.pop("id", None)
            self._audit.append(row)

    def push(self, now: float) -> None:
        """Build and push the snapshot of each watching user whose board changed."""
        for name in list(self._watchers):
            user = self._users[name]
            body = self.snapshot(user, now)
            text = json.dumps(body, ensure_ascii=False, sort_keys=True, default=str)
            if self._last.get(name) == text:
                continue
            self._last[name] = text
            self.snapshots += 1
            self._hub.publish(f"board/{name}", {"at": now, **body})

    async def run(self) -> None:
        """The daemon's task: a snapshot push after each change (debounced) and each second."""
        await self.seed()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)
                await asyncio.sleep(DEBOUNCE_S)
            self._wake.clear()
            if not self._watchers:
                continue
            try:
                now = time.time()
                await self._refresh_callbacks(now)
                self.push(now)
            except Exception:  # noqa: BLE001 - the board must not stop the daemon
                self._log.exception("board_push_failed")
