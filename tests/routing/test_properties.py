"""Property tests of the dispatcher: random operation sequences never put one seat on two
calls, never ring one call on two seats, and leave no waiting call beside a ready seat that
could take it."""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti.routing import (
    CallAnswered,
    CancelRing,
    Command,
    ConnectCall,
    Dispatcher,
    IncomingCall,
    RecordAbandonment,
    match,
)
from cti.seats import Reason, SeatStatus
from tests.routing.plans import make_plan

SEATS = [
    {"id": "s1", "endpoint": "Local/s1@seats", "skills": {"general": 5, "market": 3}},
    {"id": "s2", "endpoint": "PJSIP/s2", "skills": {"general": 2}, "languages": ["zh", "en"]},
    {"id": "s3", "endpoint": "Local/s3@seats", "skills": {"market": 4}, "team": "county-a"},
    {"id": "s4", "endpoint": "PJSIP/s4", "skills": {"general": 1, "hr": 2}},
]
SEAT_IDS = [str(s["id"]) for s in SEATS]
LINES = ["12345", "12315", "12345110", "12366", "00000"]
ON_CALL = (SeatStatus.RESERVED, SeatStatus.RINGING, SeatStatus.TALKING)

op = st.one_of(
    st.tuples(
        st.just("call"), st.sampled_from(LINES), st.booleans(), st.sampled_from([None, "en"])
    ),
    st.tuples(st.just("login"), st.sampled_from(SEAT_IDS), st.booleans()),
    st.tuples(st.just("ready"), st.sampled_from(SEAT_IDS)),
    st.tuples(st.just("not_ready"), st.sampled_from(SEAT_IDS), st.sampled_from(list(Reason)[:5])),
    st.tuples(st.just("logout"), st.sampled_from(SEAT_IDS)),
    st.tuples(st.just("wrapup_done"), st.sampled_from(SEAT_IDS)),
    st.tuples(
        st.just("device"),
        st.sampled_from(SEAT_IDS),
        st.sampled_from(["UNAVAILABLE", "NOT_INUSE", "INUSE"]),
    ),
    st.tuples(st.just("ringing"), st.integers(0, 30)),
    st.tuples(st.just("answer"), st.integers(0, 30)),
    st.tuples(st.just("hangup"), st.integers(0, 30)),
    st.tuples(st.just("wait"), st.floats(0.1, 40.0)),
)


@dataclass
class Model:
    """What the commands told the outside world: which call rings/talks on which seat."""

    ringing: dict[str, str] = field(default_factory=dict)  # call -> seat
    talking: dict[str, str] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)

    def apply(self, out: list[Command]) -> None:
        for cmd in out:
            if isinstance(cmd, ConnectCall):
                assert cmd.call_id not in self.ringing, f"{cmd.call_id} rings two seats"
                assert cmd.call_id not in self.talking, f"{cmd.call_id} offered while talking"
                assert cmd.call_id not in self.ended, f"{cmd.call_id} offered after it ended"
                busy = set(self.ringing.values()) | set(self.talking.values())
                assert cmd.seat_id not in busy, f"{cmd.seat_id} gets two calls"
                self.ringing[cmd.call_id] = cmd.seat_id
            elif isinstance(cmd, CancelRing):
                assert self.ringing.pop(cmd.call_id) == cmd.seat_id
            elif isinstance(cmd, CallAnswered):
                self.talking[cmd.call_id] = self.ringing.pop(cmd.call_id)
            elif isinstance(cmd, RecordAbandonment):
                self.ringing.pop(cmd.outcome.call_id, None)
                self.ended.add(cmd.outcome.call_id)


def check(d: Dispatcher, model: Model, now: float) -> None:
    # the board agrees with what was commanded
    on_call = {s.seat_id: s.call_id for s in d.seats.states() if s.status in ON_CALL}
    offered = {**model.ringing, **model.talking}
    assert sorted(on_call.items()) == sorted((seat, call) for call, seat in offered.items())
    calls = [c for c in on_call.values() if c is not None]
    assert len(calls) == len(set(calls)), "one call on two seats"
    for call in d.queue:
        assert call.call_id not in offered, f"{call.call_id} waiting and offered"
        # liveness: no waiting call sits beside a ready seat that may take it
        for seat_id in d.ready_seat_ids():
            state = d.seats.get(seat_id)
            assert state is not None
            assert state.routable
            profile = d._profiles[seat_id]
            assert match(call, profile, d.rules, now) is None, (
                f"{call.call_id} could go to {seat_id}"
            )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=80))
def test_random_operations_keep_invariants(ops: list[tuple[object, ...]]) -> None:
    d = Dispatcher(make_plan(seats=SEATS, wrapup_s=5), structlog.get_logger())
    model = Model()
    now = 0.0
    n = 0
    for item in ops:
        kind = item[0]
        now += 0.01
        out: list[Command] = []
        if kind == "call":
            _, line, repeat, lang = item
            n += 1
            out = d.on_call_waiting(
                IncomingCall(
                    call_id=f"c{n}",
                    line=str(line),
                    at=now,
                    caller=f"1390000{n % 3}",
                    repeat_caller=bool(repeat),
                    language=lang if isinstance(lang, str) else None,
                )
            )
        elif kind == "login":
            out = d.on_login(str(item[1]), now, ready=bool(item[2]))
        elif kind == "ready":
            out = d.on_seat_ready(str(item[1]), now)
        elif kind == "not_ready":
            reason = item[2]
            assert isinstance(reason, Reason)
            out = d.on_seat_not_ready(str(item[1]), reason, now)
        elif kind == "logout":
            out = d.on_logout(str(item[1]), now)
        elif kind == "wrapup_done":
            out = d.on_wrapup_done(str(item[1]), now)
        elif kind == "device":
            seat = next(s for s in SEATS if s["id"] == item[1])
            out = d.on_device_state(str(seat["endpoint"]), str(item[2]), now)
        elif kind in {"ringing", "answer", "hangup"}:
            cid = f"c{item[1]}"
            fn = {"ringing": d.on_ringing, "answer": d.on_answer, "hangup": d.on_hangup}[str(kind)]
            out = fn(cid, now)
            if kind == "hangup" and isinstance(item[1], int) and 1 <= item[1] <= n:
                model.talking.pop(cid, None)
                model.ended.add(cid)
        elif kind == "wait":
            delta = item[1]
            assert isinstance(delta, float)
            now += delta
        model.apply(out)
        model.apply(d.tick(now))
        check(d, model, now)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(["12345", "12315", "12345110"]), min_size=1, max_size=40),
    st.integers(1, 4),
)
def test_every_waiting_call_is_offered_when_capable_seats_free_up(
    lines: list[str], seats: int
) -> None:
    """Seats that answer and hang up promptly serve every call, in some order."""
    d = Dispatcher(make_plan(seats=SEATS, wrapup_s=1), structlog.get_logger())
    for i, line in enumerate(lines):
        d.on_call_waiting(IncomingCall(call_id=f"c{i}", line=line, at=float(i) * 0.001))
    now = 1.0
    for seat_id in SEAT_IDS[:seats]:
        d.on_login(seat_id, now, ready=True)
    served: set[str] = set()
    for _ in range(10 * len(lines) + 10):
        now += 2.0
        out = d.tick(now)
        for seat_id in SEAT_IDS:
            call = d.seat_call(seat_id)
            if call is not None:
                out += d.on_answer(call, now)
                served.add(call)
                out += d.on_hangup(call, now + 0.5)
        if len(served) == len(lines):
            break
    eligible = {f"c{i}" for i, line in enumerate(lines)}
    assert served == eligible, f"never offered: {sorted(eligible - served)}"
