"""Core.handle(PlanReloaded): the core learns a reloaded number plan like any other input."""

from __future__ import annotations

import structlog

from cti.core import Core, PlanReloaded, Publish, RedirectToSeat, StoreSeatState
from cti.events import AmiConnected
from tests.routing.plans import make_plan
from tests.test_core import cmd, start_call

A = {"id": "1001", "endpoint": "Local/1001@seats", "skills": {"general": 5, "market": 3}}
NEW = {"id": "4001", "endpoint": "PJSIP/4001", "skills": {"general": 5}}


def test_a_seat_added_by_a_reload_is_known_everywhere_and_gets_the_waiting_call() -> None:
    c = Core(make_plan([A], wrapup_s=0), log=structlog.get_logger("test"))
    c.handle(AmiConnected(node="main", time=100.0, version="11.0.0", reconnect=False))
    start_call(c, "c1", 100.0)
    refused = cmd(c, "4001", b'{"cmd":"login","request_id":"r0"}', 100.5)
    assert [e.payload["ok"] for e in refused if isinstance(e, Publish)] == [False]

    out = c.handle(PlanReloaded(plan=make_plan([A, NEW], wrapup_s=0), at=101.0))
    assert [(e.seat_id, e.cause) for e in out if isinstance(e, StoreSeatState)] == [
        ("4001", "config_added")
    ]
    assert [w.call_id for w in c.waiting(10)] == ["c1"]  # still waiting, first
    assert c.ready_seats_by_line()["12345"] == 0

    out = cmd(c, "4001", b'{"cmd":"login","ready":true,"request_id":"r1"}', 102.0)
    [redirect] = [e for e in out if isinstance(e, RedirectToSeat)]
    assert (redirect.seat_id, redirect.endpoint) == ("4001", "PJSIP/4001")
    # its phone's channel is named by the seat (answered_by, records, tickets)
    assert c.tracker._name_of("PJSIP/4001-00000001") == "4001"


def test_a_seat_removed_by_a_reload_still_takes_commands_on_its_call() -> None:
    b = {"id": "1002", "endpoint": "PJSIP/1002", "skills": {"general": 5}}
    c = Core(make_plan([A, b], wrapup_s=0), log=structlog.get_logger("test"))
    cmd(c, "1002", b'{"cmd":"login","ready":true,"request_id":"r1"}', 1.0)
    c.handle(PlanReloaded(plan=make_plan([A], wrapup_s=0), at=2.0))
    assert c.seat_state("1002") is None  # idle: gone at once
    out = cmd(c, "1002", b'{"cmd":"ready","request_id":"r2"}', 3.0)
    [reply] = [e for e in out if isinstance(e, Publish) and e.topic == "seats/1002/reply"]
    assert reply.payload["ok"] is False
