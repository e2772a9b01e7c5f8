"""The live KPI figures and alarms (docs/kpis.md): `cti/stats/live` and `cti/stats/alarms`.

The daemon keeps the last 24 h of queue entries as running figures: seeded at start from
the stored ones (`queue_entries`), then fed by the entries each call's :class:`StoreCall`
carries; a call's entries are held for two minutes, then folded into per-minute sums
(bounded memory, :mod:`cti.kpis.running`). Per line and for the centre (one unit per
call begun in the window) it publishes today-so-far and rolling-24 h figures, retained,
**at most once a second** and only when the payload changed (a caller still waiting makes
`longest_waiting_s` grow, so that changes each second).
The figures are running totals (:class:`cti.kpis.running.RunningWindows`: an entry is
counted when it arrives and when its minute leaves the window), so a step costs O(lines),
not O(entries of the day); the rolling window drops whole minutes (24 h to 24 h 59 s).

Alarms come from the pure :func:`cti.kpis.alarms` over the same figures, with the callers
still waiting and the ready seats per line asked of the core each step. The active set is
one retained list on `stats/alarms`; each raise and each clear is also a `calls/events`
message of type `alarm` for integrations.

:meth:`LiveStats.step` takes the time, so the tests drive it without a clock; :meth:`run`
is the daemon's task (one step a second).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo

from structlog.typing import FilteringBoundLogger

from cti.adapters.http.metrics import Histogram
from cti.core.messages import Publish
from cti.core.screen import SCHEMA_VERSION
from cti.kpis import Alarm, Figures, LineFigures, QueueEntry, Thresholds, alarms, compute
from cti.kpis.callbacks import CallbackRequest, callback_figures
from cti.kpis.report import figures_json
from cti.kpis.running import RunningWindows
from cti.queue.model import WaitingCall

__all__ = ["ALARMS_TOPIC", "LIVE_TOPIC", "LiveStats", "WaitHistogram", "zone"]

LIVE_TOPIC: Final = "stats/live"
ALARMS_TOPIC: Final = "stats/alarms"
DAY_S: Final = 86_400.0
CENTRE: Final = "centre"


def zone(name: str | None) -> tzinfo:
    """`kpis.timezone`, else the machine's zone (the same rule as `cti report`)."""
    if name:
        return ZoneInfo(name)
    return datetime.now().astimezone().tzinfo or ZoneInfo("UTC")


def _midnight(now: float, tz: tzinfo) -> float:
    day = datetime.fromtimestamp(now, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


def _alarm_json(a: Alarm, state: str, since: float) -> dict[str, Any]:
    return {
        "alarm_id": a.alarm_id,
        "line": a.line,
        "kind": str(a.kind),
        "state": state,
        "value": a.value,
        "threshold": a.threshold,
        "since": since,
    }


WAIT_BUCKETS_S: Final = (1.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)


class WaitHistogram(Histogram):
    """Waits of the offered entries ended since the daemon started (/metrics
    `cti_queue_wait_seconds`): cumulative, as Prometheus expects of a histogram."""

    def __init__(self, buckets: tuple[float, ...] = WAIT_BUCKETS_S) -> None:
        super().__init__(buckets)


class LiveStats:
    """Owns the running figures of the last 24 h, the live figures and the active alarms."""

    def __init__(
        self,
        *,
        thresholds: Thresholds,
        tz: tzinfo,
        publish: Callable[[Publish], None],
        waiting: Callable[[], Iterable[WaitingCall]],
        ready_seats: Callable[[], Mapping[str, int]],
        log: FilteringBoundLogger,
        interval_s: float = 1.0,
    ) -> None:
        self._t = thresholds
        self._tz = tz
        self._publish = publish
        self._waiting = waiting
        self._ready_seats = ready_seats
        self._log = log
        self._interval = interval_s
        self._windows = RunningWindows(thresholds)
        self._dirty = True
        self._day_start: float | None = None
        self._figures: dict[str, LineFigures] = {}
        self._last_body: dict[str, Any] | None = None
        self._last_sent = float("-inf")
        self._active: dict[str, tuple[Alarm, float]] = {}  # alarm id -> (alarm, since)
        # the callback list's requests of the last 24 h (set_callbacks): their figures go
        # with each line's and the centre's, by the report's definition
        self._callbacks: tuple[CallbackRequest, ...] = ()
        # the first step publishes the list even if empty: a retained list left by the
        # last run must not stand
        self._alarms_sent = False
        self.waits = WaitHistogram()
        self.published = 0
        """Messages sent on `stats/live` (a metric, and what the tests count)."""

    # ------------------------------------------------------------------ inputs

    def seed(self, entries: Iterable[QueueEntry]) -> None:
        """The stored entries of the last 24 h, at start (not observed in the histogram)."""
        self._add(entries, observe=False)

    def add(self, entries: Iterable[QueueEntry]) -> None:
        """Entries of a finished call; a repeat replaces."""
        self._add(entries, observe=True)

    def _add(self, entries: Iterable[QueueEntry], *, observe: bool) -> None:
        batch = list(entries)
        # the core emits finished entries; an open one is not a fact yet (skipped there)
        new = self._windows.add(batch)
        if observe:
            for e in new:
                if e.offered:
                    self.waits.observe(e.wait_s)
        if any(e.left_at is not None for e in batch):
            self._dirty = True

    def set_callbacks(self, requests: Iterable[CallbackRequest]) -> None:
        """The callback list's requests of (at least) the last 24 h, as stored now (the
        daemon reloads them every few seconds: ``kpis.live_callbacks_s``): placed and
        reached change after the request, so the figures are counted again from them."""
        reqs = tuple(sorted(requests, key=lambda r: (r.requested_at, r.key)))
        if reqs != self._callbacks:
            self._callbacks = reqs
            self._dirty = True

    @property
    def active_alarms(self) -> list[Alarm]:
        return [a for a, _ in self._active.values()]

    # ------------------------------------------------------------------ the step

    def step(self, now: float) -> None:
        """Recompute what changed, publish the figures if due and changed, and the alarms."""
        day = _midnight(now, self._tz)
        if self._windows.advance(now, day):
            self._dirty = True
        if day != self._day_start:
            self._day_start = day
            self._dirty = True
        if self._dirty:
            self._recompute()
            self._dirty = False
        waiting = self._longest_waiting(now)
        ready = dict(self._ready_seats())
        if now - self._last_sent >= self._interval:
            body = self._body(waiting, ready)
            if body != self._last_body:
                self._last_body = body
                self._last_sent = now
                self.published += 1
                self._publish(
                    Publish(
                        topic=LIVE_TOPIC,
                        payload={"schema_version": SCHEMA_VERSION, "at": now, **body},
                        retain=True,
                    )
                )
        self._alarms(now, waiting, ready)

    async def run(self) -> None:
        """The daemon's task: one step a second (a failed step is logged, the next runs)."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                self.step(time.time())
            except Exception:  # noqa: BLE001 - the figures must not stop; log and go on
                self._log.exception("live_stats_failed")

    # ------------------------------------------------------------------ internals

    def _recompute(self) -> None:
        w = self._windows
        cb_lines = {r.line for r in self._callbacks}
        lines = sorted(w.lines() | set(self._ready_seats()) | cb_lines)
        today, rolling = w.today.start, w.rolling.start

        def fig(line: str | None) -> LineFigures:
            def with_cb(f: Figures, since: float) -> Figures:
                # the report's callback figures of the requests of the same window (by
                # abandoned_at, on the missed call's line; the centre: all)
                mine = [
                    r
                    for r in self._callbacks
                    if r.requested_at >= since and (line is None or r.line == line)
                ]
                within = self._t.callback_within_min
                return dataclasses.replace(f, callbacks=callback_figures(mine, within_min=within))

            return LineFigures(
                today=with_cb(w.figures(w.today, line), today),
                rolling_24h=with_cb(w.figures(w.rolling, line), rolling),
            )

        figs: dict[str, LineFigures] = {line: fig(line) for line in lines}
        figs[CENTRE] = fig(None)
        self._figures = figs

    def _longest_waiting(self, now: float) -> dict[str, float]:
        # whole seconds: the live topic changes once a second while someone waits, not on
        # every fraction of one
        out: dict[str, float] = {}
        for call in self._waiting():
            w = float(int(call.waited(now)))
            out[call.line] = max(out.get(call.line, 0.0), w)
            out[CENTRE] = max(out.get(CENTRE, 0.0), w)
        return out

    def _body(self, waiting: Mapping[str, float], ready: Mapping[str, int]) -> dict[str, Any]:
        def one(key: str, f: LineFigures) -> dict[str, Any]:
            return {
                "today": figures_json(f.today),
                "rolling_24h": figures_json(f.rolling_24h),
                "longest_waiting_s": waiting.get(key),
            }

        lines = {
            k: {**one(k, f), "ready_seats": ready.get(k)}
            for k, f in self._figures.items()
            if k != CENTRE
        }
        centre = self._figures.get(CENTRE)
        return {
            "day_start": self._day_start,
            "lines": lines,
            "centre": one(CENTRE, centre) if centre is not None else None,
        }

    def _with_waiting(self, f: Figures, w: float | None) -> Figures:
        return dataclasses.replace(f, longest_waiting_s=w)

    def _alarms(self, now: float, waiting: Mapping[str, float], ready: Mapping[str, int]) -> None:
        judged = {
            k: LineFigures(
                today=self._with_waiting(f.today, waiting.get(k)),
                rolling_24h=self._with_waiting(f.rolling_24h, None),
            )
            for k, f in self._figures.items()
            if k != CENTRE
        }
        # a line with a waiting caller but no entry yet is judged for its wait too
        for k, w in waiting.items():
            if k != CENTRE and k not in judged:
                empty = compute([], thresholds=self._t)
                judged[k] = LineFigures(today=self._with_waiting(empty, w), rolling_24h=empty)
        now_true = {a.alarm_id: a for a in alarms(judged, self._t, ready_seats_by_line=ready)}
        raised = [a for i, a in now_true.items() if i not in self._active]
        cleared = [(a, s) for i, (a, s) in self._active.items() if i not in now_true]
        if not raised and not cleared and self._alarms_sent:
            # the value of an active alarm moves (a wait grows): kept, not re-announced
            self._active = {i: (now_true[i], s) for i, (_, s) in self._active.items()}
            return
        for a, since in cleared:
            self._log.info("kpi_alarm_cleared", alarm=a.alarm_id, value=a.value)
            self._event(a, "cleared", since, now)
        for a in raised:
            self._log.warning("kpi_alarm_raised", alarm=a.alarm_id, value=a.value)
            self._event(a, "raised", now, now)
        self._active = {
            i: (a, self._active[i][1] if i in self._active else now) for i, a in now_true.items()
        }
        self._alarms_sent = True
        self._publish(
            Publish(
                topic=ALARMS_TOPIC,
                payload={
                    "schema_version": SCHEMA_VERSION,
                    "at": now,
                    "alarms": [_alarm_json(a, "raised", s) for a, s in self._active.values()],
                },
                retain=True,
            )
        )

    def _event(self, a: Alarm, state: str, since: float, now: float) -> None:
        self._publish(
            Publish(
                topic="calls/events",
                payload={
                    "schema_version": SCHEMA_VERSION,
                    "event_id": f"alarm:{a.alarm_id}:{state}:{since}",
                    "type": "alarm",
                    "at": now,
                    **_alarm_json(a, state, since),
                },
            )
        )
