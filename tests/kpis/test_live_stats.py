"""The live aggregator (cti/app/live_stats.py): at most once a second, only on change, the
rolling-24 h window, and the alarms it publishes — time passed in, no broker."""

from __future__ import annotations

from datetime import UTC

import structlog

from cti.app.live_stats import ALARMS_TOPIC, DAY_S, LIVE_TOPIC, LiveStats
from cti.core.messages import Publish
from cti.kpis import Outcome, Thresholds
from cti.kpis.callbacks import CallbackRequest, callback_figures
from cti.queue.model import WaitingCall
from tests.kpis.facts import T0, entry


class Rig:
    def __init__(self, ready: dict[str, int] | None = None) -> None:
        self.out: list[Publish] = []
        self.waiting: list[WaitingCall] = []
        self.ready = ready if ready is not None else {"12345": 1}
        self.live = LiveStats(
            thresholds=Thresholds(answer_rate_min=0.95, n_s_rate_min=0.8, longest_wait_max_s=15),
            tz=UTC,
            publish=self.out.append,
            waiting=lambda: self.waiting,
            ready_seats=lambda: self.ready,
            log=structlog.get_logger("test"),
        )

    def topic(self, topic: str) -> list[Publish]:
        return [p for p in self.out if p.topic == topic]

    def events(self) -> list[dict[str, object]]:
        return [p.payload for p in self.out if p.topic == "calls/events"]


def test_publishes_at_most_once_a_second_and_only_on_change() -> None:
    r = Rig()
    r.live.add([entry("c1", Outcome.ANSWERED, 3.0)])
    r.live.step(T0 + 100)
    live = r.topic(LIVE_TOPIC)
    assert len(live) == 1
    assert live[0].retain
    line = live[0].payload["lines"]["12345"]
    assert line["today"]["answered"] == 1
    assert line["rolling_24h"]["offered"] == 1
    assert live[0].payload["centre"]["today"]["offered"] == 1
    r.live.step(T0 + 100.5)  # nothing changed
    assert len(r.topic(LIVE_TOPIC)) == 1
    r.live.add([entry("c2", Outcome.ABANDONED, 8.0, at=50)])
    r.live.step(T0 + 100.7)  # changed, but within the second of the last message
    assert len(r.topic(LIVE_TOPIC)) == 1
    r.live.step(T0 + 101.1)
    live = r.topic(LIVE_TOPIC)
    assert len(live) == 2
    assert live[1].payload["lines"]["12345"]["today"]["abandoned"] == 1
    assert live[1].payload["lines"]["12345"]["rolling_24h"]["answer_rate"] == 0.5
    r.live.step(T0 + 103)
    r.live.step(T0 + 105)  # seconds later, nothing new: no message
    assert len(r.topic(LIVE_TOPIC)) == 2


def test_an_entry_leaves_the_rolling_window_after_24_h() -> None:
    r = Rig()
    r.live.add([entry("old", Outcome.ABANDONED, 8.0), entry("new", Outcome.ANSWERED, 2, at=3600)])
    r.live.step(T0 + 7200)
    assert r.topic(LIVE_TOPIC)[-1].payload["lines"]["12345"]["rolling_24h"]["offered"] == 2
    r.live.step(T0 + DAY_S - 1)
    assert r.topic(LIVE_TOPIC)[-1].payload["lines"]["12345"]["rolling_24h"]["offered"] == 2
    # whole minutes leave the window: "old" (20 s into its minute) stays until that
    # minute is more than 24 h ago, at most 59 s later than an exact 24 h cut
    r.live.step(T0 + DAY_S + 1)
    assert r.topic(LIVE_TOPIC)[-1].payload["lines"]["12345"]["rolling_24h"]["offered"] == 2
    r.live.step(T0 + DAY_S + 40)  # the next minute: "old" entered more than 24 h ago
    last = r.topic(LIVE_TOPIC)[-1].payload["lines"]["12345"]
    assert last["rolling_24h"]["offered"] == 1
    assert last["rolling_24h"]["answer_rate"] == 1.0
    r.live.step(T0 + DAY_S + 3600 + 40)
    assert r.topic(LIVE_TOPIC)[-1].payload["lines"]["12345"]["rolling_24h"]["offered"] == 0


def test_a_repeated_entry_counts_once_and_an_open_one_not_at_all() -> None:
    r = Rig()
    e = entry("c1", Outcome.ANSWERED, 3.0)
    r.live.add([e, e, entry("c9", None, 1.0)])
    r.live.step(T0 + 10)
    assert r.topic(LIVE_TOPIC)[-1].payload["lines"]["12345"]["today"]["units"] == 1


def test_answer_rate_alarm_raised_once_then_cleared() -> None:
    r = Rig()
    r.live.step(T0 + 1)
    first = r.topic(ALARMS_TOPIC)
    assert len(first) == 1
    assert first[0].payload["alarms"] == []
    assert first[0].retain
    r.live.add([entry("c1", Outcome.ABANDONED, 8.0)])
    r.live.step(T0 + 20)
    lists = r.topic(ALARMS_TOPIC)
    ids = [a["alarm_id"] for a in lists[-1].payload["alarms"]]
    assert ids == ["12345/answer_rate_24h", "12345/n_s_answer_rate_today"]
    raised = [e for e in r.events() if e["state"] == "raised"]
    assert {e["alarm_id"] for e in raised} == set(ids)
    assert all(e["type"] == "alarm" for e in raised)
    r.live.step(T0 + 30)
    assert len(r.topic(ALARMS_TOPIC)) == len(lists)  # nothing new: not re-announced
    r.live.add([entry(f"a{i}", Outcome.ANSWERED, 2.0, at=i) for i in range(1, 20)])
    r.live.step(T0 + 40)  # 19/20 = 95 %: not below the minimum
    assert r.topic(ALARMS_TOPIC)[-1].payload["alarms"] == []
    cleared = [e for e in r.events() if e["state"] == "cleared"]
    assert {e["alarm_id"] for e in cleared} == set(ids)


def test_longest_wait_and_no_seat_ready_alarms() -> None:
    r = Rig(ready={"12345": 0})
    r.waiting = [
        WaitingCall(
            call_id="w1",
            line="12345",
            skills=frozenset({"general"}),
            priority_class="normal",
            enqueued_at=T0,
        )
    ]
    r.live.step(T0 + 10)
    ids = [a["alarm_id"] for a in r.topic(ALARMS_TOPIC)[-1].payload["alarms"]]
    assert ids == ["12345/no_seat_ready"]
    assert r.topic(LIVE_TOPIC)[-1].payload["lines"]["12345"]["longest_waiting_s"] == 10.0
    r.live.step(T0 + 16)  # waited 16 s > 15
    ids = [a["alarm_id"] for a in r.topic(ALARMS_TOPIC)[-1].payload["alarms"]]
    assert ids == ["12345/longest_wait", "12345/no_seat_ready"]
    r.waiting = []
    r.ready = {"12345": 2}
    r.live.step(T0 + 17)
    assert r.topic(ALARMS_TOPIC)[-1].payload["alarms"] == []
    assert r.topic(LIVE_TOPIC)[-1].payload["lines"]["12345"]["ready_seats"] == 2


def test_the_wait_histogram_counts_new_entries_once_not_the_seeded_ones() -> None:
    r = Rig()
    r.live.seed([entry("old", Outcome.ANSWERED, 4.0)])
    e = entry("c1", Outcome.ABANDONED, 12.0)
    r.live.add([e, e, entry("ivr", Outcome.IVR_ONLY, 30.0)])
    h = r.live.waits
    assert (h.count, h.sum) == (1, 12.0)
    assert dict(h.cumulative())[10.0] == 0
    assert dict(h.cumulative())[15.0] == 1


def _req(call_id: str, at: float, **kw: object) -> CallbackRequest:
    return CallbackRequest(call_id=call_id, node="n1", line="12345", requested_at=at, **kw)  # type: ignore[arg-type]


def test_the_live_figures_carry_the_callback_figures() -> None:
    # today (UTC here) and the rolling 24 h count the callback list's requests by the
    # report's definition: requests by abandoned_at, placed, reached, reached within N min
    r = Rig()
    midnight = T0 - (T0 % DAY_S)
    r.live.set_callbacks(
        [
            _req("a", midnight - 3600),  # yesterday: rolling only
            _req("b", midnight + 60, attempts=1),  # placed, not reached
            _req("c", midnight + 120, attempts=2, reached_at=midnight + 120 + 1800),  # 30 min
            _req("d", midnight + 180, attempts=1, reached_at=midnight + 180 + 1801),  # late
            CallbackRequest(call_id="e", node="n1", line="12315", requested_at=midnight + 5),
        ]
    )
    now = midnight + 7200
    r.live.step(now)
    body = r.topic(LIVE_TOPIC)[-1].payload
    today = body["lines"]["12345"]["today"]["callbacks"]
    assert (today["requests"], today["placed"], today["attempts"]) == (3, 3, 4)
    assert (today["reached"], today["reached_within"]) == (2, 1)  # inclusive: 30 min counts
    assert body["lines"]["12345"]["rolling_24h"]["callbacks"]["requests"] == 4
    assert body["lines"]["12315"]["today"]["callbacks"]["requests"] == 1  # a line of its own
    centre = body["centre"]
    assert centre["today"]["callbacks"]["requests"] == 4
    assert centre["rolling_24h"]["callbacks"]["requests"] == 5
    # the same figures as the report's for the same requests and window
    want = callback_figures(
        [x for x in r.live._callbacks if x.requested_at >= midnight and x.line == "12345"],
        within_min=Thresholds().callback_within_min,
    )
    assert today["reach_rate"] == want.reach_rate
    # a request reached later: the figures change and are published again
    n = len(r.topic(LIVE_TOPIC))
    r.live.set_callbacks(
        [*r.live._callbacks[:1], _req("b", midnight + 60, attempts=1, reached_at=now)]
    )
    r.live.step(now + 2)
    assert len(r.topic(LIVE_TOPIC)) == n + 1
    r.live.step(now + 4)  # the same list again: no message
    assert len(r.topic(LIVE_TOPIC)) == n + 1
