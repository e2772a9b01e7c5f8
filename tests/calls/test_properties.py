"""Property tests: any prefix, suffix, shuffle or garbage of real traces is survivable.

The tracker must never fail a handler (it counts `handler_error` instead of raising) and
after a resync that lists no channel, no call may stay open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti.calls import CallEnded, CallTracker
from cti.events import (
    EVENT_TYPES,
    AmiConnected,
    AmiDisconnected,
    AmiEvent,
    ConnectionEvent,
    CoreShowChannelsComplete,
    parse_event,
)
from cti.replay import iter_events

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"
TRACES: list[list[AmiEvent | ConnectionEvent]] = [
    list(iter_events(p)) for p in sorted(FIXTURES.glob("*/*")) if p.is_file()
]
UIDS = sorted(
    {
        v
        for trace in TRACES
        for ev in trace
        for k, v in getattr(ev, "headers", {}).items()
        if k.endswith(("Uniqueid", "Linkedid", "Channel"))
    }
)
HEADER_NAMES = sorted({k for trace in TRACES for ev in trace for k in getattr(ev, "headers", {})})


def quiet_tracker() -> CallTracker:
    return CallTracker(
        logger=structlog.wrap_logger(None, wrapper_class=structlog.make_filtering_bound_logger(50))
    )


def garbage_event() -> st.SearchStrategy[AmiEvent | ConnectionEvent]:
    headers = st.dictionaries(
        st.sampled_from(HEADER_NAMES) | st.text(max_size=8),
        st.sampled_from(UIDS) | st.text(max_size=12) | st.sampled_from(["0", "6", "16", "4"]),
        max_size=12,
    )
    ami = st.builds(
        lambda name, h, t: parse_event("main", {**h, "Event": name}, t),
        st.sampled_from(sorted(EVENT_TYPES)) | st.text(max_size=10),
        headers,
        st.floats(min_value=0, max_value=2e9, allow_nan=False),
    )
    conn = st.sampled_from(
        [
            AmiConnected(node="main", time=1.0, version="x", reconnect=True),
            AmiDisconnected(node="main", time=1.0, reason="x"),
        ]
    )
    return ami | conn


@st.composite
def mangled(draw: st.DrawFn) -> list[AmiEvent | ConnectionEvent]:
    trace = list(draw(st.sampled_from(TRACES)))
    cut = draw(st.integers(0, len(trace)))
    mode = draw(st.sampled_from(["prefix", "suffix", "shuffle", "garbage", "all"]))
    if mode in {"prefix", "all"}:
        trace = trace[:cut]
    if mode in {"suffix", "all"}:
        trace = trace[draw(st.integers(0, len(trace))) :]
    if mode in {"shuffle", "all"}:
        trace = draw(st.permutations(trace))
    if mode in {"garbage", "all"}:
        for _ in range(draw(st.integers(1, 20))):
            pos = draw(st.integers(0, len(trace)))
            trace.insert(pos, draw(garbage_event()))
    return trace


def empty_resync(t: float) -> list[Any]:
    return [
        AmiConnected(node="main", time=t, version="x", reconnect=True),
        CoreShowChannelsComplete(
            node="main", name="CoreShowChannelsComplete", time=t, headers={}, action_id="", listed=0
        ),
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mangled())
def test_never_fails_and_resync_closes_everything(trace: list[Any]) -> None:
    tracker = quiet_tracker()
    ended: list[str] = []
    for ev in trace:
        for note in tracker.handle(ev):
            if isinstance(note, CallEnded):
                s = note.summary
                ended.append(s.call_id)
                assert s.ended_at >= s.started_at or not s.history_complete
                assert s.outcome in {
                    "answered",
                    "abandoned",
                    "busy",
                    "no_answer",
                    "rejected",
                    "failed",
                }
    assert tracker.anomalies["handler_error"] == 0
    for ev in empty_resync(3e9):
        tracker.handle(ev)
    assert tracker.active_calls() == []
    assert tracker.channel_count("main") == 0
    assert tracker.anomalies["handler_error"] == 0


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(TRACES))
def test_a_complete_trace_needs_no_resync(trace: list[Any]) -> None:
    """Real traces end every call by themselves (the resync kills nothing)."""
    tracker = quiet_tracker()
    for ev in trace:
        tracker.handle(ev)
    assert tracker.active_calls() == []
    assert tracker.anomalies["impossible_transition"] == 0
    assert tracker.anomalies["handler_error"] == 0
