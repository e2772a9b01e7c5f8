"""The fallback's calls read from app_queue's queue_log lines (cti/kpis/fallback_log.py)."""

from __future__ import annotations

from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from cti.kpis import Outcome
from cti.kpis.fallback_log import MARKER, FallbackLog
from cti.numberplan import NumberPlan
from cti.settings import load_settings
from tests.conftest import PROJECT

T = 1_796_366_300  # 2026-12-04, in the range the parser takes


@cache
def sample_plan() -> NumberPlan:
    return load_settings(PROJECT / "config" / "cti.yaml", env={}).numberplan


def fresh() -> FallbackLog:
    return FallbackLog(node="main", plan=sample_plan())


def marker(
    at: float, uid: str, call: str, line: str = "12345", entered: float | None = None
) -> str:
    entered_text = "" if entered is None else f"{entered:.3f}"
    return f"{at:.0f}|{uid}|cti-fallback|NONE|{MARKER}|{call}|{line}|{entered_text}"


def q(
    at: float, uid: str, event: str, *data: str, agent: str = "NONE", queue: str = "cti-general"
) -> str:
    return "|".join([f"{at:.0f}", uid, queue, agent, event, *data])


def test_an_answered_fallback_call_is_one_entry_with_its_wait_and_line() -> None:
    log = fresh()
    for line in [
        marker(T + 8, "u1", "L1", "12315", entered=T),
        q(T + 8, "u1", "ENTERQUEUE", "", "13800000000", "1"),
        q(T + 23, "u1", "RINGNOANSWER", "15000", agent="1001"),
        q(T + 26, "u1", "CONNECT", "18", "u1-b", "3", agent="1002"),
        q(T + 90, "u1", "COMPLETECALLER", "18", "64", "1", agent="1002"),
    ]:
        log.feed(line)
    [(call, entry)] = log.take()
    assert (call.fate, call.seat, call.offers) == ("answered", "1002", 1)
    assert entry.outcome is Outcome.FALLBACK
    assert (entry.call_id, entry.node, entry.line) == ("L1", "main", "12315")
    assert entry.department == sample_plan().line("12315").department  # type: ignore[union-attr]
    # the wait counts from when the call joined the line (the hold before the fallback)
    assert (entry.entered_at, entry.wait_s, entry.ring_s, entry.offers) == (T, 26.0, 15.0, 1)
    # fallback is not answered in the KPI definitions: no seat, no talk in the facts
    assert (entry.seat, entry.connected_at, entry.talk_s) == (None, None, 0.0)
    assert entry.left_at == T + 90
    assert log.take() == []
    assert log.open == 0


def test_abandoned_and_the_timeout_loop_between_queues() -> None:
    log = fresh()
    log.feed(marker(T, "u2", "L2", entered=T - 8))
    log.feed(q(T, "u2", "ENTERQUEUE", "", "1", "1", queue="cti-market"))
    log.feed(q(T + 5, "u2", "EXITWITHTIMEOUT", "1", "1", "5", queue="cti-market"))
    assert log.take() == []
    assert log.open == 1
    log.feed(q(T + 5, "u2", "ENTERQUEUE", "", "1", "1"))
    log.feed(q(T + 12, "u2", "ABANDON", "1", "1", "7"))
    [(call, entry)] = log.take()
    assert call.fate == "abandoned"
    assert entry.wait_s == 20.0
    assert entry.left_at == T + 12


def test_lines_of_calls_the_daemon_handled_are_ignored() -> None:
    log = fresh()
    log.feed(q(T, "other", "ENTERQUEUE", "", "1", "1"))
    log.feed(q(T + 1, "other", "ABANDON", "1", "1", "1"))
    log.feed(f"{T}|NONE|NONE|NONE|QUEUESTART|")
    assert log.take() == []
    assert not log.skipped


def test_a_call_with_no_end_is_finished_stale_s_after_its_last_event() -> None:
    log = fresh()
    log.feed(marker(T, "u3", "L3"))
    log.feed(q(T + 2, "u3", "CONNECT", "2", "x", "1", agent="1001"))
    log.expire(T + 2 + log.stale_s - 1)
    assert log.take() == []
    log.expire(T + 2 + log.stale_s + 1)
    [(call, entry)] = log.take()
    assert call.fate == "answered"
    assert entry.left_at == T + 2


def test_the_marker_again_is_the_same_stay_and_an_unknown_line_is_unknown() -> None:
    log = fresh()
    log.feed(marker(T, "u4", "L4", line=""))
    log.feed(marker(T + 3, "u4", "L4", line=""))  # a take-back that bounced
    log.feed(q(T + 4, "u4", "ABANDON", "1", "1", "4"))
    [(_, entry)] = log.take()
    assert entry.line == "unknown"
    assert entry.entered_at == T
    assert entry.department is None


def test_hostile_lines_are_counted_not_raised() -> None:
    log = fresh()
    for bad in [
        "x" * 5000,
        "garbage",
        "nan|u|q|a|CONNECT",
        "1e400|u|q|a|CONNECT",
        f"{T}|u 1|q|a|CONNECT",  # a space in the uniqueid
        f"{T}|u5|cti-fallback|NONE|{MARKER}|bad id\r|12345|",
        f"{T}|u6|cti-fallback|NONE|{MARKER}",  # no call id
    ]:
        log.feed(bad)
    assert log.skipped == {"too_long": 1, "malformed": 4, "bad_marker": 2}
    assert log.open == 0


def test_open_calls_are_bounded_the_oldest_finished_first() -> None:
    log = FallbackLog(node="main", plan=sample_plan(), max_open=2)
    for i in range(3):
        log.feed(marker(T + i, f"u{i}", f"L{i}"))
    assert log.open == 2
    assert log.skipped["overflow"] == 1
    [(call, _)] = log.take()
    assert call.call_id == "L0"
    assert call.fate == "unknown"


_fields = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
_events = st.sampled_from(
    [
        MARKER,
        "ENTERQUEUE",
        "CONNECT",
        "RINGNOANSWER",
        "ABANDON",
        "COMPLETECALLER",
        "EXITWITHTIMEOUT",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-5, max_value=100),
            st.sampled_from(["u1", "u2", "bad uid", ""]),
            _events,
            st.lists(_fields, max_size=4),
        ),
        max_size=40,
    ),
    st.lists(_fields, max_size=5),
)
def test_any_lines_give_consistent_entries(
    lines: list[tuple[int, str, str, list[str]]], garbage: list[str]
) -> None:
    """Whatever the file holds: no exception, one entry per stay at most, times ordered."""
    log = fresh()
    for g in garbage:
        log.feed(g)
    for dt, uid, event, data in lines:
        log.feed("|".join([str(T + dt), uid, "cti-general", "1001", event, *data]))
    log.expire(T + 10**6)
    assert log.open == 0
    for call, entry in log.take():
        assert entry.outcome is Outcome.FALLBACK
        assert entry.left_at is not None
        assert entry.entered_at <= entry.left_at
        assert 0.0 <= entry.wait_s <= entry.left_at - entry.entered_at
        assert entry.ring_s >= 0.0
        assert entry.offers >= 0
        assert call.fate in ("answered", "abandoned", "left", "unknown")
