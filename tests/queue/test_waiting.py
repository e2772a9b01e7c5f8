"""cti.queue: priority classes, FIFO, aging, RONA back to the head, position, abandonment, EWT."""

from __future__ import annotations

import random

import pytest
import structlog
from structlog.testing import capture_logs

from cti.queue import HandleTimeEstimator, WaitingCall, WaitingLine, expected_wait

LOG = structlog.get_logger()
PRIO = {"emergency-transfer": 600, "repeat": 120, "normal": 0}


def call(cid: str, at: float, cls: str = "normal", skill: str = "general") -> WaitingCall:
    return WaitingCall(
        call_id=cid,
        line="12345",
        skills=frozenset({skill}),
        priority_class=cls,
        priority=PRIO[cls],
        enqueued_at=at,
        caller="13800138000",
    )


def ids(line: WaitingLine) -> list[str]:
    return [c.call_id for c in line]


def test_fifo_within_class() -> None:
    line = WaitingLine(aging_per_s=1.0, log=LOG)
    for i in range(5):
        line.add(call(f"c{i}", 100.0 + i))
    assert ids(line) == ["c0", "c1", "c2", "c3", "c4"]


def test_fifo_same_timestamp_keeps_arrival_order() -> None:
    line = WaitingLine(aging_per_s=1.0, log=LOG)
    for i in range(4):
        line.add(call(f"c{i}", 100.0))
    assert ids(line) == ["c0", "c1", "c2", "c3"]


def test_priority_classes_110_first_then_repeat() -> None:
    line = WaitingLine(aging_per_s=1.0, log=LOG)
    line.add(call("normal", 100.0))
    line.add(call("repeat", 101.0, "repeat"))
    line.add(call("110", 102.0, "emergency-transfer"))
    assert ids(line) == ["110", "repeat", "normal"]


def test_aging_lets_an_old_normal_call_pass() -> None:
    # aging 1 point/s: a repeat call (120 points) is worth 120 s of waiting
    line = WaitingLine(aging_per_s=1.0, log=LOG)
    line.add(call("old", 0.0))
    line.add(call("repeat-early", 119.0, "repeat"))
    line.add(call("repeat-late", 121.0, "repeat"))
    assert ids(line) == ["repeat-early", "old", "repeat-late"]
    assert line.effective_priority(line.get("old") or call("x", 0), 130.0) == 130.0


def test_no_aging_is_strict_priority() -> None:
    line = WaitingLine(aging_per_s=0.0, log=LOG)
    line.add(call("old", 0.0))
    line.add(call("repeat", 10_000.0, "repeat"))
    assert ids(line) == ["repeat", "old"]


def test_requeue_at_head_of_class_keeps_enqueue_time() -> None:
    line = WaitingLine(aging_per_s=1.0, log=LOG)
    line.add(call("a", 10.0))
    line.add(call("b", 20.0))
    line.add(call("110", 50.0, "emergency-transfer"))
    offered = line.remove("b")
    assert offered is not None
    back = line.requeue_at_head(offered)
    assert back.enqueued_at == 20.0
    assert back.offers == 1
    # first of the normal class (ahead of a, which waited longer), behind the 110 call
    assert ids(line) == ["110", "b", "a"]
    # a second RONA call of the class goes in front of the first one
    offered_a = line.remove("a")
    assert offered_a is not None
    line.requeue_at_head(offered_a)
    assert ids(line) == ["110", "a", "b"]


def test_requeue_into_empty_class() -> None:
    line = WaitingLine(aging_per_s=1.0, log=LOG)
    line.requeue_at_head(call("a", 10.0))
    assert ids(line) == ["a"]


def test_position_overall_and_by_skill() -> None:
    line = WaitingLine(aging_per_s=1.0, log=LOG)
    line.add(call("g1", 1.0))
    line.add(call("m1", 2.0, skill="market"))
    line.add(call("g2", 3.0))
    line.add(call("m2", 4.0, skill="market"))
    pos = line.position("m2")
    assert pos is not None
    assert (pos.overall, pos.by_skill, pos.in_skill) == (4, {"market": 2}, 2)
    assert [c.call_id for c in line.in_skill("market")] == ["m1", "m2"]
    assert line.count_by_skill() == {"general": 2, "market": 2}
    assert line.position("nope") is None


def test_abandonment_outcome_with_wait() -> None:
    line = WaitingLine(aging_per_s=1.0, log=LOG)
    line.add(call("a", 100.0))
    line.add(call("b", 105.0))
    outcome = line.abandon("b", 142.5)
    assert outcome is not None
    assert (outcome.call_id, outcome.waited_s, outcome.position, outcome.during_offer) == (
        "b",
        37.5,
        2,
        False,
    )
    assert "b" not in line
    assert ids(line) == ["a"]


def test_duplicate_and_unknown_are_logged_and_counted_not_raised() -> None:
    line = WaitingLine(aging_per_s=1.0, log=LOG)
    with capture_logs() as logs:
        assert line.add(call("a", 1.0))
        assert not line.add(call("a", 2.0))
        assert line.abandon("zzz", 3.0) is None
    assert line.anomalies == {"duplicate_call": 1, "abandon_unknown_call": 1}
    assert [entry["event"] for entry in logs] == [
        "queue_duplicate_call",
        "queue_abandon_unknown_call",
    ]
    assert len(line) == 1


def test_random_operations_keep_order_consistent() -> None:
    rng = random.Random(7)
    line = WaitingLine(aging_per_s=0.5, log=LOG)
    live: dict[str, WaitingCall] = {}
    for i in range(2_000):
        if live and rng.random() < 0.4:
            cid = rng.choice(sorted(live))
            assert line.remove(cid) == live.pop(cid)
        else:
            c = call(f"c{i}", float(i), rng.choice(list(PRIO)), rng.choice(["general", "market"]))
            line.add(c)
            live[c.call_id] = c

    def key(c: WaitingCall) -> tuple[float, float]:
        return (c.enqueued_at - c.priority / 0.5, c.enqueued_at)

    assert ids(line) == [c.call_id for c in sorted(live.values(), key=key)]
    for skill in ("general", "market"):
        expect = [c.call_id for c in sorted(live.values(), key=key) if skill in c.skills]
        assert [c.call_id for c in line.in_skill(skill)] == expect


# ------------------------------------------------------------------ EWT


@pytest.mark.parametrize(
    ("ahead", "ready", "staffed", "aht", "ewt"),
    [
        (0, 1, 5, 180.0, 0.0),  # a seat is ready
        (0, 0, 5, 180.0, 36.0),  # first in line: one of 5 seats frees in 180/5 s
        (9, 0, 5, 180.0, 360.0),  # 10 seat releases needed
        (9, 2, 5, 180.0, 288.0),  # 2 ready seats take 2 of the calls ahead
        (3, 0, 0, 180.0, None),  # nobody staffed: unknown
    ],
)
def test_expected_wait(ahead: int, ready: int, staffed: int, aht: float, ewt: float | None) -> None:
    assert expected_wait(ahead=ahead, ready=ready, staffed=staffed, aht_s=aht) == ewt


def test_handle_time_ewma() -> None:
    est = HandleTimeEstimator(alpha=0.5, default_s=180.0)
    assert est.aht() == 180.0
    est.observe(frozenset({"market"}), 100.0)
    assert (est.aht(), est.aht("market"), est.aht("hr")) == (100.0, 100.0, 100.0)
    est.observe(frozenset({"general"}), 200.0)
    assert est.aht() == 150.0
    assert est.aht("general") == 200.0
    est.observe(frozenset({"market"}), 300.0)
    assert est.aht("market") == 200.0
    est.observe(frozenset({"market"}), -1.0)  # ignored (clock step)
    assert est.samples == 3
