"""Routing: decisions/s and decision latency with 1,000 waiting calls and 500 seats.

Usage: python benchmarks/routing.py [--calls 1000] [--seats 500] [--decisions 20000]

Rows (each timed per decision with perf_counter_ns, after a warm-up):
  pick_call general  a freed general seat picks from the full line (mostly the head)
  pick_call market   a market-only seat scans a line that is 90 % general calls
  pick_call worst    a seat no waiting call can use: scans all calls, finds none
  pick_seat general  a new general call, 500 ready seats (stops at the first eligible)
  pick_seat sticky   a new call whose sticky seat is the most recently idle (full scan)
  pick_seat sticky/id  the same with ready_by_id (what the dispatcher passes): one lookup
  queue add+remove   WaitingLine insert + remove at n waiting calls
  dispatcher cycle   Dispatcher.on_hangup(wrap-up 0) -> seat ready -> pick_call -> offer
                     -> answer, with the line kept at n waiting calls, all seats busy

The plan: 500 seats (all general; 1 in 5 also market, 1 in 10 hr, 1 in 20 dialect) and a
line of n calls: 10 % 110 transfers, 20 % repeat callers, the rest normal; 10 % 12315
(market), overflow to any general seat after 30 s.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from benchmarks._machine import machine_line
from cti.numberplan import NumberPlan
from cti.queue import WaitingCall, WaitingLine
from cti.routing import (
    CallAnswered,
    ConnectCall,
    Dispatcher,
    IncomingCall,
    RoutingRules,
    SeatCandidate,
    SeatProfile,
    pick_call,
    pick_seat,
)

CLASSES = {"emergency-transfer": 600, "repeat": 120, "normal": 0}


def build_plan(seats: int) -> NumberPlan:
    seat_rows = []
    for i in range(seats):
        skills = {"general": 1 + i % 5}
        if i % 5 == 0:
            skills["market"] = 2
        if i % 10 == 3:
            skills["hr"] = 3
        languages = ["zh", "dialect"] if i % 20 == 7 else ["zh"]
        if i % 20 == 7:
            skills["dialect"] = 4
        seat_rows.append(
            {
                "id": f"{1000 + i}",
                "endpoint": f"PJSIP/{1000 + i}",
                "skills": skills,
                "team": "centre" if i % 8 else "county-a",
                "languages": languages,
            }
        )
    return NumberPlan.model_validate(
        {
            "skills": [{"name": s} for s in ("general", "market", "hr", "dialect")],
            "lines": [
                {"number": "12345", "name": "12345"},
                {"number": "12315", "name": "12315", "mode": "dedicated", "skill": "market"},
                {"number": "12333", "name": "12333", "mode": "dedicated", "skill": "hr"},
                {
                    "number": "12345110",
                    "name": "110",
                    "dispatch110": True,
                    "priority_class": "emergency-transfer",
                },
            ],
            "seats": seat_rows,
            "queue": {
                "wrapup_s": 0,
                "overflow": [
                    {"name": "any-general", "after_s": 30, "target": {"skills": ["general"]}},
                    {"name": "county", "after_s": 90, "target": {"teams": ["county-a"]}},
                ],
            },
        }
    )


def random_call(rng: random.Random, i: int, now: float) -> WaitingCall:
    r = rng.random()
    cls = "emergency-transfer" if r < 0.1 else "repeat" if r < 0.3 else "normal"
    skill = "market" if rng.random() < 0.1 else "general"
    return WaitingCall(
        call_id=f"c{i}",
        line="12315" if skill == "market" else "12345",
        skills=frozenset({skill}),
        priority_class=cls,
        priority=CLASSES[cls],
        enqueued_at=now - rng.uniform(0, 20),  # nobody has reached an overflow step
        caller=f"139{i:08d}",
    )


def timed(label: str, n: int, fn: Callable[[int], object]) -> None:
    for i in range(min(200, n)):
        fn(i)
    gc.collect()
    gc.disable()
    samples = []
    clock = time.perf_counter_ns
    try:
        start = clock()
        for i in range(n):
            t0 = clock()
            fn(i)
            samples.append(clock() - t0)
        total = clock() - start
    finally:
        gc.enable()
    samples.sort()
    p50 = samples[len(samples) // 2] / 1000
    p99 = samples[int(len(samples) * 0.99)] / 1000
    print(
        f"{label:<20} {n * 1e9 / total:>12,.0f}/s  p50 {p50:>8.1f} us  p99 {p99:>8.1f} us"
        f"  mean {statistics.fmean(samples) / 1000:>8.1f} us"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--seats", type=int, default=500)
    ap.add_argument("--decisions", type=int, default=20000)
    args = ap.parse_args()
    n_calls, n_seats, n = args.calls, args.seats, args.decisions
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    log = structlog.get_logger()

    print(machine_line())
    print(f"routing: {n_calls} waiting calls, {n_seats} seats, {n} decisions per row")
    plan = build_plan(n_seats)
    rules = RoutingRules.from_plan(plan)
    rng = random.Random(42)
    now = 10_000.0
    line = WaitingLine(aging_per_s=plan.queue.aging_per_s, log=log)
    for i in range(n_calls):
        line.add(random_call(rng, i, now))
    profiles = [SeatProfile.from_config(s) for s in plan.seats]
    ready = [
        SeatCandidate(profile=p, ready_since=now - 100 + k * 0.1) for k, p in enumerate(profiles)
    ]

    general_seat = next(s for s in ready if set(s.profile.skills) == {"general"})
    market_only = SeatCandidate(
        profile=SeatProfile(seat_id="m", endpoint="PJSIP/m", skills={"market": 3}), ready_since=0
    )
    useless = SeatCandidate(
        profile=SeatProfile(seat_id="x", endpoint="PJSIP/x", skills={"hr": 3}), ready_since=0
    )
    timed("pick_call general", n, lambda _: pick_call(general_seat, line, rules, now))
    timed("pick_call market", n, lambda _: pick_call(market_only, line, rules, now))
    timed("pick_call worst", max(1, n // 10), lambda _: pick_call(useless, line, rules, now))

    new_call = random_call(rng, 10**6, now)
    timed("pick_seat general", n, lambda _: pick_seat(new_call, ready, rules, now))
    sticky_call = WaitingCall(
        call_id="s",
        line="12345",
        skills=frozenset({"general"}),
        priority_class="repeat",
        enqueued_at=now,
        last_seat=ready[-1].seat_id,
        last_seen_at=now - 60,
    )
    timed("pick_seat sticky", n, lambda _: pick_seat(sticky_call, ready, rules, now))
    by_id = {s.seat_id: s for s in ready}
    timed(
        "pick_seat sticky/id",
        n,
        lambda _: pick_seat(sticky_call, ready, rules, now, ready_by_id=by_id),
    )

    extra = [random_call(rng, 2 * 10**6 + i, now) for i in range(n)]

    def add_remove(i: int) -> None:
        line.add(extra[i])
        line.remove(extra[i].call_id)

    timed("queue add+remove", n, add_remove)

    # The whole dispatcher at saturation: every seat talking, n_calls waiting; each step
    # hangs up one call, which frees a seat (wrap-up 0), which takes the next waiting call
    # (ConnectCall), which is answered; one new call arrives to keep the line full.
    disp = Dispatcher(plan, log)
    t = now
    for p in profiles:
        disp.on_login(p.seat_id, t, ready=True)
    talking: list[str] = []
    serial = 0

    def arrive(at: float) -> None:
        nonlocal serial
        serial += 1
        number = "12315" if serial % 10 == 0 else "12345"
        out = disp.on_call_waiting(IncomingCall(call_id=f"d{serial}", line=number, at=at))
        for cmd in out:
            if isinstance(cmd, ConnectCall):
                disp.on_answer(cmd.call_id, at)
                talking.append(cmd.call_id)

    for _ in range(n_seats + n_calls):
        t += 0.001
        arrive(t)
    assert len(disp.queue) == n_calls, len(disp.queue)

    def cycle(_: int) -> None:
        nonlocal t
        t += 0.001
        victim = talking.pop(0)
        for cmd in disp.on_hangup(victim, t):
            if isinstance(cmd, ConnectCall):
                answered = disp.on_answer(cmd.call_id, t)
                talking.extend(a.call_id for a in answered if isinstance(a, CallAnswered))
        arrive(t)

    timed("dispatcher cycle", n, cycle)
    print(f"dispatcher: {len(disp.queue)} waiting, stats {dict(disp.stats)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
